//! The archive tier: versions older than `after` move to an S3-compatible
//! bucket as content-addressed chunks plus one manifest per version, and
//! leave the local disk once the manifest is confirmed. Their `.versions`
//! entries stay; reading one fetches its chunks into a bounded local cache.
//!
//! Bucket layout (docs/FORMAT.md, "Archive"):
//!
//! ```text
//! <prefix>/chunks/<id[0..2]>/<id>                    shared by every node
//! <prefix>/nodes/<node>/manifests/<path md5>/vNNNNNN.json
//! ```
//!
//! `id` is the BLAKE3 of the chunk's plaintext, so a chunk is uploaded once per
//! bucket whichever version, file or node it comes from. An upload in progress
//! is recorded in `<store>/archive/up-<path md5>-vNNNNNN.json` (the chunks
//! already confirmed), so a daemon killed mid-upload resumes without sending
//! them again. Nothing here runs on a FUSE request thread except a read of an
//! archived version, which a person asked for.

mod chunk;
mod crypt;
mod remote;

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use remote::Remote;

use super::{Content, Store, VersionMeta, layout, meta};
use crate::sys;

/// What the `archive` block of the configuration says, parsed.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// `s3://bucket[/prefix]`.
    pub url: String,
    /// For stores other than AWS (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: String,
    /// Versions sealed longer ago than this move to the archive.
    pub after: Duration,
    /// Archived versions sealed longer ago than this are deleted.
    pub expire_after: Duration,
    /// This machine's name in the bucket (many nodes share one bucket).
    pub node: String,
    /// An AWS credentials file (INI) and its profile; else `AWS_*` variables.
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
    /// Bytes of fetched versions kept locally for reading.
    pub cache_bytes: u64,
    /// Categories whose chunks are zstd-compressed before upload.
    pub compress: Vec<String>,
    /// Chunks no manifest names are deleted once older than this; the sweep
    /// runs this often too.
    pub sweep_grace: Duration,
    /// Encrypt chunks, manifests and generations with this key file.
    pub key_file: Option<PathBuf>,
}

/// One chunk of a version as its manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ChunkRef {
    /// BLAKE3 of the plaintext, hex.
    pub id: String,
    pub off: u64,
    pub len: u64,
    /// Stored zstd-compressed.
    #[serde(default)]
    pub zstd: bool,
}

/// A version in the bucket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub node: String,
    /// The version's own record, as in the local store.
    pub meta: VersionMeta,
    pub chunks: Vec<ChunkRef>,
}

fn chunk_key(id: &str) -> String {
    format!("chunks/{}/{id}", &id[..2])
}

fn manifest_key(node: &str, m: &VersionMeta) -> String {
    format!(
        "nodes/{node}/manifests/{}/v{:06}.json",
        layout::path_hash(m.relpath()),
        m.number
    )
}

/// Counters of the archive tier (`stats`, metrics).
#[derive(Default, Serialize)]
pub struct ArchiveStats {
    pub versions_archived: AtomicU64,
    pub chunks_uploaded: AtomicU64,
    /// Chunks found already in the bucket (another version, file or node).
    pub chunks_reused: AtomicU64,
    /// Bytes sent (after compression).
    pub bytes_uploaded: AtomicU64,
    /// Bytes the archived versions hold (before chunking).
    pub bytes_archived: AtomicU64,
    /// Archived versions opened for reading, and chunks fetched for them.
    pub versions_fetched: AtomicU64,
    pub chunks_fetched: AtomicU64,
    pub manifests_deleted: AtomicU64,
    /// Chunks deleted by the sweep (no manifest of any node named them).
    pub chunks_swept: AtomicU64,
    pub errors: AtomicU64,
    /// Versions due for the archive and not there yet (last pass).
    pub backlog: AtomicU64,
    /// Time spent uploading (chunking, hashing, HEADs and PUTs), ns.
    pub upload_ns: AtomicU64,
}

