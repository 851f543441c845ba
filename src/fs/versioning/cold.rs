//! Handing back the cached pages of inodes that left the live tree, off the
//! request path. An O_TRUNC save swaps in a fresh inode and the old one
//! (now only history) keeps its page cache; dropping 64 MiB of it took
//! 3.7 ms inside the writer's OPEN (most of that open's time), where a native
//! truncate pays the same. Done by this thread, the writer's next writes
//! overlap it and still reuse the freed pages.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError, bounded};

use crate::sys;

/// Inodes waiting for their pages to be dropped; each holds an O_PATH fd.
/// When full, the request drops them itself (a burst of big unlinks).
const QUEUE: usize = 256;

pub(super) struct Cold {
    tx: Sender<Arc<OwnedFd>>,
}

impl Cold {
    pub(super) fn start() -> Self {
        let (tx, rx) = bounded::<Arc<OwnedFd>>(QUEUE);
        // Ends when the versioner (the only sender) is dropped.
        let spawned = std::thread::Builder::new()
            .name("ckptfs-cold".into())
            .spawn(move || {
                // Woken at nice 0 it took the CPU from the request thread
                // that woke it, before that thread could answer the OPEN
                // (a 3.9 ms stall in strace).
                sys::nice_this_thread(crate::store::BACKGROUND_NICE);
                for fd in rx {
                    sys::drop_cache(&fd);
                }
            });
        if let Err(e) = spawned {
            log::warn!("no thread for dropping cold pages ({e}): requests drop them");
        }
        Self { tx }
    }

    /// Drop `fd`'s cached pages soon (now, if the thread is behind or gone).
    pub(super) fn drop_later(&self, fd: Arc<OwnedFd>) {
        match self.tx.try_send(fd) {
            Ok(()) => {}
            Err(TrySendError::Full(fd) | TrySendError::Disconnected(fd)) => sys::drop_cache(&fd),
        }
    }
}
