//! Generations (format 2): the moments when a burst of saves has settled, "the
//! end of one checkpoint". The store gathers what is sealed into a burst; the
//! fs layer, which knows what is open for writing, asks it to close the burst
//! once the mount is quiet (`Store::end_generation`). Each generation is one
//! JSON line in `generations`: its instant, how many paths changed, the
//! top-level names they were under, the steps saved and which of those steps
//! had every file sealed complete.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::layout::GENERATIONS;
use super::{VersionMeta, hex};
use crate::sys;

/// How many top-level names a generation records (the rest are counted).
const MAX_TOPS: usize = 16;
/// A daemon's open keeps this many of the newest lines.
const KEEP_LINES: usize = 100_000;

/// One generation, as stored and as `ckptfs generations --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The instant (ns since the epoch, UTC, whole microseconds): the whole
    /// tree as of this generation is `.versions/@<stamp(t)>/`.
    pub t: i64,
    /// Paths with a new version (or a journaled delete or rename) in the burst.
    pub paths: u64,
    /// Top-level names those paths were under ("" for files at the top), hex,
    /// at most 16.
    pub tops_hex: Vec<String>,
    /// Steps (`classify::step_of`) of which a state was saved in the burst.
    pub steps: Vec<u64>,
    /// Those of `steps` whose every file was sealed complete.
    pub complete: Vec<u64>,
}

/// What has been sealed since the last generation.
#[derive(Default)]
struct Burst {
    /// Last activity (a seal, a duplicate save, a journaled change), ns.
    last_ns: i64,
    paths: HashSet<Vec<u8>>,
    steps: BTreeSet<u64>,
}

#[derive(Default)]
pub struct Generations {
    fd: Option<OwnedFd>,
    pub list: Vec<Generation>,
    burst: Burst,
    /// Files of each step whose newest sealed state was incomplete (since this
    /// open): a step is complete when none is left.
    incomplete: HashMap<u64, HashSet<Vec<u8>>>,
    /// The generation each complete step first reached.
    first_complete: BTreeMap<u64, usize>,
    /// A generation was recorded since `take_for_upload`.
    changed: bool,
}

fn top(p: &[u8]) -> &[u8] {
    match p.iter().position(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b"",
    }
}

impl Generations {
    /// Read `generations` (a missing file is empty); the daemon's open (`write`)
    /// keeps the newest lines, rewrites the file when it dropped some, and keeps
    /// it open for appending. Unreadable lines go to `problems`.
    pub fn open(
        store: BorrowedFd<'_>,
        write: bool,
        problems: &mut Vec<String>,
    ) -> io::Result<Self> {
        let bytes = match super::meta::read_at(store, GENERATIONS) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut list = Vec::new();
        let mut torn = false;
        for (n, _, g) in super::meta::json_lines::<Generation>(&bytes) {
            match g {
                Ok(g) => list.push(g),
                Err(_) => {
                    torn = true;
                    problems.push(format!("{GENERATIONS}: line {n} unreadable, skipped"));
                }
            }
        }
        // Appended in time order; sort anyway so lookups can binary-search
        // even if a clock stepped back.
        list.sort_by_key(|g| g.t);
        let dropped = list.len().saturating_sub(KEEP_LINES);
        list.drain(..dropped);
        let mut me = Self {
            list,
            ..Self::default()
        };
        for (i, g) in me.list.iter().enumerate() {
            for s in &g.complete {
                me.first_complete.entry(*s).or_insert(i);
            }
        }
        if write {
            if torn || dropped > 0 {
                let mut out = Vec::new();
                for g in &me.list {
                    out.extend(line(g));
                }
                super::meta::write_atomic(store, GENERATIONS, &out)?;
            }
            me.fd = Some(append_fd(store)?);
        }
        Ok(me)
    }

    /// The file's bytes (for the archive's copy), when generations were
    /// recorded since the last call.
    pub fn take_for_upload(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(self.list.iter().flat_map(line).collect())
    }

