//! Retention: pure decisions over version metadata. No I/O; `now` is passed in.
//!
//! Vocabulary as restic/borg/snapper users know it. A version is kept when any
//! rule keeps it; the newest version of a path and pinned versions are always
//! kept. `keep_within` is measured back from the newest version of the path (as
//! restic does), so history does not evaporate when a job stops writing.
//! `max_versions` (the seed's `max_keep`) is a cap over all of that except pins.
//!
//! Under space pressure the rules bend: [`pressure_order`] ranks every unpinned
//! version, the newest of a path included, for eviction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

mod incremental;
pub use incremental::{Version, after_append};

/// Retention rules, parsed (the config file's text form lives in `config.rs`).
/// Absent rules keep nothing by themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Keep the newest N versions.
    pub keep_last: Option<u32>,
    /// Keep versions sealed within this span of the newest one.
    pub keep_within: Option<Duration>,
    /// Keep the newest version in each of the last N minutes that have
    /// versions (thins dense histories: a file fsynced all the time).
    pub keep_minutely: Option<u32>,
    /// Keep the newest version in each of the last N hours that have versions.
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    /// Keep every version whose number is a multiple of N (like Orbax keep_period).
    pub keep_every_n: Option<u32>,
    /// A cap: at most N unpinned versions per file (the seed's `max_keep`),
    /// whatever the keep rules say. Pins are kept beyond it.
    pub max_versions: Option<u32>,
    /// Evict (by policy order) while the store is larger than this.
    pub max_store_bytes: Option<u64>,
    /// Evict while the backing filesystem has less free space than this.
    pub min_free: Option<Size>,
    /// Free space kept ahead of the next save, on top of `min_free` (global only).
    pub reserve: Reserve,
}

/// A size given in bytes or as a share of the filesystem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Size {
    Bytes(u64),
    /// Percent of the filesystem's size, 0..=100.
    Percent(f64),
}

impl Size {
    pub fn resolve(&self, fs_total: u64) -> u64 {
        match *self {
            Size::Bytes(n) => n,
            Size::Percent(p) => (fs_total as f64 * p / 100.0) as u64,
        }
    }
}

/// Room kept free for the next save.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reserve {
    /// Learned from the sizes of recent saves.
    Auto,
    Fixed(Size),
    None,
}

/// What the policy needs to know about one version.
#[derive(Clone, Debug)]
pub struct Item {
    pub number: u64,
    /// Seal time, nanoseconds since the epoch (UTC).
    pub sealed_ns: i64,
    pub pinned: bool,
}

/// Why a version stays.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Keep {
    Newest,
    Pinned,
    Last,
    Within,
    Minutely,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    EveryN,
}

#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Version number → the rules that keep it (never empty).
    pub keep: BTreeMap<u64, Vec<Keep>>,
    pub remove: Vec<u64>,
}

fn bucket(sealed_ns: i64, k: &Keep) -> i64 {
    let sealed = sealed_ns.div_euclid(1_000_000_000);
    let days = sealed.div_euclid(86400);
    match k {
        Keep::Minutely => sealed.div_euclid(60),
        Keep::Hourly => sealed.div_euclid(3600),
        Keep::Daily => days,
        // 1970-01-01 was a Thursday; shift so weeks start on Monday.
        Keep::Weekly => (days + 3).div_euclid(7),
        Keep::Monthly => {
            let (y, m, _) = civil(days);
            y * 12 + m as i64
        }
        _ => 0,
    }
}

