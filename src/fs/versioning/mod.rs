//! When a state becomes a version: the triggers of DESIGN §1 mapped onto FUSE
//! events, and the zero-copy moves that make them cheap.
//!
//! | event | what happens here |
//! |---|---|
//! | last release of a writer | pending seal after `settle_ms` (timer thread, hard link) |
//! | fsync/fdatasync | capture now (copy/reflink: the writer may keep writing) |
//! | O_TRUNC open, truncate | old inode moves to the store, a fresh inode takes the name (no copy) |
//! | rename over, unlink | the departing inode is hard-linked into the store (no copy) |
//! | writer open and dirty for `interval_seconds` | capture (copy/reflink) |
//! | unmount, SIGINT/SIGTERM | every pending seal now |
//!
//! A version made by hard link shares the live inode until the next in-place
//! write: opening for writing without O_TRUNC/O_APPEND first gives the version a
//! private copy (`Store::unshare`). Appends never need one: a version records its
//! length.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

mod cold;
mod events;
mod swap;
mod timer;

use super::handles::Handles;
use super::inode::{Inode, InodeStore, ROOT_INO};
use super::pending::{Pending, PendingSet};
use crate::store::{How, Reason, Store, Writer, layout};
use crate::sys;

/// Prefix of the temporary names used while swapping an inode; never listed.
pub const SWAP_PREFIX: &[u8] = b".ckptfs-swap-";

struct OpenDirty {
    since: Instant,
    mtime: i64,
}

pub struct Versioner {
    inodes: Arc<InodeStore>,
    handles: Arc<Handles>,
    store: Arc<Store>,
    opts: super::VersioningOptions,
    pending: Mutex<PendingSet>,
    /// Wakes the settle timer when a seal is scheduled.
    wake: parking_lot::Condvar,
    open_dirty: Mutex<HashMap<u64, OpenDirty>>,
    stop: AtomicBool,
    swap_seq: AtomicU64,
    /// Seals taken off `pending` whose capture has not reached the store's
    /// queue yet (a copy can take seconds): `ckptfs wait` counts them.
    capturing: AtomicUsize,
    /// When each inode last got an fsync version (the throttle); dropped at
    /// its last writer's release.
    last_fsync: Mutex<HashMap<u64, Instant>>,
    /// Passthrough fsyncs still owed a version: the file's state when synced.
    owed: Mutex<HashMap<u64, libc::stat>>,
    /// Drops the page cache of inodes that left the live tree.
    cold: cold::Cold,
}

/// The last writer looked up: `rm -rf` or an untar makes thousands of
/// captures from one process, and each lookup reads /proc (3 syscalls).
static LAST_WRITER: Mutex<Option<(Instant, Writer)>> = Mutex::new(None);

fn writer_of(pid: u32) -> Option<Writer> {
    if pid == 0 {
        return None;
    }
    // A pid is not reused within a second (the kernel cycles through pid_max).
    if let Some((at, w)) = &*LAST_WRITER.lock()
        && w.pid == pid
        && at.elapsed() < std::time::Duration::from_secs(1)
    {
        return Some(w.clone());
    }
    let w = read_writer(pid)?;
    *LAST_WRITER.lock() = Some((Instant::now(), w.clone()));
    Some(w)
}

fn read_writer(pid: u32) -> Option<Writer> {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut command: String = cmd
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    command.truncate(256);
    Some(Writer { pid, command })
}

