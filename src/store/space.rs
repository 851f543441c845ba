//! Space safety: the live tree comes first, history is a guest.
//!
//! - Every unpinned version can be evicted when space is short, oldest first
//!   after what the policy drops anyway (`policy::pressure_order`); a version
//!   that still shares its inode with a live file frees nothing and is skipped.
//! - A reserve of free space is kept ahead of the next save: `min_free_bytes`
//!   plus the largest recent save (one file, or one burst of files sealed
//!   together: a checkpoint is many files) times 1.5, learned from what
//!   was sealed ([`SaveSizes`]), or a fixed `reserve_bytes`.
//! - The space thread evicts whenever free space falls below the reserve, and
//!   the fs layer asks [`Store::under_pressure`] at each open for writing so it
//!   can serve that open where ENOSPC is caught (the daemon data path).
//! - Copies made for history (unshare, copied captures, metadata) that meet
//!   ENOSPC evict and retry; when nothing evictable is left, history gives way
//!   (the capture is skipped, a shared version is dropped), unless a pin needs it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::{Reason, Store, VersionMeta, now_ns};
use crate::policy::{self, Candidate, Item, Reserve};
use crate::sys;

/// Headroom = the largest recent save × 3/2.
const SAFETY_NUM: u64 = 3;
const SAFETY_DEN: u64 = 2;
/// Saves this old no longer count for the estimate.
const WINDOW_NS: i64 = 24 * 3600 * 1_000_000_000;
/// A burst ends after this long; a steady stream of saves is many bursts.
const MAX_SPAN_NS: i64 = 60 * 1_000_000_000;
/// How long a writer that met ENOSPC waits for captures still being sealed.
const SEAL_WAIT: Duration = Duration::from_secs(10);
/// At most this many finished bursts are remembered.
const MAX_BURSTS: usize = 1024;
/// After a search for room that evicted nothing, the next one waits this
/// long, doubling up to `FRUITLESS_MAX`, unless history may have become
/// evictable since (see `Space::changed`). Such a search stats every
/// version's object: 0.3 s for 30,000 versions, every 250 ms, on a disk
/// full of live files.
const FRUITLESS_MIN: Duration = Duration::from_secs(1);
const FRUITLESS_MAX: Duration = Duration::from_secs(16);

/// Why versions were evicted (for the counters and the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `max_store_bytes` or `min_free_bytes` of the global or a category block.
    Quota,
    /// Free space below the reserve, or a write met ENOSPC.
    Pressure,
}

/// The sizes of recent saves: the largest single version and the largest burst.
/// Pure bookkeeping over (time, path, size); no I/O.
#[derive(Debug)]
pub struct SaveSizes {
    /// Seals closer than this to the previous one belong to the same burst.
    gap_ns: i64,
    /// Finished bursts: (last seal time, bytes, largest single version).
    done: VecDeque<(i64, u64, u64)>,
    cur: Option<Burst>,
}

#[derive(Debug)]
struct Burst {
    start: i64,
    last: i64,
    /// Each path counts once per burst, at its largest: a file saved ten times
    /// in a burst needs the room of one save, not ten.
    by_path: HashMap<Vec<u8>, u64>,
}

impl Burst {
    fn bytes(&self) -> u64 {
        self.by_path.values().sum()
    }
    fn largest(&self) -> u64 {
        self.by_path.values().copied().max().unwrap_or(0)
    }
}

impl SaveSizes {
    pub fn new(gap: Duration) -> Self {
        Self {
            gap_ns: gap.as_nanos() as i64,
            done: VecDeque::new(),
            cur: None,
        }
    }

    /// A new state of `path`, `size` bytes, sealed at `t` (ns since the epoch).
    pub fn record(&mut self, t: i64, path: &[u8], size: u64) {
        let joins = self
            .cur
            .as_ref()
            .is_some_and(|b| (t - b.last).abs() <= self.gap_ns && t - b.start <= MAX_SPAN_NS);
        if !joins && let Some(b) = self.cur.take() {
            self.done.push_back((b.last, b.bytes(), b.largest()));
            if self.done.len() > MAX_BURSTS {
                self.done.pop_front();
            }
        }
        let b = self.cur.get_or_insert_with(|| Burst {
            start: t,
            last: t,
            by_path: HashMap::new(),
        });
        b.last = b.last.max(t);
        let e = b.by_path.entry(path.to_vec()).or_default();
        *e = (*e).max(size);
    }

