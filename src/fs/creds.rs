//! Run a create-type operation as the calling user, so new files belong to the caller.
//!
//! The daemon runs as root; switching the whole process would race other request
//! threads, so the guard switches only this thread's fs ids and groups with raw
//! syscalls (glibc's wrappers would broadcast to every thread) and restores them on drop.

use std::io;

pub struct AsCaller {
    active: bool,
}

fn caller_groups(pid: u32) -> Vec<libc::gid_t> {
    // The kernel does not send supplementary groups; /proc has them.
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl AsCaller {
    /// Switch to `uid`/`gid` when the daemon is root and the caller is not.
    pub fn new(uid: u32, gid: u32, pid: u32) -> io::Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || (uid == 0 && gid == 0) {
            return Ok(Self { active: false });
        }
        let groups = caller_groups(pid);
        // SAFETY: raw per-thread syscalls; arguments are plain integers / a valid slice.
        unsafe {
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr());
            libc::syscall(libc::SYS_setfsgid, gid);
            libc::syscall(libc::SYS_setfsuid, uid);
        }
        Ok(Self { active: true })
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let root: [libc::gid_t; 1] = [0];
        // SAFETY: restoring this thread's ids to root's.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, 0);
            libc::syscall(libc::SYS_setfsgid, 0);
            libc::syscall(libc::SYS_setgroups, 1usize, root.as_ptr());
        }
    }
}
