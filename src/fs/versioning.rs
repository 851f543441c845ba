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
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fuser::Request;
use parking_lot::Mutex;

use super::CkptFs;
use super::handles::Handles;
use super::inode::{Inode, InodeStore, ROOT_INO};
use super::pending::{Pending, PendingSet};
use crate::store::{Capture, How, Reason, Store, Writer, now_ns};
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
    pending: Mutex<PendingSet>,
    /// Wakes the settle timer when a seal is scheduled.
    wake: parking_lot::Condvar,
    open_dirty: Mutex<HashMap<u64, OpenDirty>>,
    stop: AtomicBool,
    swap_seq: AtomicU64,
    /// Seals taken off `pending` whose capture has not reached the store's
    /// queue yet (a copy can take seconds): `ckptfs wait` counts them.
    capturing: AtomicUsize,
}

/// Counts itself in an `AtomicUsize` while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn writer_of(pid: u32) -> Option<Writer> {
    if pid == 0 {
        return None;
    }
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

fn mtime_ns(st: &libc::stat) -> i64 {
    st.st_mtime * 1_000_000_000 + st.st_mtime_nsec
}

impl Versioner {
    pub fn start(inodes: Arc<InodeStore>, handles: Arc<Handles>, store: Arc<Store>) -> Arc<Self> {
        let v = Arc::new(Self {
            inodes,
            handles,
            store,
            pending: Mutex::new(PendingSet::default()),
            wake: parking_lot::Condvar::new(),
            open_dirty: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            swap_seq: AtomicU64::new(0),
            capturing: AtomicUsize::new(0),
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

    fn versioned(&self, relpath: &[u8]) -> bool {
        let name = relpath.rsplit(|&b| b == b'/').next().unwrap_or(relpath);
        !self.store.cfg.ignored(name) && !name.starts_with(SWAP_PREFIX)
    }

    /// Is the current state (by size and mtime) already the newest version?
    fn already_kept(&self, relpath: &[u8], st: &libc::stat) -> bool {
        self.store.with_index(|i| {
            i.get(relpath)
                .and_then(|h| h.latest())
                .is_some_and(|l| l.size == st.st_size as u64 && l.mtime_ns == mtime_ns(st))
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
        let cap = Capture {
            path_hex: String::new(),
            reason,
            sealed_ns: now_ns(),
            mtime_ns: 0,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            writer,
            copied: false,
        };
        self.store.capture(fd.as_fd(), relpath, cap, how)
    }

    /// Preserve the content of `inode` because it is about to be destroyed or
    /// rewritten. Zero copy when nobody else has it open.
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
        if self.handles.writers(inode.ino) == 0 || link_ok {
            self.capture(&fd, relpath, reason, writer_of(pid), How::Link)?;
        } else {
            self.capture(&fd, relpath, reason, writer_of(pid), How::Copy)?;
        }
        Ok(true)
    }

    /// Give the name of `inode` a fresh empty inode with the same attributes, so the
    /// old one (now in the store) is never written again. The caller checked that
    /// nobody has it open and no user hard link shares it.
    fn swap_fresh(&self, inode: &Arc<Inode>) -> io::Result<()> {
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        let (parent, name) = inode.loc.lock().clone();
        let p = self.inodes.get(parent)?;
        let pfd = self.inodes.path_fd(&p)?;
        let mut tmp = SWAP_PREFIX.to_vec();
        tmp.extend_from_slice(
            format!("{}", self.swap_seq.fetch_add(1, Ordering::Relaxed)).as_bytes(),
        );
        let ctmp = CString::new(tmp).map_err(io::Error::other)?;
        let cname = CString::new(name).map_err(io::Error::other)?;
        let f = sys::openat(
            pfd.as_fd(),
            &ctmp,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        let r = (|| -> io::Result<()> {
            // SAFETY: plain syscalls on an owned fd.
            sys::cvt(unsafe { libc::fchown(f.as_raw_fd(), st.st_uid, st.st_gid) })?;
            // SAFETY: as above.
            sys::cvt(unsafe { libc::fchmod(f.as_raw_fd(), st.st_mode & 0o7777) })?;
            copy_xattrs(&fd, &f);
            sys::renameat2(pfd.as_fd(), &ctmp, pfd.as_fd(), &cname, 0)
        })();
        if let Err(e) = r {
            let _ = sys::unlinkat(pfd.as_fd(), &ctmp, 0);
            return Err(e);
        }
        let opath = sys::openat(pfd.as_fd(), &cname, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let nst = sys::fstat(opath.as_fd())?;
        self.inodes.rebind(inode, opath, &nst);
        // The old inode now lives only in the store: hand its cached pages back,
        // as a truncate would, so the writer's new save reuses them. Measured on
        // this VM: leaving them for the seal's hash made 1 GiB saves 4x slower
        // (the save's copies landed on never-touched guest RAM, host faults),
        // although the seal then re-reads the old version from disk.
        drop_cache(&fd);
        *inode.passthrough.lock() = std::sync::Weak::new();
        Ok(())
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
        let shared = self.store.is_shared(st.st_ino);
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
        self.store.unshare(fd.as_fd(), st.st_ino)?;
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
        if !append && self.store.is_shared(st.st_ino) {
            self.store.unshare(fd.as_fd(), st.st_ino)?;
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
                mtime: mtime_ns(&st),
            });
    }

    fn schedule(&self, inode: &Inode, reason: Reason, writer: Option<Writer>) {
        let settle = Duration::from_millis(self.store.cfg.settle_ms);
        let earliest = self.pending.lock().insert(
            inode.ino,
            Pending {
                due: Instant::now() + settle,
                reason,
                writer,
            },
        );
        // The timer sleeps until the earliest due seal; only a new earliest one
        // needs to wake it (a burst of closes costs one wake-up, not one each).
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Seal one pending inode now if nobody writes it (else it stays pending).
    fn seal_pending(&self, ino: u64, force_reason: Option<Reason>) {
        let Ok(inode) = self.inodes.get(ino) else {
            self.pending.lock().remove(&ino);
            return;
        };
        let _g = inode.vlock.lock();
        if self.handles.writers(ino) > 0 && force_reason.is_none() {
            // Reopened for writing: its last close will reschedule it. Until then
            // look again only after another settle time, not on every tick.
            let settle = Duration::from_millis(self.store.cfg.settle_ms.max(50));
            self.pending.lock().postpone(ino, Instant::now() + settle);
            return;
        }
        let _counted = Counted::new(&self.capturing);
        let Some(p) = self.pending.lock().remove(&ino) else {
            return;
        };
        let Some(relpath) = self.path_of(&inode) else {
            return;
        };
        let how = if self.handles.writers(ino) > 0 {
            How::Copy
        } else {
            How::Link
        };
        let r = self.inodes.path_fd(&inode).and_then(|fd| {
            self.capture(
                &fd,
                &relpath,
                force_reason.unwrap_or(p.reason),
                p.writer,
                how,
            )
        });
        if let Err(e) = r {
            log::warn!("sealing {}: {e}", String::from_utf8_lossy(&relpath));
        }
    }

    pub fn seal_all_pending(&self, reason: Reason) {
        let inos = self.pending.lock().inos();
        for ino in inos {
            self.seal_pending(ino, Some(reason));
        }
    }

    fn timer(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            // Wake at the earliest due seal, when one is scheduled, or every 50 ms.
            {
                let mut p = self.pending.lock();
                let next = p.next_due();
                let nap = next
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(50));
                if !nap.is_zero() {
                    self.wake.wait_for(&mut p, nap);
                }
            }
            let now = Instant::now();
            let due = self.pending.lock().due(now);
            for ino in due {
                self.seal_pending(ino, None);
            }
            self.interval_check(now);
        }
    }

    /// Writers that stay open and dirty get a version every `interval_seconds`.
    fn interval_check(&self, now: Instant) {
        let every = Duration::from_secs(self.store.cfg.interval_seconds);
        let old: Vec<u64> = self
            .open_dirty
            .lock()
            .iter()
            .filter(|(_, d)| now.duration_since(d.since) >= every)
            .map(|(i, _)| *i)
            .collect();
        for ino in old {
            if self.handles.writers(ino) == 0 {
                self.open_dirty.lock().remove(&ino);
                continue;
            }
            let Ok(inode) = self.inodes.get(ino) else {
                continue;
            };
            let _g = inode.vlock.lock();
            let Ok(fd) = self.inodes.path_fd(&inode) else {
                continue;
            };
            let Ok(st) = sys::fstat(fd.as_fd()) else {
                continue;
            };
            let changed = self
                .open_dirty
                .lock()
                .get(&ino)
                .is_some_and(|d| d.mtime != mtime_ns(&st));
            if changed && let Some(relpath) = self.path_of(&inode) {
                let _ = self.capture(&fd, &relpath, Reason::Interval, None, How::Copy);
            }
            self.open_dirty.lock().insert(
                ino,
                OpenDirty {
                    since: now,
                    mtime: mtime_ns(&st),
                },
            );
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
            None => walk(rootfd.as_fd(), Vec::new(), &mut files, 0),
        }
        let mut n = 0;
        for p in files {
            if !self.versioned(&p) || p.split(|&b| b == b'/').any(|c| c == b".." || c.is_empty()) {
                continue;
            }
            let fd = open_beneath(&rootfd, &p)?;
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

/// Regular files under `dir`, as relative paths (the store and swap temps skipped).
fn walk(dir: std::os::fd::BorrowedFd<'_>, prefix: Vec<u8>, out: &mut Vec<Vec<u8>>, depth: usize) {
    if depth > 256 {
        return;
    }
    let Ok(d) = sys::openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
        return;
    };
    let Ok(entries) = sys::read_dir_fd(d) else {
        return;
    };
    for (name, _, t) in entries {
        if prefix.is_empty() && name == b".ckptfs" {
            continue;
        }
        let mut p = prefix.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&name);
        match t {
            libc::DT_REG => out.push(p),
            libc::DT_DIR => {
                let Ok(c) = CString::new(name) else { continue };
                if let Ok(sub) = sys::openat(
                    dir,
                    &c,
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                ) {
                    walk(sub.as_fd(), p, out, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// Open `relpath` under `root` without following symlinks or leaving the tree.
fn open_beneath(root: &OwnedFd, relpath: &[u8]) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    const RESOLVE_BENEATH: u64 = 0x08;
    let c = CString::new(relpath).map_err(io::Error::other)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: openat2 with a properly sized open_how; the fd is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Drop the clean cached pages of a file (dirty ones start writing back).
fn drop_cache(fd: &OwnedFd) {
    if let Ok(f) = sys::open_path(&sys::proc_path(fd.as_raw_fd()), libc::O_RDONLY, 0) {
        // SAFETY: advisory syscall on an open fd.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn copy_xattrs(from: &OwnedFd, to: &OwnedFd) {
    let src = sys::proc_path(from.as_raw_fd());
    let dst = sys::proc_path(to.as_raw_fd());
    let Ok(n) = sys::listxattr(&src, 0).map(|v| v.len()) else {
        return;
    };
    if n == 0 {
        return;
    }
    let Ok(names) = sys::listxattr(&src, n + 256) else {
        return;
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cn) = CString::new(name) else { continue };
        if let Ok(v) = sys::getxattr(&src, &cn, 64 * 1024) {
            let _ = sys::setxattr(&dst, &cn, &v, 0);
        }
    }
}

/// The FUSE-facing hooks, called from the operation files.
impl CkptFs {
    fn v(&self) -> Option<&Arc<Versioner>> {
        self.versioner.as_ref()
    }

    /// Called with the inode's vlock held through the truncate itself, so no
    /// seal can link the inode into the store in between.
    pub(super) fn before_truncate(
        &self,
        req: &Request,
        inode: &Arc<Inode>,
        size: u64,
    ) -> io::Result<()> {
        let Some(v) = self.v() else { return Ok(()) };
        let Some(p) = v.path_of(inode) else {
            // Not versioned under this name; a version under another may share it.
            return self.before_inplace_change(inode);
        };
        v.before_rewrite(inode, &p, Reason::Truncate, size, req.pid())
    }

    pub(super) fn before_destroy(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        pfd: &Arc<OwnedFd>,
        cname: &CStr,
        reason: Reason,
    ) -> io::Result<()> {
        let Some(v) = self.v() else { return Ok(()) };
        let Ok(st) = sys::fstatat(pfd.as_fd(), cname) else {
            return Ok(());
        };
        // Only non-empty regular files have content to keep.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size == 0 {
            return Ok(());
        }
        let Some(mut relpath) = (if parent == ROOT_INO {
            Some(Vec::new())
        } else {
            self.inodes.relpath(parent)
        }) else {
            return Ok(());
        };
        if !relpath.is_empty() {
            relpath.push(b'/');
        }
        relpath.extend_from_slice(name.as_bytes());
        if !v.versioned(&relpath) {
            return Ok(());
        }
        let fd = sys::openat(pfd.as_fd(), cname, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let live = self.inodes.by_backing((st.st_dev, st.st_ino));
        let _g = live.as_ref().map(|i| i.vlock.lock());
        let pending = live
            .as_ref()
            .is_some_and(|i| v.pending.lock().remove(&i.ino).is_some());
        if !pending && v.already_kept(&relpath, &st) {
            return Ok(());
        }
        let writers = live
            .as_ref()
            .map(|i| self.handles.writers(i.ino))
            .unwrap_or(0);
        let how = if writers == 0 { How::Link } else { How::Copy };
        v.capture(&fd, &relpath, reason, writer_of(req.pid()), how)?;
        if st.st_nlink == 1 && writers == 0 {
            drop_cache(&fd); // about to leave the live tree: cold history now
        }
        Ok(())
    }

    pub(super) fn before_write_open(
        &self,
        req: &Request,
        inode: &Arc<Inode>,
        flags: i32,
    ) -> io::Result<()> {
        let Some(v) = self.v() else { return Ok(()) };
        let Some(p) = v.path_of(inode) else {
            // This name is not versioned, but a version made under another
            // name (a hard link, a name since renamed) may share the inode.
            if flags & libc::O_TRUNC != 0 || flags & libc::O_APPEND == 0 {
                return self.before_inplace_change(inode);
            }
            return Ok(());
        };
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            v.writer_opened(inode);
        }
        if flags & libc::O_TRUNC != 0 {
            v.before_rewrite(inode, &p, Reason::Overwrite, 0, req.pid())
        } else {
            v.before_write(inode, &p, flags & libc::O_APPEND != 0, req.pid())
        }
    }

    pub(super) fn before_inplace_change(&self, inode: &Arc<Inode>) -> io::Result<()> {
        let Some(v) = self.v() else { return Ok(()) };
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        if v.store.is_shared(st.st_ino) {
            v.store.unshare(fd.as_fd(), st.st_ino)?;
        }
        Ok(())
    }

    pub(super) fn note_dirty(&self, inode: &Arc<Inode>) {
        if let Some(v) = self.v()
            && self.handles.writers(inode.ino) == 0
            && v.path_of(inode).is_some()
        {
            v.schedule(inode, Reason::Close, None);
        }
    }

    pub(super) fn after_create(&self, inode: &Arc<Inode>) {
        if let Some(v) = self.v()
            && v.path_of(inode).is_some()
        {
            v.writer_opened(inode);
        }
    }

    /// A second writer opened a file that already has one: POSIX semantics hold
    /// for the live file; we count and log it, and every displaced state still
    /// becomes a version at the triggers.
    pub(super) fn note_conflict(&self, inode: &Arc<Inode>, pid: u32) {
        if let Some(v) = self.v() {
            v.store.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "concurrent writers on {} (new writer pid {pid})",
                String::from_utf8_lossy(&self.inodes.relpath(inode.ino).unwrap_or_default())
            );
        }
    }

    /// A renamed file now lives under a (maybe versioned) new name: its content is
    /// the new state of that name.
    pub(super) fn after_rename_target(&self, inode: &Arc<Inode>) {
        if let Some(v) = self.v()
            && v.path_of(inode).is_some()
        {
            v.schedule(inode, Reason::Close, None);
        }
    }

    pub(super) fn on_dirty_release(&self, inode: &Arc<Inode>, pid: u32) {
        let Some(v) = self.v() else { return };
        if self.handles.writers(inode.ino) > 0 {
            // Another writer keeps the file open and will change it: this
            // writer's last state is kept now (guarantee 4), as at an fsync.
            self.capture_while_open(inode, pid, Reason::Close);
            return;
        }
        let Some(p) = v.path_of(inode) else { return };
        // A save ended: the reserve learns its size now, not at the seal (a
        // rewrite before the settle time would seal it as an overwrite).
        if let Ok(st) = v
            .inodes
            .path_fd(inode)
            .and_then(|fd| sys::fstat(fd.as_fd()))
        {
            v.store.note_save(&p, st.st_size as u64);
        }
        v.open_dirty.lock().remove(&inode.ino);
        let reason = match v.pending.lock().get(&inode.ino) {
            Some(p) if p.reason == Reason::Fsync => Reason::Fsync,
            _ => Reason::Close,
        };
        v.schedule(inode, reason, writer_of(pid));
    }

    pub(super) fn on_fsync(&self, inode: &Arc<Inode>, pid: u32) {
        self.capture_while_open(inode, pid, Reason::Fsync);
    }

    /// Capture the state of a file that stays open for writing (fsync, or a
    /// writer's close while another writer remains).
    fn capture_while_open(&self, inode: &Arc<Inode>, pid: u32, reason: Reason) {
        let Some(v) = self.v() else { return };
        let Some(p) = v.path_of(inode) else { return };
        let _g = inode.vlock.lock();
        let r = v.inodes.path_fd(inode).and_then(|fd| {
            let st = sys::fstat(fd.as_fd())?;
            if v.already_kept(&p, &st) {
                return Ok(());
            }
            // The writer still holds the file, so a hard link would change under
            // it: reflink where the filesystem can, copy small files, and for big
            // files without reflink seal at the last close (zero copy) instead.
            let small = (st.st_size as u64) <= v.store.cfg.fsync_copy_limit;
            let how = if small { How::Copy } else { How::CloneOnly };
            match v.capture(&fd, &p, reason, writer_of(pid), how) {
                Ok(()) => {
                    v.pending.lock().remove(&inode.ino);
                    Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    v.schedule(inode, reason, writer_of(pid));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        });
        if let Err(e) = r {
            log::warn!(
                "{} version of {}: {e}",
                reason.as_str(),
                String::from_utf8_lossy(&p)
            );
        }
    }

    /// ENOSPC on the daemon data path: evict history and tell the caller to
    /// retry, as long as evicting frees something.
    pub(super) fn on_write_error(&self, e: &io::Error, need: u64) -> bool {
        if e.raw_os_error() != Some(libc::ENOSPC) {
            return false;
        }
        self.store
            .as_ref()
            .filter(|s| s.same_fs)
            .is_some_and(|s| s.relieve(need, true))
    }

    /// Run an operation that allocates space in the live tree; on ENOSPC evict
    /// history and try again while that frees something.
    pub(super) fn with_room<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match &self.store {
            Some(s) => s.with_room(1 << 20, op),
            None => {
                let mut op = op;
                op()
            }
        }
    }
}
