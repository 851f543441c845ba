//! Thin, safe wrappers over the Linux syscalls the filesystem and the store use.
//!
//! Everything returns `io::Result` with the real errno kept inside, so the fs layer
//! can hand it back to the kernel unchanged.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// Turn a `-1` return into the thread's errno.
mod process;
mod walk;

pub use process::*;
pub use walk::{open_beneath, walk_files};

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn cvt_l(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

pub fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Path through which the kernel reopens an fd (works for `O_PATH` fds too).
pub fn proc_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number")
}

pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; the returned fd is fresh and owned by us.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_path(path: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: as for openat.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: empty path with AT_EMPTY_PATH stats the fd itself (also an O_PATH fd).
    cvt(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            st.as_mut_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so the kernel filled `st`.
    Ok(unsafe { st.assume_init() })
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: valid pointers; the kernel fills st on success.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so the kernel filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// An opaque kernel file handle (`name_to_handle_at`): survives without an open fd.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KHandle {
    pub handle_type: i32,
    pub bytes: Box<[u8]>,
}

const MAX_HANDLE_SZ: usize = 128;

#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// Get the file handle of the object an (O_PATH) fd refers to.
pub fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<KHandle> {
    let mut raw = RawHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: raw is a properly sized file_handle buffer.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut raw as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        ) as libc::c_int
    })?;
    let n = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok(KHandle {
        handle_type: raw.handle_type,
        bytes: raw.f_handle[..n].into(),
    })
}

/// Open the object behind a file handle; `mount_fd` is any fd on the same filesystem.
pub fn open_by_handle(mount_fd: BorrowedFd<'_>, h: &KHandle, flags: i32) -> io::Result<OwnedFd> {
    let mut raw = RawHandle {
        handle_bytes: h.bytes.len() as u32,
        handle_type: h.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    raw.f_handle[..h.bytes.len()].copy_from_slice(&h.bytes);
    // SAFETY: raw is a valid file_handle; the fd returned is owned by us.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut raw as *mut RawHandle,
            flags | libc::O_CLOEXEC,
        ) as libc::c_int
    })?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is writable for its length.
    let n = cvt_l(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn renameat2(
    olddir: BorrowedFd<'_>,
    old: &CStr,
    newdir: BorrowedFd<'_>,
    new: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: valid C strings and fds.
    cvt(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            old.as_ptr(),
            newdir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

pub fn linkat(
    olddir: BorrowedFd<'_>,
    old: &CStr,
    newdir: BorrowedFd<'_>,
    new: &CStr,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: valid C strings and fds.
    cvt(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            old.as_ptr(),
            newdir.as_raw_fd(),
            new.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: valid C string and fd.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
    .map(drop)
}

pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    cvt_l(unsafe {
        libc::pread64(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            off as i64,
        )
    })
}

/// Write all of `buf` at `off` (pwrite until done).
pub fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = pwrite(fd, buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], off: u64) -> io::Result<usize> {
    // SAFETY: buf is readable for its length.
    cvt_l(unsafe {
        libc::pwrite64(
            fd.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            off as i64,
        )
    })
}

/// Write all of `buf` at the file's end (an `O_APPEND` fd): a short write is
/// continued, so a journal line is never left half written by an interrupt.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is readable for its length.
        let n = cvt_l(unsafe {
            libc::write(
                fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
            )
        })?;
        buf = &buf[n..];
    }
    Ok(())
}

/// The file type and mode of `dir/name`, and when its inode was born (statx
/// btime, or its ctime where the filesystem keeps no birth time; ns since
/// the epoch), in one call. Does not follow a final symlink.
pub fn mode_and_birth(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<(u32, i64)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: valid pointers; the kernel fills stx on success.
    cvt(unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_BTIME | libc::STATX_CTIME,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded, so the kernel filled `stx`.
    let stx = unsafe { stx.assume_init() };
    let ts = if stx.stx_mask & libc::STATX_BTIME != 0 {
        stx.stx_btime
    } else {
        stx.stx_ctime
    };
    Ok((
        stx.stx_mode as u32,
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec as i64,
    ))
}

/// Read until `buf` is full or EOF.
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], mut off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match pread(fd, &mut buf[done..], off) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Directory entries of an open directory fd (name, d_ino, d_type), `.`/`..` excluded.
pub fn read_dir_fd(fd: OwnedFd) -> io::Result<Vec<(Vec<u8>, u64, u8)>> {
    let raw = fd.as_raw_fd();
    std::mem::forget(fd);
    // SAFETY: fdopendir takes ownership of the fd (forgotten above); closedir
    // releases both.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    // From the start: `fd` may be a dup of one read before (they share the
    // position), e.g. the store's `incoming/` read at every mount.
    // SAFETY: `dir` is a valid DIR* until the closedir below.
    unsafe { libc::rewinddir(dir) };
    let mut out = Vec::new();
    loop {
        // SAFETY: errno is thread-local; reset to tell EOF from error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `dir` is a valid DIR* until the closedir below.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            // SAFETY: errno is thread-local; read right after readdir.
            let err = unsafe { *libc::__errno_location() };
            // SAFETY: `dir` is valid and closed exactly once, here.
            unsafe { libc::closedir(dir) };
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
            return Ok(out);
        }
        // SAFETY: readdir returned a valid entry that lives until the next call.
        let ent = unsafe { &*ent };
        // SAFETY: d_name is NUL-terminated inside the entry.
        let name = unsafe { CStr::from_ptr(ent.d_name.as_ptr()) }.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), ent.d_ino, ent.d_type));
    }
}

pub fn getxattr(path: &CStr, name: &CStr, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    // SAFETY: buf is writable for size bytes (size 0 asks for the length).
    let n = cvt_l(unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            size,
        )
    })?;
    if size == 0 {
        return Ok(vec![0; n]);
    }
    buf.truncate(n);
    Ok(buf)
}