pub struct Archive {
    pub opts: ArchiveOptions,
    /// When the last sweep ran (ns; 0: not since the mount).
    last_sweep: AtomicU64,
    /// Client-side encryption, when a key file is configured.
    crypt: Option<crypt::Crypt>,
    /// Manifests of evicted versions, to delete from the archive thread;
    /// what is left at unmount is saved in `archive/to-delete.json` (else
    /// the next mount would import them back as versions).
    to_delete: parking_lot::Mutex<Vec<String>>,
    remote: Remote,
    /// For reads a person waits on: fewer retries.
    reader: Remote,
    /// `<store>/archive/`: upload state and the read cache.
    dir: OwnedFd,
    pub stats: ArchiveStats,
}

/// Upload progress of one version, persisted after every confirmed chunk.
#[derive(Default, Serialize, Deserialize)]
struct UploadState {
    confirmed: Vec<String>,
}

const DIR: &str = "archive";
const TO_DELETE: &str = "to-delete.json";
const CACHE: &str = "cache";

/// Can this configuration write to its bucket? One line when not.
pub fn probe(opts: &ArchiveOptions) -> Result<(), String> {
    Remote::new(opts)?.probe(&opts.node)
}

impl Archive {
    /// Open the tier: the client, and `<store>/archive/` (created). Fails
    /// with one line when the bucket cannot be reached (`probe`).
    pub fn open(store: std::os::fd::BorrowedFd<'_>, opts: ArchiveOptions) -> Result<Self, String> {
        let crypt = opts
            .key_file
            .as_deref()
            .map(crypt::Crypt::load)
            .transpose()?;
        let remote = Remote::new(&opts)?;
        remote.probe(&opts.node)?;
        let reader = Remote::new(&opts)?.impatient();
        let mk = |d: &CString, at: std::os::fd::BorrowedFd<'_>| -> io::Result<OwnedFd> {
            match sys::mkdirat(at, d, 0o700) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
            sys::openat(at, d, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        };
        let dir =
            mk(&CString::new(DIR).expect("no NUL"), store).map_err(|e| format!("{DIR}: {e}"))?;
        mk(&CString::new(CACHE).expect("no NUL"), dir.as_fd())
            .map_err(|e| format!("{DIR}/{CACHE}: {e}"))?;
        let to_delete: Vec<String> = meta::read_at(dir.as_fd(), TO_DELETE)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Self {
            opts,
            crypt,
            to_delete: parking_lot::Mutex::new(to_delete),
            last_sweep: AtomicU64::new(0),
            remote,
            reader,
            dir,
            stats: ArchiveStats::default(),
        })
    }

    fn state_name(m: &VersionMeta) -> String {
        format!(
            "up-{}-v{:06}.json",
            layout::path_hash(m.relpath()),
            m.number
        )
    }

    fn load_state(&self, m: &VersionMeta) -> UploadState {
        meta::read_at(self.dir.as_fd(), &Self::state_name(m))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_state(&self, m: &VersionMeta, s: &UploadState) -> io::Result<()> {
        let b = serde_json::to_vec(s).map_err(io::Error::other)?;
        meta::write_atomic(self.dir.as_fd(), &Self::state_name(m), &b)
    }

    fn drop_state(&self, m: &VersionMeta) {
        if let Ok(c) = CString::new(Self::state_name(m)) {
            let _ = sys::unlinkat(self.dir.as_fd(), &c, 0);
        }
    }

    /// Upload `m`'s content (the first `size` bytes of `fd`): every chunk not
    /// yet in the bucket, then the manifest. Returns the manifest's key.
    fn upload(
        &self,
        m: &VersionMeta,
        fd: std::os::fd::BorrowedFd<'_>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> io::Result<String> {
        let cuts = chunk::boundaries(fd, m.size, m.category())?;
        let mut state = self.load_state(m);
        // Chunks an earlier run confirmed are asked for once more before the
        // manifest names them: a server restored from an older state may have
        // lost them.
        let mut earlier: HashSet<String> = state.confirmed.iter().cloned().collect();
        let mut confirmed: HashSet<String> = HashSet::new();
        let zstd = self.opts.compress.iter().any(|c| c == m.category());
        let mut refs = Vec::with_capacity(cuts.len());
        for (off, len) in cuts {
            if stop.load(Ordering::SeqCst) {
                // Unmounting: what is confirmed is recorded; the next mount resumes.
                return Err(io::Error::new(io::ErrorKind::Interrupted, "unmounting"));
            }
            let mut buf = vec![0u8; len as usize];
            let n = sys::pread_full(fd, &mut buf, off)?;
            if n as u64 != len {
                return Err(io::Error::other(format!(
                    "the object ends at {} while its version is {} bytes",
                    off + n as u64,
                    m.size
                )));
            }
            let id = self.chunk_id(&buf);
            if !confirmed.contains(&id) {
                let key = chunk_key(&id);
                let resumed = earlier.remove(&id);
                if self.remote.exists(&key)? {
                    if !resumed {
                        self.stats.chunks_reused.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let body = if zstd {
                        zstd::encode_all(&buf[..], 3)?
                    } else {
                        buf
                    };
                    let body = self.seal(body)?;
                    self.remote.put(&key, &body)?;
                    self.stats.chunks_uploaded.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_uploaded
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                }
                confirmed.insert(id.clone());
                if !resumed {
                    state.confirmed.push(id.clone());
                    self.save_state(m, &state)?;
                }
            }
            refs.push(ChunkRef { id, off, len, zstd });
        }
        let man = Manifest {
            format: 1,
            node: self.opts.node.clone(),
            meta: m.clone(),
            chunks: refs,
        };
        let key = manifest_key(&self.opts.node, m);
        let body = self.seal(serde_json::to_vec(&man).map_err(io::Error::other)?)?;
        self.remote.put(&key, &body)?;
        self.stats
            .bytes_uploaded
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(key)
    }

    pub fn manifest(&self, key: &str) -> io::Result<Manifest> {
        let b = self.unseal(self.reader.get(key)?, key)?;
        serde_json::from_slice(&b).map_err(|e| io::Error::other(format!("manifest {key}: {e}")))
    }

    /// One chunk's plaintext: from the read cache, or fetched (one GET),
    /// checked against its address, and cached.
    fn chunk(&self, c: &ChunkRef) -> io::Result<Vec<u8>> {
        let cache = sys::openat(
            self.dir.as_fd(),
            &CString::new(CACHE).expect("no NUL"),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        if let Ok(b) = meta::read_at(cache.as_fd(), &format!("c-{}", c.id))
            && b.len() as u64 == c.len
        {
            return Ok(b);
        }
        let raw = self.unseal(self.reader.get(&chunk_key(&c.id))?, "chunk")?;
        self.stats.chunks_fetched.fetch_add(1, Ordering::Relaxed);
        let plain = if c.zstd {
            zstd::decode_all(&raw[..])?
        } else {
            raw
        };
        if plain.len() as u64 != c.len || self.chunk_id(&plain) != c.id {
            return Err(io::Error::other(format!(
                "archive chunk {} does not match its address",
                c.id
            )));
        }
        // Best effort: a full cache disk only costs a refetch next time.
        if meta::write_atomic(cache.as_fd(), &format!("c-{}", c.id), &plain).is_ok() {
            self.trim_cache();
        }
        Ok(plain)
    }

    /// A chunk's address: BLAKE3 of the plaintext, keyed when encrypting.
    fn chunk_id(&self, plain: &[u8]) -> String {
        match &self.crypt {
            Some(c) => c.id(plain),
            None => blake3::hash(plain).to_hex().to_string(),
        }
    }

    fn seal(&self, plain: Vec<u8>) -> io::Result<Vec<u8>> {
        match &self.crypt {
            Some(c) => c.seal(&plain),
            None => Ok(plain),
        }
    }

    fn unseal(&self, stored: Vec<u8>, what: &str) -> io::Result<Vec<u8>> {
        match &self.crypt {
            Some(c) => c.open(&stored, what),
            None => Ok(stored),
        }
    }

    /// Keep the read cache under `cache_bytes`: oldest fetched first.
    fn trim_cache(&self) {
        let Ok(c) = sys::openat(
            self.dir.as_fd(),
            &CString::new(CACHE).expect("no NUL"),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) else {
            return;
        };
        let Ok(names) = sys::read_dir_fd(c.try_clone().expect("dup")) else {
            return;
        };
        let mut files: Vec<(i64, u64, CString)> = names
            .into_iter()
            .filter(|(n, _, _)| !n.starts_with(b"."))
            .filter_map(|(n, _, _)| {
                let cn = CString::new(n).ok()?;
                let st = sys::fstatat(c.as_fd(), &cn).ok()?;
                Some((sys::mtime_ns(&st), st.st_blocks as u64 * 512, cn))
            })
            .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        for (_, b, n) in files {
            if total <= self.opts.cache_bytes {
                break;
            }
            if sys::unlinkat(c.as_fd(), &n, 0).is_ok() {
                total -= b;
            }
        }
    }
}

/// An archived version opened for reading: chunks come from the bucket the
/// first time a read touches them, then from `<store>/archive/cache/`.
pub struct ArchivedFile {
    archive: std::sync::Arc<Archive>,
    chunks: Vec<ChunkRef>,
    size: u64,
    /// The chunk the last read used: sequential reads (128 KiB each) touch
    /// the same chunk many times.
    last: parking_lot::Mutex<Option<(usize, std::sync::Arc<Vec<u8>>)>>,
}

impl ArchivedFile {
    /// Read up to `buf.len()` bytes at `off` (short only at the end).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let end = (off + buf.len() as u64).min(self.size);
        let mut at = off;
        // The first chunk that ends after `off` (chunks are in order).
        let mut i = self.chunks.partition_point(|c| c.off + c.len <= off);
        while at < end && i < self.chunks.len() {
            let c = &self.chunks[i];
            let data = {
                let mut last = self.last.lock();
                match &*last {
                    Some((j, d)) if *j == i => d.clone(),
                    _ => {
                        let d = std::sync::Arc::new(self.archive.chunk(c)?);
                        *last = Some((i, d.clone()));
                        d
                    }
                }
            };
            let from = (at - c.off) as usize;
            let to = ((end - c.off) as usize).min(data.len());
            let dst = (at - off) as usize;
            buf[dst..dst + (to - from)].copy_from_slice(&data[from..to]);
            at += (to - from) as u64;
            i += 1;
        }
        Ok((at - off) as usize)
    }

    /// The whole content (for callers that want it at once).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; self.size as usize];
        let n = self.read_at(&mut v, 0)?;
        v.truncate(n);
        Ok(v)
    }
}

