//! `fuser::Filesystem` for [`CkptFs`]: each callback is a thin shim that calls
//! an operation group (`node_ops`, `file_ops`, `dir_ops`, `xattr_ops`, the
//! `.versions` view) and converts the `io::Result` to a reply once.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::creds::NewMode;
use super::op_stats::Op;
use super::{CkptFs, TTL, attr, errno, node_ops, versions_view};

impl Filesystem for CkptFs {
    fn init(&mut self, _req: &Request, cfg: &mut KernelConfig) -> io::Result<()> {
        let caps = cfg.capabilities();
        let want = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ASYNC_DIO
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_EXPORT_SUPPORT
            // No GETXATTR round trip before every write (src/fs/killpriv.rs).
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2
            // The kernel enforces POSIX ACLs (without this, default_permissions
            // checks the mode bits alone: an ACL's deny is ignored, its grant
            // refused) and caches them; umask is ours to apply, so that a
            // directory's default ACL replaces it as on a local filesystem
            // (src/fs/creds.rs, src/fs/acl.rs).
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK;
        let _ = cfg.add_capabilities(want & caps);
        // Passthrough needs CAP_SYS_ADMIN; never together with writeback cache
        // (the kernel then silently leaves passthrough off), so we never ask for it.
        let root = crate::sys::geteuid() == 0;
        if self.opts.passthrough
            && root
            && caps.contains(InitFlags::FUSE_PASSTHROUGH)
            && cfg.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && cfg.set_max_stack_depth(1).is_ok()
        {
            self.passthrough_flag.store(true, Ordering::Relaxed);
        }
        // The writeback cache, asked for, on the daemon path only: writes
        // gather in the page cache and reach us at close, fsync or writeback
        // (docs/DESIGN-NOTES.md: how each versioning trigger stays exact).
        if self.opts.writeback_cache
            && !self.passthrough()
            && caps.contains(InitFlags::FUSE_WRITEBACK_CACHE)
            && cfg
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok()
        {
            self.writeback_flag.store(true, Ordering::Relaxed);
        }
        log::info!(
            "data path: {}",
            if self.passthrough() {
                "passthrough"
            } else if self.writeback_flag.load(Ordering::Relaxed) {
                "daemon (1 MiB requests, writeback cache)"
            } else {
                "daemon (1 MiB requests)"
            }
        );
        let _ = cfg.set_max_background(64);
        let _ = cfg.set_congestion_threshold(48);
        if let Err(max) = cfg.set_max_readahead(1 << 20) {
            let _ = cfg.set_max_readahead(max);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.flush_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _t = self.timed(Op::Lookup);
        let r = if versions_view::is_virtual(parent.0) || self.is_versions_name(parent.0, name) {
            self.view.lookup(parent.0, name)
        } else {
            self.lookup_live(parent.0, name).map(|a| (a, TTL))
        };
        match r {
            Ok((a, ttl)) => reply.entry_with_ttls(&ttl, &ttl, &a, fuser::Generation(0)),
            // A live name that does not exist: node id 0 with a timeout lets the
            // kernel cache the miss (every create goes through the mount), so
            // programs probing for absent files do not pay a round trip each time.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    && !versions_view::is_virtual(parent.0) =>
            {
                // SAFETY: an all-zero stat is a valid value.
                let none = attr::to_attr(0, &unsafe { std::mem::zeroed() });
                reply.entry(&TTL, &none, fuser::Generation(0))
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _t = self.timed(Op::Forget);
        if versions_view::is_virtual(ino.0) {
            self.view.forget(ino.0, nlookup);
        } else {
            self.inodes.forget(ino.0, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = self.timed(Op::Getattr);
        match self.do_getattr(ino.0, fh.map(|f| f.0)) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _t = self.timed(Op::Setattr);
        let set = node_ops::SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh: fh.map(|f| f.0),
        };
        match self.do_setattr(req, ino.0, set) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = self.timed(Op::Readlink);
        match self.do_readlink(ino.0) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _t = self.timed(Op::Mknod);
        match self.do_mknod(req, parent.0, name, NewMode { mode, umask }, rdev) {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let _t = self.timed(Op::Mkdir);
        match self.do_mkdir(req, parent.0, name, NewMode { mode, umask }) {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.timed(Op::Unlink);
        match self.do_unlink(req, parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.timed(Op::Rmdir);
        match self.do_rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _t = self.timed(Op::Symlink);
        match self.do_symlink(req, parent.0, link_name, target) {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Rename);
        match self.do_rename(req, parent.0, name, newparent.0, newname, flags.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _t = self.timed(Op::Link);
        match self.do_link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &a, fuser::Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.timed(Op::Open);
        if versions_view::is_virtual(ino.0) {
            // With the writeback cache the kernel keeps its own size for every
            // regular file and ignores ours, so a view file that grows (a
            // history's `.index.json`) would read short: read it direct.
            let how = if self.writeback_flag.load(Ordering::Relaxed) {
                fuser::FopenFlags::FOPEN_DIRECT_IO
            } else {
                fuser::FopenFlags::FOPEN_KEEP_CACHE
            };
            return match self.view.open(ino.0, flags.0, &self.handles) {
                Ok(fh) => reply.opened(FileHandle(fh), how),
                Err(e) => reply.error(errno(e)),
            };
        }
        self.do_open(req, ino.0, flags.0, reply)
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _t = self.timed(Op::Read);
        // One buffer per request thread, reused: a fresh 1 MiB Vec per read is
        // an mmap, 256 page faults and an munmap (large allocations bypass the
        // heap), which cost more than the copy itself.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            match self.do_read(fh.0, offset, &mut buf[..size as usize]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _t = self.timed(Op::Write);
        let kill = write_flags
            .contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
            .then(|| req.pid());
        match self.do_write(fh.0, offset, data, kill) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Flush);
        // Nothing is buffered in the daemon and locks are kept by the kernel, so
        // there is nothing to do at close(): ENOSYS makes the kernel stop sending
        // FLUSH at all, saving every close() a synchronous round trip.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Release);
        self.do_release(fh.0, req.pid());
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Fsync);
        match self.do_fsync(fh.0, datasync, req.pid()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.timed(Op::Opendir);
        match self.do_opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), fuser::FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let _t = self.timed(Op::Readdir);
        self.do_readdir(ino.0, fh.0, offset, reply)
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let _t = self.timed(Op::Readdirplus);
        self.do_readdirplus(ino.0, fh.0, offset, reply)
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Releasedir);
        self.handles.remove_dir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Fsyncdir);
        match self.do_fsyncdir(ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _t = self.timed(Op::Statfs);
        match crate::sys::statvfs(self.inodes.mount_fd()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Setxattr);
        match self.do_setxattr(req, ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = self.timed(Op::Getxattr);
        match self.do_getxattr(ino.0, name, size) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = self.timed(Op::Listxattr);
        match self.do_listxattr(ino.0) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.timed(Op::Removexattr);
        match self.do_removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _t = self.timed(Op::Access);
        // default_permissions: the kernel checks access itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _t = self.timed(Op::Create);
        self.do_create(req, parent.0, name, NewMode { mode, umask }, flags, reply)
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _t = self.timed(Op::Fallocate);
        match self.do_fallocate(req, fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _t = self.timed(Op::Lseek);
        match self.do_lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _t = self.timed(Op::CopyFileRange);
        match self.do_copy_file_range(req, fh_in.0, offset_in, fh_out.0, offset_out, len) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }
}
