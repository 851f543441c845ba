//! The version store: captures content (by hard link where it can, by reflink or
//! copy where it must), seals versions on worker threads (digest, classification,
//! metadata, retention), and answers questions about history. Knows nothing of FUSE.

pub mod index;
pub mod layout;
pub mod meta;
mod retention;
mod seal;
pub mod space;
pub mod verify;

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::sys;
use index::Index;
pub use meta::{VersionMeta, Writer};

/// Why a version was sealed; part of the entry name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
}

pub struct Store {
    dir: OwnedFd,
    incoming: OwnedFd,
    pub cfg: Config,
    /// The store is on the backing filesystem (hard links possible).
    pub same_fs: bool,
    index: RwLock<Index>,
    seq: AtomicU64,
    queues: Vec<crossbeam_channel::Sender<seal::Job>>,
    receivers: Mutex<Vec<crossbeam_channel::Receiver<seal::Job>>>,
    inflight: Mutex<u64>,
    idle: Condvar,
    /// Captured but not yet committed: incoming name → (object inode, where the
    /// object is now, relative to the store). Hard-linked captures may share a
    /// live inode; `unshare` must find them wherever the worker has moved them.
    pending: Mutex<HashMap<String, (u64, String)>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
    pub stats: Stats,
    /// Serializes unshare against capture for the same inode.
    share_lock: Mutex<()>,
    /// Held shared by everything that changes objects or metadata, exclusively
    /// by `verify` while it compares the index with the disk.
    pub(crate) quiesce: RwLock<()>,
    /// When retention last ran for paths with long histories (see `retention_due`).
    retained_at: Mutex<HashMap<Vec<u8>, std::time::Instant>>,
    /// Save-size estimate, reserve and the space thread's wake-up.
    space: space::Space,
}

impl Store {
    /// Open (creating if new) the store in `dir`. Refuses a store of a newer format.
    pub fn open(dir: OwnedFd, cfg: &Config, same_fs: bool) -> io::Result<Arc<Self>> {
        Self::open_with(dir, cfg, same_fs, true)
    }

