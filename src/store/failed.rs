//! Seals that failed (nearly always a full disk: no room for a version's
//! metadata): kept in a list, sealed again by the space thread once there is
//! room, and given up when space is short and only they hold their blocks.
//!
//! While listed, a failed capture's object waits in `incoming/` with its
//! record in `incoming/<name>.cap`, or, where even that could not be written,
//! in `captures`, which is then not emptied (`Sealer::log_holds_failed`). A
//! crash or an unmount leaves them to the next mount's recovery, as before.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::seal::Job;
use super::{Capture, Store, layout, unhex};
use crate::sys;

/// A retry waits this long after a failure, doubling up to `RETRY_MAX` while
/// failures keep coming: each retry reads its objects again to digest them.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A retry needs room for a metadata file and a directory per version;
/// below this much free space it would only fail again.
const RETRY_ROOM: u64 = 4 << 20;

/// The failed captures waiting for a retry.
pub(super) struct Failed {
    jobs: Vec<(String, Capture)>,
    /// No retry before this.
    due: Instant,
    wait: Duration,
    /// When a retry last took the list.
    last_retry: Option<Instant>,
}

impl Default for Failed {
    fn default() -> Self {
        Self {
            jobs: Vec::new(),
            due: Instant::now(),
            wait: RETRY_MIN,
            last_retry: None,
        }
    }
}

impl Failed {
    /// Failed captures now waiting (for `ckptfs stats`).
    pub(super) fn len(&self) -> usize {
        self.jobs.len()
    }
}

impl Store {
    /// After a failed seal: what is still in `incoming/` keeps its record as
    /// a `.cap` file (since `captures` is emptied once nothing is in flight)
    /// and waits for a retry (`retry_failed`).
    pub(super) fn keep_failed(&self, batch: &[Job]) {
        let mut f = self.sealer.failed.lock();
        for job in batch {
            let Job::Seal(name, cap) = job else { continue };
            let Ok(c) = CString::new(name.as_str()) else {
                continue;
            };
            if sys::fstatat(self.sealer.incoming.as_fd(), &c).is_err() {
                continue;
            }
            // Under `failed`: a retry clears the flag only with every record
            // that needed it taken back in flight.
            self.keep_record(name, cap);
            f.jobs.push((name.clone(), cap.clone()));
        }
        let now = Instant::now();
        // Retries that fail again wait longer. First failures do not: a
        // burst of them (one per batch while the disk is full) once pushed
        // the first retry a minute past the moment room came back.
        f.wait = if f.last_retry.is_some_and(|t| now - t < RETRY_MAX * 2) {
            (f.wait * 2).min(RETRY_MAX)
        } else {
            RETRY_MIN
        };
        f.due = now + f.wait;
        drop(f);
        // Their objects may be all that holds some blocks now (`drop_failed`).
        self.history_released();
    }

    /// Seal the failed captures again once their retry is due and there is
    /// room. Called by the space thread after it made room.
    pub(super) fn retry_failed(&self) {
        {
            let f = self.sealer.failed.lock();
            if f.jobs.is_empty() || Instant::now() < f.due {
                return;
            }
        }
        let Ok(st) = sys::statvfs(self.dir.as_fd()) else {
            return;
        };
        // Inode counts are 0 where the filesystem has no fixed number (btrfs).
        if st.f_bavail * st.f_frsize < RETRY_ROOM || (st.f_files > 0 && st.f_favail < 64) {
            return;
        }
        let jobs = {
            let mut f = self.sealer.failed.lock();
            let jobs = std::mem::take(&mut f.jobs);
            f.last_retry = Some(Instant::now());
            // In flight from here, so `captures` keeps every record until
            // they are sealed or fail (and are kept) again.
            self.count_n(jobs.len() as u64);
            self.sealer.log_holds_failed.store(false, Ordering::SeqCst);
            jobs
        };
        log::info!("sealing {} failed captures again", jobs.len());
        for (name, cap) in jobs {
            let file = CString::new(layout::cap_name(&name)).expect("no NUL");
            // Back in `captures` for the seal: it leaves no `.cap` behind.
            if self
                .write_record(self.sealer.log.read().as_ref(), &name, &cap)
                .is_ok()
            {
                let _ = sys::unlinkat(self.sealer.incoming.as_fd(), &file, 0);
            }
            self.stats.seals_retried.fetch_add(1, Ordering::Relaxed);
            self.enqueue(name, cap);
        }
    }

