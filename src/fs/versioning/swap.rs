//! The inode swap: before a rewrite, the name gets a fresh inode and the old
//! one (with the old content) stays in the store, so no byte is copied.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Inode, SWAP_PREFIX, Versioner};
use crate::sys;

impl Versioner {
    /// Give the name of `inode` a fresh empty inode with the same attributes, so the
    /// old one (now in the store) is never written again. The caller checked that
    /// nobody has it open and no user hard link shares it.
    pub(super) fn swap_fresh(&self, inode: &Arc<Inode>) -> io::Result<()> {
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
            sys::fchown(f.as_fd(), st.st_uid, st.st_gid)?;
            sys::fchmod(f.as_fd(), st.st_mode & 0o7777)?;
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
        // although the seal then re-reads the old version from disk. Not in
        // this OPEN: it was most of its time (`cold.rs`).
        self.cold.drop_later(fd);
        *inode.passthrough.lock() = std::sync::Weak::new();
        Ok(())
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
