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

use serde::{Deserialize, Serialize};

/// Retention rules (all optional; absent rules keep nothing by themselves).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Keep the newest N versions (the seed's `max_keep`).
    pub keep_last: Option<u32>,
    /// Keep versions sealed within this span of the newest one ("90m", "24h", "7d").
    pub keep_within: Option<String>,
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
    /// Evict while the backing filesystem has less free space than this
    /// (bytes, or a percentage string such as "5%").
    pub min_free_bytes: Option<Bytes>,
    /// Free space kept ahead of the next save, on top of `min_free_bytes`:
    /// `"auto"` (learned from recent saves) or a size. Global only.
    pub reserve_bytes: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Abs(u64),
    Text(String),
}

impl Bytes {
    /// Resolve against the filesystem size.
    pub fn resolve(&self, fs_total: u64) -> Result<u64, String> {
        match self {
            Bytes::Abs(n) => Ok(*n),
            Bytes::Text(t) => parse_bytes(t, fs_total),
        }
    }
}

fn parse_bytes(t: &str, total: u64) -> Result<u64, String> {
    let t = t.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{t:?} is not between 0% and 100%"));
        }
        return Ok((total as f64 * v / 100.0) as u64);
    }
    let (num, mul) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match t[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1u64 << 40,
                _ => return Err(format!("{t:?}: unknown unit")),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{t:?} is not a size"))?;
    Ok((v * mul as f64) as u64)
}

impl Default for Retention {
    /// Without a config: keep_last 10, keep_within 24h, min_free_bytes 5%.
    fn default() -> Self {
        Self {
            keep_last: Some(10),
            keep_within: Some("24h".into()),
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_every_n: None,
            max_versions: None,
            max_store_bytes: None,
            min_free_bytes: Some(Bytes::Text("5%".into())),
            reserve_bytes: Some(Bytes::Text("auto".into())),
        }
    }
}

/// Parse "90s", "30m", "24h", "7d", "2w" into seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 24h"))?;
    let mul = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "y" => 365 * 86400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use s, m, h, d, w, y)"
            ));
        }
    };
    Ok(n * mul)
}

impl Retention {
    /// Check every value; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(w) = &self.keep_within {
            parse_duration(w).map_err(|e| format!("keep_within: {e}"))?;
        }
        if self.keep_every_n == Some(0) {
            return Err("keep_every_n: must be at least 1".into());
        }
        if self.max_versions == Some(0) {
            return Err("max_versions: must be at least 1".into());
        }
        if let Some(b) = &self.min_free_bytes {
            b.resolve(1 << 40)
                .map_err(|e| format!("min_free_bytes: {e}"))?;
        }
        match &self.reserve_bytes {
            Some(Bytes::Text(t)) if t.trim() == "auto" => {}
            Some(b) => {
                b.resolve(1 << 40)
                    .map_err(|e| format!("reserve_bytes: {e} (a size or \"auto\")"))?;
            }
            None => {}
        }
        Ok(())
    }
}

/// What the policy needs to know about one version.
#[derive(Clone, Debug)]
pub struct Item {
    pub number: u64,
    /// Seal time, seconds since the epoch (UTC).
    pub sealed: i64,
    pub pinned: bool,
}

/// Why a version stays.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Keep {
    Newest,
    Pinned,
    Last,
    Within,
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

fn bucket(sealed: i64, k: &Keep) -> i64 {
    let days = sealed.div_euclid(86400);
    match k {
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

/// Apply `r` to the versions of one path. `items` in any order.
pub fn apply(items: &[Item], r: &Retention, _now: i64) -> Decision {
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
    if let (Some(w), Some(newest)) = (&r.keep_within, sorted.first()) {
        let span = parse_duration(w).unwrap_or(0) as i64;
        for i in &sorted {
            if newest.sealed - i.sealed <= span {
                add(i.number, Keep::Within);
            }
        }
    }
    for (count, k) in [
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
            if seen.insert(bucket(i.sealed, &k)) {
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
    v.sort_by_key(|c| (!c.policy_removes, c.item.sealed, c.path, c.item.number));
    v.into_iter().map(|c| (c.path, c.item.number)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86400;
    // 2026-11-26T00:00:00Z
    const T0: i64 = 1_795_651_200;

    fn items(times: &[i64]) -> Vec<Item> {
        times
            .iter()
            .enumerate()
            .map(|(n, &t)| Item {
                number: n as u64 + 1,
                sealed: t,
                pinned: false,
            })
            .collect()
    }

    fn none() -> Retention {
        Retention {
            keep_last: None,
            keep_within: None,
            min_free_bytes: None,
            reserve_bytes: None,
            ..Retention::default()
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
            &Retention {
                keep_last: Some(3),
                ..none()
            },
            T0 + 5,
        );
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(d.remove, vec![2, 1]);
    }

    #[test]
    fn keep_within_measured_from_newest_version() {
        let it = items(&[T0, T0 + 10 * H, T0 + 30 * H, T0 + 33 * H]);
        let r = Retention {
            keep_within: Some("24h".into()),
            ..none()
        };
        // Long after the last save: still keeps what lies within 24h of the newest.
        let d = apply(&it, &r, T0 + 400 * D);
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
            &Retention {
                keep_hourly: Some(3),
                ..none()
            },
            T0 + 4 * H,
        );
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![3, 5, 6]);
        let d = apply(
            &it,
            &Retention {
                keep_hourly: Some(2),
                ..none()
            },
            T0 + 4 * H,
        );
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn daily_weekly_monthly_buckets() {
        let it = items(&[T0 - 40 * D, T0 - 8 * D, T0 - D, T0, T0 + 1]);
        let d = apply(
            &it,
            &Retention {
                keep_daily: Some(10),
                ..none()
            },
            T0,
        );
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 5]);
        let d = apply(
            &it,
            &Retention {
                keep_monthly: Some(2),
                ..none()
            },
            T0,
        );
        // November (newest: 5) and October (2026-10-17 → item 1)
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![1, 5]);
        let d = apply(
            &it,
            &Retention {
                keep_weekly: Some(2),
                ..none()
            },
            T0,
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
            &Retention {
                keep_every_n: Some(4),
                ..none()
            },
            T0,
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
        let r = Retention {
            max_versions: Some(3),
            keep_within: Some("24h".into()),
            ..Retention::default()
        };
        let d = apply(&it, &r, T0 + 10);
        check_invariants(&it, &d);
        assert_eq!(d.keep.keys().copied().collect::<Vec<_>>(), vec![8, 9, 10]);
        // Pins stay outside the count.
        it[0].pinned = true;
        let d = apply(&it, &r, T0 + 10);
        check_invariants(&it, &d);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 8, 9, 10]
        );
        for i in it.iter_mut().take(4) {
            i.pinned = true;
        }
        let d = apply(&it, &r, T0 + 10);
        check_invariants(&it, &d);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 8, 9, 10]
        );
        // A pinned newest does not count either.
        it[9].pinned = true;
        let d = apply(&it, &r, T0 + 10);
        assert_eq!(
            d.keep.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 7, 8, 9, 10]
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_duration("24h").unwrap(), 86400);
        assert!(parse_duration("3 parsecs").is_err());
        assert_eq!(Bytes::Text("5%".into()).resolve(1000).unwrap(), 50);
        assert_eq!(Bytes::Text("2G".into()).resolve(0).unwrap(), 2 << 30);
        assert_eq!(Bytes::Abs(7).resolve(0).unwrap(), 7);
        assert!(Bytes::Text("lots".into()).resolve(0).is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(T0 / D), (2026, 11, 26));
    }
}