    /// (largest single version, largest burst) among saves within the window.
    pub fn largest(&mut self, now: i64) -> (u64, u64) {
        while self.done.front().is_some_and(|(t, ..)| now - t > WINDOW_NS) {
            self.done.pop_front();
        }
        let mut one = 0;
        let mut burst = 0;
        for (_, b, l) in &self.done {
            burst = burst.max(*b);
            one = one.max(*l);
        }
        if let Some(c) = self.cur.as_ref().filter(|c| now - c.last <= WINDOW_NS) {
            burst = burst.max(c.bytes());
            one = one.max(c.largest());
        }
        (one, burst)
    }
}

/// Inodes kept free: 2% of the filesystem's, at least 256, at most a quarter.
fn min_inodes(total: u64) -> u64 {
    (total / 50).max(256).min(total / 4)
}

/// Does a seal of this reason record new bytes written by a program (a save)?
/// Displaced old states (overwrite, rename, delete…) are not saves.
pub fn is_save(r: Reason) -> bool {
    matches!(r, Reason::Close | Reason::Fsync | Reason::Interval)
}

/// The space state, for `ckptfs stats` and the decisions here.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpaceStatus {
    /// Free bytes on the store's filesystem (available to unprivileged users).
    pub free: u64,
    pub total: u64,
    /// `min_free_bytes` resolved.
    pub min_free: u64,
    /// Room kept for the next save (learned, or `reserve_bytes`).
    pub headroom: u64,
    /// Free space wanted: `min_free + headroom` (capped at half the filesystem).
    pub reserve: u64,
    /// The largest single version and burst of versions among recent saves.
    pub largest_version: u64,
    pub largest_burst: u64,
    /// Free inodes, and how many are kept free (each version takes one or
    /// two: a filesystem full of small deleted files runs out of inodes first).
    pub free_inodes: u64,
    pub min_free_inodes: u64,
    /// Free space or free inodes are below the reserve.
    pub pressure: bool,
    /// The store shares the live tree's filesystem (so eviction helps writers).
    pub same_fs: bool,
}

/// State of the space thread.
pub(super) struct Space {
    sizes: Mutex<SaveSizes>,
    /// The last computed reserve (read on every open for writing).
    reserve: std::sync::atomic::AtomicU64,
    kick: Mutex<bool>,
    wake: Condvar,
    /// The space thread is in a pass (evicting, compressing, sweeping).
    pub(super) busy: std::sync::atomic::AtomicBool,
    /// Bumped when a live file is unlinked or replaced (its versions may no
    /// longer share its blocks). With the index's changes, the epoch of
    /// `fruitless`.
    changed: std::sync::atomic::AtomicU64,
    /// The last search for room that evicted nothing, by category.
    fruitless: Mutex<HashMap<Option<String>, Fruitless>>,
}

/// A search for room that evicted nothing: when, at which epoch, and how
/// long the next waits if nothing changes.
#[derive(Clone, Copy)]
struct Fruitless {
    at: std::time::Instant,
    epoch: u64,
    wait: Duration,
}

impl Space {
    pub(super) fn new(settle: Duration) -> Self {
        // Files of one checkpoint are closed one after the other and sealed a
        // settle time later; a few seconds between seals is still one save.
        let gap = (settle * 2).max(Duration::from_secs(2));
        Self {
            sizes: Mutex::new(SaveSizes::new(gap)),
            reserve: std::sync::atomic::AtomicU64::new(0),
            kick: Mutex::new(false),
            wake: Condvar::new(),
            busy: std::sync::atomic::AtomicBool::new(false),
            changed: std::sync::atomic::AtomicU64::new(0),
            fruitless: Mutex::new(HashMap::new()),
        }
    }
}

