//! `--metrics ADDR:PORT`: `/metrics` in the OpenMetrics text format
//! (prometheus-client encodes) and `/healthz`, served by a small synchronous
//! HTTP server (tiny_http) on its own thread. Everything is read at scrape
//! time from atomics the layers keep anyway; the one costly figure (bytes per
//! category on disk) is refreshed by a background thread and served cached, so
//! a scrape never waits for a FUSE request or a seal. No label is a path.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::fs::op_stats::OpStats;
use crate::fs::versioning::Versioner;
use crate::histogram::Snapshot;
use crate::store::{Du, Store};

/// How often the per-category bytes (which stat every object) are summed:
/// at least this often, and at most every USAGE_MIN while versions come and go.
const USAGE_EVERY: Duration = Duration::from_secs(60);
const USAGE_MIN: Duration = Duration::from_secs(5);

/// Bind the endpoint's socket (before the mount: a port in use is an error
/// then, not a half-working daemon).
pub use crate::config::parse_listen;

pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("metrics address {addr}: {e}"))
}

/// What the endpoint reads.
pub struct Sources {
    pub store: Arc<Store>,
    pub versioner: Option<Arc<Versioner>>,
    pub ops: Option<Arc<OpStats>>,
    pub passthrough: Arc<AtomicBool>,
    usage: Mutex<Option<Du>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ckptfs metrics sources")
    }
}

impl Sources {
    pub fn new(
        store: Arc<Store>,
        versioner: Option<Arc<Versioner>>,
        ops: Option<Arc<OpStats>>,
        passthrough: Arc<AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            versioner,
            ops,
            passthrough,
            usage: Mutex::new(None),
        })
    }
}

/// One metric family: a descriptor, then a sample per label set.
fn family<'a, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