    /// Space is short and eviction found too little: give up failed
    /// captures whose objects nothing else holds (a file that filled the
    /// disk, then deleted), oldest first, until about `need` bytes are
    /// freed. They cannot be sealed without room, and unsealed they cannot
    /// be evicted: the live tree comes first. Returns (bytes, inodes) freed.
    pub(super) fn drop_failed(&self, need: u64) -> (u64, u64) {
        let mut f = self.sealer.failed.lock();
        if f.jobs.is_empty() {
            return (0, 0);
        }
        // Names by object inode: an inode is freed only with all of them.
        let mut by_ino: HashMap<u64, (Vec<usize>, libc::stat)> = HashMap::new();
        for (k, (name, _)) in f.jobs.iter().enumerate() {
            let Ok(c) = CString::new(name.as_str()) else {
                continue;
            };
            if let Ok(st) = sys::fstatat(self.sealer.incoming.as_fd(), &c) {
                by_ino
                    .entry(st.st_ino)
                    .or_insert((Vec::new(), st))
                    .0
                    .push(k);
            }
        }
        let mut owned: Vec<(Vec<usize>, libc::stat)> = by_ino
            .into_values()
            .filter(|(ks, st)| st.st_nlink as usize <= ks.len())
            .collect();
        owned.sort_by_key(|(ks, _)| ks[0]);
        let (mut freed, mut inodes) = (0u64, 0u64);
        let mut gone = std::collections::HashSet::new();
        for (ks, st) in owned {
            if freed >= need {
                break;
            }
            let _g = self.shares.lock.lock();
            for &k in &ks {
                let (name, cap) = &f.jobs[k];
                let c = CString::new(name.as_str()).expect("no NUL");
                if sys::unlinkat(self.sealer.incoming.as_fd(), &c, 0).is_err() {
                    continue;
                }
                let file = CString::new(layout::cap_name(name)).expect("no NUL");
                let _ = sys::unlinkat(self.sealer.incoming.as_fd(), &file, 0);
                self.shares.pending.lock().remove(name);
                self.stats.history_skipped.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "no room to seal a state of {} ({:?}, {} bytes) and nothing else to evict: given up",
                    String::from_utf8_lossy(&unhex(&cap.path_hex)),
                    cap.reason,
                    cap.size
                );
                gone.insert(k);
            }
            freed += st.st_blocks as u64 * 512;
            inodes += 1;
        }
        let mut k = 0;
        f.jobs.retain(|_| {
            k += 1;
            !gone.contains(&(k - 1))
        });
        (freed, inodes)
    }

    /// Failed captures waiting for a retry.
    pub fn failed_seals(&self) -> usize {
        self.sealer.failed.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{capture_file, reopen, store, wait_for};

    /// A capture that reaches the queues after the workers stopped (a
    /// shutdown racing a close) keeps its record, and the next open seals
    /// it. Before, its record went with `captures`, emptied as its count
    /// dropped to 0, and the next open left its content unsealed.
    #[test]
    fn a_capture_queued_after_the_workers_stopped_is_sealed_by_the_next_open() {
        let (root, s) = store("enqueue-after-stop");
        s.shutdown();
        capture_file(&root, &s, "late.bin", b"the last state");
        drop(s);
        let s = reopen(&root);
        wait_for("the late capture sealed", || {
            s.with_index(|i| i.total_versions()) == 1
        });
        s.shutdown();
        let _ = std::fs::remove_dir_all(&root);
    }
}
