//! What a path held at an instant: its versions, the marks left by deletes and
//! renames, and the live file, merged into one timeline. Pure: no I/O, no clock.
//!
//! Each version's state begins at its content's mtime (the last write), but
//! never before the previous event of the path (a version, a delete, a
//! rename), so states stay in order when a writer sets an old mtime. A mark
//! begins at its own time. The live file is the newest state; it begins when
//! its inode was born, and after every recorded event. The state at T is the
//! latest one begun at or before T. Per-path versions are ordered by time, so
//! finding it is a binary search.

use super::VersionMeta;

/// What happened to a path, with its time (ns since the epoch, UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub t: i64,
    pub kind: MarkKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// Unlinked.
    Deleted,
    /// Renamed away, to this path.
    LeftTo(Vec<u8>),
    /// Renamed here, from this path.
    ArrivedFrom(Vec<u8>),
}

/// The live file at the path now: when its inode was born (btime, or ctime
/// where the filesystem has no birth time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub born_ns: i64,
}

/// What one path's timeline says about instant T.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The version at this index of the path's history.
    Version(usize),
    /// The live file.
    Live,
    Absent,
    /// Renamed away at `g` before any version of it was kept: its content at T
    /// is what `to` held right after `g` (if that existed at T).
    Went {
        to: Vec<u8>,
        g: i64,
    },
    /// Renamed here at `g` and never kept under this name: its content is what
    /// `from` held just before `g`; `fallback` is this path's version before
    /// `g` (a state identical to the newest version is not kept twice).
    Came {
        from: Vec<u8>,
        g: i64,
        fallback: Option<usize>,
    },
}

/// One path's versions (ascending by number, so by sealed time) and marks
/// (ascending by time), and its live file if there is one.
pub struct Timeline<'a> {
    pub versions: &'a [VersionMeta],
    pub marks: &'a [Mark],
    pub live: Option<Live>,
}

impl Timeline<'_> {
    /// When version `i`'s state began (see the module doc).
    pub fn start(&self, i: usize) -> i64 {
        let v = &self.versions[i];
        let before = self.marks.partition_point(|m| m.t < v.sealed_ns);
        let prev = [
            i.checked_sub(1).map(|j| self.versions[j].sealed_ns),
            before.checked_sub(1).map(|j| self.marks[j].t),
        ]
        .into_iter()
        .flatten()
        .max();
        let raw = v.mtime_ns.min(v.sealed_ns);
        match prev {
            Some(p) => raw.max(p.saturating_add(1)).min(v.sealed_ns),
            None => raw,
        }
    }

    /// When the live file's state began, if there is a live file.
    pub fn live_start(&self) -> Option<i64> {
        let l = self.live?;
        let last = [
            self.versions.last().map(|v| v.sealed_ns),
            self.marks.last().map(|m| m.t),
        ]
        .into_iter()
        .flatten()
        .max();
        Some(match last {
            Some(a) => l.born_ns.max(a.saturating_add(1)),
            None => l.born_ns,
        })
    }

    pub fn at(&self, t: i64) -> State {
        if self.live_start().is_some_and(|s| s <= t) {
            return State::Live;
        }
        let k = self.versions.partition_point(|v| v.sealed_ns <= t);
        // Version k is sealed after T but its state may have begun before it.
        let v = if k < self.versions.len() && self.start(k) <= t {
            Some(k)
        } else {
            k.checked_sub(1)
        };
        let m = self.marks.partition_point(|m| m.t <= t).checked_sub(1);
        let mark_wins = match (v, m) {
            (Some(v), Some(m)) => self.marks[m].t >= self.start(v),
            (None, Some(_)) => true,
            _ => false,
        };
        if !mark_wins {
            return match v {
                Some(v) => State::Version(v),
                None => self.before_everything(),
            };
        }
        let mark = &self.marks[m.expect("mark_wins implies a mark")];
        match &mark.kind {
            MarkKind::Deleted | MarkKind::LeftTo(_) => State::Absent,
            MarkKind::ArrivedFrom(from) => match self.after(mark.t) {
                State::Absent => State::Came {
                    from: from.clone(),
                    g: mark.t,
                    fallback: self
                        .versions
                        .partition_point(|v| v.sealed_ns <= mark.t)
                        .checked_sub(1),
                },
                s => s,
            },
        }
    }

    /// The content this path held right after instant `g` (an arrival): the
    /// next version when it comes before any other mark and holds content
    /// from before `g` (kept before a change, or last written by then), else
    /// the live file when nothing came after, else unknown.
    pub fn after(&self, g: i64) -> State {
        let j = self.versions.partition_point(|v| v.sealed_ns <= g);
        let next_mark = self.marks.iter().find(|m| m.t > g).map(|m| m.t);
        match self.versions.get(j) {
            Some(v)
                if next_mark.is_none_or(|t| v.sealed_ns < t)
                    && (v.reason().kept_before_change() || v.mtime_ns <= g) =>
            {
                State::Version(j)
            }
            None if next_mark.is_none() && self.live.is_some() => State::Live,
            _ => State::Absent,
        }
    }

    /// T is before every recorded state: the path was renamed away before any
    /// version was kept (its content went with it), or it did not exist yet.
    fn before_everything(&self) -> State {
        match self.marks.first() {
            Some(Mark {
                t: g,
                kind: MarkKind::LeftTo(to),
            }) if self.versions.first().is_none_or(|v| v.sealed_ns > *g) => State::Went {
                to: to.clone(),
                g: *g,
            },
            _ => State::Absent,
        }
    }
}

