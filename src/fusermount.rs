//! Mounting as a non-root user: ask the setuid `fusermount3` helper to open
//! /dev/fuse and mount, and receive the fuse fd over a socket (the protocol
//! libfuse uses: `_FUSE_COMMFD` names our end, the fd arrives as SCM_RIGHTS).
//! fuser's own path opens /dev/fuse first and gives up when that is not allowed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

pub fn mount(mountpoint: &Path, options: &str) -> io::Result<OwnedFd> {
    // The child must inherit its end (no CLOEXEC on it).
    let (ours, theirs) = crate::sys::socketpair_for_child()?;
    let out = Command::new("fusermount3")
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .arg("-o")
        .arg(options)
        .arg("--")
        .arg(mountpoint)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("fusermount3: {e}")))?;
    drop(theirs);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "fusermount3: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    crate::sys::recv_fd(ours.as_fd())
        .map_err(|e| io::Error::new(e.kind(), format!("fusermount3: {e}")))
}
