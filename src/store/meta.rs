//! Per-version metadata: self-describing JSON beside each object, so the store can
//! be rebuilt by scanning it. Written temp → fsync → rename → fsync dir.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{BorrowedFd, FromRawFd};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::Reason;
use super::layout::FORMAT_VERSION;
use crate::sys;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Writer {
    pub pid: u32,
    pub command: String,
}

/// The one `'static` copy of `v` in `set`, made by `leak` the first time.
/// Strings that repeat across versions (category, MIME type, why a format
/// check failed) and writers are kept so, once for the daemon's life: the index
/// holds millions of versions and a handful of distinct values. What is
/// interned only grows, bounded by the distinct values met (a writer per
/// process that saved).
fn interned<T: ?Sized + Eq + std::hash::Hash>(
    set: &Mutex<Option<HashSet<&'static T>>>,
    v: &T,
    leak: impl FnOnce() -> &'static T,
) -> &'static T {
    let mut g = set.lock();
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(&k) = set.get(v) {
        return k;
    }
    let k = leak();
    set.insert(k);
    k
}

pub fn intern(s: &str) -> &'static str {
    static STRS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    interned(&STRS, s, || Box::leak(s.to_owned().into_boxed_str()))
}

/// What the classifier said of a version: few distinct values, interned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    pub category: &'static str,
    pub mime: &'static str,
    /// Why the format check failed ("" when it did not).
    pub incomplete_reason: &'static str,
}

pub fn intern_kind(category: &str, mime: &str, incomplete_reason: &str) -> &'static Kind {
    static KINDS: Mutex<Option<HashSet<&'static Kind>>> = Mutex::new(None);
    let k = Kind {
        category: intern(category),
        mime: intern(mime),
        incomplete_reason: intern(incomplete_reason),
    };
    interned(&KINDS, &k, || Box::leak(Box::new(k.clone())))
}

pub fn intern_writer(w: Writer) -> &'static Writer {
    static WRITERS: Mutex<Option<HashSet<&'static Writer>>> = Mutex::new(None);
    interned(&WRITERS, &w, || Box::leak(Box::new(w.clone())))
}

/// A version's content digest: BLAKE3, 32 bytes. Stores written by hand or by
/// tools may hold an empty or a foreign string; it is kept as it was
/// (interned). All in 32 bytes, not an enum's 36, as a record holds one and a
/// mount millions: no digest is all zeros, and a foreign string is
/// `TEXT_MARK` then its number. A BLAKE3 output of either form has odds of
/// 2^-224.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

const TEXT_MARK: &[u8; 28] = b"ckptfs: a foreign digest #\0\0";

/// Foreign digest strings, numbered in the order met (and their numbers).
#[allow(clippy::type_complexity)]
static TEXT_DIGESTS: Mutex<Option<(Vec<&'static str>, HashMap<&'static str, u32>)>> =
    Mutex::new(None);

impl Digest {
    pub const NONE: Digest = Digest([0; 32]);

    pub fn of(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }

    /// A BLAKE3 digest's bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Digest(b)
    }

    /// The BLAKE3 digest's bytes, if it is one (not none, not foreign text).
    pub fn blake3(&self) -> Option<&[u8; 32]> {
        (!self.is_empty() && self.text().is_none()).then_some(&self.0)
    }

    fn text(&self) -> Option<u32> {
        let (mark, n) = self.0.split_at(28);
        (mark == TEXT_MARK).then(|| u32::from_le_bytes(n.try_into().expect("4 bytes")))
    }

    fn of_text(i: u32) -> Self {
        let mut b = [0; 32];
        b[..28].copy_from_slice(TEXT_MARK);
        b[28..].copy_from_slice(&i.to_le_bytes());
        Digest(b)
    }

    /// From the hex text of the metadata file.
    pub fn parse(s: &str) -> Self {
        if s.is_empty() {
            return Digest::NONE;
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            let b = super::unhex(s);
            if let Ok(a) = <[u8; 32]>::try_from(b.as_slice()) {
                return Digest(a);
            }
        }
        let mut g = TEXT_DIGESTS.lock();
        let (list, at) = g.get_or_insert_with(Default::default);
        if let Some(&i) = at.get(s) {
            return Digest::of_text(i);
        }
        let s: &'static str = Box::leak(s.to_owned().into_boxed_str());
        list.push(s);
        at.insert(s, list.len() as u32 - 1);
        Digest::of_text(list.len() as u32 - 1)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 32]
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.text() {
            let g = TEXT_DIGESTS.lock();
            return f.write_str(g.as_ref().map_or("", |(list, _)| list[i as usize]));
        }
        if self.is_empty() {
            return Ok(());
        }
        self.0.iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// What many versions have in common: the record format, mode, owner, what