impl Store {
    /// The archive tier, when configured.
    pub fn archive(&self) -> Option<&Archive> {
        self.archive.as_deref()
    }

    /// An archived version's content, read lazily: its manifest now, each
    /// chunk when a read first touches it (then from the local cache).
    pub(super) fn open_archived(&self, m: &VersionMeta, key: &str) -> io::Result<Content> {
        let a = self
            .archive
            .clone()
            .ok_or_else(|| io::Error::other("version is archived but no archive is configured"))?;
        let man = a.manifest(key)?;
        a.stats.versions_fetched.fetch_add(1, Ordering::Relaxed);
        Ok(Content::Archived(ArchivedFile {
            archive: a,
            chunks: man.chunks,
            size: m.size,
            last: parking_lot::Mutex::new(None),
        }))
    }

    /// Delete an evicted archived version's manifest (its chunks go at the
    /// next sweep); failures are counted and logged, never fatal.
    /// Eviction runs on seal workers and the sweeper: the DELETE is queued
    /// for the archive thread, so a slow or unreachable server never holds
    /// them up.
    pub(super) fn forget_archived(&self, key: &str) {
        if let Some(a) = &self.archive {
            a.to_delete.lock().push(key.to_string());
        }
    }

    /// Delete the queued manifests (archive thread); what fails stays queued.
    fn delete_forgotten(&self, a: &Archive) {
        let keys = std::mem::take(&mut *a.to_delete.lock());
        let mut left = Vec::new();
        for key in keys {
            match a.remote.delete(&key) {
                Ok(()) => {
                    a.stats.manifests_deleted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    a.stats.errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!("archive: deleting {key}: {e} (retried later)");
                    left.push(key);
                }
            }
        }
        a.to_delete.lock().extend(left);
    }

