//! Applying the retention policy to the store: after each seal for that path, and
//! from a background sweep (which also runs `space.rs`: quotas and the reserve).
//! Deletion order is the reverse of writing: metadata first, then the object.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::index::Settled;
use super::{Store, StoreError, StoreResult, layout, now_ns};
use crate::policy::{self, Item, Keep, Rules};
use crate::sys;

/// One line of `ckptfs gc --dry-run`.
#[derive(Debug, Serialize)]
pub struct GcLine {
    pub path: String,
    pub number: u64,
    pub size: u64,
    /// Empty when the version goes.
    pub kept_by: Vec<Keep>,
}

/// Histories longer than this that are not settled have their retention
/// decided at most once a second.
const LONG_HISTORY: usize = 1000;

/// Histories up to this long are decided in full every time (as cheap as the
/// bookkeeping of a mark); longer ones are marked settled for the next decision.
const SHORT_HISTORY: usize = 64;

/// A mark to set once a decision's evictions are done, with the index's
/// count of unsettling changes when the decision read it.
type Mark = (Settled, u64);

/// What the policy sees of a version.
pub(super) fn item_of(v: &super::VersionMeta) -> Item {
    Item {
        number: v.number,
        sealed_ns: v.sealed_ns,
        pinned: v.pinned(),
    }
}

/// The incremental decision reads the records in place.
impl policy::Version for super::VersionMeta {
    fn number(&self) -> u64 {
        self.number
    }
    fn sealed_ns(&self) -> i64 {
        self.sealed_ns
    }
    fn pinned(&self) -> bool {
        self.pinned()
    }
}

impl Store {
    pub(super) fn retention_for(&self, category: &str) -> &Rules {
        self.opts
            .categories
            .get(category)
            .unwrap_or(&self.opts.retention)
    }

    fn items(&self, relpath: &[u8]) -> (Vec<Item>, String) {
        let idx = self.index.read();
        let Some(h) = idx.get(relpath) else {
            return (Vec::new(), String::new());
        };
        let cat = h
            .latest()
            .map(|l| l.category().to_string())
            .unwrap_or_default();
        (h.versions.iter().map(item_of).collect(), cat)
    }

    /// The policy decision for one path (pure; no deletion).
    pub(super) fn decide(&self, relpath: &[u8]) -> policy::Decision {
        let (items, cat) = self.items(relpath);
        policy::apply(&items, self.retention_for(&cat))
    }