    /// Adopt `bytes` (another copy of the file, e.g. from the archive) when
    /// this store has no generations yet; rewrites the file.
    pub fn adopt(&mut self, store: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
        if !self.list.is_empty() {
            return Ok(0);
        }
        let list: Vec<Generation> = super::meta::json_lines(bytes)
            .filter_map(|(_, _, g)| g.ok())
            .collect();
        let mut out = Vec::new();
        for g in &list {
            out.extend(line(g));
        }
        super::meta::write_atomic(store, GENERATIONS, &out)?;
        for (i, g) in list.iter().enumerate() {
            for s in &g.complete {
                self.first_complete.entry(*s).or_insert(i);
            }
        }
        let n = list.len();
        self.list = list;
        if self.fd.is_some() {
            // The file was replaced: append to the new one.
            self.fd = Some(append_fd(store)?);
        }
        Ok(n)
    }

    /// A version was sealed at `now`.
    pub fn sealed(&mut self, m: &VersionMeta, now: i64) {
        let p = m.relpath().to_vec();
        self.burst.last_ns = now;
        if let Some(s) = m.step() {
            let set = self.incomplete.entry(s).or_default();
            if m.complete() == Some(false) && !m.reason().kept_before_change() {
                set.insert(p.clone());
            } else {
                // A complete state, or the file left (deleted, renamed over,
                // rewritten: its new state will be sealed in turn).
                set.remove(&p);
            }
            if set.is_empty() {
                self.incomplete.remove(&s);
            }
            if !m.reason().kept_before_change() {
                self.burst.steps.insert(s);
            }
        }
        self.burst.paths.insert(p);
    }

    /// Something happened at `now` that belongs to the burst: a journaled
    /// change of `p`, or a save identical to the last version (no path).
    pub fn touched(&mut self, p: Option<&[u8]>, now: i64) {
        self.burst.last_ns = now;
        if let Some(p) = p {
            self.burst.paths.insert(p.to_vec());
        }
    }

    /// Has the burst been quiet for `quiet_ns` at `now`? (False when empty.)
    pub fn quiet(&self, now: i64, quiet_ns: i64) -> bool {
        !self.burst.paths.is_empty() && now - self.burst.last_ns >= quiet_ns
    }

    /// Close the burst as a generation at `now` (rounded down to the
    /// microsecond, the precision of `@<T>` names). None when nothing changed.
    pub fn close(&mut self, now: i64) -> io::Result<Option<Generation>> {
        if self.burst.paths.is_empty() {
            return Ok(None);
        }
        let b = std::mem::take(&mut self.burst);
        let mut tops: Vec<&[u8]> = b.paths.iter().map(|p| top(p)).collect();
        tops.sort();
        tops.dedup();
        tops.truncate(MAX_TOPS);
        let t = now - now.rem_euclid(1000);
        let t = self.list.last().map_or(t, |g| t.max(g.t + 1000));
        let steps: Vec<u64> = b.steps.into_iter().collect();
        let g = Generation {
            t,
            paths: b.paths.len() as u64,
            tops_hex: tops.iter().map(|p| hex(p)).collect(),
            complete: steps
                .iter()
                .copied()
                .filter(|s| !self.incomplete.contains_key(s))
                .collect(),
            steps,
        };
        if let Some(fd) = &self.fd {
            // Rare and small: synced, so a generation listed is one kept.
            sys::write_all(fd.as_fd(), &line(&g))?;
            sys::fsync(fd.as_fd(), true)?;
        }
        let i = self.list.len();
        for s in &g.complete {
            self.first_complete.entry(*s).or_insert(i);
        }
        self.list.push(g.clone());
        self.changed = true;
        Ok(Some(g))
    }

    /// The instant of the first generation in which step `s` was complete.
    pub fn step_at(&self, s: u64) -> Option<i64> {
        self.first_complete.get(&s).map(|&i| self.list[i].t)
    }
}

impl super::Store {
    /// Close the burst of saves as a generation when it has been quiet for
    /// `quiet`, nothing is waiting to be sealed, and `idle` (the fs layer:
    /// nothing open for writing) agrees. Returns the generation made.
    pub fn end_generation(
        &self,
        quiet: std::time::Duration,
        idle: impl FnOnce() -> bool,
    ) -> Option<Generation> {
        let quiet_ns = quiet.as_nanos().min(i64::MAX as u128) as i64;
        if !self.generations.lock().quiet(super::now_ns(), quiet_ns) {
            return None;
        }
        if self.busy().0 > 0 || !idle() {
            return None;
        }
        let mut g = self.generations.lock();
        // A seal may have landed while `idle` was asked.
        let now = super::now_ns();
        if !g.quiet(now, quiet_ns) {
            return None;
        }
        g.close(now).unwrap_or_else(|e| {
            self.stats
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!("generations: {e} (a generation was not recorded)");
            None
        })
    }