    /// `adopt`: complete interrupted seals (only the daemon holding the lock).
    pub fn open_with(
        dir: OwnedFd,
        cfg: &Config,
        same_fs: bool,
        adopt: bool,
    ) -> io::Result<Arc<Self>> {
        match meta::read_at(dir.as_fd(), layout::FORMAT_FILE) {
            Ok(b) => {
                let line = String::from_utf8_lossy(&b);
                let v: u32 = line
                    .trim()
                    .strip_prefix("ckptfs-store ")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("FORMAT: not a ckptfs store ({:?})", line.trim()),
                        )
                    })?;
                if v > layout::FORMAT_VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "store format {v} is newer than this ckptfs understands ({}); upgrade ckptfs",
                            layout::FORMAT_VERSION
                        ),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                meta::write_atomic(
                    dir.as_fd(),
                    layout::FORMAT_FILE,
                    format!("{}\n", layout::FORMAT_LINE).as_bytes(),
                )?;
            }
            Err(e) => return Err(e),
        }
        for d in [layout::OBJECTS, layout::INCOMING] {
            let c = CString::new(d).expect("no NUL");
            // SAFETY: valid fd and C string.
            let r =
                unsafe { libc::mkdirat(std::os::fd::AsRawFd::as_raw_fd(&dir), c.as_ptr(), 0o700) };
            if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::last_os_error());
            }
        }
        let incoming = sys::openat(
            dir.as_fd(),
            c"incoming",
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        // A clean shutdown left a snapshot: load it instead of scanning every
        // metadata file. After a crash (the `dirty` marker is still there) scan.
        let index = match index::load_snapshot(dir.as_fd()) {
            Some(i) => i,
            None => index::scan_with(dir.as_fd(), adopt)?,
        };
        if adopt {
            Self::set_dirty(dir.as_fd())?;
        }
        for p in &index.problems {
            log::warn!("store: {p}");
        }
        let n = 2;
        let (mut qs, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (s, r) = crossbeam_channel::unbounded();
            qs.push(s);
            rs.push(r);
        }
        let store = Arc::new(Self {
            space: space::Space::new(cfg.settle_ms),
            dir,
            incoming,
            cfg: cfg.clone(),
            same_fs,
            index: RwLock::new(index),
            seq: AtomicU64::new(0),
            queues: qs,
            receivers: Mutex::new(rs),
            inflight: Mutex::new(0),
            idle: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            share_lock: Mutex::new(()),
            quiesce: RwLock::new(()),
            retained_at: Mutex::new(HashMap::new()),
        });
        store.learn_from_index();
        let _ = store.space_status();
        Ok(store)
    }

    /// Mark the snapshot stale (the daemon runs, or an offline command changed
    /// metadata): the next open scans.
    pub fn set_dirty(dir: BorrowedFd<'_>) -> io::Result<()> {
        let c = CString::new(index::DIRTY).expect("no NUL");
        drop(sys::openat(dir, &c, libc::O_WRONLY | libc::O_CREAT, 0o644)?);
        sys::fsync_dir_at(dir)
    }

    /// Open a store by path without taking the daemon lock (read-only commands).
    pub fn open_path(path: &Path, cfg: &Config) -> io::Result<Arc<Self>> {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        if !path.join(layout::FORMAT_FILE).exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not a ckptfs store (no FORMAT file)", path.display()),
            ));
        }
        let fd = sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Self::open_with(fd, cfg, true, false)
    }

    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Start the sealing workers and the retention sweeper; also finish captures a
    /// crash left in `incoming/`.
    pub fn start_workers(self: &Arc<Self>) {
        let rs = std::mem::take(&mut *self.receivers.lock());
        let mut ws = self.workers.lock();
        for (i, r) in rs.into_iter().enumerate() {
            let me = self.clone();
            ws.push(
                std::thread::Builder::new()
                    .name(format!("ckptfs-seal-{i}"))
                    .spawn(move || me.worker(r))
                    .expect("spawn worker"),
            );
        }
        let me = self.clone();
        ws.push(
            std::thread::Builder::new()
                .name("ckptfs-retention".into())
                .spawn(move || me.sweeper())
                .expect("spawn sweeper"),
        );
        self.recover_incoming();
    }

    /// Wait until every queued capture is sealed.
    /// Seals queued or running, and whether the space thread is in a pass.
    pub fn busy(&self) -> (u64, bool) {
        (
            *self.inflight.lock(),
            self.space.busy.load(Ordering::SeqCst),
        )
    }

    pub fn flush_pending(&self) {
        let mut n = self.inflight.lock();
        while *n > 0 {
            self.idle.wait(&mut n);
        }
    }

    pub fn shutdown(&self) {
        self.flush_pending();
        self.stop.store(true, Ordering::SeqCst);
        self.kick_space();
        for q in &self.queues {
            let _ = q.send(seal::Job::Stop);
        }
        let ws = std::mem::take(&mut *self.workers.lock());
        let had_workers = !ws.is_empty();
        for w in ws {
            let _ = w.join();
        }
        if had_workers {
            // Clean shutdown: the index on disk is exactly the in-memory one.
            let r = index::save_snapshot(self.dir.as_fd(), &self.index.read()).and_then(|_| {
                sys::unlinkat(
                    self.dir.as_fd(),
                    &CString::new(index::DIRTY).expect("no NUL"),
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

    /// Open a version's content for reading (O_RDONLY).
    pub fn open_object(&self, m: &VersionMeta) -> io::Result<OwnedFd> {
        let p = self.object_path(m);
        sys::openat(
            self.dir.as_fd(),
            &CString::new(p).map_err(io::Error::other)?,
            libc::O_RDONLY,
            0,
        )
    }

    pub fn object_path(&self, m: &VersionMeta) -> String {
        let d = layout::version_dir(&m.category, &m.relpath());
        let mut name = layout::data_name(m.number);
        if m.compressed {
            name.push_str(".zst");
        }
        format!("{d}/{name}")
    }

    /// Bytes the version's object takes on disk.
    pub fn object_disk_bytes(&self, m: &VersionMeta) -> u64 {
        CString::new(self.object_path(m))
            .ok()
            .and_then(|c| sys::fstatat(self.dir.as_fd(), &c).ok())
            .map(|st| st.st_blocks as u64 * 512)
            .unwrap_or(0)
    }

    /// How many hard links to live inode `ino` belong to the store.
    pub fn links_to(&self, ino: u64) -> u32 {
        if !self.same_fs {
            return 0;
        }
        let p = self
            .pending
            .lock()
            .values()
            .filter(|(i, _)| *i == ino)
            .count();
        let v = self
            .index
            .read()
            .by_ino
            .get(&ino)
            .map(|v| v.len())
            .unwrap_or(0);
        (p + v) as u32
    }

    /// Is inode `ino` (of a live file) shared with a version or a pending capture?
    pub fn is_shared(&self, ino: u64) -> bool {
        self.pending.lock().values().any(|(i, _)| *i == ino)
            || self.index.read().by_ino.contains_key(&ino)
    }

    /// The live file `fd` (its inode is `ino`) is about to be written in place:
    /// give every version that shares its inode a private copy first. Without
    /// room for the copy even after evicting history, those versions give way
    /// (the live file comes first), unless one is pinned: then ENOSPC.
    pub fn unshare(&self, fd: BorrowedFd<'_>, ino: u64) -> io::Result<()> {
        let size = sys::fstat(fd)?.st_size as u64;
        match self.with_room(size, || self.unshare_once(fd, ino)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.same_fs => self.give_way(ino),
            r => r,
        }
    }

    /// No room to copy for the versions sharing live inode `ino`: drop them.
    fn give_way(&self, ino: u64) -> io::Result<()> {
        let enospc = || io::Error::from_raw_os_error(libc::ENOSPC);
        if self.pending.lock().values().any(|(i, _)| *i == ino) {
            return Err(enospc()); // a capture in flight needs this content
        }
        let sharing: Vec<(Vec<u8>, u64)> = self.with_index(|i| {
            i.by_ino
                .get(&ino)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(p, n)| i.get(p).and_then(|h| h.get(*n)).is_some())
                .collect()
        });
        let pinned = self.with_index(|i| {
            sharing
                .iter()
                .any(|(p, n)| i.get(p).and_then(|h| h.get(*n)).is_some_and(|m| m.pinned))
        });
        if pinned {
            return Err(enospc());
        }
        for (p, n) in sharing {
            log::warn!(
                "no room to keep {} v{n} apart from the live file it shares: evicted (live tree first)",
                String::from_utf8_lossy(&p)
            );
            self.evict(&p, n)?;
            self.stats.history_skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.index.write().by_ino.remove(&ino);
        Ok(())
    }

    /// One attempt of [`Store::unshare`]. Each name is checked to still be that
    /// inode before it is re-pointed, so a version is never given someone else's
    /// content.
    fn unshare_once(&self, fd: BorrowedFd<'_>, ino: u64) -> io::Result<()> {
        let _q = self.quiesce.read();
        let _g = self.share_lock.lock();
        let mut locations: Vec<String> = self
            .pending
            .lock()
            .values()
            .filter(|(i, _)| *i == ino)
            .map(|(_, loc)| loc.clone())
            .collect();
        let versions: Vec<VersionMeta> = {
            let idx = self.index.read();
            idx.by_ino
                .get(&ino)
                .into_iter()
                .flatten()
                .filter_map(|(p, n)| idx.get(p).and_then(|h| h.get(*n)).cloned())
                .collect()
        };
        locations.extend(versions.iter().map(|m| self.object_path(m)));
        locations.sort();
        locations.dedup();
        let same = |loc: &str| {
            CString::new(loc)
                .ok()
                .and_then(|c| sys::fstatat(self.dir.as_fd(), &c).ok())
                .is_some_and(|st| st.st_ino == ino)
        };
        locations.retain(|l| same(l));
        if locations.is_empty() {
            self.index.write().by_ino.remove(&ino);
            return Ok(());
        }
        let tmp = format!(
            "{}/unshare-{}-{}",
            layout::INCOMING,
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let ctmp = CString::new(tmp.clone()).map_err(io::Error::other)?;
        let st = sys::fstat(fd)?;
        let copy = sys::openat(
            self.dir.as_fd(),
            &ctmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        let src = sys::open_path(
            &sys::proc_path(std::os::fd::AsRawFd::as_raw_fd(&fd)),
            libc::O_RDONLY,
            0,
        )?;
        let r = self.copy_into(&src, &copy, st.st_size as u64);
        if let Err(e) = r {
            let _ = sys::unlinkat(self.dir.as_fd(), &ctmp, 0);
            return Err(e);
        }
        let new_ino = sys::fstat(copy.as_fd())?.st_ino;
        drop(copy);
        // Re-point each name at the copy: link to a temp name, rename over.
        for loc in &locations {
            let t = CString::new(format!("{loc}.unshare")).map_err(io::Error::other)?;
            let c = CString::new(loc.as_str()).map_err(io::Error::other)?;
            sys::linkat(self.dir.as_fd(), &ctmp, self.dir.as_fd(), &t, 0)?;
            sys::renameat2(self.dir.as_fd(), &t, self.dir.as_fd(), &c, 0)?;
        }
        let _ = sys::unlinkat(self.dir.as_fd(), &ctmp, 0);
        for (_, (i, loc)) in self.pending.lock().iter_mut() {
            if *i == ino && locations.contains(loc) {
                *i = new_ino;
            }
        }
        let mut idx = self.index.write();
        for m in versions {
            if !locations.contains(&self.object_path(&m)) {
                continue;
            }
            let mut m2 = m.clone();
            m2.object_ino = new_ino;
            self.rewrite_meta(&m2)?;
            idx.remove(&m.relpath(), m.number);
            idx.insert(m2);
        }
        idx.by_ino.remove(&ino);
        drop(idx);
        self.stats.unshares.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reflink `src` into `dst` where possible, else copy in kernel.
    fn copy_into(&self, src: &OwnedFd, dst: &OwnedFd, len: u64) -> io::Result<()> {
        if sys::ficlone(dst.as_fd(), src.as_fd()).is_ok() {
            return Ok(());
        }
        sys::copy_range(src.as_fd(), dst.as_fd(), len)?;
        self.stats.bytes_copied.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Replace a version's metadata file (crash-safely) with `m`.
    pub(crate) fn rewrite_meta(&self, m: &VersionMeta) -> io::Result<()> {
        let d = layout::version_dir(&m.category, &m.relpath());
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
    pub fn set_pin(&self, relpath: &[u8], number: u64, pinned: bool) -> io::Result<()> {
        let _q = self.quiesce.read();
        let mut idx = self.index.write();
        let Some(m) = idx.get(relpath).and_then(|h| h.get(number)).cloned() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no version {number} of {}",
                    String::from_utf8_lossy(relpath)
                ),
            ));
        };
        let mut m2 = m;
        m2.pinned = pinned;
        self.rewrite_meta(&m2)?;
        idx.insert(m2);
        Ok(())
    }
}
