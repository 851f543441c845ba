//! The settle timer: seals each closed file once it has been quiet for the
//! settle time, and captures files left open and dirty for the interval.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{How, OpenDirty, Reason, Versioner};
use crate::sys;

/// Counts itself in an `AtomicUsize` while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Versioner {
    /// Seal one pending inode now if nobody writes it (else it stays pending).
    fn seal_pending(&self, ino: u64, force_reason: Option<Reason>) {
        let Ok(inode) = self.inodes.get(ino) else {
            let p = self.pending.lock().remove(&ino);
            if let Some(p) = p {
                self.seal_forgotten(p, force_reason);
            }
            return;
        };
        let _g = inode.vlock.lock();
        if self.handles.writers(ino) > 0 && force_reason.is_none() {
            if self.owed.lock().contains_key(&ino) {
                // A passthrough fsync left unchanged for the settle time while
                // its writer stays open: copy it now, before it can change.
                let writer = self.pending.lock().get(&ino).and_then(|p| p.writer.clone());
                if self.take_owed_while_open(&inode, writer) {
                    self.pending.lock().remove(&ino);
                    return;
                }
                if !self.owed.lock().contains_key(&ino) {
                    self.pending.lock().set_reason(ino, Reason::Close);
                }
            }
            // Reopened for writing: its last close will reschedule it. Until then
            // look again only after another settle time, not on every tick.
            let settle = self.opts.settle.max(Duration::from_millis(50));
            self.pending.lock().postpone(ino, Instant::now() + settle);
            return;
        }
        let _counted = Counted::new(&self.capturing);
        let Some(p) = self.pending.lock().remove(&ino) else {
            return;
        };
        let Some(relpath) = self.path_of(&inode) else {
            return;
        };
        let how = if self.handles.writers(ino) > 0 {
            How::Copy
        } else {
            How::Link
        };
        let r = self.inodes.path_fd(&inode).and_then(|fd| {
            self.capture(
                &fd,
                &relpath,
                force_reason.unwrap_or(p.reason),
                p.writer,
                how,
            )
        });
        if let Err(e) = r {
            log::warn!("sealing {}: {e}", String::from_utf8_lossy(&relpath));
        }
    }

    /// The kernel forgot the inode of a closed file before its seal was due
    /// (memory pressure evicts unused inodes): nobody has it open, so seal it
    /// by the path it had, if that path still names the same backing file.
    /// If it does not, the file was renamed or unlinked through the mount
    /// since, and those operations kept its content (`before_destroy`).
    fn seal_forgotten(&self, p: super::Pending, force_reason: Option<Reason>) {
        let Some((relpath, key)) = p.found_at else {
            return;
        };
        let _counted = Counted::new(&self.capturing);
        let r = self
            .inodes
            .get(super::ROOT_INO)
            .and_then(|root| self.inodes.path_fd(&root))
            .and_then(|root| sys::open_beneath(&root, &relpath))
            .and_then(|fd| {
                let st = sys::fstat(fd.as_fd())?;
                if (st.st_dev, st.st_ino) != key || !self.versioned(&relpath) {
                    return Ok(());
                }
                // Looked up again since: a writer's release seals it then.
                let live = self.inodes.by_backing(key);
                let _g = live.as_ref().map(|i| i.vlock.lock());
                if live
                    .as_ref()
                    .is_some_and(|i| self.handles.writers(i.ino) > 0)
                {
                    return Ok(());
                }
                let reason = force_reason.unwrap_or(p.reason);
                self.capture(&fd, &relpath, reason, p.writer, How::Link)
            });
        if let Err(e) = r {
            log::warn!("sealing {}: {e}", String::from_utf8_lossy(&relpath));
        }
    }

    pub fn seal_all_pending(&self, reason: Reason) {
        let inos = self.pending.lock().inos();
        for ino in inos {
            self.seal_pending(ino, Some(reason));
        }
    }

    pub(super) fn timer(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            // Wake at the earliest due seal, when one is scheduled, or every 50 ms.
            {
                let mut p = self.pending.lock();
                let next = p.next_due();
                let nap = next
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(50));
                if !nap.is_zero() {
                    self.wake.wait_for(&mut p, nap);
                }
            }
            let now = Instant::now();
            let due = self.pending.lock().due(now);
            for ino in due {
                self.seal_pending(ino, None);
            }
            self.interval_check(now);
            self.generation_check();
        }
    }

    /// End the burst of saves as a generation once everything closed is
    /// sealed and no save is in progress.
    fn generation_check(&self) {
        let idle = || self.settling() == 0 && !self.handles.saving(self.opts.interval);
        if let Some(g) = self.store.end_generation(self.opts.generation_quiet, idle) {
            log::info!(
                "generation @{}: {} paths, steps {:?} (complete {:?})",
                crate::store::layout::stamp(g.t),
                g.paths,
                g.steps,
                g.complete
            );
        }
    }

    /// Writers that stay open and dirty get a version every `interval_seconds`.
    fn interval_check(&self, now: Instant) {
        let every = self.opts.interval;
        let old: Vec<u64> = self
            .open_dirty
            .lock()
            .iter()
            .filter(|(_, d)| now.duration_since(d.since) >= every)
            .map(|(i, _)| *i)
            .collect();
        for ino in old {
            if self.handles.writers(ino) == 0 {
                self.open_dirty.lock().remove(&ino);
                continue;
            }
            let Ok(inode) = self.inodes.get(ino) else {
                continue;
            };
            let _g = inode.vlock.lock();
            let Ok(fd) = self.inodes.path_fd(&inode) else {
                continue;
            };
            let Ok(st) = sys::fstat(fd.as_fd()) else {
                continue;
            };
            let changed = self
                .open_dirty
                .lock()
                .get(&ino)
                .is_some_and(|d| d.mtime != sys::mtime_ns(&st));
            if changed && let Some(relpath) = self.path_of(&inode) {
                let _ = self.capture(&fd, &relpath, Reason::Interval, None, How::Copy);
            }
            self.open_dirty.lock().insert(
                ino,
                OpenDirty {
                    since: now,
                    mtime: sys::mtime_ns(&st),
                },
            );
        }
    }
}
