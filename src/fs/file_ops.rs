//! Open/create, the daemon data path (used without passthrough), release, fsync,
//! fallocate, lseek and copy_file_range.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyCreate, ReplyOpen, Request};

use super::creds::{AsCaller, CallerUmask, NewMode};
use super::handles::{FileH, Source};
use super::inode::Inode;
use super::killpriv;
use super::{CkptFs, TTL, err, errno};
use crate::sys;

/// `__FMODE_EXEC`: the kernel's flag on the open done by execve.
const FMODE_EXEC: i32 = 0x20;

/// Flags the daemon must not pass to its own open of the backing file.
pub(super) const STRIP: i32 =
    libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_DIRECT | FMODE_EXEC;

impl CkptFs {
    /// The inode's shared passthrough registration, created on first open.
    /// `fd_is_plain_rw`: `fd` is already O_RDWR with no other status flags and can
    /// back the inode itself (saves reopening it).
    fn backing_for(
        &self,
        inode: &Arc<Inode>,
        fd: &OwnedFd,
        fd_is_plain_rw: bool,
        register: impl FnOnce(&OwnedFd) -> io::Result<BackingId>,
    ) -> io::Result<Arc<BackingId>> {
        let mut slot = inode.passthrough.lock();
        if let Some(b) = slot.upgrade() {
            return Ok(b);
        }
        // One backing file serves every open of the inode, so it must allow both
        // directions and carry no O_APPEND/O_SYNC of one opener; the kernel
        // already checked each caller's access mode.
        let b = if fd_is_plain_rw {
            register(fd)?
        } else {
            let rw = sys::open_path(&sys::proc_path(fd.as_raw_fd()), libc::O_RDWR, 0)
                .or_else(|_| fd.try_clone())?;
            register(&rw)?
        };
        let b = Arc::new(b);
        *slot = Arc::downgrade(&b);
        Ok(b)
    }

    /// Serve this open of a regular file on the daemon data path although the
    /// kernel offers passthrough? Yes for an open for writing while free space
    /// is below the reserve (pressure mode: there a write's ENOSPC is caught,
    /// history evicted and the write retried). The kernel keeps one I/O mode per
    /// inode while it has opens (every open passthrough, or none), so an inode
    /// already open one way is opened the same way again. Called with the
    /// inode's vlock held, so two opens cannot decide differently.
    ///
    /// Also yes for `inplace`: an open that may rewrite existing versioned
    /// bytes (for writing, neither O_TRUNC nor O_APPEND, file not empty:
    /// SQLite, HDF5 `r+`, `np.memmap`). Such writers write again after an
    /// fsync, and only on this path does the daemon see that write coming,
    /// so the fsync's version can be a hard link that is copied only then.
    fn daemon_path(&self, inode: &Arc<Inode>, writable: bool, inplace: bool) -> bool {
        if inode.passthrough.lock().upgrade().is_some() {
            return false;
        }
        if self.handles.daemon_opens(inode.ino) > 0 || inplace {
            return true;
        }
        writable && self.pressure_open()
    }