/// Days since the epoch → (year, month, day), proleptic Gregorian.
/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of [`civil`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Apply `r` to the versions of one path. `items` in any order. No rule reads
/// the clock: `keep_within` and the calendar buckets are measured on the
/// versions themselves, so history does not evaporate while a job is stopped.
pub fn apply(items: &[Item], r: &Rules) -> Decision {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.number)); // newest first
    let mut keep: BTreeMap<u64, Vec<Keep>> = BTreeMap::new();
    let mut add = |n: u64, k: Keep| keep.entry(n).or_default().push(k);
    if let Some(n) = sorted.first() {
        add(n.number, Keep::Newest);
    }
    for i in &sorted {
        if i.pinned {
            add(i.number, Keep::Pinned);
        }
    }
    if let Some(n) = r.keep_last {
        for i in sorted.iter().take(n as usize) {
            add(i.number, Keep::Last);
        }
    }
    if let (Some(w), Some(newest)) = (r.keep_within, sorted.first()) {
        let span = i64::try_from(w.as_nanos()).unwrap_or(i64::MAX);
        for i in &sorted {
            if newest.sealed_ns.saturating_sub(i.sealed_ns) <= span {
                add(i.number, Keep::Within);
            }
        }
    }
    for (count, k) in [
        (r.keep_minutely, Keep::Minutely),
        (r.keep_hourly, Keep::Hourly),
        (r.keep_daily, Keep::Daily),
        (r.keep_weekly, Keep::Weekly),
        (r.keep_monthly, Keep::Monthly),
    ] {
        let Some(count) = count else { continue };
        // The newest version of each bucket, for the `count` newest buckets.
        let mut seen = BTreeSet::new();
        for i in &sorted {
            if seen.len() >= count as usize {
                break;
            }
            if seen.insert(bucket(i.sealed_ns, &k)) {
                add(i.number, k.clone());
            }
        }
    }
    if let Some(n) = r.keep_every_n {
        for i in &sorted {
            if i.number % n as u64 == 0 {
                add(i.number, Keep::EveryN);
            }
        }
    }
    if let Some(cap) = r.max_versions {
        // Newest first. Pins stay outside the count (HF Trainer likewise keeps
        // its best checkpoint beyond `save_total_limit`); the newest always
        // stays and counts.
        let mut room = cap as usize;
        for (k, i) in sorted.iter().enumerate() {
            if i.pinned || !keep.contains_key(&i.number) {
                continue;
            }
            if room > 0 || k == 0 {
                room = room.saturating_sub(1);
            } else {
                keep.remove(&i.number);
            }
        }
    }
    let remove = sorted
        .iter()
        .filter(|i| !keep.contains_key(&i.number))
        .map(|i| i.number)
        .collect();
    Decision { keep, remove }
}

/// One eviction candidate under space pressure.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The caller's name for the path (an index into its own list).
    pub path: usize,
    pub item: Item,
    /// The policy removes it anyway (`apply` put it in `remove`).
    pub policy_removes: bool,
}

