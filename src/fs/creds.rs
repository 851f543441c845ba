//! Run a create-type operation as the calling user, so new files belong to the caller.
//!
//! The daemon runs as root; switching the whole process would race other request
//! threads, so the guard switches only this thread's fs ids and groups with raw
//! syscalls (glibc's wrappers would broadcast to every thread) and restores them on drop.

use std::io;

pub struct AsCaller {
    active: bool,
}

impl AsCaller {
    /// Switch to `uid`/`gid` when the daemon is root and the caller is not.
    ///
    /// Supplementary groups are dropped rather than looked up (a /proc read per
    /// create): when the caller's access comes only through one of them the
    /// backing filesystem refuses, and the caller redoes the operation as root
    /// and chowns the result — the kernel already checked access
    /// (default_permissions).
    pub fn new(uid: u32, gid: u32) -> io::Result<Self> {
        if crate::sys::geteuid() != 0 || (uid == 0 && gid == 0) {
            return Ok(Self { active: false });
        }
        crate::sys::set_thread_fs_ids(uid, gid, &[]);
        Ok(Self { active: true })
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        crate::sys::set_thread_fs_ids(0, 0, &[0]);
    }
}
