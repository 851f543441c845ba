//! The version store: captures content (by hard link where it can, by reflink or
//! copy where it must), seals versions on worker threads (digest, classification,
//! metadata, retention), and answers questions about history. Knows nothing of FUSE.

mod archive;
mod at;
mod capture_log;
mod digest_later;
mod error;
mod failed;
mod generations;
pub mod index;
mod ino_map;
mod journal;
pub mod layout;
pub mod meta;
mod options;
mod retention;
mod seal;
mod share;
mod snapshot;
pub mod space;
#[cfg(test)]
mod testing;
pub mod timeline;
mod usage;
pub mod verify;

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::sys;
pub use archive::{ArchiveOptions, ArchiveStats, ArchivedFile, Manifest, probe as probe_archive};
pub use at::Found;
pub use error::{StoreError, StoreResult};
pub use generations::Generation;
use index::Index;
pub use journal::Change;
pub use meta::{Digest, VersionMeta, Writer};
pub use options::{CompressOptions, StoreOptions};
pub(crate) use seal::BACKGROUND_NICE;
pub use usage::{Du, DuRow};

/// Why a version was sealed; part of the entry name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Last close after the settle time.
    Close,
    Fsync,
    /// `open(O_TRUNC)`: the old content before a rewrite.
    Overwrite,
    Truncate,
    /// Renamed over (the target's old content).
    Rename,
    Delete,
    Interval,
    Unmount,
    Snapshot,
}

impl Reason {
    /// The version is the state just before something destroyed it (it held
    /// until the version's time); the others are a state that held from then.
    pub fn kept_before_change(&self) -> bool {
        matches!(
            self,
            Reason::Overwrite | Reason::Truncate | Reason::Rename | Reason::Delete
        )
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Close => "close",
            Reason::Fsync => "fsync",
            Reason::Overwrite => "overwrite",
            Reason::Truncate => "truncate",
            Reason::Rename => "rename",
            Reason::Delete => "delete",
            Reason::Interval => "interval",
            Reason::Unmount => "unmount",
            Reason::Snapshot => "snapshot",
        }
    }
}

/// How captured content gets into the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Hard link the inode (zero copy). The caller guarantees nobody writes to it
    /// in place afterwards without calling [`Store::unshare`] first.
    Link,
    /// Reflink (FICLONE) where the filesystem can, a copy otherwise.
    Copy,
    /// Reflink only; fails with EOPNOTSUPP where the filesystem cannot share extents.
    CloneOnly,
    /// As `Copy`, for a file someone may be writing behind the daemon's back
    /// (passthrough): if its size, mtime or ctime moved while it was copied,
    /// the copy is discarded and the capture fails with EAGAIN.
    CopyStable,
}

/// What the store needs to know about a capture.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Capture {
    /// Path relative to the mount root, hex (any byte string).
    pub path_hex: String,
    pub reason: Reason,
    pub sealed_ns: i64,
    pub mtime_ns: i64,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub writer: Option<Writer>,
    /// The object was copied (its data must be fsynced before the metadata).
    pub copied: bool,
}

/// A version's content as [`Store::open_version`] gives it.
pub enum Content {
    /// The uncompressed object and the version's length (the object may be
    /// longer when it shares an appended inode).
    Object(OwnedFd, u64),
    /// A compressed object's content, decoded.
    Decoded(Vec<u8>),
    /// An archived version: its chunks are fetched as reads touch them.
    Archived(archive::ArchivedFile),
}

const ACL_ACCESS: &std::ffi::CStr = c"system.posix_acl_access";

pub fn hex(b: &[u8]) -> String {
    // Not a `format!` per byte: every capture record and journal line pays it.
    hex::encode(b)
}

