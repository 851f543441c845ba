//! Name and attribute operations: getattr/setattr, mknod/mkdir/symlink/link,
//! unlink/rmdir/rename, readlink.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{FileAttr, Request, TimeOrNow};

use super::attr::to_timespec;
use super::creds::AsCaller;
use super::inode::Inode;
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
            self.before_truncate(req, &inode, size)?;
            let handle = s.fh.and_then(|fh| self.handles.file(fh).ok());
            let r = match handle.filter(|h| h.ino == ino && h.writable) {
                // SAFETY: plain syscall on an open fd.
                Some(h) => sys::cvt(unsafe { libc::ftruncate(h.fd()?.as_raw_fd(), size as i64) }),
                None => {
                    let f = self.inodes.open(&inode, libc::O_WRONLY)?;
                    // SAFETY: plain syscall on an owned fd.
                    sys::cvt(unsafe { libc::ftruncate(f.as_raw_fd(), size as i64) })
                }
            };
            r?;
            drop(v);
            self.note_dirty(&inode);
        }
        if let Some(mode) = s.mode {
            if is_link {
                return Err(err(libc::EOPNOTSUPP));
            }
            // SAFETY: proc path is a valid C string.
            sys::cvt(unsafe { libc::chmod(proc.as_ptr(), mode & 0o7777) })?;
        }
        if s.uid.is_some() || s.gid.is_some() {
            let u = s.uid.unwrap_or(u32::MAX);
            let g = s.gid.unwrap_or(u32::MAX);
            // SAFETY: AT_EMPTY_PATH on an O_PATH fd changes the object itself.
            sys::cvt(unsafe {
                libc::fchownat(
                    pfd.as_raw_fd(),
                    c"".as_ptr(),
                    u,
                    g,
                    libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
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
            // SAFETY: times points at two timespecs.
            let r = if is_link {
                let (parent, name) = inode.loc.lock().clone();
                let p = self.inodes.get(parent)?;
                let pfd = self.inodes.path_fd(&p)?;
                let c = sys::cstr(OsStr::from_bytes(&name))?;
                // SAFETY: valid fd, C string and two timespecs.
                unsafe {
                    libc::utimensat(
                        pfd.as_raw_fd(),
                        c.as_ptr(),
                        times.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                }
            } else {
                // SAFETY: valid C string and two timespecs.
                unsafe { libc::utimensat(libc::AT_FDCWD, proc.as_ptr(), times.as_ptr(), 0) }
            };
            sys::cvt(r)?;
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
                // SAFETY: valid fd and name.
                sys::cvt(unsafe {
                    libc::fchownat(
                        pfd.as_raw_fd(),
                        cname.as_ptr(),
                        req.uid(),
                        gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                })?;
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
        mode: u32,
        rdev: u32,
    ) -> io::Result<FileAttr> {
        self.create_as_caller(req, parent, name, |d, n| {
            // SAFETY: valid fd and name.
            sys::cvt(unsafe { libc::mknodat(d.as_raw_fd(), n.as_ptr(), mode, rdev as u64) })
                .map(drop)
        })
    }

    pub(super) fn do_mkdir(
        &self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        mode: u32,
    ) -> io::Result<FileAttr> {
        self.create_as_caller(req, parent, name, |d, n| {
            // SAFETY: valid fd and name.
            sys::cvt(unsafe { libc::mkdirat(d.as_raw_fd(), n.as_ptr(), mode & 0o7777) }).map(drop)
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
        self.create_as_caller(req, parent, name, |d, n| {
            // SAFETY: valid C strings and fd.
            sys::cvt(unsafe { libc::symlinkat(t.as_ptr(), d.as_raw_fd(), n.as_ptr()) }).map(drop)
        })
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
        // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc path works always.
        let from = sys::proc_path(src.as_raw_fd());
        // SAFETY: valid C strings; AT_FDCWD with an absolute path.
        sys::cvt(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                pfd.as_raw_fd(),
                cname.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })?;
        self.lookup_live(newparent, newname)
    }

    pub(super) fn do_unlink(&self, req: &Request, parent: u64, name: &OsStr) -> io::Result<()> {
        let (_, pfd, cname) = self.at(parent, name)?;
        self.before_destroy(req, parent, name, &pfd, &cname, Reason::Delete)?;
        sys::unlinkat(pfd.as_fd(), &cname, 0)
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
        if flags & libc::RENAME_NOREPLACE == 0 {
            if exchange {
                // Both names keep their content; each path's state before the swap
                // becomes a version of that path.
                self.before_destroy(req, parent, name, &ofd, &oname, Reason::Rename)?;
            }
            self.before_destroy(req, newparent, newname, &nfd, &nname, Reason::Rename)?;
        }
        sys::renameat2(ofd.as_fd(), &oname, nfd.as_fd(), &nname, flags)?;
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
        if let Some(target) = update(np, nn, (np, nn.as_bytes().to_vec())) {
            self.after_rename_target(&target);
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