    /// At unmount: one more try, then keep what is left for the next mount.
    pub(super) fn archive_shutdown(&self) {
        let Some(a) = &self.archive else { return };
        self.upload_generations(a);
        self.delete_forgotten(a);
        let left = a.to_delete.lock().clone();
        let r = if left.is_empty() {
            match sys::unlinkat(a.dir.as_fd(), &CString::new(TO_DELETE).expect("no NUL"), 0) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => Err(e),
                _ => Ok(()),
            }
        } else {
            serde_json::to_vec(&left)
                .map_err(io::Error::other)
                .and_then(|b| meta::write_atomic(a.dir.as_fd(), TO_DELETE, &b))
        };
        if let Err(e) = r {
            log::warn!("archive: {TO_DELETE}: {e}");
        }
    }

    /// Versions due for the archive: old enough, not pinned, not archived,
    /// and not sharing their inode with a live file (that content is the live
    /// file's own and frees nothing; it goes once the file changes).
    fn archive_due(&self, a: &Archive) -> Vec<VersionMeta> {
        let cutoff = super::now_ns() - a.opts.after.as_nanos() as i64;
        let old: Vec<VersionMeta> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter())
                // A digest still to come is taken locally first.
                .filter(|m| {
                    m.archived.is_none()
                        && !m.pinned()
                        && !m.digest_pending()
                        && m.sealed_ns < cutoff
                })
                .cloned()
                .collect()
        });
        old.into_iter()
            .filter(|m| {
                CString::new(self.object_path(m))
                    .ok()
                    .and_then(|c| sys::fstatat(self.dir(), &c).ok())
                    .is_some_and(|st| st.st_nlink == 1)
            })
            .collect()
    }

    /// Archive one version: upload, then (the manifest confirmed) record it
    /// and remove the local object.
    fn archive_one(&self, a: &Archive, m: &VersionMeta) -> io::Result<()> {
        let content = self.open_version(m)?;
        // A compressed object is decoded: chunk its plaintext from a temp file.
        let (fd, _tmp) = match content {
            Content::Object(fd, _) => (fd, None),
            Content::Archived(_) => return Ok(()), // archived meanwhile
            Content::Decoded(bytes) => {
                let name = CString::new(format!(".decoded-{}", std::process::id()))
                    .map_err(io::Error::other)?;
                let fd = sys::openat(
                    a.dir.as_fd(),
                    &name,
                    libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                    0o600,
                )?;
                sys::pwrite_all(fd.as_fd(), &bytes, 0)?;
                let _ = sys::unlinkat(a.dir.as_fd(), &name, 0);
                (fd, Some(()))
            }
        };
        let t = std::time::Instant::now();
        let key = a.upload(m, fd.as_fd(), &self.sealer.stop);
        a.stats
            .upload_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let key = key?;
        let _q = self.quiesce.read();
        let _g = self.shares.lock.lock();
        // Still the same version (not evicted or unshared meanwhile)?
        let current = self
            .index
            .read()
            .get(m.relpath())
            .and_then(|h| h.get(m.number))
            .cloned();
        let Some(cur) = current else {
            drop(_g);
            self.forget_archived(&key);
            a.drop_state(m);
            return Ok(());
        };
        let mut m2 = cur.clone();
        m2.archived = Some(key.into());
        self.rewrite_meta(&m2)?;
        // In place (same number): a remove and insert would unsettle the history.
        self.index.write().insert(m2);
        let obj = CString::new(self.object_path(&cur)).map_err(io::Error::other)?;
        let _ = sys::unlinkat(self.dir(), &obj, 0);
        a.drop_state(m);
        a.stats.versions_archived.fetch_add(1, Ordering::Relaxed);
        a.stats.bytes_archived.fetch_add(m.size, Ordering::Relaxed);
        Ok(())
    }

    /// One pass of the archive thread: move what is due, expire what is
    /// past `expire_after`. Errors leave the local copy and are retried at
    /// the next pass.
    pub(super) fn archive_pass(&self) {
        let Some(a) = &self.archive else { return };
        self.upload_generations(a);
        self.delete_forgotten(a);
        let due = self.archive_due(a);
        a.stats.backlog.store(due.len() as u64, Ordering::Relaxed);
        for m in &due {
            if self.sealer.stop.load(Ordering::SeqCst) {
                return;
            }
            match self.archive_one(a, m) {
                Ok(()) => {
                    a.stats.backlog.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => {
                    a.stats.errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "archive: {} v{}: {e} (kept locally, retried later)",
                        m.display_path(),
                        m.number
                    );
                    // The server is probably down: wait for the next pass.
                    break;
                }
            }
        }
        let now = super::now_ns() as u64;
        let last = a.last_sweep.load(Ordering::Relaxed);
        if now - last >= a.opts.sweep_grace.as_nanos() as u64 {
            a.last_sweep.store(now, Ordering::Relaxed);
            match self.archive_sweep() {
                Ok(0) => {}
                Ok(n) => log::info!("archive: swept {n} chunks no manifest needs"),
                Err(e) => {
                    a.stats.errors.fetch_add(1, Ordering::Relaxed);
                    log::warn!("archive: sweep: {e}");
                }
            }
        }
        let cutoff = super::now_ns() - a.opts.expire_after.as_nanos() as i64;
        let expired: Vec<(Vec<u8>, u64)> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter())
                .filter(|m| m.archived.is_some() && !m.pinned() && m.sealed_ns < cutoff)
                .map(|m| (m.relpath().to_vec(), m.number))
                .collect()
        });
        for (p, n) in expired {
            if let Err(e) = self.evict(&p, n) {
                log::warn!(
                    "archive: expiring {} v{n}: {e}",
                    String::from_utf8_lossy(&p)
                );
            }
        }
    }

    /// At the daemon's open: every manifest of this node in the bucket that
    /// the local store does not know becomes an archived version here (a fresh
    /// machine, or a store lost with its disk, gets its history back), and
    /// the generations come back when there are none locally.
    pub(super) fn import_archive(&self) -> io::Result<(usize, usize)> {
        let Some(a) = &self.archive else {
            return Ok((0, 0));
        };
        let prefix = format!("nodes/{}/manifests/", a.opts.node);
        let mut known: HashSet<String> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter())
                .filter_map(|m| m.archived.as_deref().map(String::from))
                .collect()
        });
        // Evicted here, not yet deleted there: not to be imported back.
        known.extend(a.to_delete.lock().iter().cloned());
        let mut added = 0;
        for key in a.remote.list(&prefix)? {
            if known.contains(&key) || !key.ends_with(".json") {
                continue;
            }
            let man = a.manifest(&key)?;
            let mut m = man.meta;
            let exists =
                self.with_index(|i| i.get(m.relpath()).and_then(|h| h.get(m.number)).is_some());
            if exists {
                continue; // still local (archived again by a crash before removal)
            }
            m.archived = Some(key.into());
            let dir = layout::version_dir(m.category(), m.relpath());
            let _g = self.shares.lock.lock();
            let dfd = self.mkdirs(&dir)?;
            let bytes = serde_json::to_vec_pretty(&m).map_err(io::Error::other)?;
            meta::write_atomic(dfd.as_fd(), &layout::meta_name(m.number), &bytes)?;
            self.index.write().insert(m);
            added += 1;
        }
        let mut gens = 0;
        if self.generations.lock().list.is_empty() {
            match a.remote.get(&format!("nodes/{}/generations", a.opts.node)) {
                Ok(b) => {
                    let b = a.unseal(b, "generations")?;
                    gens = self.generations.lock().adopt(self.dir(), &b)?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((added, gens))
    }

    /// Send the generations file when it changed (small; whole each time).
    pub(super) fn upload_generations(&self, a: &Archive) {
        let Some(b) = self.generations.lock().take_for_upload() else {
            return;
        };
        let put = a.seal(b).and_then(|b| {
            a.remote
                .put(&format!("nodes/{}/generations", a.opts.node), &b)
        });
        if let Err(e) = put {
            a.stats.errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("archive: generations: {e}");
            // Try again at the next generation.
        }
    }

    /// Mark and sweep, as restic's `prune`: mark every chunk a manifest of
    /// any node names (and every chunk an upload in progress here has
    /// confirmed), then delete the unmarked chunks older than `sweep_grace`.
    /// The grace covers uploads in flight on other nodes: their chunks are
    /// fresh until their manifest lands. Returns the chunks deleted.
    fn archive_sweep(&self) -> io::Result<u64> {
        let Some(a) = &self.archive else {
            return Ok(0);
        };
        let mut marked: HashSet<String> = HashSet::new();
        for key in a.remote.list("nodes/")? {
            if !(key.contains("/manifests/") && key.ends_with(".json")) {
                continue;
            }
            match a.manifest(&key) {
                Ok(m) => marked.extend(m.chunks.into_iter().map(|c| c.id)),
                // Deleted between the list and the get: nothing to mark.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for (name, _, _) in sys::read_dir_fd(a.dir.try_clone()?)? {
            if name.starts_with(b"up-")
                && let Ok(b) = meta::read_at(a.dir.as_fd(), &String::from_utf8_lossy(&name))
                && let Ok(s) = serde_json::from_slice::<UploadState>(&b)
            {
                marked.extend(s.confirmed);
            }
        }
        let cutoff = super::now_ns() / 1_000_000_000 - a.opts.sweep_grace.as_secs() as i64;
        let mut swept = 0;
        for (key, modified) in a.remote.list_dated("chunks/")? {
            let id = key.rsplit('/').next().unwrap_or_default();
            if marked.contains(id) || modified > cutoff {
                continue;
            }
            a.remote.delete(&key)?;
            swept += 1;
        }
        a.stats.chunks_swept.fetch_add(swept, Ordering::Relaxed);
        Ok(swept)
    }

    /// The archive thread: a pass every second until the store stops.
    pub(super) fn archiver(&self) {
        crate::sys::nice_this_thread(crate::store::seal::BACKGROUND_NICE);
        while !self.sealer.stop.load(Ordering::SeqCst) {
            self.archive_pass();
            for _ in 0..10 {
                if self.sealer.stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Is an archived version whole in the bucket: its manifest, and every
    /// chunk it lists?
    pub(super) fn check_archived(&self, key: &str) -> io::Result<()> {
        let a = self
            .archive
            .as_ref()
            .ok_or_else(|| io::Error::other("archived, but no archive is configured"))?;
        let man = a.manifest(key)?;
        for c in &man.chunks {
            if !a.reader.exists(&chunk_key(&c.id))? {
                return Err(io::Error::other(format!(
                    "archive chunk {} (offset {}) is missing from the bucket",
                    c.id, c.off
                )));
            }
        }
        Ok(())
    }
}
