//! The store's side of the point-in-time view: which state of a path (a
//! version, or the live file) held at an instant. The fs layer supplies what
//! it sees of the live tree through a callback; the store never reads it.

use super::index::Index;
use super::timeline::{Live, State, Timeline, marks_for};
use super::{Change, Store, VersionMeta, now_ns};

/// What a path held at an instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    Version(Box<VersionMeta>),
    /// The live file at this path (which may differ from the path asked for,
    /// when the content was renamed away since).
    Live(Vec<u8>),
}

/// How deep a chain of renames is followed before giving up.
const MAX_HOPS: u32 = 16;

/// The live file at a path, as the fs layer sees it: `None` when there is no
/// non-directory at that path now.
pub type LiveOf<'a> = &'a dyn Fn(&[u8]) -> Option<Live>;

fn timeline<'a>(
    idx: &'a Index,
    p: &[u8],
    marks: &'a [super::timeline::Mark],
    live: LiveOf<'_>,
) -> Timeline<'a> {
    Timeline {
        versions: idx.get(p).map(|h| h.versions.as_slice()).unwrap_or(&[]),
        marks,
        live: live(p),
    }
}

fn marks_of(idx: &Index, p: &[u8]) -> Vec<super::timeline::Mark> {
    marks_for(p, |a| idx.journal.marks.get(a).map(|v| v.as_slice()))
}

fn resolve(idx: &Index, p: &[u8], t: i64, live: LiveOf<'_>, hops: u32) -> Option<Found> {
    let marks = marks_of(idx, p);
    let tl = timeline(idx, p, &marks, live);
    match tl.at(t) {
        State::Version(i) => Some(Found::Version(Box::new(tl.versions[i].clone()))),
        State::Live => Some(Found::Live(p.to_vec())),
        State::Absent => None,
        State::Went { to, g } => {
            if hops == 0 {
                return None;
            }
            // The content left with the rename: what `to` held right after it,
            // provided it had already been written at T.
            let marks = marks_of(idx, &to);
            let there = timeline(idx, &to, &marks, live);
            match there.after(g) {
                State::Version(j) => {
                    let v = &there.versions[j];
                    (v.mtime_ns.min(v.sealed_ns) <= t).then(|| Found::Version(Box::new(v.clone())))
                }
                State::Live => there
                    .live
                    .filter(|l| l.born_ns <= t)
                    .map(|_| Found::Live(to.clone())),
                _ => None,
            }
        }
        State::Came { from, g, fallback } => {
            let back = (hops > 0)
                .then(|| resolve(idx, &from, g - 1, live, hops - 1))
                .flatten();
            back.or_else(|| fallback.map(|i| Found::Version(Box::new(tl.versions[i].clone()))))
        }
    }
}

impl Store {
    /// Record a delete or rename of a path the fs layer versions. Never fails
    /// the caller's operation: a journal that cannot be written is logged.
    pub fn note_change(&self, c: Change<'_>) {
        let mut idx = self.index.write();
        // The time is taken under the lock, so lines are appended in order.
        let t = now_ns();
        if let Err(e) = idx.journal.record(t, c) {
            self.stats
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::warn!("journal: {e} ({c:?} not recorded)");
        }
        drop(idx);
        // The departed file's versions may no longer share its blocks.
        self.history_released();
        let p = match c {
            Change::Deleted(p) | Change::Renamed(_, p) => p,
        };
        self.note_generation(None, Some(p));
    }

    /// The state of file path `p` at instant `t` (ns since the epoch, UTC).
    pub fn state_at(&self, p: &[u8], t: i64, live: LiveOf<'_>) -> Option<Found> {
        resolve(&self.index.read(), p, t, live, MAX_HOPS)
    }

    /// Did directory `d` exist at `t`? Yes when the live directory was there
    /// then (`live_dir` says when it was born), when it was renamed away later
    /// and its new name was born by then, or when some path below it with
    /// history held a state at `t`.
    pub fn dir_at(&self, d: &[u8], t: i64, live_dir: LiveOf<'_>, live: LiveOf<'_>) -> bool {
        let idx = self.index.read();
        let marks = marks_of(&idx, d);
        let own = Timeline {
            versions: &[],
            marks: &marks,
            live: live_dir(d),
        };
        match own.at(t) {
            State::Live => return true,
            State::Went { to, g } => {
                let marks = marks_of(&idx, &to);
                let there = Timeline {
                    versions: &[],
                    marks: &marks,
                    live: live_dir(&to),
                };
                if there.after(g) == State::Live && there.live.is_some_and(|l| l.born_ns <= t) {
                    return true;
                }
            }
            _ => {}
        }
        let mut prefix = d.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        idx.range_from(&prefix)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(k, _)| resolve(&idx, k, t, live, MAX_HOPS).is_some())
    }

    /// Where directory `d`'s content went when it was renamed away after `t`
    /// (its listing at `t` includes what now lives there).
    pub fn went_to(&self, d: &[u8], t: i64) -> Option<Vec<u8>> {
        let idx = self.index.read();
        let marks = marks_of(&idx, d);
        let own = Timeline {
            versions: &[],
            marks: &marks,
            live: None,
        };
        match own.at(t) {
            State::Went { to, .. } => Some(to),
            _ => None,
        }
    }
}