impl Versioner {
    pub fn start(
        inodes: Arc<InodeStore>,
        handles: Arc<Handles>,
        store: Arc<Store>,
        opts: super::VersioningOptions,
    ) -> Arc<Self> {
        let v = Arc::new(Self {
            inodes,
            handles,
            store,
            opts,
            pending: Mutex::new(PendingSet::default()),
            wake: parking_lot::Condvar::new(),
            open_dirty: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            swap_seq: AtomicU64::new(0),
            capturing: AtomicUsize::new(0),
            last_fsync: Mutex::new(HashMap::new()),
            owed: Mutex::new(HashMap::new()),
            cold: cold::Cold::start(),
        });
        let me = v.clone();
        std::thread::Builder::new()
            .name("ckptfs-settle".into())
            .spawn(move || me.timer())
            .expect("spawn settle timer");
        v
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Closed files waiting for their settle time or being captured. Once this
    /// reads 0, everything closed before is in the store's queue (counted by
    /// `Store::quiet`): a capture counts here until it is enqueued.
    pub fn settling(&self) -> usize {
        self.capturing.load(Ordering::SeqCst) + self.pending.lock().len()
    }

    /// Path of a live inode if it is versioned (not ignored, not the store).
    fn path_of(&self, inode: &Inode) -> Option<Vec<u8>> {
        if !inode.is_reg() {
            return None;
        }
        let p = self.inodes.relpath(inode.ino)?;
        self.versioned(&p).then_some(p)
    }

    /// Does this live inode get versions under its current name?
    pub(crate) fn versions(&self, inode: &Inode) -> bool {
        self.path_of(inode).is_some()
    }

    fn versioned(&self, relpath: &[u8]) -> bool {
        let name = relpath.rsplit(|&b| b == b'/').next().unwrap_or(relpath);
        !self.opts.ignored(name) && !name.starts_with(SWAP_PREFIX)
    }

    /// Is the current state (by size and mtime) already the newest version?
    fn already_kept(&self, relpath: &[u8], st: &libc::stat) -> bool {
        self.store.with_index(|i| {
            i.get(relpath)
                .and_then(|h| h.latest())
                .is_some_and(|l| l.size == st.st_size as u64 && l.mtime_ns == sys::mtime_ns(st))
        })
    }

    fn capture(
        &self,
        fd: &OwnedFd,
        relpath: &[u8],
        reason: Reason,
        writer: Option<Writer>,
        how: How,
    ) -> io::Result<()> {
        self.store.capture(fd.as_fd(), relpath, reason, writer, how)
    }

    /// Preserve the content of `inode` because it is about to be rewritten:
    /// zero copy (`link_ok`) only when the name then gets a fresh inode
    /// (`swap_fresh`). Otherwise the bytes are about to change in place, and
    /// a link would be a version that changes with them.
    fn preserve(
        &self,
        inode: &Arc<Inode>,
        relpath: &[u8],
        reason: Reason,
        pid: u32,
        link_ok: bool,
    ) -> io::Result<bool> {
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        let pending = self.pending.lock().remove(&inode.ino).is_some();
        if !pending && self.already_kept(relpath, &st) {
            // Still shared with that version? Then a swap keeps it intact for free.
            return Ok(false);
        }
        let how = if link_ok { How::Link } else { How::Copy };
        self.capture(&fd, relpath, reason, writer_of(pid), how)?;
        Ok(true)
    }

    /// O_TRUNC open or truncate(0): old content into the store without a copy when
    /// possible. Called with the inode's vlock held.
    fn before_rewrite(
        &self,
        inode: &Arc<Inode>,
        relpath: &[u8],
        reason: Reason,
        size: u64,
        pid: u32,
    ) -> io::Result<()> {
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        let shared = self.store.links_to(st.st_ino) > 0;
        if st.st_size == 0 && !shared {
            return Ok(());
        }
        let pending = self.pending.lock().contains_key(&inode.ino);
        if !pending && !shared && self.already_kept(relpath, &st) {
            return Ok(()); // this state is already a version with its own object
        }
        let can_swap =
            size == 0 && self.handles.open_count(inode.ino) == 0 && (st.st_nlink == 1 || shared);
        if can_swap {
            self.preserve(inode, relpath, reason, pid, true)?;
            return self.swap_fresh(inode);
        }
        // In place: versions sharing this inode get their own copy first, and the
        // current state is captured by copy.
        self.store
            .unshare(fd.as_fd(), st.st_ino)
            .map_err(super::store_err)?;
        self.preserve(inode, relpath, reason, pid, false)?;
        Ok(())
    }

    /// An open for writing (not O_TRUNC): protect versions that share the inode,
    /// and make pre-existing content version 1 before it changes.
    fn before_write(
        &self,
        inode: &Arc<Inode>,
        relpath: &[u8],
        append: bool,
        pid: u32,
    ) -> io::Result<()> {
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        let pending = self.pending.lock().contains_key(&inode.ino);
        let kept = self.already_kept(relpath, &st);
        if !append {
            self.store
                .unshare(fd.as_fd(), st.st_ino)
                .map_err(super::store_err)?;
        }
        if !pending && !kept && st.st_size > 0 {
            // Appends only add bytes, so a hard link keeps this state intact.
            let how = if append { How::Link } else { How::Copy };
            self.capture(&fd, relpath, Reason::Overwrite, writer_of(pid), how)?;
        }
        Ok(())
    }

    /// A writer opened the file: start its `interval_seconds` clock.
    fn writer_opened(&self, inode: &Arc<Inode>) {
        let Ok(st) = self
            .inodes
            .path_fd(inode)
            .and_then(|fd| sys::fstat(fd.as_fd()))
        else {
            return;
        };
        self.open_dirty
            .lock()
            .entry(inode.ino)
            .or_insert(OpenDirty {
                since: Instant::now(),
                mtime: sys::mtime_ns(&st),
            });
    }

    fn schedule(&self, inode: &Inode, reason: Reason, writer: Option<Writer>) {
        self.schedule_in(inode, reason, writer, self.opts.settle);
    }

    fn schedule_in(
        &self,
        inode: &Inode,
        reason: Reason,
        writer: Option<Writer>,
        settle: std::time::Duration,
    ) {
        let found_at = self
            .inodes
            .relpath(inode.ino)
            .map(|p| (p, inode.backing.read().key));
        let earliest = self.pending.lock().insert(
            inode.ino,
            Pending {
                due: Instant::now() + settle,
                reason,
                writer,
                found_at,
            },
        );
        // The timer sleeps until the earliest due seal; only a new earliest one
        // needs to wake it (a burst of closes costs one wake-up, not one each).
        if earliest {
            self.wake.notify_one();
        }
    }

    /// `ckptfs snapshot [PATH]`: capture the current state of one file, or of every
    /// file whose state is not yet a version.
    pub fn snapshot(&self, relpath: Option<&[u8]>) -> io::Result<usize> {
        let root = self.inodes.get(ROOT_INO)?;
        let rootfd = self.inodes.path_fd(&root)?;
        let mut files = Vec::new();
        match relpath {
            Some(p) => files.push(p.to_vec()),
            None => sys::walk_files(
                rootfd.as_fd(),
                Vec::new(),
                layout::STORE_DIR.as_bytes(),
                &mut files,
                0,
            ),
        }
        let mut n = 0;
        for p in files {
            if !self.versioned(&p) || p.split(|&b| b == b'/').any(|c| c == b".." || c.is_empty()) {
                continue;
            }
            let fd = sys::open_beneath(&rootfd, &p)?;
            let st = sys::fstat(fd.as_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG || self.already_kept(&p, &st) {
                continue;
            }
            let inode = self.inodes.by_backing((st.st_dev, st.st_ino));
            let _g = inode.as_ref().map(|i| i.vlock.lock());
            let writers = inode
                .as_ref()
                .map(|i| self.handles.writers(i.ino))
                .unwrap_or(0);
            if let Some(i) = &inode {
                self.pending.lock().remove(&i.ino);
            }
            let how = if writers > 0 { How::Copy } else { How::Link };
            self.capture(&fd, &p, Reason::Snapshot, None, how)?;
            n += 1;
        }
        self.store.flush_pending();
        Ok(n)
    }
}
