//! A latency histogram in plain atomics: recording is a few uncontended adds,
//! reading (a metrics scrape) takes no lock anyone else needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// FUSE request latency, seconds.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// From the last close to a durable version, seconds (includes `settle_ms`).
pub const SEAL_LAG_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

pub struct Histogram {
    bounds: &'static [f64],
    sum_ns: AtomicU64,
    /// Per bucket (not cumulative); the extra last one is +Inf.
    buckets: Vec<AtomicU64>,
}

/// A histogram's numbers at one moment.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub count: u64,
    pub sum_seconds: f64,
    /// (upper bound, count in that bucket alone), ending with +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            sum_ns: AtomicU64::new(0),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn observe(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let b = self.bounds.partition_point(|&ub| ub < d.as_secs_f64());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(ub, n)| (ub, n.load(Ordering::Relaxed)))
            .collect();
        Snapshot {
            // The buckets' total: count and buckets agree even when an
            // observation lands between the loads.
            count: buckets.iter().map(|b| b.1).sum(),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let h = Histogram::new(REQUEST_BUCKETS);
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        let at = |ub: f64| s.buckets.iter().find(|b| b.0 == ub).unwrap().1;
        assert_eq!((at(0.000_01), at(0.05), at(f64::INFINITY)), (1, 1, 1));
        assert!(
            (s.sum_seconds - 20.030003).abs() < 1e-6,
            "{}",
            s.sum_seconds
        );
    }
}