impl Store {
    /// Learn the size of saves from the history already in the store (a remount
    /// knows how big checkpoints are before the first new one).
    pub(super) fn learn_from_index(&self) {
        let since = now_ns() - WINDOW_NS;
        let idx = self.index.read();
        let mut v: Vec<(i64, &[u8], u64)> = idx
            .paths
            .iter()
            .flat_map(|(p, h)| {
                h.versions
                    .iter()
                    .filter(|m| m.sealed_ns >= since && is_save(m.reason()))
                    .map(move |m| (m.sealed_ns, &p[..], m.size))
            })
            .collect();
        v.sort_by_key(|e| e.0);
        let mut s = self.space.sizes.lock();
        for (t, p, n) in v {
            s.record(t, p, n);
        }
    }

    /// A program finished writing `relpath` (its last writer closed it): a save
    /// of `size` bytes, for the reserve's estimate.
    pub fn note_save(&self, relpath: &[u8], size: u64) {
        self.space.sizes.lock().record(now_ns(), relpath, size);
    }

    /// Free bytes and total bytes of the filesystem holding the store.
    pub(super) fn fs_space(&self) -> io::Result<(u64, u64)> {
        let s = sys::statvfs(self.dir.as_fd())?;
        Ok((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
    }

    pub fn space_status(&self) -> io::Result<SpaceStatus> {
        let st = sys::statvfs(self.dir.as_fd())?;
        let (free, total) = (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize);
        // Inode counts are 0 where the filesystem has no fixed number (btrfs).
        let (free_inodes, min_free_inodes) = (st.f_favail, min_inodes(st.f_files));
        let r = &self.opts.retention;
        let min_free = r.min_free.map_or(0, |s| s.resolve(total));
        let (largest_version, largest_burst) = self.space.sizes.lock().largest(now_ns());
        let headroom = match r.reserve {
            Reserve::Auto => largest_version.max(largest_burst) / SAFETY_DEN * SAFETY_NUM,
            Reserve::Fixed(s) => s.resolve(total),
            Reserve::None => 0,
        };
        // Never ask for more than half the disk: beyond that the reserve would
        // only empty the store without making any save possible.
        let reserve = min_free
            .saturating_add(headroom)
            .min(total / 2)
            .max(min_free);
        self.space.reserve.store(reserve, Ordering::Relaxed);
        Ok(SpaceStatus {
            free_inodes,
            min_free_inodes,
            free,
            total,
            min_free,
            headroom,
            reserve,
            largest_version,
            largest_burst,
            pressure: self.shares.same_fs && (free < reserve || free_inodes < min_free_inodes),
            same_fs: self.shares.same_fs,
        })
    }

    /// Is free space below the reserve right now? Asked at each open for
    /// writing; wakes the space thread to evict when it is. Always false when
    /// the store is on another filesystem (evicting would not help the writer).
    pub fn under_pressure(&self) -> bool {
        if !self.shares.same_fs {
            return false;
        }
        let Ok(s) = sys::statvfs(self.dir.as_fd()) else {
            return false;
        };
        let short = s.f_bavail * s.f_frsize < self.space.reserve.load(Ordering::Relaxed)
            || s.f_favail < min_inodes(s.f_files);
        if short {
            self.kick_space();
        }
        short
    }

    /// Wake the space thread (space is short, or the store shuts down).
    pub(super) fn kick_space(&self) {
        *self.space.kick.lock() = true;
        self.space.wake.notify_one();
    }

    /// Sleep until kicked or `d` passed.
    pub(super) fn space_nap(&self, d: Duration) {
        let mut k = self.space.kick.lock();
        if !*k {
            self.space.wake.wait_for(&mut k, d);
        }
        *k = false;
    }

    /// One pass of the space thread: quotas per category block, then the global
    /// quotas and the reserve.
    pub(super) fn keep_room(&self) {
        for (cat, r) in &self.opts.categories {
            let need = self.quota_deficit(r, Some(cat));
            if need > 0 {
                self.evict_for_space(Some(cat), need, 0, Cause::Quota);
            }
        }
        let need = self.quota_deficit(&self.opts.retention, None);
        if need > 0 {
            self.evict_for_space(None, need, 0, Cause::Quota);
        }
        if let Ok(s) = self.space_status()
            && s.pressure
        {
            self.evict_for_pressure(
                s.reserve.saturating_sub(s.free),
                s.min_free_inodes.saturating_sub(s.free_inodes),
            );
        }
    }

    /// Evict for free space; when that is not enough, give up the failed
    /// captures that alone hold blocks (`drop_failed`: unsealed, no
    /// eviction reaches them). Not behind the search's back-off: it looks
    /// only at the failed captures, usually none. Returns bytes and inodes
    /// freed, as `evict_for_space`.
    fn evict_for_pressure(&self, need: u64, need_inodes: u64) -> u64 {
        let got = self.evict_for_space(None, need, need_inodes, Cause::Pressure);
        if got >= need.saturating_add(need_inodes) {
            return got;
        }
        let (b, k) = self.drop_failed(need.saturating_sub(got).max(1));
        got + b + k
    }

    /// Bytes over `r`'s quotas for one category (or the whole store).
    fn quota_deficit(&self, r: &policy::Rules, category: Option<&str>) -> u64 {
        let mut need = 0u64;
        if let Some(max) = r.max_store_bytes {
            need = need.max(self.store_bytes_in(category).saturating_sub(max));
        }
        if let (Some(min), Ok((free, total))) = (r.min_free, self.fs_space()) {
            let want = min.resolve(total);
            // Only then walk the index (this runs every 250 ms).
            if want > free && self.store_bytes_in(category) > 0 {
                need = need.max(want - free);
            }
        }
        need
    }

    /// Bytes the store holds (each object inode counted once), for one category
    /// or all.
    pub(super) fn store_bytes_in(&self, category: Option<&str>) -> u64 {
        let idx = self.index.read();
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for h in idx.paths.values() {
            for v in &h.versions {
                if category.is_none_or(|c| c == v.category()) && seen.insert(v.object_ino) {
                    total += v.size;
                }
            }
        }
        total
    }

    /// Bytes the store holds (each object inode counted once).
    pub fn store_bytes(&self) -> u64 {
        self.store_bytes_in(None)
    }

    /// Space is short (a write met ENOSPC, or free space is below the reserve):
    /// evict until `need` bytes are freed or nothing evictable is left.
    pub(super) fn make_room(&self, need: u64) -> u64 {
        // ENOSPC may mean no inodes as well as no blocks: free some of both.
        self.evict_for_pressure(need, 64)
    }

    /// Would deleting this version's object free its blocks? Not while a live
    /// file (or a user's hard link) still shares the inode.
    fn frees_something(&self, m: &VersionMeta) -> bool {
        let Ok(c) = CString::new(self.object_path(m)) else {
            return false;
        };
        let Ok(st) = sys::fstatat(self.dir.as_fd(), &c) else {
            return false;
        };
        let ours = self.index.read().sharing_count(st.st_ino)
            + self
                .shares
                .pending
                .lock()
                .values()
                .filter(|(i, _)| *i == st.st_ino)
                .count();
        st.st_nlink as usize <= ours
    }

    /// Evict (in `policy::pressure_order`) versions of `category` (or any) until
    /// `need` bytes and `need_inodes` inodes are freed. Returns the bytes freed
    /// (inodes freed count as one byte each, so freeing only inodes is progress).
    /// Pins never bend.
    fn evict_for_space(
        &self,
        category: Option<&str>,
        need: u64,
        need_inodes: u64,
        cause: Cause,
    ) -> u64 {
        if need == 0 && need_inodes == 0 {
            return 0;
        }
        // What can be evicted does not depend on why: one back-off for the
        // quota and the pressure searches of a category.
        let key = category.map(str::to_owned);
        let Some(epoch) = self.search_due(&key) else {
            return 0;
        };
        self.stats.space_searches.fetch_add(1, Ordering::Relaxed);
        let (paths, cands) = {
            let idx = self.index.read();
            let mut paths = Vec::new();
            let mut cands = Vec::new();
            for (p, h) in &idx.paths {
                let cat = h.latest().map(|l| l.category()).unwrap_or("");
                let items: Vec<Item> = h.versions.iter().map(super::retention::item_of).collect();
                let d = policy::apply(&items, self.retention_for(cat));
                let drop: HashSet<u64> = d.remove.into_iter().collect();
                let i = paths.len();
                for (m, item) in h.versions.iter().zip(items) {
                    if category.is_some_and(|c| c != m.category()) {
                        continue;
                    }
                    cands.push(Candidate {
                        path: i,
                        policy_removes: drop.contains(&item.number),
                        item,
                    });
                }
                paths.push(p.clone());
            }
            (paths, cands)
        };
        let mut freed = 0u64;
        let mut freed_inodes = 0u64;
        let mut evicted = 0u64;
        for (i, n) in policy::pressure_order(&cands) {
            let Some(m) = self
                .index
                .read()
                .get(&paths[i])
                .and_then(|h| h.get(n))
                .cloned()
            else {
                continue;
            };
            if !self.frees_something(&m) {
                continue;
            }
            match self.evict_counted(&paths[i], n) {
                Ok((b, k)) => {
                    freed += b;
                    freed_inodes += k;
                    evicted += 1;
                    // The policy wanted it kept for its age: operators hear of it.
                    let within = self.retention_for(m.category()).keep_within;
                    if matches!(cause, Cause::Pressure)
                        && within.is_some_and(|w| now_ns() - m.sealed_ns < w.as_nanos() as i64)
                    {
                        self.stats
                            .evicted_within_keep
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => log::warn!("evicting {} v{n}: {e}", String::from_utf8_lossy(&paths[i])),
            }
            if freed >= need && freed_inodes >= need_inodes {
                break;
            }
        }
        if evicted > 0 {
            let s = &self.stats;
            match cause {
                Cause::Quota => {
                    s.evicted_quota.fetch_add(evicted, Ordering::Relaxed);
                    s.bytes_evicted_quota.fetch_add(freed, Ordering::Relaxed);
                }
                Cause::Pressure => {
                    s.evicted_pressure.fetch_add(evicted, Ordering::Relaxed);
                    s.bytes_evicted_pressure.fetch_add(freed, Ordering::Relaxed);
                }
            }
            log::info!(
                "space {}: evicted {evicted} versions, {freed} bytes, {freed_inodes} inodes{}",
                match cause {
                    Cause::Quota => "quota",
                    Cause::Pressure => "pressure",
                },
                category.map(|c| format!(" of {c}")).unwrap_or_default()
            );
        }
        self.searched(key, epoch, freed + freed_inodes);
        freed + freed_inodes
    }

    /// The epoch a search of `key` starts at, or None while the last one
    /// found nothing and neither the epoch nor the clock has moved enough.
    fn search_due(&self, key: &Option<String>) -> Option<u64> {
        let epoch = self.space_epoch();
        let last = self.space.fruitless.lock().get(key).copied();
        let wait = last.is_some_and(|f| f.epoch == epoch && f.at.elapsed() < f.wait);
        (!wait).then_some(epoch)
    }

    /// After a search of `key` that started at `epoch`: one that freed
    /// nothing makes the next wait, twice as long as the last if nothing
    /// changed in between.
    fn searched(&self, key: Option<String>, epoch: u64, freed: u64) {
        let mut fruitless = self.space.fruitless.lock();
        if freed > 0 {
            fruitless.remove(&key);
            return;
        }
        let wait = match fruitless.get(&key) {
            Some(f) if f.epoch == epoch => (f.wait * 2).min(FRUITLESS_MAX),
            _ => FRUITLESS_MIN,
        };
        let at = std::time::Instant::now();
        fruitless.insert(key, Fruitless { at, epoch, wait });
    }

    /// What a fruitless search depends on: the versions (sealed, evicted,
    /// unshared, pinned), and live files letting go of theirs
    /// (`Space::changed`). Outside the mount only the clock tells.
    fn space_epoch(&self) -> u64 {
        self.index.read().changes() + self.space.changed.load(Ordering::Relaxed)
    }

    /// History may have become evictable (a live file went): the next
    /// search for room does not wait.
    pub(super) fn history_released(&self) {
        self.space.changed.fetch_add(1, Ordering::Relaxed);
    }

    /// Run `op`; while it fails with ENOSPC and eviction frees something, evict
    /// about `need` bytes and run it again. When nothing is evictable but
    /// captures are still being sealed (they become evictable once sealed),
    /// wait for them (at most 10 s) before giving up.
    pub fn with_room<T>(&self, need: u64, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.retry_enospc(need, true, op)
    }

    /// [`Store::with_room`] for the sealing workers, which must not wait for
    /// themselves.
    pub(super) fn with_room_nowait<T>(
        &self,
        need: u64,
        op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        self.retry_enospc(need, false, op)
    }

    fn retry_enospc<T>(
        &self,
        need: u64,
        wait: bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match op() {
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.shares.same_fs => {
                    if !self.relieve(need, wait) {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }

    /// Something met ENOSPC: evict about `need` bytes; when nothing is
    /// evictable but captures are still being sealed (evictable once sealed),
    /// and `wait`, wait for them and try again. True if room was made.
    pub fn relieve(&self, need: u64, wait: bool) -> bool {
        if !self.shares.same_fs {
            // The store is elsewhere: evicting would not give the writer room.
            return false;
        }
        self.stats.enospc_evictions.fetch_add(1, Ordering::Relaxed);
        let need = need.max(1 << 20);
        self.make_room(need) > 0 || (wait && self.wait_seals(SEAL_WAIT) && self.make_room(need) > 0)
    }

    /// Wait until no capture is being sealed, at most `d`; true if some were.
    fn wait_seals(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let _h = self.hurry();
        let mut n = self.sealer.inflight.lock();
        let had = *n > 0;
        while *n > 0 {
            if self.sealer.idle.wait_until(&mut n, deadline).timed_out() {
                break;
            }
        }
        had
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_burst_is_one_checkpoint_of_many_files() {
        let mut s = SaveSizes::new(Duration::from_secs(3));
        let t0 = 1_800_000_000 * S;
        // checkpoint-1: three files sealed a second apart; then a pause.
        for (k, f) in ["a", "b", "c"].iter().enumerate() {
            s.record(
                t0 + k as i64 * S,
                format!("checkpoint-1/{f}").as_bytes(),
                8 << 20,
            );
        }
        // checkpoint-2 a minute later: two files, one of them big.
        s.record(t0 + 60 * S, b"checkpoint-2/a", 8 << 20);
        s.record(t0 + 61 * S, b"checkpoint-2/b", 20 << 20);
        assert_eq!(s.largest(t0 + 62 * S), (20 << 20, 28 << 20));
        // A day later both have left the window.
        s.record(t0 + 2 * 86400 * S, b"x", 1 << 20);
        assert_eq!(s.largest(t0 + 2 * 86400 * S), (1 << 20, 1 << 20));
    }

    #[test]
    fn a_file_saved_again_in_a_burst_counts_once() {
        let mut s = SaveSizes::new(Duration::from_secs(3));
        let t0 = 1_800_000_000 * S;
        for k in 0..10 {
            s.record(t0 + k * S, b"train.log", 100 << 20);
        }
        assert_eq!(s.largest(t0 + 10 * S), (100 << 20, 100 << 20));
    }

    #[test]
    fn a_steady_stream_is_cut_into_bounded_bursts() {
        let mut s = SaveSizes::new(Duration::from_secs(3));
        let t0 = 1_800_000_000 * S;
        // A new 1 MiB file every second for ten minutes.
        for k in 0..600 {
            s.record(t0 + k * S, format!("f{k}").as_bytes(), 1 << 20);
        }
        let (_, burst) = s.largest(t0 + 600 * S);
        assert!(burst <= 61 << 20, "{burst}");
        assert!(burst >= 59 << 20, "{burst}");
    }
}
