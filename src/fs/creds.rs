//! Run a create-type operation as the calling user, so new files belong to the caller
//! and take the caller's umask.
//!
//! The daemon runs as root; switching the whole process would race other request
//! threads, so the guard switches only this thread's fs ids and groups with raw
//! syscalls (glibc's wrappers would broadcast to every thread) and restores them on drop.

use std::cell::Cell;
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

thread_local! {
    /// Has this thread its own umask (`unshare(CLONE_FS)`)? None: not tried yet.
    static OWN_UMASK: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The caller's umask on this thread while a file, directory or node is
/// created.
///
/// With FUSE_DONT_MASK the kernel sends the mode unmasked with the umask
/// beside it: the backing filesystem then applies the thread's umask only
/// where the parent has no default ACL, and the default ACL otherwise, as a
/// local filesystem does for the caller. The daemon's process umask is 0 (see
/// `daemon`), so each request thread first takes its own. Where it cannot, the
/// mode is masked here: right everywhere but under a default ACL.
pub struct CallerUmask {
    own: bool,
}

/// A create request's mode and the caller's umask, not yet applied
/// (FUSE_DONT_MASK).
#[derive(Clone, Copy, Debug)]
pub struct NewMode {
    pub mode: u32,
    pub umask: u32,
}

impl CallerUmask {
    /// Returns the guard and the mode to create with.
    pub fn new(NewMode { mode, umask }: NewMode) -> (Self, u32) {
        let own = OWN_UMASK.with(|c| {
            if let Some(own) = c.get() {
                return own;
            }
            let own = match crate::sys::unshare_fs() {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("unshare(CLONE_FS): {e}; umask applied to the mode instead");
                    false
                }
            };
            c.set(Some(own));
            own
        });
        if !own {
            return (Self { own }, mode & !umask);
        }
        crate::sys::umask(umask & 0o777);
        (Self { own }, mode)
    }
}

impl Drop for CallerUmask {
    fn drop(&mut self) {
        if self.own {
            crate::sys::umask(0);
        }
    }
}