pub fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Counters for `ckptfs stats` and the metrics endpoint.
#[derive(Default, Serialize)]
pub struct Stats {
    pub sealed: AtomicU64,
    pub duplicates: AtomicU64,
    pub evictions: AtomicU64,
    pub captures_linked: AtomicU64,
    pub captures_copied: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub unshares: AtomicU64,
    pub conflicts: AtomicU64,
    pub errors: AtomicU64,
    /// Opens for writing served on the daemon data path because free space was
    /// below the reserve (pressure mode; only counted where passthrough is on).
    pub pressure_opens: AtomicU64,
    /// Versions evicted by `max_store_bytes`/`min_free_bytes` (global or per
    /// category), and under pressure (reserve or ENOSPC) with the bytes freed.
    pub evicted_quota: AtomicU64,
    pub evicted_pressure: AtomicU64,
    pub bytes_evicted_pressure: AtomicU64,
    /// ENOSPC met by the daemon (a write, a copy for history, metadata) and
    /// answered by evicting history before trying again.
    pub enospc_evictions: AtomicU64,
    /// States not kept because no room was left for them even after evicting
    /// every unpinned version (the live tree comes first).
    pub history_skipped: AtomicU64,
    /// Searches of the whole history for something to evict (pressure,
    /// ENOSPC, quotas); one that finds nothing makes the next wait.
    pub space_searches: AtomicU64,
    /// Failed seals (a full disk) sealed again in this session, once there
    /// was room (`failed.rs`).
    pub seals_retried: AtomicU64,
    /// Bytes freed by every eviction, and by those for a quota.
    pub bytes_evicted: AtomicU64,
    pub bytes_evicted_quota: AtomicU64,
    /// Versions evicted under pressure although younger than `keep_within`.
    pub evicted_within_keep: AtomicU64,
    /// Errors by where they happened (`errors` counts them all).
    pub errors_seal: AtomicU64,
    pub errors_capture: AtomicU64,
    /// ENOSPC the daemon returned to a writer after evicting what it could
    /// (daemon data path; with passthrough the kernel answers writes itself).
    pub enospc_returned: AtomicU64,
    /// fsyncs that made no version: within `fsync_min_interval` of the last.
    pub fsync_throttled: AtomicU64,
    /// Passthrough fsyncs whose state the writer changed again before its
    /// close and before the version could be taken (README, limits).
    pub fsync_superseded: AtomicU64,
    /// Retention decisions after a seal or in the sweep: incremental (a
    /// settled history, `policy::after_append`) or in full (`policy::apply`).
    pub retention_incremental: AtomicU64,
    pub retention_full: AtomicU64,
    /// Digests taken after the seal (big versions, `digest_later`).
    pub digests_later: AtomicU64,
    /// Bytes compression saved (logical size − compressed size).
    pub bytes_saved_compression: AtomicU64,
    /// When the last version became durable (ns since the epoch; 0: never).
    pub last_seal_ns: AtomicU64,
    /// Versions sealed by (reason, category).
    #[serde(skip)]
    pub sealed_by: Mutex<std::collections::BTreeMap<(Reason, String), u64>>,
    /// From the last close (or the fsync, unlink, …) to the durable version.
    #[serde(skip)]
    pub seal_lag: SealLag,
}

/// [`crate::histogram::Histogram`] with the seal-lag buckets.
pub struct SealLag(pub crate::histogram::Histogram);

impl Default for SealLag {
    fn default() -> Self {
        Self(crate::histogram::Histogram::new(
            crate::histogram::SEAL_LAG_BUCKETS,
        ))
    }
}

