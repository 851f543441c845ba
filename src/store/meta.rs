//! Per-version metadata: self-describing JSON beside each object, so the store can
//! be rebuilt by scanning it. Written temp → fsync → rename → fsync dir.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, FromRawFd};

use serde::{Deserialize, Serialize};

use super::Reason;
use super::layout::FORMAT_VERSION;
use crate::sys;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Writer {
    pub pid: u32,
    pub command: String,
}

/// One sealed version. Field order is the order in the JSON file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VersionMeta {
    /// Store format version this record was written with.
    pub format: u32,
    /// File path relative to the mount root (lossy UTF-8 for display; see `path_b64`).
    pub path: String,
    /// Exact path bytes, hex, when the path is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// Per-file version number, from 1, only growing.
    pub number: u64,
    /// Sealed time, nanoseconds since the epoch (UTC).
    pub sealed_ns: i64,
    /// Content mtime at capture, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Content length in bytes (the object may be longer when it shares an appended inode).
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// BLAKE3 of the first `size` bytes, hex.
    pub digest: String,
    pub category: String,
    pub mime: String,
    /// Format check: true/false for known formats, null when there is no check.
    pub complete: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incomplete_reason: String,
    pub reason: Reason,
    pub writer: Option<Writer>,
    pub pinned: bool,
    /// Inode number of the object when sealed (to find objects shared with a live file).
    pub object_ino: u64,
    /// The object is zstd-compressed (`.data.zst`).
    #[serde(default)]
    pub compressed: bool,
    /// The training step the path names (`checkpoint-500/…` → 500), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// In the archive tier: the manifest's key in the bucket (no local object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
}

impl VersionMeta {
    pub fn relpath(&self) -> Vec<u8> {
        match &self.path_hex {
            Some(h) => super::unhex(h),
            None => self.path.clone().into_bytes(),
        }
    }

    pub fn set_relpath(&mut self, p: &[u8]) {
        match std::str::from_utf8(p) {
            Ok(s) => {
                self.path = s.to_string();
                self.path_hex = None;
            }
            Err(_) => {
                self.path = String::from_utf8_lossy(p).into_owned();
                self.path_hex = Some(super::hex(p));
            }
        }
    }

    pub fn parse(bytes: &[u8]) -> io::Result<Self> {
        let m: VersionMeta = serde_json::from_slice(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if m.format > FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "written by a newer ckptfs (format {} > {FORMAT_VERSION})",
                    m.format
                ),
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
impl VersionMeta {
    /// A record for unit tests: version `n` of `p`, sealed at `n` ns.
    pub(crate) fn sample(p: &str, n: u64) -> Self {
        VersionMeta {
            format: 1,
            path: p.into(),
            path_hex: None,
            number: n,
            sealed_ns: n as i64,
            mtime_ns: 0,
            size: 0,
            mode: 0o644,
            uid: 0,
            gid: 0,
            digest: String::new(),
            category: "text".into(),
            mime: "text/plain".into(),
            complete: None,
            incomplete_reason: String::new(),
            reason: Reason::Close,
            writer: None,
            pinned: false,
            object_ino: n,
            compressed: false,
            step: None,
            archived: None,
        }
    }
}

/// Write `bytes` to `dir/name` crash-safely: temp → fsync → rename → fsync dir.
pub fn write_atomic(dir: BorrowedFd<'_>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = CString::new(format!(".{name}.tmp")).map_err(io::Error::other)?;
    let fin = CString::new(name).map_err(io::Error::other)?;
    let fd = sys::openat(
        dir,
        &tmp,
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        0o644,
    )?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: we own raw; File takes it over.
    let mut f = unsafe { std::fs::File::from_raw_fd(raw) };
    let r = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = r {
        let _ = sys::unlinkat(dir, &tmp, 0);
        return Err(e);
    }
    drop(f);
    sys::renameat2(dir, &tmp, dir, &fin, 0)?;
    sys::fsync_dir_at(dir)
}

pub fn read_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Vec<u8>> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let fd = sys::openat(dir, &c, libc::O_RDONLY, 0)?;
    let mut f = std::fs::File::from(fd);
    let mut v = Vec::new();
    io::Read::read_to_end(&mut f, &mut v)?;
    Ok(v)
}