/// the classifier said, the writer, and how the version was sealed and kept
/// (reason, format check, pin, compression). Interned, so a record holds one
/// pointer, not 40 bytes: a save loop makes millions of versions and a
/// handful of distinct origins. A pin or a compression points the record at
/// another origin (`set_origin`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Store format version the record was written with.
    pub format: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Category, MIME type, why the format check failed.
    pub kind: &'static Kind,
    pub writer: Option<&'static Writer>,
    pub reason: Reason,
    /// Format check: true/false for known formats, None when there is no check.
    pub complete: Option<bool>,
    pub pinned: bool,
    /// The object is zstd-compressed (`.data.zst`).
    pub compressed: bool,
    /// Sealed without its digest, which comes later (`store::digest_later`).
    pub digest_pending: bool,
}

pub fn intern_origin(o: Origin) -> &'static Origin {
    static ORIGINS: Mutex<Option<HashSet<&'static Origin>>> = Mutex::new(None);
    interned(&ORIGINS, &o, || Box::leak(Box::new(o.clone())))
}

/// A path's exact bytes behind a thin (8-byte) shared pointer: every version
/// of a path and the index's maps hold the one allocation (count, length,
/// bytes), and a record pays 8 bytes for it, not the 16 of an `Arc<[u8]>`.
#[derive(Clone)]
pub struct PathKey(triomphe::ThinArc<(), u8>);

impl std::ops::Deref for PathKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.slice
    }
}

impl std::borrow::Borrow<[u8]> for PathKey {
    fn borrow(&self) -> &[u8] {
        self
    }
}

// By the bytes, as `Borrow<[u8]>` requires of maps keyed by it.
impl PartialEq for PathKey {
    fn eq(&self, o: &Self) -> bool {
        // Most comparisons are of one path's shared allocation with itself.
        std::ptr::eq(self.as_ptr(), o.as_ptr()) && self.len() == o.len() || self[..] == o[..]
    }
}
impl Eq for PathKey {}
impl PartialOrd for PathKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for PathKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self[..].cmp(&o[..])
    }
}
impl std::hash::Hash for PathKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self[..].hash(h)
    }
}

impl fmt::Debug for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self), f)
    }
}

impl From<&[u8]> for PathKey {
    fn from(b: &[u8]) -> Self {
        PathKey(triomphe::ThinArc::from_header_and_slice((), b))
    }
}

impl From<&str> for PathKey {
    fn from(s: &str) -> Self {
        s.as_bytes().into()
    }
}

impl From<Vec<u8>> for PathKey {
    fn from(b: Vec<u8>) -> Self {
        b[..].into()
    }
}

/// One sealed version, as the index keeps it: fixed-size fields, the path
/// shared by all versions of a file, what repeats interned ([`Origin`]).
/// Its file form (`MetaFile`, JSON beside the object) is what the store is
/// rebuilt from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(into = "MetaFile")]
pub struct VersionMeta {
    /// File path relative to the mount root, exact bytes. The training step
    /// the version belongs to is read from it (`step()`), not stored.
    pub path: PathKey,
    /// Per-file version number, from 1, only growing.
    pub number: u64,
    /// Sealed time, nanoseconds since the epoch (UTC).
    pub sealed_ns: i64,
    /// Content mtime at capture, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Content length in bytes (the object may be longer when it shares an appended inode).
    pub size: u64,
    /// Format, mode, owner, kind, writer, reason, format check, pin, compression.
    pub origin: &'static Origin,
    /// BLAKE3 of the first `size` bytes.
    pub digest: Digest,
    /// Inode number of the object when sealed (to find objects shared with a live file).
    pub object_ino: u64,
    /// In the archive tier: the manifest's key in the bucket (no local object).
    /// A thin pointer: few versions have one.
    pub archived: Option<Box<String>>,
}

