//! Clearing setuid and setgid when an unprivileged caller writes or truncates.
//!
//! The daemon negotiates FUSE_HANDLE_KILLPRIV_V2: without it the kernel asks
//! for `security.capability` (a GETXATTR round trip) before *every* write(2),
//! because FUSE leaves the superblock without SB_NOSEC. With it the kernel
//! marks inodes without setuid/setgid as needing no check, and leaves the
//! clearing to the server. `security.capability` itself is dropped by the
//! backing filesystem when the daemon (or a passthrough write) writes the
//! backing file; the setuid/setgid bits are not, because the daemon's
//! credentials hold CAP_FSETID. So the daemon clears them here, by the
//! kernel's rule (`setattr_should_drop_suidgid`): for a caller without
//! CAP_FSETID, setuid always, setgid when the group may execute or the
//! caller is not in the file's group.
//!
//! Passthrough writes never reach the daemon, so a file with these bits is
//! opened for writing on the daemon data path (`needs_daemon_path`).

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;

const CAP_FSETID: u32 = 4;

/// What /proc says of the caller: effective capabilities, fs gid and
/// supplementary groups.
struct Caller {
    cap_eff: u64,
    fsgid: u32,
    groups: Vec<u32>,
}

fn caller(pid: u32) -> Option<Caller> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
    };
    let ids = |v: &str| -> Vec<u32> {
        v.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    Some(Caller {
        cap_eff: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
        // Real, effective, saved, fs.
        fsgid: *ids(field("Gid:")?).get(3)?,
        groups: ids(field("Groups:").unwrap_or("")),
    })
}

/// The permission bits after a write or truncate by a caller without
/// CAP_FSETID, if they change. `in_group`: is the caller in the file's group.
fn killed(mode: u32, in_group: impl FnOnce() -> bool) -> Option<u32> {
    let mut m = mode & 0o7777;
    m &= !libc::S_ISUID;
    if m & libc::S_ISGID != 0 && (m & libc::S_IXGRP != 0 || !in_group()) {
        m &= !libc::S_ISGID;
    }
    (m != mode & 0o7777).then_some(m)
}

/// Could a write by an unprivileged caller change this mode? Such a file is
/// written on the daemon data path, where each write says whether to clear.
pub(super) fn needs_daemon_path(mode: u32) -> bool {
    mode & (libc::S_ISUID | libc::S_ISGID) != 0
}

/// Does the caller lack CAP_FSETID? When /proc does not say, a caller other
/// than root is taken to lack it: clearing where the kernel would not is the
/// safe side.
fn lacks_fsetid(c: Option<&Caller>, uid: u32) -> bool {
    match c {
        Some(c) => c.cap_eff & (1 << CAP_FSETID) == 0,
        None => uid != 0,
    }
}

/// Is `c` (unknown: no) in group `gid`?
fn in_group(c: Option<&Caller>, gid: u32) -> bool {
    c.is_some_and(|c| c.fsgid == gid || c.groups.contains(&gid))
}

/// Clear setuid/setgid on the open file `fd`, whose stat is `st` (its mode
/// is updated), for a change by `pid`/`uid`. `lacks_fsetid`: the kernel's
/// word on a write (`FUSE_WRITE_KILL_SUIDGID`); None for O_TRUNC, truncate,
/// fallocate and copy_file_range, whose flag fuser does not pass, so /proc
/// is asked (only for files with the bits; see the function `lacks_fsetid`). True if
/// the mode changed.
pub(super) fn clear(
    fd: BorrowedFd<'_>,
    st: &mut libc::stat,
    pid: u32,
    uid: u32,
    lacks_fsetid: Option<bool>,
) -> io::Result<bool> {
    if !needs_daemon_path(st.st_mode) {
        return Ok(false);
    }
    // /proc is read only when something depends on it.
    let c = (lacks_fsetid.is_none() || st.st_mode & libc::S_ISGID != 0)
        .then(|| caller(pid))
        .flatten();
    let lacks = lacks_fsetid.unwrap_or_else(|| self::lacks_fsetid(c.as_ref(), uid));
    let new = lacks
        .then(|| killed(st.st_mode, || in_group(c.as_ref(), st.st_gid)))
        .flatten();
    let Some(m) = new else { return Ok(false) };
    sys::fchmod(fd, m)?;
    st.st_mode = (st.st_mode & libc::S_IFMT) | m;
    Ok(true)
}

/// [`clear`] for a caller without the file's stat at hand.
pub(super) fn clear_fd(
    fd: BorrowedFd<'_>,
    pid: u32,
    uid: u32,
    lacks: Option<bool>,
) -> io::Result<bool> {
    clear(fd, &mut sys::fstat(fd)?, pid, uid, lacks)
}

/// Setting an access ACL drops setgid when the caller is neither in the
/// file's group nor holds CAP_FSETID (the kernel's `posix_acl_update_mode`).
/// The backing filesystem applied that rule to the daemon's credentials,
/// which hold it; so it is applied here for the caller. `fd` may be an
/// `O_PATH` descriptor, which cannot be fchmod'ed: `path` names the file.
pub(super) fn clear_setgid_after_acl(
    fd: BorrowedFd<'_>,
    path: &std::ffi::CStr,
    pid: u32,
    uid: u32,
) -> io::Result<()> {
    let st = sys::fstat(fd)?;
    if st.st_mode & libc::S_ISGID == 0 || st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(());
    }
    let c = caller(pid);
    if lacks_fsetid(c.as_ref(), uid) && !in_group(c.as_ref(), st.st_gid) {
        sys::chmod(path, st.st_mode & 0o7777 & !libc::S_ISGID)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setuid_always_goes_and_setgid_unless_a_member_may_not_execute() {
        let member = || true;
        let stranger = || false;
        assert_eq!(killed(libc::S_IFREG | 0o4755, member), Some(0o755));
        assert_eq!(killed(0o6775, member), Some(0o775));
        // Setgid without group execute (mandatory locking): kept for members.
        assert_eq!(killed(0o2745, member), None);
        assert_eq!(killed(0o2745, stranger), Some(0o745));
        assert_eq!(killed(0o6745, member), Some(0o2745));
        assert_eq!(killed(0o755, stranger), None);
        assert!(!needs_daemon_path(0o1777));
        assert!(needs_daemon_path(0o2664));
        assert!(needs_daemon_path(0o4600));
    }

    #[test]
    fn the_caller_is_read_from_proc() {
        let me = caller(std::process::id()).expect("/proc/self/status");
        assert_eq!(me.cap_eff & (1 << CAP_FSETID) != 0, sys::geteuid() == 0);
        // SAFETY: plain syscall.
        let gid = unsafe { libc::getegid() };
        assert!(in_group(Some(&me), gid));
        assert!(!in_group(None, gid));
        assert!(caller(u32::MAX - 1).is_none());
    }
}