impl Stats {
    pub fn error(&self, kind: &AtomicU64) {
        kind.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The store's parts, one purpose each; `Store` is the door to them.
pub struct Store {
    dir: OwnedFd,
    pub opts: StoreOptions,
    index: RwLock<Index>,
    /// Capture records, the sealing queues and workers.
    sealer: seal::Sealer,
    /// Big versions waiting for their digest, and the quiet they wait for.
    later: digest_later::Later,
    /// Objects that share an inode with a live file.
    shares: share::Shares,
    /// Save-size estimate, reserve and the space thread's wake-up.
    space: space::Space,
    pub stats: Stats,
    /// Bursts of saves and the generations that closed them.
    generations: Mutex<generations::Generations>,
    /// The archive tier (S3), when configured.
    archive: Option<Arc<archive::Archive>>,
    /// Held shared by everything that changes objects or metadata, exclusively
    /// by `verify` while it compares the index with the disk.
    pub(crate) quiesce: RwLock<()>,
    /// Unit tests stop an eviction between deleting the object and dropping
    /// its index entry here.
    #[cfg(test)]
    evict_gap: testing::Gate,
}

impl Store {
    /// Open (creating if new) the store in `dir`. Refuses a store of a newer format.
    pub fn open(dir: OwnedFd, opts: StoreOptions, same_fs: bool) -> StoreResult<Arc<Self>> {
        Self::open_with(dir, opts, same_fs, true)
    }

    /// `adopt`: complete interrupted seals (only the daemon holding the lock).
    fn open_with(
        dir: OwnedFd,
        opts: StoreOptions,
        same_fs: bool,
        adopt: bool,
    ) -> StoreResult<Arc<Self>> {
        match meta::read_at(dir.as_fd(), layout::FORMAT_FILE) {
            Ok(b) => {
                let line = String::from_utf8_lossy(&b);
                let v: u32 = line
                    .trim()
                    .strip_prefix("ckptfs-store ")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::BadFormat {
                        line: line.trim().to_string(),
                    })?;
                if v > layout::FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        found: v,
                        supported: layout::FORMAT_VERSION,
                    });
                }
                if v < layout::FORMAT_VERSION && adopt {
                    // Formats 2 (journal, generations), 3 (archived versions)
                    // and 4 (the captures log) only add: nothing to convert.
                    meta::write_atomic(
                        dir.as_fd(),
                        layout::FORMAT_FILE,
                        format!("{}\n", layout::FORMAT_LINE).as_bytes(),
                    )?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                meta::write_atomic(
                    dir.as_fd(),
                    layout::FORMAT_FILE,
                    format!("{}\n", layout::FORMAT_LINE).as_bytes(),
                )?;
            }
            Err(e) => return Err(StoreError::during("reading FORMAT")(e)),
        }
        for d in [layout::OBJECTS, layout::INCOMING] {
            let c = CString::new(d).expect("no NUL");
            match sys::mkdirat(dir.as_fd(), &c, 0o700) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e.into()),
                _ => {}
            }
        }
        let incoming = sys::openat(
            dir.as_fd(),
            &CString::new(layout::INCOMING).expect("no NUL"),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        // Only the daemon captures; a read-only open leaves the store as it is.
        let log = if adopt {
            // A rewrite of `captures` a crash interrupted: `captures` is whole.
            let _ = sys::unlinkat(
                dir.as_fd(),
                &CString::new(layout::CAPTURES_TMP).expect("no NUL"),
                0,
            );
            Some(sys::openat(
                dir.as_fd(),
                &CString::new(layout::CAPTURES).expect("no NUL"),
                libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                0o600,
            )?)
        } else {
            None
        };
        // A clean shutdown left a snapshot: load it instead of scanning every
        // metadata file. After a crash (the `dirty` marker is still there) scan.
        let mut index = match snapshot::load(dir.as_fd()) {
            Some(i) => i,
            None => index::scan_with(dir.as_fd(), adopt)?,
        };
        index.loaded();
        // A mark matters while either end still has history (a version, or a
        // versioned path below it); the rest is dropped when the daemon opens.
        let mut problems = Vec::new();
        index.journal = journal::Journal::open(
            dir.as_fd(),
            adopt,
            |p| index.get(p).is_some() || index.is_dir(p),
            &mut problems,
        )?;
        let gens = generations::Generations::open(dir.as_fd(), adopt, &mut problems)?;
        sys::trim_heap();
        let archive = match &opts.archive {
            Some(a) => Some(Arc::new(
                archive::Archive::open(dir.as_fd(), a.clone())
                    .map_err(|message| StoreError::Archive { message })?,
            )),
            None => None,
        };
        index.problems.extend(problems);
        if adopt {
            Self::set_dirty(dir.as_fd())?;
        }
        for p in &index.problems {
            log::warn!("store: {p}");
        }
        let store = Arc::new(Self {
            space: space::Space::new(opts.settle),
            dir,
            opts,
            index: RwLock::new(index),
            sealer: seal::Sealer::new(incoming, log, 2),
            later: digest_later::Later::default(),
            shares: share::Shares {
                same_fs,
                no_reflink: std::sync::atomic::AtomicBool::new(false),
                pending: Mutex::new(HashMap::new()),
                lock: Mutex::new(()),
            },
            stats: Stats::default(),
            generations: Mutex::new(gens),
            archive,
            quiesce: RwLock::new(()),
            #[cfg(test)]
            evict_gap: testing::Gate::default(),
        });
        store.learn_from_index();
        if adopt && store.archive.is_some() {
            match store.import_archive() {
                Ok((0, 0)) => {}
                Ok((v, g)) => {
                    log::info!("archive: {v} versions and {g} generations imported from the bucket")
                }
                Err(e) => {
                    return Err(StoreError::Archive {
                        message: format!("archive: reading this node's manifests: {e}"),
                    });
                }
            }
        }
        let _ = store.space_status();
        Ok(store)
    }

    /// Mark the snapshot stale: an offline command is about to change
    /// metadata, so the next open must scan.
    pub fn mark_dirty(&self) -> io::Result<()> {
        Self::set_dirty(self.dir.as_fd())
    }

    fn set_dirty(dir: BorrowedFd<'_>) -> io::Result<()> {
        let c = CString::new(layout::DIRTY).expect("no NUL");
        drop(sys::openat(dir, &c, libc::O_WRONLY | libc::O_CREAT, 0o644)?);
        sys::fsync_dir_at(dir)
    }

    /// Open a store by path without taking the daemon lock (read-only commands).
    pub fn open_path(path: &Path, opts: StoreOptions) -> StoreResult<Arc<Self>> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        if !path.join(layout::FORMAT_FILE).exists() {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        let fd = sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Self::open_with(fd, opts, true, false)
    }

    pub(super) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Start the sealing workers and the retention sweeper; also finish captures a
    /// crash left in `incoming/`.
    pub fn start_workers(self: &Arc<Self>) {
        let rs = std::mem::take(&mut *self.sealer.receivers.lock());
        let mut ws = self.sealer.workers.lock();
        let mut spawn = |name: String, run: Box<dyn FnOnce(&Store) + Send>| {
            let me = self.clone();
            ws.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || run(&me))
                    .expect("spawn a store thread"),
            );
        };
        for (i, r) in rs.into_iter().enumerate() {
            spawn(format!("ckptfs-seal-{i}"), Box::new(move |s| s.worker(r)));
        }
        spawn("ckptfs-retention".into(), Box::new(|s| s.sweeper()));
        spawn("ckptfs-digest".into(), Box::new(|s| s.digester()));
        if self.archive.is_some() {
            spawn("ckptfs-archive".into(), Box::new(|s| s.archiver()));
        }
        drop(ws);
        self.requeue_pending_digests();
        self.recover_incoming();
    }

    /// Wait until every queued capture is sealed.
    /// Seals queued or running, and whether the space thread is in a pass.
    pub fn busy(&self) -> (u64, bool) {
        (
            *self.sealer.inflight.lock(),
            self.space.busy.load(Ordering::SeqCst),
        )
    }

    pub fn flush_pending(&self) {
        let _h = self.hurry();
        let mut n = self.sealer.inflight.lock();
        while *n > 0 {
            self.sealer.idle.wait(&mut n);
        }
    }

    pub fn shutdown(&self) {
        self.flush_pending();
        if !self.sealer.workers.lock().is_empty() {
            self.close_generation();
            // So a fresh machine restoring from the bucket sees the last
            // generation; and evicted versions' manifests go.
            self.archive_shutdown();
        }
        self.sealer.stop.store(true, Ordering::SeqCst);
        self.kick_space();
        for q in &self.sealer.queues {
            let _ = q.send(seal::Job::Stop);
        }
        if let Err(e) = self.index.read().journal.sync() {
            log::warn!("journal fsync: {e}");
        }
        let ws = std::mem::take(&mut *self.sealer.workers.lock());
        let had_workers = !ws.is_empty();
        for w in ws {
            let _ = w.join();
        }
        if had_workers {
            // Clean shutdown: the index on disk is exactly the in-memory one.
            let r = snapshot::save(self.dir.as_fd(), &self.index.read()).and_then(|_| {
                sys::unlinkat(
                    self.dir.as_fd(),
                    &CString::new(layout::DIRTY).expect("no NUL"),
                    0,
                )?;
                sys::fsync_dir_at(self.dir.as_fd())
            });
            if let Err(e) = r {
                log::warn!("index snapshot: {e} (the next mount scans the store)");
            }
        }
    }

    pub fn with_index<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.index.read())
    }

    /// Versions of one path (empty when none).
    pub fn history(&self, relpath: &[u8]) -> Vec<VersionMeta> {
        self.index
            .read()
            .get(relpath)
            .map(|h| h.versions.clone())
            .unwrap_or_default()
    }

    /// A version's content for reading: the object itself, or its bytes
    /// decoded when it is stored compressed.
    pub fn open_version(&self, m: &VersionMeta) -> io::Result<Content> {
        if let Some(key) = &m.archived {
            return self.open_archived(m, key);
        }
        let fd = self.open_object(m)?;
        Ok(if m.compressed() {
            Content::Decoded(self.read_all(&fd, m)?)
        } else {
            Content::Object(fd, m.size)
        })
    }

    /// The access ACL of a version's object inode, for the history of a
    /// file that is gone (`.versions` answers with the live file's
    /// otherwise): a linked capture shares the file's inode and its ACL, and
    /// copies and compressed objects are given it (`carry_acl`). ENODATA
    /// when it has none or the version is archived.
    pub fn object_acl(&self, m: &VersionMeta) -> io::Result<Vec<u8>> {
        if m.archived.is_some() {
            return Err(io::Error::from_raw_os_error(libc::ENODATA));
        }
        let fd = self.open_object(m)?;
        sys::getxattr(&sys::proc_path(fd.as_raw_fd()), ACL_ACCESS, 1 << 16)
    }

    /// Give a copy made for history the access ACL of what it copies (a
    /// version of a file that is later deleted shows its own): best effort,
    /// as its mode bits are kept in the metadata, not on the object.
    pub(super) fn carry_acl(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
        if let Ok(acl) = sys::getxattr(&sys::proc_path(from.as_raw_fd()), ACL_ACCESS, 1 << 16) {
            let _ = sys::setxattr(&sys::proc_path(to.as_raw_fd()), ACL_ACCESS, &acl, 0);
        }
    }

    /// Open a version's object (O_RDONLY), compressed or not.
    pub(super) fn open_object(&self, m: &VersionMeta) -> io::Result<OwnedFd> {
        let p = self.object_path(m);
        sys::openat(
            self.dir.as_fd(),
            &CString::new(p).map_err(io::Error::other)?,
            libc::O_RDONLY,
            0,
        )
    }

    /// A path that opens a version's uncompressed object (the version is its
    /// first `size` bytes) while this process lives, also when the store is
    /// hidden under an in-place mount: through this process's fd of the store
    /// directory in /proc. None when the object is compressed.
    pub fn object_file(&self, m: &VersionMeta) -> Option<String> {
        use std::os::fd::AsRawFd;
        (!m.compressed() && m.archived.is_none()).then(|| {
            format!(
                "/proc/{}/fd/{}/{}",
                std::process::id(),
                self.dir.as_raw_fd(),
                self.object_path(m)
            )
        })
    }

    pub(super) fn object_path(&self, m: &VersionMeta) -> String {
        let d = layout::version_dir(m.category(), m.relpath());
        let mut name = layout::data_name(m.number);
        if m.compressed() {
            name.push_str(".zst");
        }
        format!("{d}/{name}")
    }

    /// Bytes the version's object takes on disk.
    pub(super) fn object_disk_bytes(&self, m: &VersionMeta) -> u64 {
        CString::new(self.object_path(m))
            .ok()
            .and_then(|c| sys::fstatat(self.dir.as_fd(), &c).ok())
            .map(|st| st.st_blocks as u64 * 512)
            .unwrap_or(0)
    }

    /// Replace a version's metadata file (crash-safely) with `m`.
    pub(super) fn rewrite_meta(&self, m: &VersionMeta) -> io::Result<()> {
        let d = layout::version_dir(m.category(), m.relpath());
        let dfd = sys::openat(
            self.dir.as_fd(),
            &CString::new(d).map_err(io::Error::other)?,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        let bytes = serde_json::to_vec_pretty(m).map_err(io::Error::other)?;
        meta::write_atomic(dfd.as_fd(), &layout::meta_name(m.number), &bytes)
    }

    /// Set or clear the pin of a version. Pinned versions are never evicted.
    pub fn set_pin(&self, relpath: &[u8], number: u64, pinned: bool) -> StoreResult<()> {
        let _q = self.quiesce.read();
        let mut idx = self.index.write();
        let Some(m) = idx.get(relpath).and_then(|h| h.get(number)).cloned() else {
            return Err(StoreError::NoVersion {
                path: relpath.to_vec(),
                number,
            });
        };
        let mut m2 = m;
        m2.set_origin(|o| o.pinned = pinned);
        self.rewrite_meta(&m2)?;
        idx.insert(m2);
        Ok(())
    }
}