/// The metadata file's JSON. Field order is the order in the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct MetaFile {
    format: u32,
    /// Path for display (lossy UTF-8; see `path_hex`).
    path: String,
    /// Exact path bytes, hex, when the path is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    number: u64,
    sealed_ns: i64,
    mtime_ns: i64,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    digest: String,
    category: String,
    mime: String,
    complete: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    incomplete_reason: String,
    reason: Reason,
    writer: Option<Writer>,
    pinned: bool,
    object_ino: u64,
    #[serde(default)]
    compressed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archived: Option<String>,
    /// Sealed without its digest (`digest` is empty until it comes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    digest_pending: bool,
}

// By hand: a derived impl would borrow the `&'static str` fields from the input.
impl<'de> Deserialize<'de> for VersionMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MetaFile::deserialize(d).map(Into::into)
    }
}

impl From<MetaFile> for VersionMeta {
    fn from(f: MetaFile) -> Self {
        // The file's `step` is not read: the path names it (`step()`).
        let path: PathKey = match &f.path_hex {
            Some(h) => super::unhex(h).into(),
            None => f.path.into_bytes().into(),
        };
        VersionMeta {
            path,
            number: f.number,
            sealed_ns: f.sealed_ns,
            mtime_ns: f.mtime_ns,
            size: f.size,
            origin: intern_origin(Origin {
                format: f.format,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                kind: intern_kind(&f.category, &f.mime, &f.incomplete_reason),
                writer: f.writer.map(intern_writer),
                reason: f.reason,
                complete: f.complete,
                pinned: f.pinned,
                compressed: f.compressed,
                digest_pending: f.digest_pending,
            }),
            digest: Digest::parse(&f.digest),
            object_ino: f.object_ino,
            archived: f.archived.map(Box::new),
        }
    }
}

impl From<VersionMeta> for MetaFile {
    fn from(m: VersionMeta) -> Self {
        let (path, path_hex) = match std::str::from_utf8(&m.path) {
            Ok(s) => (s.to_string(), None),
            Err(_) => (
                String::from_utf8_lossy(&m.path).into_owned(),
                Some(super::hex(&m.path)),
            ),
        };
        let o = m.origin;
        MetaFile {
            format: o.format,
            path,
            path_hex,
            number: m.number,
            sealed_ns: m.sealed_ns,
            mtime_ns: m.mtime_ns,
            size: m.size,
            mode: o.mode,
            uid: o.uid,
            gid: o.gid,
            digest: m.digest.to_string(),
            category: o.kind.category.to_string(),
            mime: o.kind.mime.to_string(),
            complete: o.complete,
            incomplete_reason: o.kind.incomplete_reason.to_string(),
            reason: o.reason,
            writer: o.writer.cloned(),
            pinned: o.pinned,
            object_ino: m.object_ino,
            compressed: o.compressed,
            step: m.step(),
            archived: m.archived.map(|a| *a),
            digest_pending: o.digest_pending,
        }
    }
}

