//! Retention decided incrementally. A history is *settled* when [`apply`] keeps
//! every version in it (retention ran and its evictions went through). When
//! versions are appended to a settled history, only a few of the old versions
//! can stop being kept: those at the boundaries the new versions move (the old
//! newest, the version pushed out of the last N, the versions pushed out of the
//! `keep_within` span, the buckets pushed out of each calendar count). Finding
//! them costs O(rules × buckets × log n) plus the versions examined, where
//! [`apply`] costs O(n log n): a file fsynced all day under `keep_within` holds
//! 100,000s of versions, and retention runs after every seal.
//!
//! A settled history stays settled when versions are *removed* (space
//! pressure, `gc`): a removal only moves each survivor closer to the newest (in
//! rank, in time from the newest, in buckets counted) and never takes away a
//! newer member of its bucket, so every survivor keeps its reason. What
//! unsettles a history is an unpin, a version inserted below the newest, or a
//! change of rules; the caller forgets its mark then.
//!
//! [`apply`]: super::apply

use super::{Item, Keep, Rules, bucket};

/// What the incremental decision reads of a version (the store's records
/// implement it, so a long history is not copied to decide it).
pub trait Version {
    fn number(&self) -> u64;
    fn sealed_ns(&self) -> i64;
    fn pinned(&self) -> bool;
}

impl Version for Item {
    fn number(&self) -> u64 {
        self.number
    }
    fn sealed_ns(&self) -> i64 {
        self.sealed_ns
    }
    fn pinned(&self) -> bool {
        self.pinned
    }
}

/// The version numbers (ascending) that [`super::apply`] would remove from
/// `h`, given that `h`'s versions numbered up to `settled` form a settled
/// history. `h` is ascending by number.
///
/// `None` when the answer is not cheap, and the caller runs `apply`:
/// - `max_versions` is set: the cap counts across the whole history (and a
///   capped history is short: the cap plus its pins);
/// - a seal time goes backwards after the settled part (a clock step): the
///   binary searches need seal times in version order.
pub fn after_append<V: Version>(h: &[V], settled: u64, r: &Rules) -> Option<Vec<u64>> {
    decide(h, settled, r).map(|(remove, _)| remove)
}

/// [`after_append`], also counting the versions it examined (tests show the
/// decision does not read the whole history).
fn decide<V: Version>(h: &[V], settled: u64, r: &Rules) -> Option<(Vec<u64>, usize)> {
    if r.max_versions.is_some() {
        return None;
    }
    let len = h.len();
    let old = h.partition_point(|v| v.number() <= settled);
    let from = old.saturating_sub(1);
    if h[from..]
        .windows(2)
        .any(|w| w[1].sealed_ns() < w[0].sealed_ns())
    {
        return None;
    }
    if old == len {
        return Some((Vec::new(), 0)); // nothing appended: removals keep it settled
    }
    let newest_t = h[len - 1].sealed_ns();
    let span = r
        .keep_within
        .map(|w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX));
    let calendar = calendar_rules(r);
    let floors: Vec<(&Keep, usize)> = calendar.iter().map(|(k, c)| (k, floor(h, k, *c))).collect();

    // Candidates, as ranges of positions: the old newest and every appended
    // version but the newest (which always stays), then each rule's boundary.
    let mut ranges = vec![(from, len - 1)];
    if old > 0 {
        if let Some(n) = r.keep_last {
            let n = n as usize;
            ranges.push((old.saturating_sub(n), len.saturating_sub(n).min(old)));
        }
        if let Some(span) = span {
            let old_t = h[old - 1].sealed_ns();
            let outside =
                |t0: i64| h[..old].partition_point(|v| t0.saturating_sub(v.sealed_ns()) > span);
            ranges.push((outside(old_t), outside(newest_t)));
        }
        for ((k, count), (_, new_floor)) in calendar.iter().zip(&floors) {
            ranges.push((floor(&h[..old], k, *count), (*new_floor).min(old)));
        }
    }

    let kept = |p: usize| -> bool {
        let v = &h[p];
        let t = v.sealed_ns();
        p + 1 == len
            || v.pinned()
            || r.keep_last.is_some_and(|n| p + n as usize >= len)
            || span.is_some_and(|s| newest_t.saturating_sub(t) <= s)
            || floors
                .iter()
                .any(|(k, f)| p >= *f && bucket(h[p + 1].sealed_ns(), k) != bucket(t, k))
            || r.keep_every_n
                .is_some_and(|n| v.number().is_multiple_of(n as u64))
    };

    ranges.retain(|(a, b)| a < b);
    ranges.sort_unstable();
    let mut remove = Vec::new();
    let mut examined = 0;
    let mut next = 0; // first position not yet examined
    for (a, b) in ranges {
        let a = a.max(next);
        for (p, v) in h.iter().enumerate().take(b).skip(a) {
            examined += 1;
            if !kept(p) {
                remove.push(v.number());
            }
        }
        next = next.max(b);
    }
    Some((remove, examined))
}