    /// The newest `last` generations, oldest first.
    pub fn generations(&self, last: usize) -> Vec<Generation> {
        let g = self.generations.lock();
        g.list[g.list.len().saturating_sub(last)..].to_vec()
    }

    /// The instant of the first generation in which step `s` was complete.
    pub fn step_at(&self, s: u64) -> Option<i64> {
        self.generations.lock().step_at(s)
    }

    pub(super) fn note_generation(&self, m: Option<&VersionMeta>, touched: Option<&[u8]>) {
        let mut g = self.generations.lock();
        let now = super::now_ns();
        match m {
            Some(m) => g.sealed(m, now),
            None => g.touched(touched, now),
        }
    }

    /// At unmount: whatever was saved since the last generation is one.
    pub(super) fn close_generation(&self) {
        if let Err(e) = self.generations.lock().close(super::now_ns()) {
            log::warn!("generations: {e} (the last generation was not recorded)");
        }
    }
}

fn append_fd(store: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let c = CString::new(GENERATIONS).expect("no NUL");
    sys::openat(
        store,
        &c,
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
        0o600,
    )
}

fn line(g: &Generation) -> Vec<u8> {
    let mut b = serde_json::to_vec(g).expect("a generation always serializes");
    b.push(b'\n');
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reason;

    fn v(p: &str, step: Option<u64>, complete: Option<bool>, reason: Reason) -> VersionMeta {
        let mut m = VersionMeta::sample(p, 1);
        assert_eq!(m.step(), step, "{p} names the step");
        m.set_origin(|o| (o.complete, o.reason) = (complete, reason));
        m
    }

    #[test]
    fn a_step_is_complete_when_its_last_incomplete_file_is_sealed_whole() {
        let mut g = Generations::default();
        assert!(!g.quiet(10, 1), "nothing sealed: no generation");
        g.sealed(&v("ckpt-5/a", Some(5), Some(true), Reason::Close), 100);
        g.sealed(&v("ckpt-5/b", Some(5), Some(false), Reason::Close), 200);
        g.sealed(&v("latest", None, None, Reason::Close), 300);
        assert!(!g.quiet(350, 100) && g.quiet(400, 100));
        let first = g.close(1_234_567).unwrap().unwrap();
        assert_eq!(first.t, 1_234_000, "rounded to the microsecond");
        assert_eq!((first.paths, first.steps.clone()), (3, vec![5]));
        assert!(first.complete.is_empty(), "ckpt-5/b was torn");
        assert_eq!(first.tops_hex, vec![hex(b""), hex(b"ckpt-5")]);
        assert_eq!(g.step_at(5), None);
        // The writer finishes b; an old step is rotated away (a delete does not
        // make step 3 "saved" here).
        g.sealed(
            &v("ckpt-5/b", Some(5), Some(true), Reason::Close),
            2_000_000,
        );
        g.sealed(
            &v("ckpt-3/a", Some(3), Some(true), Reason::Delete),
            2_000_001,
        );
        let second = g.close(3_000_000).unwrap().unwrap();
        assert_eq!(
            (second.steps.clone(), second.complete.clone()),
            (vec![5], vec![5])
        );
        assert_eq!(g.step_at(5), Some(3_000_000));
        assert_eq!(
            g.close(4_000_000).unwrap(),
            None,
            "an empty burst is no generation"
        );
    }

    #[test]
    fn generations_survive_reopen_and_a_torn_line_is_skipped() {
        let p = std::env::temp_dir().join(format!("ckptfs-gens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let fd: OwnedFd = std::fs::File::open(&p).unwrap().into();
        let mut g = Generations::open(fd.as_fd(), true, &mut Vec::new()).unwrap();
        g.sealed(&v("checkpoint-7/x", Some(7), Some(true), Reason::Close), 5);
        let made = g.close(10_000).unwrap().unwrap();
        drop(g);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(p.join(GENERATIONS))
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"t\":99").unwrap();
        let mut problems = Vec::new();
        let g = Generations::open(fd.as_fd(), true, &mut problems).unwrap();
        assert_eq!(g.list, vec![made]);
        assert_eq!(g.step_at(7), Some(10_000));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = std::fs::read_to_string(p.join(GENERATIONS)).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted: {text}");
        let _ = std::fs::remove_dir_all(&p);
    }
}