pub fn listxattr(path: &CStr, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    // SAFETY: as getxattr.
    let n = cvt_l(unsafe {
        libc::listxattr(path.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, size)
    })?;
    if size == 0 {
        return Ok(vec![0; n]);
    }
    buf.truncate(n);
    Ok(buf)
}

pub fn setxattr(path: &CStr, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    // SAFETY: value readable for its length.
    cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn removexattr(path: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings.
    cvt(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
}

/// Clone `src` into `dst` with FICLONE (reflink); fails with EOPNOTSUPP/EXDEV/EINVAL
/// where the filesystem cannot share extents.
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its argument.
    cvt(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) }).map(drop)
}

/// Copy `len` bytes from `src` to `dst` at the same offsets, in kernel.
pub fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let mut off_in: i64 = 0;
    let mut off_out: i64 = 0;
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        // SAFETY: offsets are valid pointers; fds are open.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                chunk,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    Ok(())
}

pub fn fsync_dir_at(dir: BorrowedFd<'_>) -> io::Result<()> {
    let fd = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    fsync(fd.as_fd_ref(), false)
}

/// Small helper so call sites read `fd.as_fd_ref()` without importing AsFd everywhere.
pub trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

pub fn statvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: the kernel fills st.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded, so the kernel filled `st`.
    Ok(unsafe { st.assume_init() })
}

/// Flush the whole filesystem holding `fd` (one barrier for a batch of writes).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// A stat's mtime in nanoseconds since the epoch.
pub fn mtime_ns(st: &libc::stat) -> i64 {
    st.st_mtime * 1_000_000_000 + st.st_mtime_nsec
}

/// Same inode state as far as `stat` can tell: no write or metadata change
/// in between (any write moves mtime and ctime; ctime also catches chmod).
pub fn same_state(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_ino == b.st_ino
        && a.st_size == b.st_size
        && mtime_ns(a) == mtime_ns(b)
        && (a.st_ctime, a.st_ctime_nsec) == (b.st_ctime, b.st_ctime_nsec)
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// `fchownat`; `u32::MAX` leaves an id unchanged.
pub fn fchownat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    uid: u32,
    gid: u32,
    flags: i32,
) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, flags) }).map(drop)
}

pub fn chmod(path: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid C string.
    cvt(unsafe { libc::chmod(path.as_ptr(), mode) }).map(drop)
}

/// `utimensat` relative to `dir`, or to the working directory when None.
pub fn utimensat(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    times: &[libc::timespec; 2],
    flags: i32,
) -> io::Result<()> {
    let d = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: valid fd, C string and two timespecs.
    cvt(unsafe { libc::utimensat(d, path.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size as i64) }).map(drop)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open fd.
    cvt(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off as i64, len as i64) }).map(drop)
}

pub fn lseek(fd: BorrowedFd<'_>, off: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall on an open fd.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// One `copy_file_range` call; advances both offsets.
pub fn copy_file_range(
    src: BorrowedFd<'_>,
    src_off: &mut i64,
    dst: BorrowedFd<'_>,
    dst_off: &mut i64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: valid fds; the offsets are valid pointers for the call.
    cvt_l(unsafe {
        libc::copy_file_range(src.as_raw_fd(), src_off, dst.as_raw_fd(), dst_off, len, 0)
    })
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings and fd.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// Give the inode behind `fd` (any fd, O_PATH included) a new name `dir/name`:
/// `linkat` through `/proc/self/fd`, which works without CAP_DAC_READ_SEARCH.
pub fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let from = proc_path(fd.as_raw_fd());
    // SAFETY: valid C strings; AT_FDCWD with an absolute /proc path.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

/// Tell the kernel the file's cached pages will not be read again.
pub fn fadvise_dontneed(fd: BorrowedFd<'_>) {
    // SAFETY: advisory syscall on an open fd.
    unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Drop the clean cached pages of a file (dirty ones start writing back).
pub fn drop_cache(fd: &OwnedFd) {
    if let Ok(f) = open_path(&proc_path(fd.as_raw_fd()), libc::O_RDONLY, 0) {
        fadvise_dontneed(f.as_fd());
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns the new limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) })?;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) })?;
    }
    Ok(r.rlim_cur)
}

/// Lower the calling thread's CPU priority (nice `n`): background work (digests,
/// retention) then yields the cores to the programs whose saves it follows.
pub fn nice_this_thread(n: i32) {
    // SAFETY: gettid has no arguments; setpriority on our own thread id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, n);
    }
}

/// Give the heap's free pages back to the system. Loading the index parses
/// every metadata file on 8 threads; without this the parse buffers stay
/// resident (glibc keeps per-thread arenas) for the daemon's life.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no arguments but the pad; glibc only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dups share the directory position: reading through one dup must not
    /// leave the next read of the same directory empty (the store reads
    /// `incoming/` and the archive's directory this way, more than once).
    #[test]
    fn a_directory_read_twice_through_dups_lists_the_same_names() {
        let root = std::env::temp_dir().join(format!("ckptfs-readdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(root.join(n), b"x").unwrap();
        }
        let c = CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
        let fd = open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        let names = |fd: &OwnedFd| {
            let mut v: Vec<Vec<u8>> = read_dir_fd(fd.try_clone().unwrap())
                .unwrap()
                .into_iter()
                .map(|e| e.0)
                .filter(|n| n != b"." && n != b"..")
                .collect();
            v.sort();
            v
        };
        let first = names(&fd);
        assert_eq!(first, [b"a", b"b", b"c"]);
        assert_eq!(names(&fd), first);
        let _ = std::fs::remove_dir_all(&root);
    }
}