type Labels<'a> = &'a [(&'a str, &'a str)];

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> std::fmt::Result {
    let rows = rows.iter().map(|(l, v)| (*l, ConstCounter::new(*v)));
    family(e, name, help, MetricType::Counter, rows)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> std::fmt::Result {
    let rows = rows.iter().map(|(l, v)| (*l, ConstGauge::new(*v)));
    family(e, name, help, MetricType::Gauge, rows)
}

fn histogram(m: MetricEncoder, h: &Snapshot) -> std::fmt::Result {
    let mut m = m;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        h.sum_seconds,
        h.count,
        &h.buckets,
        None,
    )
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.store.stats;
        let path = if self.passthrough.load(Relaxed) {
            "passthrough"
        } else {
            "daemon"
        };
        gauge(
            &mut e,
            "ckptfs_build_info",
            "Version and data path of the running daemon (always 1).",
            &[(
                &[("version", env!("CARGO_PKG_VERSION")), ("data_path", path)],
                1.0,
            )],
        )?;
        if let Some(ops) = &self.ops {
            let snap = ops.snapshot();
            let rows: Vec<([(&str, &str); 1], u64)> = snap
                .iter()
                .map(|o| ([("op", o.op)], o.latency.count))
                .collect();
            let rows: Vec<(&[(&str, &str)], u64)> =
                rows.iter().map(|(l, v)| (&l[..], *v)).collect();
            counter(
                &mut e,
                "ckptfs_fuse_requests",
                "FUSE requests served by the daemon, by operation (with passthrough, reads and writes go to the kernel and are not seen).",
                &rows,
            )?;
            let mut m = e.encode_descriptor(
                "ckptfs_fuse_request_duration_seconds",
                "Time the daemon took to answer a FUSE request, by operation.",
                None,
                MetricType::Histogram,
            )?;
            for o in &snap {
                let labels = [("op", o.op)];
                histogram(m.encode_family(&labels)?, &o.latency)?;
            }
        }
        let sealed: Vec<(String, String, u64)> = s
            .sealed_by
            .lock()
            .iter()
            .map(|((r, c), n)| (r.as_str().to_string(), c.clone(), *n))
            .collect();
        let rows: Vec<([(&str, &str); 2], u64)> = sealed
            .iter()
            .map(|(r, c, n)| ([("reason", r.as_str()), ("category", c.as_str())], *n))
            .collect();
        let rows: Vec<(&[(&str, &str)], u64)> = rows.iter().map(|(l, v)| (&l[..], *v)).collect();
        counter(
            &mut e,
            "ckptfs_versions_sealed",
            "Versions made durable, by why they were made and the file's category.",
            &rows,
        )?;
        counter(
            &mut e,
            "ckptfs_seal_duplicates",
            "Sealed states identical to the version before them (no new version).",
            &[(&[], s.duplicates.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_captures",
            "States taken into the store to be sealed, by how (hard link or copy/reflink).",
            &[
                (&[("how", "link")], s.captures_linked.load(Relaxed)),
                (&[("how", "copy")], s.captures_copied.load(Relaxed)),
            ],
        )?;
        let m = e.encode_descriptor(
            "ckptfs_seal_lag_seconds",
            "From the last close (or the fsync, unlink, rename…) to the durable version.",
            None,
            MetricType::Histogram,
        )?;
        histogram(m, &s.seal_lag.0.snapshot())?;
        let (sealing, _) = self.store.busy();
        let settling = self.versioner.as_ref().map_or(0, |v| v.settling());
        gauge(
            &mut e,
            "ckptfs_seals_pending",
            "Closed files waiting for their settle time, being captured or being sealed.",
            &[(&[], (sealing + settling as u64) as f64)],
        )?;
        gauge(
            &mut e,
            "ckptfs_seals_failed",
            "Captured states whose seal failed (a full disk), waiting for room to be sealed again.",
            &[(&[], self.store.failed_seals() as f64)],
        )?;
        let last = s.last_seal_ns.load(Relaxed);
        gauge(
            &mut e,
            "ckptfs_last_seal_timestamp_seconds",
            "When the last seal succeeded (Unix time; 0 before the first).",
            &[(&[], last as f64 / 1e9)],
        )?;
        if let Some(du) = &*self.usage.lock() {
            // Local = held on this disk; archive = only in the bucket.
            let mut versions: Vec<([(&str, &str); 2], f64)> = Vec::new();
            let mut bytes: Vec<([(&str, &str); 3], f64)> = Vec::new();
            for (c, r) in &du.categories {
                let c = c.as_str();
                let local = r.versions - r.archived;
                versions.push(([("category", c), ("tier", "local")], local as f64));
                versions.push(([("category", c), ("tier", "archive")], r.archived as f64));
                let logical = r.bytes.saturating_sub(r.archived_bytes);
                for (tier, kind, v) in [
                    ("local", "logical", logical),
                    ("local", "disk", r.on_disk),
                    ("archive", "logical", r.archived_bytes),
                ] {
                    bytes.push(([("category", c), ("tier", tier), ("kind", kind)], v as f64));
                }
            }
            let v: Vec<(&[(&str, &str)], f64)> =
                versions.iter().map(|(l, v)| (&l[..], *v)).collect();
            gauge(
                &mut e,
                "ckptfs_versions",
                "Versions held, by category and tier (local or archive; refreshed within 5 s of a change, at least every minute).",
                &v,
            )?;
            let b: Vec<(&[(&str, &str)], f64)> = bytes.iter().map(|(l, v)| (&l[..], *v)).collect();
            gauge(
                &mut e,
                "ckptfs_store_bytes",
                "Bytes of versions held, by category and tier; kind=logical (sizes) or disk (local blocks, each object once). Refreshed within 5 s of a change.",
                &b,
            )?;
        }
        if let Some(a) = self.store.archive() {
            let st = &a.stats;
            counter(
                &mut e,
                "ckptfs_archive_uploaded_bytes",
                "Bytes sent to the archive bucket (chunks after compression, and manifests).",
                &[(&[], st.bytes_uploaded.load(Relaxed))],
            )?;
            counter(
                &mut e,
                "ckptfs_archive_chunks",
                "Chunks archived: uploaded, or reused (already in the bucket from another version, file or node).",
                &[
                    (&[("result", "uploaded")], st.chunks_uploaded.load(Relaxed)),
                    (&[("result", "reused")], st.chunks_reused.load(Relaxed)),
                ],
            )?;
            counter(
                &mut e,
                "ckptfs_archive_versions",
                "Versions moved to the archive (their local copy removed).",
                &[(&[], st.versions_archived.load(Relaxed))],
            )?;
            gauge(
                &mut e,
                "ckptfs_archive_backlog",
                "Versions due for the archive and not there yet.",
                &[(&[], st.backlog.load(Relaxed) as f64)],
            )?;
        }
        let all = s.evictions.load(Relaxed);
        let (quota, pressure) = (
            s.evicted_quota.load(Relaxed),
            s.evicted_pressure.load(Relaxed),
        );
        let all_b = s.bytes_evicted.load(Relaxed);
        let (quota_b, pressure_b) = (
            s.bytes_evicted_quota.load(Relaxed),
            s.bytes_evicted_pressure.load(Relaxed),
        );
        counter(
            &mut e,
            "ckptfs_evictions",
            "Versions evicted, by cause: policy (retention rules), quota (max_store_bytes, min_free_bytes), pressure (the reserve, ENOSPC).",
            &[
                (&[("cause", "policy")], all.saturating_sub(quota + pressure)),
                (&[("cause", "quota")], quota),
                (&[("cause", "pressure")], pressure),
            ],
        )?;
        counter(
            &mut e,
            "ckptfs_evicted_bytes",
            "Bytes freed by evictions, by cause.",
            &[
                (
                    &[("cause", "policy")],
                    all_b.saturating_sub(quota_b + pressure_b),
                ),
                (&[("cause", "quota")], quota_b),
                (&[("cause", "pressure")], pressure_b),
            ],
        )?;
        counter(
            &mut e,
            "ckptfs_evictions_within_keep",
            "Versions evicted under pressure although younger than keep_within.",
            &[(&[], s.evicted_within_keep.load(Relaxed))],
        )?;
        if let Ok(sp) = self.store.space_status() {
            gauge(
                &mut e,
                "ckptfs_free_bytes",
                "Free bytes on the store's filesystem (for unprivileged users).",
                &[(&[], sp.free as f64)],
            )?;
            gauge(
                &mut e,
                "ckptfs_reserve_bytes",
                "Free space kept for the live tree (min_free_bytes plus the learned save headroom); below it, history is evicted.",
                &[(&[], sp.reserve as f64)],
            )?;
            gauge(
                &mut e,
                "ckptfs_pressure",
                "1 while free space (or inodes) is below the reserve.",
                &[(&[], f64::from(u8::from(sp.pressure)))],
            )?;
        }
        counter(
            &mut e,
            "ckptfs_pressure_opens",
            "Opens for writing served on the daemon data path because space was below the reserve.",
            &[(&[], s.pressure_opens.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_history_skipped",
            "States not kept because no room was left even after evicting history.",
            &[(&[], s.history_skipped.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_errors",
            "Errors by kind: seal, capture, enospc (returned to a writer on the daemon path), control (socket requests refused or failed).",
            &[
                (&[("kind", "seal")], s.errors_seal.load(Relaxed)),
                (&[("kind", "capture")], s.errors_capture.load(Relaxed)),
                (&[("kind", "enospc")], s.enospc_returned.load(Relaxed)),
                (&[("kind", "control")], crate::control::ERRORS.load(Relaxed)),
                (
                    &[("kind", "archive")],
                    self.store
                        .archive()
                        .map_or(0, |a| a.stats.errors.load(Relaxed)),
                ),
            ],
        )?;
        counter(
            &mut e,
            "ckptfs_fsync_throttled",
            "fsyncs that made no version: within fsync_min_interval of the file's last fsync version.",
            &[(&[], s.fsync_throttled.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_fsync_superseded",
            "Passthrough fsyncs whose state the writer changed again before it closed or the version was taken.",
            &[(&[], s.fsync_superseded.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_conflicts",
            "Opens for writing while another writer had the file open.",
            &[(&[], s.conflicts.load(Relaxed))],
        )?;
        counter(
            &mut e,
            "ckptfs_retention_decisions",
            "Retention decisions for one path, by how: incremental (a settled history: only the versions the new ones push out are read) or full (every version read).",
            &[
                (
                    &[("how", "incremental")],
                    s.retention_incremental.load(Relaxed),
                ),
                (&[("how", "full")], s.retention_full.load(Relaxed)),
            ],
        )?;
        counter(
            &mut e,
            "ckptfs_compression_saved_bytes",
            "Bytes saved by compressing old versions since the mount.",
            &[(&[], s.bytes_saved_compression.load(Relaxed))],
        )?;
        Ok(())
    }
}

/// Serve `/metrics` and `/healthz` on `listener` from a thread of its own,
/// and keep the per-category usage fresh from another.
pub fn serve(listener: TcpListener, src: Arc<Sources>) -> std::io::Result<()> {
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(src.clone()));
    let refresh = src.clone();
    std::thread::Builder::new()
        .name("ckptfs-usage".into())
        .spawn(move || {
            // Summed again a few seconds after the store changed, and at
            // least every USAGE_EVERY (compression and eviction move bytes too).
            let mut last: Option<(Instant, u64)> = None;
            loop {
                let st = &refresh.store.stats;
                let changes = st.sealed.load(Relaxed) + st.evictions.load(Relaxed);
                let due = last.is_none_or(|(t, n)| {
                    t.elapsed() >= USAGE_EVERY || (n != changes && t.elapsed() >= USAGE_MIN)
                });
                if due {
                    let t = Instant::now();
                    let du = refresh.store.du();
                    *refresh.usage.lock() = Some(du);
                    log::debug!("metrics: usage summed in {:?}", t.elapsed());
                    last = Some((t, changes));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })?;
    std::thread::Builder::new()
        .name("ckptfs-metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let path = req.url().split('?').next().unwrap_or("").to_string();
                let r = match path.as_str() {
                    "/metrics" => {
                        let mut body = String::new();
                        match prometheus_client::encoding::text::encode(&mut body, &registry) {
                            Ok(()) => tiny_http::Response::from_string(body).with_header(
                                "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
                                    .parse::<tiny_http::Header>()
                                    .expect("a valid header"),
                            ),
                            Err(_) => tiny_http::Response::from_string("encoding failed\n")
                                .with_status_code(500),
                        }
                    }
                    "/healthz" => tiny_http::Response::from_string("ok\n"),
                    _ => tiny_http::Response::from_string("ckptfs: /metrics or /healthz\n")
                        .with_status_code(404),
                };
                if let Err(e) = req.respond(r) {
                    log::debug!("metrics: {e}");
                }
            }
        })?;
    Ok(())
}
