//! Client-side encryption of the archive (optional, `archive.key_file`).
//! Two keys are derived from the file's 32 bytes with BLAKE3's key
//! derivation: one addresses chunks (a keyed BLAKE3 of the plaintext, so
//! equal data under different keys gets unrelated addresses), one encrypts
//! (XChaCha20-Poly1305, a random 24-byte nonce per object, stored in front).
//! Chunks, manifests and the generations copy are encrypted; key names are
//! not (they hold a path's MD5, a version number, a node name).

use std::io;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

pub struct Crypt {
    ids: [u8; 32],
    cipher: XChaCha20Poly1305,
}

const NONCE: usize = 24;

impl Crypt {
    /// Read a key file: 32 raw bytes, or 64 hex digits (a trailing newline
    /// allowed). Anything else is refused with its path named.
    pub fn load(path: &Path) -> Result<Self, String> {
        let b =
            std::fs::read(path).map_err(|e| format!("archive.key_file {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&b);
        let hex = text.trim();
        let key: [u8; 32] = if hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let v = crate::store::unhex(hex);
            v.try_into().map_err(|_| "bad hex".to_string())?
        } else {
            b.as_slice().try_into().map_err(|_| {
                format!(
                    "archive.key_file {}: expected 32 bytes or 64 hex digits, found {} bytes (make one with: head -c 32 /dev/urandom > FILE)",
                    path.display(),
                    b.len()
                )
            })?
        };
        Ok(Self::from_key(&key))
    }

    pub fn from_key(key: &[u8; 32]) -> Self {
        let ids = blake3::derive_key("ckptfs archive 2026-11-30 chunk addresses", key);
        let enc = blake3::derive_key("ckptfs archive 2026-11-30 encryption", key);
        Self {
            ids,
            cipher: XChaCha20Poly1305::new(&enc.into()),
        }
    }

    /// A chunk's address under this key.
    pub fn id(&self, plain: &[u8]) -> String {
        blake3::keyed_hash(&self.ids, plain).to_hex().to_string()
    }

    pub fn seal(&self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(&nonce, plain)
                .map_err(|_| io::Error::other("encryption failed"))?,
        );
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], what: &str) -> io::Result<Vec<u8>> {
        if sealed.len() < NONCE {
            return Err(io::Error::other(format!(
                "{what}: too short to be encrypted"
            )));
        }
        let (n, ct) = sealed.split_at(NONCE);
        self.cipher.decrypt(XNonce::from_slice(n), ct).map_err(|_| {
            io::Error::other(format!(
                "{what}: does not decrypt with archive.key_file (another key, or damaged)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_keys_do_not_share_addresses() {
        let a = Crypt::from_key(&[1; 32]);
        let b = Crypt::from_key(&[2; 32]);
        let x = b"the same tensor bytes".repeat(100);
        let s = a.seal(&x).unwrap();
        assert!(!s.windows(21).any(|w| w == b"the same tensor bytes"));
        assert_eq!(a.open(&s, "chunk").unwrap(), x);
        assert!(
            b.open(&s, "chunk")
                .unwrap_err()
                .to_string()
                .contains("another key")
        );
        assert_ne!(a.id(&x), b.id(&x), "equal plaintexts, unrelated addresses");
        assert_ne!(a.id(&x), blake3::hash(&x).to_hex().to_string());
        assert_ne!(a.seal(&x).unwrap(), s, "a fresh nonce each time");
    }
}
