//! Walking the live tree and opening beneath its root (for `snapshot`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{openat, read_dir_fd};

/// Regular files under `dir`, as relative paths, not following symlinks;
/// `skip_top` names an entry of the top level to leave out (the store).
pub fn walk_files(
    dir: BorrowedFd<'_>,
    prefix: Vec<u8>,
    skip_top: &[u8],
    out: &mut Vec<Vec<u8>>,
    depth: usize,
) {
    if depth > 256 {
        return;
    }
    let Ok(d) = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
        return;
    };
    let Ok(entries) = read_dir_fd(d) else {
        return;
    };
    for (name, _, t) in entries {
        if prefix.is_empty() && name == skip_top {
            continue;
        }
        let mut p = prefix.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&name);
        match t {
            libc::DT_REG => out.push(p),
            libc::DT_DIR => {
                let Ok(c) = CString::new(name) else { continue };
                if let Ok(sub) = openat(
                    dir,
                    &c,
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                ) {
                    walk_files(sub.as_fd(), p, skip_top, out, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// Open `relpath` under `root` without following symlinks or leaving the tree.
pub fn open_beneath(root: &OwnedFd, relpath: &[u8]) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    const RESOLVE_BENEATH: u64 = 0x08;
    let c = CString::new(relpath).map_err(io::Error::other)?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: openat2 with a properly sized open_how; the fd is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}
