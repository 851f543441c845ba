//! Name and attribute operations: getattr/setattr, mknod/mkdir/symlink/link,
//! unlink/rmdir/rename, readlink.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{FileAttr, Request, TimeOrNow};

use super::attr::to_timespec;
use super::creds::{AsCaller, CallerUmask, NewMode};
use super::inode::Inode;
use super::killpriv;
use super::{CkptFs, TTL, err, versions_view};
use crate::store::Reason;
use crate::sys;

pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub fh: Option<u64>,
}

fn retry_as_root(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

impl CkptFs {
    pub(super) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> io::Result<(FileAttr, Duration)> {
        if versions_view::is_virtual(ino) {
            return self.view.getattr(ino);
        }
        if let Some(fh) = fh
            && let Ok(h) = self.handles.file(fh)
            && h.ino == ino
        {
            let st = sys::fstat(h.fd()?.as_fd())?;
            return Ok((self.live_attr(ino, &st), TTL));
        }
        let inode = self.inodes.get(ino)?;
        Ok((self.live_attr(ino, &self.stat_inode(&inode)?), TTL))
    }

    pub(super) fn do_setattr(&self, req: &Request, ino: u64, s: SetAttr) -> io::Result<FileAttr> {
        if versions_view::is_virtual(ino) {
            return Err(err(libc::EROFS));
        }
        let inode = self.inodes.get(ino)?;
        let pfd = self.inodes.path_fd(&inode)?;
        let proc = sys::proc_path(pfd.as_raw_fd());
        let is_link = inode.fmt == libc::S_IFLNK;
        if let Some(size) = s.size {
            if !inode.is_reg() {
                return Err(err(if inode.is_dir() {
                    libc::EISDIR
                } else {
                    libc::EINVAL
                }));
            }
            // Capture and truncate as one step under the vlock: a seal linking
            // the inode into the store in between would be truncated with it.
            let v = inode.vlock.lock();
            if let Some(v) = self.ver() {
                v.before_truncate(req.pid(), &inode, size)?;
            }
            let handle = s.fh.and_then(|fh| self.handles.file(fh).ok());
            let trunc = |fd: BorrowedFd<'_>| {
                sys::ftruncate(fd, size)?;
                // The reply carries the new mode.
                killpriv::clear_fd(fd, req.pid(), req.uid(), None).map(drop)
            };
            match handle.filter(|h| h.ino == ino && h.writable) {
                Some(h) => trunc(h.fd()?.as_fd())?,
                None => trunc(self.inodes.open(&inode, libc::O_WRONLY)?.as_fd())?,
            }
            drop(v);
            if let Some(v) = self.ver() {
                v.note_dirty(&inode);
            }
        }
        if let Some(mode) = s.mode {
            if is_link {
                return Err(err(libc::EOPNOTSUPP));
            }
            sys::chmod(&proc, mode & 0o7777)?;
        }
        if s.uid.is_some() || s.gid.is_some() {
            let u = s.uid.unwrap_or(u32::MAX);
            let g = s.gid.unwrap_or(u32::MAX);
            // AT_EMPTY_PATH on an O_PATH fd changes the object itself.
            sys::fchownat(
                pfd.as_fd(),
                c"",
                u,
                g,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if s.atime.is_some() || s.mtime.is_some() {
            let conv = |t: Option<TimeOrNow>| match t {
                None => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                },
                Some(TimeOrNow::Now) => libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_NOW,
                },
                Some(TimeOrNow::SpecificTime(t)) => to_timespec(t),
            };
            let times = [conv(s.atime), conv(s.mtime)];
            if is_link {
                let (parent, name) = inode.loc.lock().clone();
                let p = self.inodes.get(parent)?;
                let pfd = self.inodes.path_fd(&p)?;
                let c = sys::cstr(OsStr::from_bytes(&name))?;
                sys::utimensat(Some(pfd.as_fd()), &c, &times, libc::AT_SYMLINK_NOFOLLOW)?;
            } else {
                sys::utimensat(None, &proc, &times, 0)?;
            }
        }
        Ok(self.live_attr(ino, &self.stat_inode(&inode)?))
    }

    pub(super) fn do_readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        if versions_view::is_virtual(ino) {
            return self.view.readlink(ino);
        }
        let inode = self.inodes.get(ino)?;
        let fd = self.inodes.path_fd(&inode)?;
        sys::readlinkat(fd.as_fd(), c"")
    }

    /// Run a create-type operation as the caller; if the backing filesystem refuses
    /// the caller (the kernel already checked permission with default_permissions,
    /// so this only happens through groups we cannot reproduce), do it as root and
    /// hand the result to the caller.
    fn create_as_caller(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        op: impl Fn(std::os::fd::BorrowedFd<'_>, &std::ffi::CStr) -> io::Result<()>,
    ) -> io::Result<FileAttr> {
        let (p, pfd, cname) = self.at(parent, name)?;
        let r = {
            let _g = AsCaller::new(req.uid(), req.gid())?;
            op(pfd.as_fd(), &cname)
        };
        match r {
            Ok(()) => {}
            Err(e) if retry_as_root(&e) && req.uid() != 0 => {
                op(pfd.as_fd(), &cname)?;
                let pst = self.stat_inode(&p)?;
                let gid = if pst.st_mode & libc::S_ISGID != 0 {
                    pst.st_gid
                } else {
                    req.gid()
                };
                sys::fchownat(
                    pfd.as_fd(),
                    &cname,
                    req.uid(),
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            Err(e) => return Err(e),
        }
        self.lookup_live(parent, name)
    }

    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        new: NewMode,
        rdev: u32,
    ) -> io::Result<FileAttr> {
        self.create_as_caller(req, parent, name, |d, n| {
            let (_u, mode) = CallerUmask::new(new);
            sys::mknodat(d.as_fd(), n, mode, rdev as u64)
        })
    }

    pub(super) fn do_mkdir(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        new: NewMode,
    ) -> io::Result<FileAttr> {
        self.create_as_caller(req, parent, name, |d, n| {
            let (_u, mode) = CallerUmask::new(new);
            sys::mkdirat(d.as_fd(), n, mode & 0o7777)
        })
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> io::Result<FileAttr> {
        let t = sys::cstr(target.as_os_str())?;
        self.create_as_caller(req, parent, name, |d, n| sys::symlinkat(&t, d.as_fd(), n))
    }

    pub(super) fn do_link(
        &self,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
    ) -> io::Result<FileAttr> {
        if versions_view::is_virtual(ino) {
            return Err(err(libc::EROFS));
        }
        let inode = self.inodes.get(ino)?;
        let src = self.inodes.path_fd(&inode)?;
        let (_, pfd, cname) = self.at(newparent, newname)?;
        sys::link_fd(src.as_fd(), pfd.as_fd(), &cname)?;
        self.lookup_live(newparent, newname)
    }

    pub(super) fn do_unlink(&self, req: &Request, parent: u64, name: &OsStr) -> io::Result<()> {
        let (_, pfd, cname) = self.at(parent, name)?;
        let Some(v) = self.ver() else {
            return sys::unlinkat(pfd.as_fd(), &cname, 0);
        };
        let path = v.child_path(parent, name);
        v.before_destroy(req.pid(), path.as_deref(), &pfd, &cname, Reason::Delete)?;
        sys::unlinkat(pfd.as_fd(), &cname, 0)?;
        if let Some(p) = path {
            v.journal_delete(&p);
        }
        Ok(())
    }

    pub(super) fn do_rmdir(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let (_, pfd, cname) = self.at(parent, name)?;
        sys::unlinkat(pfd.as_fd(), &cname, libc::AT_REMOVEDIR)
    }

    pub(super) fn do_rename(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        let (_, ofd, oname) = self.at(parent, name)?;
        let (_, nfd, nname) = self.at(newparent, newname)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        // Both paths before the rename moves anything (a renamed directory's
        // own path changes with it).
        let (from, to) = match self.ver() {
            Some(v) => (v.child_path(parent, name), v.child_path(newparent, newname)),
            None => (None, None),
        };
        if let Some(v) = self.ver().filter(|_| flags & libc::RENAME_NOREPLACE == 0) {
            if exchange {
                // Both names keep their content; each path's state before the swap
                // becomes a version of that path.
                v.before_destroy(req.pid(), from.as_deref(), &ofd, &oname, Reason::Rename)?;
            }
            v.before_destroy(req.pid(), to.as_deref(), &nfd, &nname, Reason::Rename)?;
        }
        sys::renameat2(ofd.as_fd(), &oname, nfd.as_fd(), &nname, flags)?;
        // An exchange is not journaled (see docs/FORMAT.md).
        if let (Some(v), Some(from), Some(to), false) = (self.ver(), from, to, exchange) {
            v.journal_rename(&from, &to);
        }
        self.after_rename(parent, name, newparent, newname, exchange);
        Ok(())
    }

    /// Keep inode locations in step with renames (versioning names files by path).
    fn after_rename(&self, parent: u64, name: &OsStr, np: u64, nn: &OsStr, exchange: bool) {
        let update = |dir: u64, n: &OsStr, to: (u64, Vec<u8>)| -> Option<Arc<Inode>> {
            let (_, pfd, c) = self.at(dir, n).ok()?;
            let st = sys::fstatat(pfd.as_fd(), &c).ok()?;
            let fd = sys::openat(pfd.as_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0).ok()?;
            let inode = self.inodes.intern(fd, &st).ok()?;
            *inode.loc.lock() = to;
            self.inodes.forget(inode.ino, 1);
            Some(inode)
        };
        if let Some(target) = update(np, nn, (np, nn.as_bytes().to_vec()))
            && let Some(v) = self.ver()
        {
            v.after_rename_target(&target);
        }
        if exchange {
            update(parent, name, (parent, name.as_bytes().to_vec()));
        }
    }

    pub(super) fn do_fsyncdir(&self, ino: u64, datasync: bool) -> io::Result<()> {
        if versions_view::is_virtual(ino) {
            return Ok(());
        }
        let inode = self.inodes.get(ino)?;
        let f = self
            .inodes
            .open(&inode, libc::O_RDONLY | libc::O_DIRECTORY)?;
        sys::fsync(f.as_fd(), datasync)
    }
}
