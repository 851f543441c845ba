//! Digests of big versions, taken after the saves that made them. On two
//! cores the BLAKE3 of a 64 MiB version was most of a save's CPU, and the
//! next save paid for it (issue 15: fsync'd saves at 0.78 of native, 0.94
//! without the digest). A version of at least [`LATER_MIN`] bytes is sealed
//! with its head and tail read (classification) and no digest, flagged
//! `digest_pending` in its metadata; this thread digests it once no capture
//! has come for [`QUIET`], or at the latest [`MAX_WAIT`] after its seal, and
//! rewrites the metadata and the index record in place. A crash leaves the
//! flag in the metadata: the next mount queues those versions again.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Store, now_ns};
use crate::sys;

/// Versions this big are digested later (a 64 MiB BLAKE3 is ~20 ms of a core).
pub(super) const LATER_MIN: u64 = 8 << 20;
/// No capture for this long: the saves are over, digest now.
const QUIET: Duration = Duration::from_millis(250);
/// A version waits at most this long for quiet: a mount that never stops
/// writing still gets its digests, at the workers' nice.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct Later {
    queue: Mutex<VecDeque<(Vec<u8>, u64, Instant)>>,
    wake: Condvar,
    /// Queued or being digested (`ckptfs wait` waits for them).
    pending: AtomicU64,
    /// When the last capture was queued (ns since the epoch).
    last_capture_ns: AtomicI64,
}

impl Later {
    /// A capture was queued: the mount is not quiet.
    pub(super) fn busy_now(&self) {
        self.last_capture_ns.store(now_ns(), Ordering::Relaxed);
    }
}

impl Store {
    /// Digest `relpath`'s version `number` later.
    pub(super) fn digest_later(&self, relpath: &[u8], number: u64) {
        self.later.pending.fetch_add(1, Ordering::SeqCst);
        self.later
            .queue
            .lock()
            .push_back((relpath.to_vec(), number, Instant::now()));
        self.later.wake.notify_one();
    }

    /// Versions waiting for their digest.
    pub fn digests_pending(&self) -> u64 {
        self.later.pending.load(Ordering::SeqCst)
    }

    /// Queue what a crash (or an unmount before quiet) left without a digest.
    pub(super) fn requeue_pending_digests(&self) {
        let todo: Vec<(Vec<u8>, u64)> = self.with_index(|i| {
            i.iter()
                .flat_map(|(p, h)| {
                    h.versions
                        .iter()
                        .filter(|m| m.digest_pending())
                        .map(move |m| (p.to_vec(), m.number))
                })
                .collect()
        });
        for (p, n) in todo {
            self.digest_later(&p, n);
        }
    }

    /// The digest thread: one version at a time, oldest first, each once the
    /// mount is quiet or it has waited long enough.
    pub(super) fn digester(&self) {
        sys::nice_this_thread(super::seal::BACKGROUND_NICE);
        loop {
            let next = {
                let mut q = self.later.queue.lock();
                loop {
                    if self.sealer.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Some(&(_, _, at)) = q.front() {
                        let quiet_for = now_ns()
                            .saturating_sub(self.later.last_capture_ns.load(Ordering::Relaxed));
                        let quiet = quiet_for >= QUIET.as_nanos() as i64
                            && *self.sealer.inflight.lock() == 0;
                        if quiet || at.elapsed() >= MAX_WAIT {
                            break q.pop_front().expect("front was there");
                        }
                    }
                    self.later.wake.wait_for(&mut q, Duration::from_millis(50));
                }
            };
            let (p, n, _) = next;
            if let Err(e) = self.digest_one(&p, n) {
                self.stats.error(&self.stats.errors_seal);
                log::error!("digest of {} v{n}: {e}", String::from_utf8_lossy(&p));
            }
            self.later.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn digest_one(&self, relpath: &[u8], number: u64) -> io::Result<()> {
        loop {
            let get = || self.with_index(|i| i.get(relpath).and_then(|h| h.get(number)).cloned());
            // Evicted, archived or digested meanwhile: nothing to do.
            let Some(m) = get().filter(|m| m.digest_pending() && m.archived.is_none()) else {
                return Ok(());
            };
            let fd = self.open_object(&m)?;
            let ino = sys::fstat(std::os::fd::AsFd::as_fd(&fd))?.st_ino;
            let digest = if m.compressed() {
                super::Digest::of(blake3::hash(&self.read_all(&fd, &m)?))
            } else {
                super::seal::digest_of(&fd, m.size)?
            };
            // An unshare may have re-pointed the object's name at a copy while
            // we read (the live inode then takes a write): read again if the
            // name is not the inode we read.
            let _q = self.quiesce.read();
            let _g = self.shares.lock.lock();
            let mut idx = self.index.write();
            let Some(cur) = idx.get(relpath).and_then(|h| h.get(number)).cloned() else {
                return Ok(());
            };
            if !cur.digest_pending() || cur.archived.is_some() {
                return Ok(());
            }
            let c = std::ffi::CString::new(self.object_path(&cur)).map_err(io::Error::other)?;
            if sys::fstatat(self.dir(), &c)?.st_ino != ino {
                continue;
            }
            let mut m2 = cur;
            m2.digest = digest;
            m2.set_origin(|o| o.digest_pending = false);
            self.rewrite_meta(&m2)?;
            // In place (same number): pins and marks stay.
            idx.insert(m2);
            self.stats.digests_later.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }
}