    /// Whether the seal just made for `relpath` should apply its retention now.
    /// A settled history is decided incrementally, so always. Otherwise a
    /// decision costs O(versions of the path), so a long history is decided at
    /// most once a second (what it would evict waits that long).
    pub(super) fn retention_due(&self, relpath: &[u8]) -> bool {
        let (n, settled) = {
            let idx = self.index.read();
            let n = idx.get(relpath).map_or(0, |h| h.versions.len());
            (n, idx.settled(relpath).is_some())
        };
        if n <= LONG_HISTORY || settled {
            return true;
        }
        let mut last = self.sealer.retained_at.lock();
        let now = std::time::Instant::now();
        match last.get(relpath) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(1) => false,
            _ => {
                last.insert(relpath.to_vec(), now);
                true
            }
        }
    }

    /// Apply the rules to `relpath`: incrementally when retention settled its
    /// history before under the same rules, else in full. A long history that
    /// ends settled is marked so for the next time.
    pub(super) fn retain_path(&self, relpath: &[u8]) {
        // One decision at a time: a mark must describe what its own evictions left.
        let _one = self.sealer.retention.lock();
        let Some((remove, settle)) = self.retention_decision(relpath) else {
            return;
        };
        let mut all_gone = true;
        for n in remove {
            if let Err(e) = self.evict(relpath, n) {
                all_gone = false;
                log::warn!("evicting {} v{n}: {e}", String::from_utf8_lossy(relpath));
            }
        }
        if let (true, Some((s, seen))) = (all_gone, settle) {
            self.index.write().settle(relpath, s, seen);
        }
    }

    /// The versions to remove, and the mark to set once they are gone.
    fn retention_decision(&self, relpath: &[u8]) -> Option<(Vec<u64>, Option<Mark>)> {
        let (items, rules, seen) = {
            let idx = self.index.read();
            let h = idx.get(relpath)?;
            let rules = self.retention_for(h.latest()?.category());
            let seen = idx.unsettled_count();
            let newest = h.latest()?.number;
            let mark = |rules: &Rules| Settled {
                newest,
                rules: rules.clone(),
            };
            // Incremental: microseconds, so under the lock, with no copy.
            if let Some(s) = idx.settled(relpath).filter(|s| s.rules == *rules)
                && let Some(remove) = policy::after_append(&h.versions, s.newest, rules)
            {
                self.stats
                    .retention_incremental
                    .fetch_add(1, Ordering::Relaxed);
                return Some((remove, Some((mark(rules), seen))));
            }
            // In full: copied under the lock (renames and unlinks wait on it),
            // decided outside it.
            let settles = h.versions.len() > SHORT_HISTORY
                && rules.max_versions.is_none()
                && h.versions
                    .windows(2)
                    .all(|w| w[0].sealed_ns <= w[1].sealed_ns);
            let items: Vec<Item> = h.versions.iter().map(item_of).collect();
            (items, rules, settles.then(|| (mark(rules), seen)))
        };
        self.stats.retention_full.fetch_add(1, Ordering::Relaxed);
        let mut remove = policy::apply(&items, rules).remove;
        remove.sort_unstable();
        Some((remove, seen))
    }

    /// Delete one version: metadata first, then its object. Returns the bytes
    /// freed (0 while another name still holds the object's inode).
    pub(super) fn evict(&self, relpath: &[u8], number: u64) -> StoreResult<u64> {
        self.evict_counted(relpath, number).map(|(b, _)| b)
    }

    /// [`Store::evict`], also counting the inodes freed: the metadata file, the
    /// object when this was its last name, and the path's directory when it was
    /// the path's last version (many deleted small files must give back inodes,
    /// not only blocks).
    pub(super) fn evict_counted(&self, relpath: &[u8], number: u64) -> StoreResult<(u64, u64)> {
        let _q = self.quiesce.read();
        let _g = self.shares.lock.lock();
        let _d = self.sealer.dirs.lock();
        let Some(m) = self
            .index
            .read()
            .get(relpath)
            .and_then(|h| h.get(number))
            .cloned()
        else {
            return Ok((0, 0));
        };
        if m.pinned() {
            return Err(StoreError::Pinned {
                path: relpath.to_vec(),
                number,
            });
        }
        let dir = layout::version_dir(m.category(), relpath);
        let cdir = CString::new(dir).map_err(io::Error::other)?;
        let dfd = sys::openat(
            self.dir.as_fd(),
            &cdir,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        sys::unlinkat(
            dfd.as_fd(),
            &CString::new(layout::meta_name(number)).unwrap(),
            0,
        )?;
        let mut inodes = 1;
        if let Some(key) = &m.archived {
            // Nothing local but the record: the manifest goes from the bucket.
            drop(_g);
            self.forget_archived(key);
            let _ = sys::unlinkat(self.dir.as_fd(), &cdir, libc::AT_REMOVEDIR);
            self.index.write().remove(relpath, number);
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok((0, inodes));
        }
        let obj = self.object_path(&m);
        let data = obj.rsplit('/').next().unwrap_or_default().to_string();
        let freed = sys::fstatat(dfd.as_fd(), &CString::new(data.clone()).unwrap())
            .map(|st| {
                if st.st_nlink <= 1 {
                    st.st_blocks as u64 * 512
                } else {
                    0
                }
            })
            .unwrap_or(0);
        sys::unlinkat(dfd.as_fd(), &CString::new(data).unwrap(), 0)?;
        #[cfg(test)]
        self.evict_gap.pass();
        if freed > 0 {
            inodes += 1;
        }
        // The path's last version gone: its directory too (the seal worker
        // creates it and its first file under `share_lock`, which we hold).
        if sys::unlinkat(self.dir.as_fd(), &cdir, libc::AT_REMOVEDIR).is_ok() {
            inodes += 1;
        }
        self.index.write().remove(relpath, number);
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_evicted.fetch_add(freed, Ordering::Relaxed);
        Ok((freed, inodes))
    }

    /// Background sweep: time rules for every path, quotas continuously.
    /// Space first: every 250 ms, or at once when an open finds free space below
    /// the reserve.
    pub(super) fn sweeper(&self) {
        let mut tick = 0u64;
        let mut last = std::time::Instant::now();
        while !self.sealer.stop.load(Ordering::SeqCst) {
            self.space_nap(Duration::from_millis(250));
            if self.sealer.stop.load(Ordering::SeqCst) {
                break;
            }
            self.space.busy.store(true, Ordering::SeqCst);
            self.sweep_once(&mut tick, &mut last);
            self.space.busy.store(false, Ordering::SeqCst);
        }
    }

    /// One pass: space and failed seals every time, the rest at most every
    /// 500 ms.
    fn sweep_once(&self, tick: &mut u64, last: &mut std::time::Instant) {
        self.keep_room();
        self.retry_failed();
        if last.elapsed() < Duration::from_millis(500) {
            return;
        }
        *last = std::time::Instant::now();
        *tick += 1;
        if tick.is_multiple_of(20) {
            self.compress_old();
        }
        if tick.is_multiple_of(120) {
            let paths: Vec<crate::store::meta::PathKey> =
                self.index.read().paths.keys().cloned().collect();
            for p in paths {
                self.retain_path(&p);
            }
        }
    }

    /// zstd-compress versions of compressible categories older than
    /// `compress_after` whose objects the store alone holds (a version sharing a
    /// live inode is never touched). Writes `vN.data.zst` durably, then the
    /// metadata, then removes the plain object.
    pub(super) fn compress_old(&self) -> u64 {
        let z = &self.opts.compression;
        let after = i64::try_from(z.after.as_nanos()).unwrap_or(i64::MAX);
        let now = now_ns();
        let todo: Vec<super::VersionMeta> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter())
                .filter(|m| {
                    !m.compressed()
                        && m.archived.is_none()
                        && !m.digest_pending()
                        && now.saturating_sub(m.sealed_ns) >= after
                        && z.categories.iter().any(|c| c == m.category())
                })
                .cloned()
                .collect()
        });
        let mut saved = 0u64;
        for m in todo {
            if self.sealer.stop.load(Ordering::SeqCst) {
                break;
            }
            match self.compress_one(&m) {
                Ok(s) => saved += s,
                Err(e) => log::debug!("compressing {} v{}: {e}", m.display_path(), m.number),
            }
        }
        saved
    }

    fn compress_one(&self, m: &super::VersionMeta) -> io::Result<u64> {
        let _q = self.quiesce.read();
        let relpath = m.relpath();
        let dir = layout::version_dir(m.category(), relpath);
        let dfd = sys::openat(
            self.dir.as_fd(),
            &CString::new(dir).map_err(io::Error::other)?,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )?;
        let data = layout::data_name(m.number);
        let cdata = CString::new(data.clone()).map_err(io::Error::other)?;
        let st = sys::fstatat(dfd.as_fd(), &cdata)?;
        if st.st_nlink != 1 || m.size > 256 << 20 {
            return Ok(0); // shared with a live file, or too big to pack in memory
        }
        let fd = sys::openat(dfd.as_fd(), &cdata, libc::O_RDONLY, 0)?;
        let raw = self.read_all(&fd, m)?;
        let packed = zstd::encode_all(&raw[..], self.opts.compression.level)?;
        if packed.len() as u64 + 4096 >= st.st_blocks as u64 * 512 {
            return Ok(0); // not worth it
        }
        let zname = format!("{data}.zst");
        super::meta::write_atomic(dfd.as_fd(), &zname, &packed)?;
        let czname = CString::new(zname.as_str()).map_err(io::Error::other)?;
        Self::carry_acl(
            fd.as_fd(),
            sys::openat(dfd.as_fd(), &czname, libc::O_RDONLY, 0)?.as_fd(),
        );
        let _g = self.shares.lock.lock();
        // Still the same version (not evicted or unshared meanwhile)?
        let current = self
            .index
            .read()
            .get(relpath)
            .and_then(|h| h.get(m.number))
            .cloned();
        if current.as_ref().map(|c| c.object_ino) != Some(m.object_ino) {
            let _ = sys::unlinkat(
                dfd.as_fd(),
                &CString::new(zname).map_err(io::Error::other)?,
                0,
            );
            return Ok(0);
        }
        let mut m2 = m.clone();
        m2.set_origin(|o| o.compressed = true);
        m2.object_ino =
            sys::fstatat(dfd.as_fd(), &CString::new(zname).map_err(io::Error::other)?)?.st_ino;
        self.rewrite_meta(&m2)?;
        // In place (same number): a remove and insert would unsettle the history.
        self.index.write().insert(m2);
        sys::unlinkat(dfd.as_fd(), &cdata, 0)?;
        let saved = (st.st_blocks as u64 * 512).saturating_sub(packed.len() as u64);
        self.stats
            .bytes_saved_compression
            .fetch_add(saved, Ordering::Relaxed);
        Ok(saved)
    }

    /// `gc --dry-run` lines, or do it. Returns the lines and bytes freed.
    pub fn gc(&self, dry_run: bool, progress: &mut dyn FnMut(u64, u64)) -> (Vec<GcLine>, u64) {
        let paths: Vec<crate::store::meta::PathKey> =
            self.index.read().paths.keys().cloned().collect();
        let mut lines = Vec::new();
        let mut freed = 0;
        let total = paths.len() as u64;
        for (i, p) in paths.into_iter().enumerate() {
            progress(i as u64, total);
            let d = self.decide(&p);
            let hist = self.history(&p);
            for v in &hist {
                let kept_by = d.keep.get(&v.number).cloned().unwrap_or_default();
                if kept_by.is_empty() && !dry_run {
                    freed += self.evict(&p, v.number).unwrap_or(0);
                }
                lines.push(GcLine {
                    path: String::from_utf8_lossy(&p).into_owned(),
                    number: v.number,
                    size: v.size,
                    kept_by,
                });
            }
        }
        (lines, freed)
    }
}