/// The calendar rules in force, with their counts.
fn calendar_rules(r: &Rules) -> Vec<(Keep, u32)> {
    [
        (r.keep_minutely, Keep::Minutely),
        (r.keep_hourly, Keep::Hourly),
        (r.keep_daily, Keep::Daily),
        (r.keep_weekly, Keep::Weekly),
        (r.keep_monthly, Keep::Monthly),
    ]
    .into_iter()
    .filter_map(|(c, k)| c.map(|c| (k, c)))
    .collect()
}

/// The first position of the `count` newest buckets of rule `k` in `s` (seal
/// times in order, so buckets are too): one binary search per bucket.
fn floor<V: Version>(s: &[V], k: &Keep, count: u32) -> usize {
    let Some(last) = s.last() else { return 0 };
    if count == 0 {
        return s.len();
    }
    let mut b = bucket(last.sealed_ns(), k);
    let mut counted = 1;
    loop {
        let start = s.partition_point(|v| bucket(v.sealed_ns(), k) < b);
        if counted >= count || start == 0 {
            return start;
        }
        b = bucket(s[start - 1].sealed_ns(), k);
        counted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Reserve, apply};
    use super::*;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;
    // 2026-11-26T00:00:00Z
    const T0: i64 = 1_795_651_200 * S;

    /// xorshift64*: enough for test data, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn maybe(&mut self, n: u64) -> Option<u32> {
            (self.below(2) == 0).then(|| self.below(n) as u32)
        }
    }

    fn none() -> Rules {
        Rules {
            keep_last: None,
            keep_within: None,
            keep_minutely: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_every_n: None,
            max_versions: None,
            max_store_bytes: None,
            min_free: None,
            reserve: Reserve::None,
        }
    }

    fn random_rules(rng: &mut Rng) -> Rules {
        let spans = [1, 30, 90, 3600, 86_400, 7 * 86_400];
        Rules {
            keep_last: rng.maybe(20),
            keep_within: (rng.below(2) == 0).then(|| {
                let s = spans[rng.below(spans.len() as u64) as usize];
                Duration::from_millis(rng.below(s * 1000) + 1)
            }),
            keep_minutely: rng.maybe(8),
            keep_hourly: rng.maybe(8),
            keep_daily: rng.maybe(8),
            keep_weekly: rng.maybe(5),
            keep_monthly: rng.maybe(4),
            keep_every_n: rng.maybe(12).map(|n| n + 1),
            ..none()
        }
    }

    /// From equal seal times to weeks apart.
    fn random_step(rng: &mut Rng) -> i64 {
        let scale = [
            0,
            1,
            S,
            10 * S,
            60 * S,
            3600 * S,
            86_400 * S,
            9 * 86_400 * S,
        ];
        let s = scale[rng.below(scale.len() as u64) as usize];
        if s == 0 {
            0
        } else {
            1 + rng.below(s as u64 * 3) as i64
        }
    }

    fn removed(h: &[Item], r: &Rules) -> Vec<u64> {
        let mut v = apply(h, r).remove;
        v.sort_unstable();
        v
    }

    /// The incremental answer is `apply`'s, step after step: random rules,
    /// random appends, pins, and versions removed between steps the way space
    /// pressure removes them (a settled history stays settled).
    #[test]
    fn equals_apply_over_random_histories() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut decisions = 0;
        for case in 0..4000 {
            let r = random_rules(&mut rng);
            let mut h: Vec<Item> = Vec::new();
            let mut t = T0 + rng.below(400 * 86_400) as i64 * S;
            let mut next = 1;
            let mut settled = 0;
            for step in 0..25 {
                let burst = if rng.below(4) == 0 { 40 } else { 3 };
                for _ in 0..1 + rng.below(burst) {
                    t += random_step(&mut rng);
                    h.push(Item {
                        number: next,
                        sealed_ns: t,
                        pinned: rng.below(30) == 0,
                    });
                    next += 1;
                }
                let inc = after_append(&h, settled, &r).expect("no cap, times in order");
                let full = removed(&h, &r);
                assert_eq!(inc, full, "case {case} step {step}: {r:?}");
                decisions += 1;
                h.retain(|i| !inc.contains(&i.number));
                settled = h.last().map_or(0, |i| i.number);
                // Space pressure takes a few, the newest sometimes; a pin is added.
                for _ in 0..rng.below(3) {
                    let unpinned: Vec<usize> = (0..h.len()).filter(|&p| !h[p].pinned).collect();
                    if unpinned.is_empty() {
                        break;
                    }
                    h.remove(unpinned[rng.below(unpinned.len() as u64) as usize]);
                }
                if !h.is_empty() && rng.below(5) == 0 {
                    let p = rng.below(h.len() as u64) as usize;
                    h[p].pinned = true;
                }
                assert!(
                    removed(&h, &r).is_empty(),
                    "case {case}: settled after removal"
                );
            }
        }
        assert_eq!(decisions, 100_000);
    }

    #[test]
    fn a_cap_or_a_clock_step_is_left_to_apply() {
        let h = vec![
            Item {
                number: 1,
                sealed_ns: T0,
                pinned: false,
            },
            Item {
                number: 2,
                sealed_ns: T0 + S,
                pinned: false,
            },
            Item {
                number: 3,
                sealed_ns: T0 - S,
                pinned: false,
            },
        ];
        let capped = Rules {
            max_versions: Some(5),
            ..none()
        };
        assert_eq!(after_append(&h[..2], 1, &capped), None);
        assert_eq!(after_append(&h[..2], 1, &none()), Some(vec![1]));
        // v3 sealed before v2: not in order after the settled part.
        assert_eq!(after_append(&h, 2, &none()), None);
        // Nothing appended since the mark: nothing to decide.
        assert_eq!(after_append(&h[..2], 2, &none()), Some(vec![]));
    }

    /// The point of it: one seal appended to a long settled history reads a
    /// few versions, not the history.
    #[test]
    fn a_long_history_is_decided_by_a_few_reads() {
        let r = Rules {
            keep_within: Some(Duration::from_secs(3600)),
            keep_hourly: Some(48),
            keep_daily: Some(14),
            keep_last: Some(20),
            ..none()
        };
        // One version every 50 ms for 2.8 hours: 200,000 versions.
        let mut h: Vec<Item> = (0..200_000u64)
            .map(|n| Item {
                number: n + 1,
                sealed_ns: T0 + n as i64 * 50_000_000,
                pinned: false,
            })
            .collect();
        let gone = removed(&h, &r);
        h.retain(|i| gone.binary_search(&i.number).is_err());
        let mut settled = h.last().unwrap().number;
        let mut examined_most = 0;
        for n in 0..1000u64 {
            let last = h.last().unwrap().sealed_ns;
            h.push(Item {
                number: settled + 1,
                sealed_ns: last + 50_000_000,
                pinned: false,
            });
            let (remove, examined) = decide(&h, settled, &r).unwrap();
            examined_most = examined_most.max(examined);
            if n % 100 == 0 {
                assert_eq!(remove, removed(&h, &r));
            }
            h.retain(|i| remove.binary_search(&i.number).is_err());
            settled = h.last().unwrap().number;
        }
        assert!(h.len() > 70_000, "{} versions", h.len());
        assert!(
            examined_most <= 8,
            "examined {examined_most} versions for one seal"
        );
    }
}
