//! Extended attributes, with `security.capability` answered from memory after the
//! first look: the kernel asks for it before a write to a file that has
//! setuid/setgid (before every write, when FUSE_HANDLE_KILLPRIV_V2 is not
//! negotiated; see `killpriv`), and a look at the backing filesystem each
//! time would cost more than the write.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;

use super::{CkptFs, err, killpriv, versions_view};
use crate::sys;

const CAPS: &[u8] = b"security.capability";
const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
const CAPS_UNKNOWN: u8 = 0;
const CAPS_ABSENT: u8 = 1;
const CAPS_PRESENT: u8 = 2;

impl CkptFs {
    fn xattr_path(
        &self,
        ino: u64,
    ) -> io::Result<(
        std::sync::Arc<super::inode::Inode>,
        std::ffi::CString,
        std::sync::Arc<std::os::fd::OwnedFd>,
    )> {
        let inode = self.inodes.get(ino)?;
        let fd = self.inodes.path_fd(&inode)?;
        let p = sys::proc_path(fd.as_raw_fd());
        Ok((inode, p, fd))
    }

    pub(super) fn do_getxattr(&self, ino: u64, name: &OsStr, size: u32) -> io::Result<Vec<u8>> {
        if versions_view::is_virtual(ino) {
            return self.view.getxattr(ino, name);
        }
        let (inode, path, _fd) = self.xattr_path(ino)?;
        if inode.fmt == libc::S_IFLNK {
            return Err(err(libc::ENODATA));
        }
        let is_caps = name.as_bytes() == CAPS;
        if is_caps && inode.caps.load(Ordering::Relaxed) == CAPS_ABSENT {
            return Err(err(libc::ENODATA));
        }
        let cname = sys::cstr(name)?;
        let r = sys::getxattr(&path, &cname, size.min(1 << 16) as usize);
        if is_caps {
            match &r {
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {
                    inode.caps.store(CAPS_ABSENT, Ordering::Relaxed)
                }
                Ok(_) => inode.caps.store(CAPS_PRESENT, Ordering::Relaxed),
                Err(_) => {}
            }
        }
        r
    }

    pub(super) fn do_listxattr(&self, ino: u64) -> io::Result<Vec<u8>> {
        if versions_view::is_virtual(ino) {
            return self.view.listxattr(ino);
        }
        let (inode, path, _fd) = self.xattr_path(ino)?;
        if inode.fmt == libc::S_IFLNK {
            return Ok(Vec::new());
        }
        let n = sys::listxattr(&path, 0)?.len();
        sys::listxattr(&path, n + 256)
    }

    pub(super) fn do_setxattr(
        &self,
        req: &fuser::Request,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> io::Result<()> {
        if versions_view::is_virtual(ino) {
            return Err(err(libc::EROFS));
        }
        let (inode, path, fd) = self.xattr_path(ino)?;
        if inode.fmt == libc::S_IFLNK {
            return Err(err(libc::EPERM));
        }
        if name.as_bytes() == CAPS {
            inode.caps.store(CAPS_UNKNOWN, Ordering::Relaxed);
        }
        sys::setxattr(&path, &sys::cstr(name)?, value, flags)?;
        if name.as_bytes() == ACL_ACCESS {
            killpriv::clear_setgid_after_acl(fd.as_fd(), &path, req.pid(), req.uid())?;
        }
        Ok(())
    }

    pub(super) fn do_removexattr(&self, ino: u64, name: &OsStr) -> io::Result<()> {
        if versions_view::is_virtual(ino) {
            return Err(err(libc::EROFS));
        }
        let (inode, path, _fd) = self.xattr_path(ino)?;
        if inode.fmt == libc::S_IFLNK {
            return Err(err(libc::EPERM));
        }
        if name.as_bytes() == CAPS {
            inode.caps.store(CAPS_UNKNOWN, Ordering::Relaxed);
        }
        sys::removexattr(&path, &sys::cstr(name)?)
    }
}