/// Marks of `p` itself and those of its ancestors translated to `p` (a renamed
/// directory moves everything below it), ascending by time. `of(a)` gives the
/// marks recorded for path `a`.
pub fn marks_for<'a>(p: &[u8], of: impl Fn(&[u8]) -> Option<&'a [Mark]>) -> Vec<Mark> {
    let mut out: Vec<Mark> = of(p).map(|m| m.to_vec()).unwrap_or_default();
    for (i, _) in p.iter().enumerate().filter(|(_, b)| **b == b'/') {
        let (dir, rest) = (&p[..i], &p[i..]);
        for m in of(dir).unwrap_or_default() {
            let kind = match &m.kind {
                MarkKind::Deleted => continue,
                MarkKind::LeftTo(q) => MarkKind::LeftTo([q.as_slice(), rest].concat()),
                MarkKind::ArrivedFrom(q) => MarkKind::ArrivedFrom([q.as_slice(), rest].concat()),
            };
            out.push(Mark { t: m.t, kind });
        }
    }
    out.sort_by_key(|m| m.t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(number: u64, mtime: i64, sealed: i64) -> VersionMeta {
        VersionMeta {
            mtime_ns: mtime,
            sealed_ns: sealed,
            ..VersionMeta::sample("f", number)
        }
    }
    fn mark(t: i64, kind: MarkKind) -> Mark {
        Mark { t, kind }
    }

    #[test]
    fn states_begin_at_their_last_write_and_end_at_the_next_one() {
        let vs = [v(1, 10, 12), v(2, 20, 22), v(3, 30, 32)];
        let tl = Timeline {
            versions: &vs,
            marks: &[],
            live: None,
        };
        assert_eq!(tl.at(9), State::Absent);
        assert_eq!(tl.at(10), State::Version(0));
        assert_eq!(tl.at(19), State::Version(0));
        assert_eq!(tl.at(20), State::Version(1));
        assert_eq!(tl.at(31), State::Version(2));
        assert_eq!(tl.at(1000), State::Version(2));
    }

    #[test]
    fn an_old_mtime_never_moves_a_state_before_the_previous_event() {
        // Version 2 was written with an mtime from long ago (cp -a, touch -d).
        let vs = [v(1, 10, 12), v(2, 1, 22)];
        let tl = Timeline {
            versions: &vs,
            marks: &[],
            live: None,
        };
        assert_eq!(tl.start(1), 13);
        assert_eq!(tl.at(12), State::Version(0));
        assert_eq!(tl.at(13), State::Version(1));
    }

    #[test]
    fn a_delete_hides_the_path_until_it_comes_back() {
        let vs = [v(1, 10, 12), v(2, 40, 42)];
        let ms = [mark(25, MarkKind::Deleted)];
        let tl = Timeline {
            versions: &vs,
            marks: &ms,
            live: None,
        };
        assert_eq!(tl.at(24), State::Version(0));
        assert_eq!(tl.at(25), State::Absent);
        assert_eq!(tl.at(39), State::Absent);
        assert_eq!(tl.at(40), State::Version(1));
    }

    #[test]
    fn the_live_file_begins_at_its_birth_and_after_every_event() {
        let vs = [v(1, 10, 12)];
        let ms = [mark(25, MarkKind::Deleted)];
        let born_later = Timeline {
            versions: &vs,
            marks: &ms,
            live: Some(Live { born_ns: 30 }),
        };
        assert_eq!(born_later.at(29), State::Absent);
        assert_eq!(born_later.at(30), State::Live);
        let born_earlier = Timeline {
            versions: &vs,
            marks: &[],
            live: Some(Live { born_ns: 5 }),
        };
        assert_eq!(born_earlier.at(11), State::Version(0));
        assert_eq!(born_earlier.at(13), State::Live);
        let never_changed = Timeline {
            versions: &[],
            marks: &[],
            live: Some(Live { born_ns: 5 }),
        };
        assert_eq!(never_changed.at(4), State::Absent);
        assert_eq!(never_changed.at(5), State::Live);
    }

    #[test]
    fn an_arrival_shows_the_version_that_later_kept_it() {
        // tmp → f at 20; f's content is kept at 40 when it is renamed over.
        let vs = [v(1, 10, 12), v(2, 15, 40)];
        let ms = [
            mark(20, MarkKind::ArrivedFrom(b"tmp".to_vec())),
            mark(41, MarkKind::ArrivedFrom(b"tmp".to_vec())),
        ];
        let tl = Timeline {
            versions: &vs,
            marks: &ms,
            live: Some(Live { born_ns: 1 }),
        };
        assert_eq!(tl.at(19), State::Version(0));
        assert_eq!(tl.start(1), 21);
        assert_eq!(tl.at(20), State::Version(1));
        assert_eq!(tl.at(40), State::Version(1));
        // The second arrival is still live.
        assert_eq!(tl.at(41), State::Live);
    }

    #[test]
    fn content_written_after_an_arrival_is_not_the_arrived_content() {
        // f came back from g at 20 (identical to v1, so not kept again), then
        // was rewritten and closed at 30.
        let vs = [v(1, 10, 12), v(2, 29, 30)];
        let ms = [
            mark(15, MarkKind::LeftTo(b"g".to_vec())),
            mark(20, MarkKind::ArrivedFrom(b"g".to_vec())),
        ];
        let tl = Timeline {
            versions: &vs,
            marks: &ms,
            live: Some(Live { born_ns: 29 }),
        };
        assert_eq!(
            tl.at(25),
            State::Came {
                from: b"g".to_vec(),
                g: 20,
                fallback: Some(0)
            }
        );
        assert_eq!(tl.at(29), State::Version(1));
    }

    #[test]
    fn an_arrival_never_kept_points_back_to_its_source() {
        // The arrived content equalled the newest version, so it was not kept again.
        let vs = [v(1, 10, 12)];
        let ms = [
            mark(20, MarkKind::ArrivedFrom(b"tmp".to_vec())),
            mark(30, MarkKind::ArrivedFrom(b"tmp".to_vec())),
        ];
        let tl = Timeline {
            versions: &vs,
            marks: &ms,
            live: Some(Live { born_ns: 1 }),
        };
        assert_eq!(
            tl.at(25),
            State::Came {
                from: b"tmp".to_vec(),
                g: 20,
                fallback: Some(0)
            }
        );
        assert_eq!(tl.at(31), State::Live);
    }

    #[test]
    fn a_path_renamed_away_before_any_version_points_forward() {
        let ms = [mark(20, MarkKind::LeftTo(b"g".to_vec()))];
        let tl = Timeline {
            versions: &[],
            marks: &ms,
            live: None,
        };
        assert_eq!(
            tl.at(10),
            State::Went {
                to: b"g".to_vec(),
                g: 20
            }
        );
        assert_eq!(tl.at(20), State::Absent);
    }

    #[test]
    fn ancestor_renames_apply_to_every_path_below() {
        let marks = |p: &[u8]| -> Option<&'static [Mark]> {
            static D: std::sync::OnceLock<Vec<Mark>> = std::sync::OnceLock::new();
            let d = D.get_or_init(|| vec![mark(5, MarkKind::LeftTo(b"e".to_vec()))]);
            (p == b"d").then_some(d.as_slice())
        };
        assert_eq!(
            marks_for(b"d/x/y", marks),
            vec![mark(5, MarkKind::LeftTo(b"e/x/y".to_vec()))]
        );
        assert!(marks_for(b"dd/x", marks).is_empty());
    }
}