/// Under space pressure every unpinned version may go, the newest of a path and
/// the last state of a deleted file included: the live tree comes first. Order:
/// what the policy removes anyway, then oldest first. Pins never appear.
pub fn pressure_order(items: &[Candidate]) -> Vec<(usize, u64)> {
    let mut v: Vec<&Candidate> = items.iter().filter(|c| !c.item.pinned).collect();
    v.sort_by_key(|c| (!c.policy_removes, c.item.sealed_ns, c.path, c.item.number));
    v.into_iter().map(|c| (c.path, c.item.number)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;
    const D: i64 = 86400 * S;
    // 2026-11-26T00:00:00Z
    const T0: i64 = 1_795_651_200 * S;

    fn items(times: &[i64]) -> Vec<Item> {
        times
            .iter()
            .enumerate()
            .map(|(n, &t)| Item {
                number: n as u64 + 1,
                sealed_ns: t,
                pinned: false,
            })
            .collect()
    }

    /// No rule at all: only the newest version and pins stay.
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

    fn check_invariants(it: &[Item], d: &Decision) {
        assert_eq!(
            d.keep.len() + d.remove.len(),
            it.len(),
            "keep + remove == all"
        );
        for (n, why) in &d.keep {
            assert!(!why.is_empty());
            assert!(!d.remove.contains(n));
        }
        let newest = it.iter().map(|i| i.number).max().unwrap();
        assert!(d.keep.contains_key(&newest));
        for i in it.iter().filter(|i| i.pinned) {
            assert!(d.keep.contains_key(&i.number));
        }
    }

    #[test]
    fn keep_last_keeps_newest_n() {
        let it = items(&[T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]);
        let d = apply(
            &it,
            &Rules {
                keep_last: Some(3),
                ..none()
            },
        );
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(d.remove, vec![2, 1]);
    }

    #[test]
    fn keep_within_measured_from_newest_version() {
        let it = items(&[T0, T0 + 10 * H, T0 + 30 * H, T0 + 33 * H]);
        let r = Rules {
            keep_within: Some(Duration::from_secs(86400)),
            ..none()
        };
        // Long after the last save: still keeps what lies within 24h of the newest.
        let d = apply(&it, &r);
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn hourly_keeps_the_newest_member_of_each_bucket() {
        // Three saves in hour 0, two in hour 1, one in hour 3.
        let it = items(&[
            T0 + 60,
            T0 + 120,
            T0 + 180,
            T0 + H + 5,
            T0 + H + 50,
            T0 + 3 * H,
        ]);
        let d = apply(
            &it,
            &Rules {
                keep_hourly: Some(3),
                ..none()
            },
        );
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![3, 5, 6]);
        let d = apply(
            &it,
            &Rules {
                keep_hourly: Some(2),
                ..none()
            },
        );
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn minutely_thins_a_dense_history() {
        // A file fsynced every 10 s for 5 minutes: 30 versions.
        let it = items(&(0..30).map(|k| T0 + 10 * S * k).collect::<Vec<_>>());
        let d = apply(
            &it,
            &Rules {
                keep_minutely: Some(3),
                ..none()
            },
        );
        check_invariants(&it, &d);
        // The newest of each of the last three minutes (versions 30, 24, 18
        // when T0 is on a minute boundary).
        let kept: Vec<u64> = d.keep.keys().copied().collect();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(kept.contains(&30));
        assert_eq!(d.remove.len(), 27);
    }

    #[test]
    fn daily_weekly_monthly_buckets() {
        let it = items(&[T0 - 40 * D, T0 - 8 * D, T0 - D, T0, T0 + 1]);
        let d = apply(
            &it,
            &Rules {
                keep_daily: Some(10),
                ..none()
            },
        );
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 5]);
        let d = apply(
            &it,
            &Rules {
                keep_monthly: Some(2),
                ..none()
            },
        );
        // November (newest: 5) and October (2026-10-17 → item 1)
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
        let d = apply(
            &it,
            &Rules {
                keep_weekly: Some(2),
                ..none()
            },
        );
        // T0 is a Thursday: items 3,4,5 share its week; item 2 is the week before.
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![2, 5]);
    }

    #[test]
    fn every_n_and_pins_never_bend() {
        let mut it = items(&(0..10).map(|i| T0 + i).collect::<Vec<_>>());
        it[0].pinned = true;
        let d = apply(
            &it,
            &Rules {
                keep_every_n: Some(4),
                ..none()
            },
        );
        check_invariants(&it, &d);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 4, 8, 10]
        );
        assert_eq!(d.keep[&1], vec![Keep::Pinned]);
    }

    #[test]
    fn pressure_order_policy_first_then_oldest_never_pins() {
        let mut a = items(&[T0, T0 + 5, T0 + 9]);
        a[0].pinned = true;
        let b = items(&[T0 + 1, T0 + 2]);
        let mut all: Vec<Candidate> = a
            .into_iter()
            .map(|item| Candidate {
                path: 0,
                item,
                policy_removes: false,
            })
            .chain(b.into_iter().map(|item| Candidate {
                path: 1,
                item,
                policy_removes: false,
            }))
            .collect();
        // The newest of each path (0/3, 1/2) is evictable too; the pin is not.
        assert_eq!(pressure_order(&all), vec![(1, 1), (1, 2), (0, 2), (0, 3)]);
        // What the policy drops anyway goes before anything older.
        all[2].policy_removes = true;
        assert_eq!(pressure_order(&all), vec![(0, 3), (1, 1), (1, 2), (0, 2)]);
    }

    #[test]
    fn max_versions_caps_every_rule_but_pins() {
        // The seed's `max_keep: 3` with the defaults' keep_last 10 and keep_within.
        let mut it = items(&(0..10).map(|i| T0 + i).collect::<Vec<_>>());
        let r = Rules {
            max_versions: Some(3),
            keep_last: Some(10),
            keep_within: Some(Duration::from_secs(86400)),
            ..none()
        };
        let d = apply(&it, &r);
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![8, 9, 10]);
        // Pins stay outside the count.
        it[0].pinned = true;
        let d = apply(&it, &r);
        check_invariants(&it, &d);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 8, 9, 10]
        );
        for i in it.iter_mut().take(4) {
            i.pinned = true;
        }
        let d = apply(&it, &r);
        check_invariants(&it, &d);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 8, 9, 10]
        );
        // A pinned newest does not count either.
        it[9].pinned = true;
        let d = apply(&it, &r);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 7, 8, 9, 10]
        );
    }

    #[test]
    fn keep_within_counts_nanoseconds_not_whole_seconds() {
        // 1.5 s apart: outside a 1 s span (whole seconds rounded both to one).
        let it = items(&[T0 + S / 2, T0 + 2 * S]);
        let r = Rules {
            keep_within: Some(Duration::from_secs(1)),
            ..none()
        };
        assert_eq!(apply(&it, &r).remove, vec![1]);
        let r = Rules {
            keep_within: Some(Duration::from_millis(1500)),
            ..none()
        };
        assert!(apply(&it, &r).remove.is_empty());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(T0 / D), (2026, 11, 26));
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_418, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