    /// Is free space below the reserve? Counts the open served in pressure mode.
    fn pressure_open(&self) -> bool {
        let Some(s) = self.store.as_ref().filter(|s| s.under_pressure()) else {
            return false;
        };
        s.stats.pressure_opens.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn open_live(
        &self,
        req: &Request,
        ino: u64,
        flags: i32,
        register: impl FnOnce(&OwnedFd) -> io::Result<BackingId>,
    ) -> io::Result<(u64, Option<Arc<BackingId>>)> {
        let inode = self.inodes.get(ino)?;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        // With FUSE_ATOMIC_O_TRUNC we truncate here, but the kernel checks a
        // running program's text (ETXTBSY) for O_RDONLY|O_TRUNC only after this
        // open returned; check it first, or the program's text would be truncated
        // under it (killing it) although the open then fails.
        if flags & libc::O_TRUNC != 0 && self.handles.execs(ino) > 0 {
            return Err(err(libc::ETXTBSY));
        }
        let _v = inode.vlock.lock();
        if writable || flags & libc::O_TRUNC != 0 {
            if let Some(v) = self.ver() {
                v.before_write_open(req.pid(), &inode, flags)?;
            }
            if writable
                && self.handles.writers(ino) > 0
                && let Some(v) = self.ver()
            {
                v.note_conflict(&inode, req.pid());
            }
        }
        let f = self.inodes.open(&inode, self.backing_flags(flags))?;
        let trunc = flags & libc::O_TRUNC != 0;
        // One stat for the decisions below.
        let mut st = if writable || trunc {
            Some(sys::fstat(f.as_fd())?)
        } else {
            None
        };
        if trunc
            && inode.is_reg()
            && let Some(st) = &mut st
            && killpriv::clear(f.as_fd(), st, req.pid(), req.uid(), None)?
        {
            self.attrs_changed(ino);
        }
        let st = st.filter(|_| writable);
        let inplace = st.is_some_and(|st| {
            flags & (libc::O_TRUNC | libc::O_APPEND) == 0
                && st.st_size > 0
                && self.ver().is_some_and(|v| v.versions(&inode))
        });
        // Passthrough writes never reach us: we could not clear setuid/setgid.
        let sxid = st.is_some_and(|st| killpriv::needs_daemon_path(st.st_mode));
        let backing = if self.passthrough()
            && inode.is_reg()
            && !self.daemon_path(&inode, writable, inplace || sxid)
        {
            Some(self.backing_for(&inode, &f, false, register)?)
        } else {
            None
        };
        // Already open in passthrough (one I/O mode per inode): this writer's
        // writes will not reach us, so its setuid/setgid go now, at the open,
        // where the kernel would clear them at its first write.
        if backing.is_some()
            && let Some(mut st) = st.filter(|_| sxid)
            && killpriv::clear(f.as_fd(), &mut st, req.pid(), req.uid(), None)?
        {
            self.attrs_changed(ino);
        }
        // With passthrough the daemon never sees the writes: an open for writing
        // counts as dirty; sealing skips states identical to the last version.
        let dirty = writable && (backing.is_some() || trunc);
        let fh = self.handles.add_file(FileH {
            ino,
            inode: Some(inode.clone()),
            src: Source::Live(f),
            backing: backing.clone(),
            writable,
            appends: flags & libc::O_APPEND != 0,
            opened: std::time::Instant::now(),
            exec: flags & FMODE_EXEC != 0,
            dirty: AtomicBool::new(dirty),
        });
        Ok((fh, backing))
    }

    pub(super) fn do_open(&self, req: &Request, ino: u64, flags: i32, reply: ReplyOpen) {
        let r = self.open_live(req, ino, flags, |fd| reply.open_backing(fd));
        match r {
            Ok((fh, Some(b))) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &b),
            // In pressure mode the page cache may predate passthrough writes.
            Ok((fh, None)) if self.passthrough() => {
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Ok((fh, None)) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create_live(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        new: NewMode,
        flags: i32,
        register: impl FnOnce(&OwnedFd) -> io::Result<BackingId>,
    ) -> io::Result<(fuser::FileAttr, u64, Option<Arc<BackingId>>)> {
        let (p, pfd, cname) = self.at(parent, name)?;
        // A new file under pressure is written on the daemon data path, and
        // one with setuid/setgid (its writes may have to clear them).
        let pt =
            self.passthrough() && !killpriv::needs_daemon_path(new.mode) && !self.pressure_open();
        let oflags = if pt {
            // Reads and writes bypass the daemon, so our descriptor can be the
            // inode's plain read-write backing file: a new file may be opened for
            // writing whatever its mode, and one open less per create.
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_CREAT | libc::O_EXCL
        } else {
            (self.backing_flags(flags) & !libc::O_TRUNC) | libc::O_CREAT | libc::O_EXCL
        };
        let make = || {
            let (_u, mode) = CallerUmask::new(new);
            sys::openat(pfd.as_fd(), &cname, oflags, mode & 0o7777)
        };
        let r = self.with_room(|| {
            let _g = AsCaller::new(req.uid(), req.gid())?;
            make()
        });
        let f = match r {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                let f = make()?;
                let pst = self.stat_inode(&p)?;
                let gid = if pst.st_mode & libc::S_ISGID != 0 {
                    pst.st_gid
                } else {
                    req.gid()
                };
                sys::fchown(f.as_fd(), req.uid(), gid)?;
                f
            }
            Err(e) => return Err(e),
        };
        let opath = sys::openat(pfd.as_fd(), &cname, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = sys::fstat(f.as_fd())?;
        let inode = self.inodes.intern(opath, &st)?;
        // Another process may open the new name before our reply: same I/O mode.
        let _v = inode.vlock.lock();
        *inode.loc.lock() = (parent, name.as_bytes().to_vec());
        if let Some(v) = self.ver() {
            v.after_create(&inode);
        }
        let backing = if pt {
            Some(self.backing_for(&inode, &f, true, register)?)
        } else {
            None
        };
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let fh = self.handles.add_file(FileH {
            ino: inode.ino,
            inode: Some(inode.clone()),
            src: Source::Live(f),
            backing: backing.clone(),
            writable,
            appends: flags & libc::O_APPEND != 0,
            opened: std::time::Instant::now(),
            exec: false,
            dirty: AtomicBool::new(true),
        });
        Ok((self.live_attr(inode.ino, &st), fh, backing))
    }

    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        new: NewMode,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = self.create_live(req, parent, name, new, flags, |fd| reply.open_backing(fd));
        let g = fuser::Generation(0);
        match r {
            Ok((a, fh, Some(b))) => {
                reply.created_passthrough(&TTL, &a, g, FileHandle(fh), FopenFlags::empty(), &b)
            }
            Ok((a, fh, None)) => reply.created(&TTL, &a, g, FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Read into `buf` (the request's size); returns the bytes read.
    pub(super) fn do_read(&self, fh: u64, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let h = self.handles.file(fh)?;
        let n = match &h.src {
            Source::Live(f) => sys::pread_full(f.as_fd(), buf, offset)?,
            Source::Version(f, size) => {
                let want = size.saturating_sub(offset).min(buf.len() as u64) as usize;
                sys::pread_full(f.as_fd(), &mut buf[..want], offset)?
            }
            Source::Archived(a) => a.read_at(buf, offset)?,
            Source::Memory(v) => {
                let start = (offset as usize).min(v.len());
                let end = (start + buf.len()).min(v.len());
                buf[..end - start].copy_from_slice(&v[start..end]);
                end - start
            }
        };
        Ok(n)
    }

    /// `kill`: the kernel says the writer `pid` lacks CAP_FSETID (setuid and
    /// setgid may have to go).
    pub(super) fn do_write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        kill: Option<u32>,
    ) -> io::Result<usize> {
        let h = self.handles.file(fh)?;
        let Source::Live(f) = &h.src else {
            return Err(err(libc::EROFS));
        };
        if let Some(pid) = kill
            && killpriv::clear_fd(f.as_fd(), pid, 0, Some(true))?
        {
            self.attrs_changed(h.ino);
        }
        if let Some(inode) = &h.inode
            && let Some(v) = self.ver()
        {
            v.before_daemon_write(inode, offset)?;
        }
        let mut done = 0;
        while done < data.len() {
            match sys::pwrite(f.as_fd(), &data[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Evicting freed something: try again.
                Err(e) if self.on_write_error(&e, (data.len() - done) as u64) => {}
                Err(e) if done > 0 => {
                    log::debug!("short write after {done} bytes: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        h.dirty.store(true, Ordering::Relaxed);
        Ok(done)
    }

    pub(super) fn do_release(&self, fh: u64, pid: u32) {
        if let Some(h) = self.handles.remove_file(fh)
            && let Some(inode) = &h.inode
            && h.dirty.load(Ordering::Relaxed)
            && let Some(v) = self.ver()
        {
            v.on_dirty_release(inode, pid);
        }
    }

    pub(super) fn do_fsync(&self, fh: u64, datasync: bool, pid: u32) -> io::Result<()> {
        let h = self.handles.file(fh)?;
        sys::fsync(h.fd()?.as_fd(), datasync)?;
        if let Some(inode) = &h.inode
            && h.writable
            && let Some(v) = self.ver()
        {
            v.on_fsync(inode, pid);
        }
        Ok(())
    }

    pub(super) fn do_fallocate(
        &self,
        req: &Request,
        fh: u64,
        off: u64,
        len: u64,
        mode: i32,
    ) -> io::Result<()> {
        let h = self.handles.file(fh)?;
        let Source::Live(f) = &h.src else {
            return Err(err(libc::EROFS));
        };
        if let Some(inode) = &h.inode
            && let Some(v) = self.ver()
        {
            v.before_inplace_change(inode)?;
        }
        self.with_room(|| sys::fallocate(f.as_fd(), mode, off, len))?;
        if killpriv::clear_fd(f.as_fd(), req.pid(), req.uid(), None)? {
            self.attrs_changed(h.ino);
        }
        h.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn do_lseek(&self, fh: u64, offset: i64, whence: i32) -> io::Result<i64> {
        let h = self.handles.file(fh)?;
        sys::lseek(h.fd()?.as_fd(), offset, whence)
    }

    pub(super) fn do_copy_file_range(
        &self,
        req: &Request,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> io::Result<usize> {
        let hi = self.handles.file(fh_in)?;
        let ho = self.handles.file(fh_out)?;
        let Source::Live(out) = &ho.src else {
            return Err(err(libc::EROFS));
        };
        if let Some(inode) = &ho.inode
            && let Some(v) = self.ver()
        {
            v.before_daemon_write(inode, off_out)?;
        }
        let mut oi = off_in as i64;
        let mut oo = off_out as i64;
        let fin = hi.fd()?;
        let n = self.with_room(|| {
            sys::copy_file_range(fin.as_fd(), &mut oi, out.as_fd(), &mut oo, len as usize)
        })?;
        if killpriv::clear_fd(out.as_fd(), req.pid(), req.uid(), None)? {
            self.attrs_changed(ho.ino);
        }
        ho.dirty.store(true, Ordering::Relaxed);
        Ok(n)
    }

    /// ENOSPC on the daemon data path: evict history and tell the caller to
    /// retry, as long as evicting frees something.
    pub(super) fn on_write_error(&self, e: &io::Error, need: u64) -> bool {
        if e.raw_os_error() != Some(libc::ENOSPC) {
            return false;
        }
        let Some(s) = &self.store else { return false };
        let relieved = s.relieve(need, true);
        if !relieved {
            s.stats.enospc_returned.fetch_add(1, Ordering::Relaxed);
        }
        relieved
    }

    /// Run an operation that allocates space in the live tree; on ENOSPC evict
    /// history and try again while that frees something.
    pub(super) fn with_room<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        match &self.store {
            Some(s) => s.with_room(1 << 20, op).inspect_err(|e| {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    s.stats.enospc_returned.fetch_add(1, Ordering::Relaxed);
                }
            }),
            None => {
                let mut op = op;
                op()
            }
        }
    }
}
