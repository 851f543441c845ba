//! Process, signal, lock and socket calls: the daemon's start (fork, setsid,
//! the ready pipe), its signals, the store lock, per-thread filesystem ids,
//! and the control socket's peer check.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Set the process umask; returns the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(mask) }
}

/// Give this thread its own umask, cwd and root (`unshare(CLONE_FS)`), so a
/// `umask` call here no longer reaches the other threads.
pub fn unshare_fs() -> io::Result<()> {
    // SAFETY: unshare with a flag; no memory is passed.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) }).map(drop)
}

/// `fork()`: Ok(0) in the child, Ok(pid) in the parent.
///
/// # Safety
/// The caller must be single-threaded (no other thread may hold a lock the
/// child would need).
pub unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller guarantees a single thread.
    cvt(unsafe { libc::fork() })
}

/// Start a new session (detach from the terminal).
pub fn setsid() {
    // SAFETY: no preconditions; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: fresh descriptors owned by us.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Make descriptor `target` (0, 1, 2) a copy of `fd`.
pub fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    // SAFETY: both are valid descriptor numbers; dup2 replaces `target` atomically.
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// A set of signals blocked in this thread and every thread started after.
pub struct Blocked(libc::sigset_t);

/// Block `signals` (before threads start) so one thread can `wait` for them.
pub fn block_signals(signals: &[i32]) -> Blocked {
    // SAFETY: sigset_t is plain data; the calls only fill and install it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

impl Blocked {
    /// Wait for one of the blocked signals; returns its number.
    pub fn wait(&self) -> i32 {
        let mut sig = 0;
        // SAFETY: the set holds the blocked signals; sig receives one.
        unsafe { libc::sigwait(&self.0, &mut sig) };
        sig
    }
}

/// `flock(LOCK_NB)`: Ok(true) when taken, Ok(false) when someone else holds it.
pub fn try_lock(fd: BorrowedFd<'_>, exclusive: bool) -> io::Result<bool> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: plain syscall on an open fd.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), op | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `umount2(path)`, lazily (MNT_DETACH) when asked.
pub fn umount(path: &CStr, lazy: bool) -> io::Result<()> {
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(path.as_ptr(), flags) }).map(drop)
}

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred is a properly sized ucred buffer.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(cred.uid)
}

/// A connected pair of Unix stream sockets; the second stays open across exec
/// (it is for a child process).
pub fn socketpair_for_child() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) })?;
    // SAFETY: fresh fds from socketpair.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    // SAFETY: fcntl on an owned fd.
    cvt(unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) })?;
    Ok((ours, theirs))
}

/// Receive one descriptor sent with SCM_RIGHTS.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is a valid starting point.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg points at valid buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control buffer the kernel filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("no file descriptor received"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Set this thread's filesystem ids and supplementary groups (raw syscalls:
/// glibc's wrappers would broadcast the change to every thread).
pub fn set_thread_fs_ids(uid: u32, gid: u32, groups: &[libc::gid_t]) {
    // SAFETY: raw per-thread syscalls with plain integer arguments and a
    // pointer to `groups.len()` gids.
    unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr());
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
}