impl VersionMeta {
    pub fn category(&self) -> &'static str {
        self.origin.kind.category
    }

    pub fn mime(&self) -> &'static str {
        self.origin.kind.mime
    }

    pub fn incomplete_reason(&self) -> &'static str {
        self.origin.kind.incomplete_reason
    }

    pub fn format(&self) -> u32 {
        self.origin.format
    }

    pub fn mode(&self) -> u32 {
        self.origin.mode
    }

    pub fn uid(&self) -> u32 {
        self.origin.uid
    }

    pub fn gid(&self) -> u32 {
        self.origin.gid
    }

    pub fn writer(&self) -> Option<&'static Writer> {
        self.origin.writer
    }

    pub fn reason(&self) -> Reason {
        self.origin.reason
    }

    /// Format check: true/false for known formats, None when there is no check.
    pub fn complete(&self) -> Option<bool> {
        self.origin.complete
    }

    pub fn pinned(&self) -> bool {
        self.origin.pinned
    }

    /// The object is zstd-compressed (`.data.zst`).
    pub fn compressed(&self) -> bool {
        self.origin.compressed
    }

    /// Change what the record shares with others (a pin, a compression, the
    /// digest arriving): the record then points at the interned origin that says so.
    pub fn set_origin(&mut self, change: impl FnOnce(&mut Origin)) {
        let mut o = self.origin.clone();
        change(&mut o);
        self.origin = intern_origin(o);
    }

    /// Sealed without its digest, which comes later (`store::digest_later`).
    pub fn digest_pending(&self) -> bool {
        self.origin.digest_pending
    }

    pub fn archived(&self) -> Option<&str> {
        self.archived.as_deref().map(String::as_str)
    }

    /// The training step the path names (`checkpoint-500/…` → 500), if any.
    pub fn step(&self) -> Option<u64> {
        crate::classify::step_of(&self.path)
    }

    /// The path's exact bytes.
    pub fn relpath(&self) -> &[u8] {
        &self.path
    }

    /// The path for display (lossy UTF-8).
    pub fn display_path(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.path)
    }

    pub fn parse(bytes: &[u8]) -> io::Result<Self> {
        let m: VersionMeta = serde_json::from_slice(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if m.format() > FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "written by a newer ckptfs (format {} > {FORMAT_VERSION})",
                    m.format()
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
            path: p.as_bytes().into(),
            number: n,
            sealed_ns: n as i64,
            mtime_ns: 0,
            size: 0,
            origin: intern_origin(Origin {
                format: 1,
                mode: 0o644,
                uid: 0,
                gid: 0,
                kind: intern_kind("text", "text/plain", ""),
                writer: None,
                reason: Reason::Close,
                complete: None,
                pinned: false,
                compressed: false,
                digest_pending: false,
            }),
            digest: Digest::NONE,
            object_ino: n,
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

/// The lines of a JSON-lines file (`journal`, `generations`, `captures`): each
/// non-empty line's number (from 1), its bytes, and it parsed as `T`. A line a
/// crash or a full disk tore is an `Err` for the caller to skip and report.
pub fn json_lines<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> impl Iterator<Item = (usize, &[u8], serde_json::Result<T>)> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i + 1, l, serde_json::from_slice(l)))
}

pub fn read_at(dir: BorrowedFd<'_>, name: &str) -> io::Result<Vec<u8>> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let fd = sys::openat(dir, &c, libc::O_RDONLY, 0)?;
    let mut f = std::fs::File::from(fd);
    let mut v = Vec::new();
    io::Read::read_to_end(&mut f, &mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_none_blake3_or_foreign_text_and_prints_as_it_was_read() {
        let hex = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let b = Digest::parse(hex);
        assert_eq!(b.to_string(), hex);
        assert!(b.blake3().is_some() && !b.is_empty());
        assert_eq!(b, Digest::of(blake3::hash(b"")));
        let none = Digest::parse("");
        assert!(none.is_empty() && none.blake3().is_none() && none == Digest::NONE);
        assert_eq!(none.to_string(), "");
        for t in ["md5:d41d8cd98f00b204e9800998ecf8427e", "AF1349B9", "x"] {
            let d = Digest::parse(t);
            assert_eq!(d.to_string(), t);
            assert!(d.blake3().is_none() && !d.is_empty(), "{t}");
            assert_eq!(d, Digest::parse(t), "interned once");
        }
        assert_ne!(Digest::parse("x"), Digest::parse("y"));
    }

    #[test]
    fn a_pin_or_a_compression_points_the_record_at_another_origin() {
        let mut m = VersionMeta::sample("run/checkpoint-500/model.pt", 3);
        assert_eq!(m.step(), Some(500));
        let before = m.origin;
        m.set_origin(|o| (o.pinned, o.compressed) = (true, true));
        assert!(m.pinned() && m.compressed());
        assert_eq!((m.reason(), m.mode()), (before.reason, before.mode));
        m.set_origin(|o| (o.pinned, o.compressed) = (false, false));
        assert!(
            std::ptr::eq(m.origin, before),
            "the same interned origin again"
        );
        assert_eq!(std::mem::size_of::<VersionMeta>(), 96);
    }
}
