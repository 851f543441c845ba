//! The control socket: the CLI talks to a running daemon over an abstract Unix
//! socket named after the store (the store directory itself is hidden under the
//! mount, so a path-bound socket would be unreachable). One JSON request, one
//! JSON reply per connection. Only root and the daemon's own user may connect.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::fs::versioning::Versioner;
use crate::store::{Store, StoreError, unhex};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Log {
        path: String,
    },
    Snapshot {
        path: Option<String>,
    },
    Pin {
        path: String,
        number: u64,
    },
    Unpin {
        path: String,
        number: u64,
    },
    Gc {
        dry_run: bool,
    },
    Verify {
        #[serde(default)]
        repair: bool,
    },
    Du,
    /// The newest `last` generations (all when None), oldest first.
    Generations {
        #[serde(default)]
        last: Option<usize>,
    },
    Stats,
    /// Block until nothing is settling, being captured or sealed and the space
    /// thread is between passes (benchmarks and scripts: "the store is quiet").
    Wait {
        timeout_ms: u64,
    },
}

pub fn socket_name(store_path: &Path) -> String {
    format!(
        "ckptfs-{}",
        crate::store::layout::path_hash(store_path.as_os_str().as_encoded_bytes())
    )
}

/// What a request runs against.
pub struct Ctx<'a> {
    pub store: &'a Store,
    /// None when nothing is mounted (offline commands) or versioning is off.
    pub versioner: Option<&'a Versioner>,
    /// The `.versions` view's name (replies name it for the CLI's paths).
    pub versions_dir: &'a str,
    /// The metrics endpoint's URL, when it serves one.
    pub metrics: Option<&'a str>,
    /// "passthrough" or "daemon" (None offline).
    pub data_path: Option<&'static str>,
    /// Inodes the `.versions` view holds (None offline).
    pub view_inodes: Option<u64>,
    /// FUSE requests answered so far, by operation (None offline, or when
    /// no metrics are served: only then are requests counted).
    pub fuse_requests: Option<std::collections::BTreeMap<&'static str, u64>>,
}

/// Why a request failed; its `Display` is the reply's `error` text.
#[derive(Debug)]
pub enum ControlError {
    /// `snapshot` on a mount without versioning.
    VersioningDisabled,
    /// `wait` timed out; the message says what was still busy.
    NotQuiet(String),
    Store(StoreError),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::VersioningDisabled => f.write_str("versioning is disabled on this mount"),
            ControlError::NotQuiet(m) => f.write_str(m),
            ControlError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

impl From<io::Error> for ControlError {
    fn from(e: io::Error) -> Self {
        ControlError::Store(e.into())
    }
}

/// A reply. Lists that grow with the store are serialized as they are
/// written, not built as a `Value` first: the value tree of a 10,000-version
/// history is ~28 MB, and the allocator keeps such a burst resident in the
/// arena of the connection's thread for the daemon's life.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Reply {
    Value(Value),
    Log {
        ok: bool,
        versions: Vec<crate::store::VersionMeta>,
        versions_dir: String,
    },
    Generations {
        ok: bool,
        generations: Vec<crate::store::Generation>,
    },
}

impl Reply {
    /// The reply as the client reads it (offline commands run in-process).
    pub fn into_value(self) -> Value {
        match self {
            Reply::Value(v) => v,
            r => serde_json::to_value(r)
                .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()})),
        }
    }
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

/// Requests that failed (bad request or an error reply), for the metrics.
pub static ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn reply(r: Result<Reply, ControlError>) -> Reply {
    r.unwrap_or_else(|e| {
        ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        json!({"ok": false, "error": e.to_string()}).into()
    })
}

/// What the mounted filesystem shares with the control socket.
pub struct Live {
    pub passthrough: Arc<std::sync::atomic::AtomicBool>,
    pub view_inodes: Arc<std::sync::atomic::AtomicU64>,
    /// Counted only when metrics are served.
    pub ops: Option<Arc<crate::fs::op_stats::OpStats>>,
}

/// Start serving; the thread lives as long as the process.
pub fn serve(
    store: Arc<Store>,
    versioner: Option<Arc<Versioner>>,
    store_path: &Path,
    versions_dir: String,
    metrics: Option<String>,
    live: Live,
) -> io::Result<()> {
    let addr = SocketAddr::from_abstract_name(socket_name(store_path).as_bytes())?;
    let l = UnixListener::bind_addr(&addr)?;
    std::thread::Builder::new()
        .name("ckptfs-control".into())
        .spawn(move || {
            for c in l.incoming().flatten() {
                let (s, v, d) = (store.clone(), versioner.clone(), versions_dir.clone());
                let m = metrics.clone();
                let vi = live.view_inodes.load(std::sync::atomic::Ordering::Relaxed);
                let requests = live.ops.as_ref().map(|ops| {
                    let by_op: std::collections::BTreeMap<&'static str, u64> = ops
                        .snapshot()
                        .into_iter()
                        .map(|o| (o.op, o.latency.count))
                        .collect();
                    by_op
                });
                let data_path = if live.passthrough.load(std::sync::atomic::Ordering::Relaxed) {
                    "passthrough"
                } else {
                    "daemon"
                };
                std::thread::spawn(move || {
                    let ctx = Ctx {
                        store: &s,
                        versioner: v.as_deref(),
                        versions_dir: &d,
                        metrics: m.as_deref(),
                        data_path: Some(data_path),
                        view_inodes: Some(vi),
                        fuse_requests: requests,
                    };
                    if let Err(e) = handle(c, &ctx) {
                        log::debug!("control: {e}");
                    }
                });
            }
        })?;
    Ok(())
}

fn peer_allowed(c: &UnixStream) -> bool {
    crate::sys::peer_uid(c.as_fd()).is_ok_and(|uid| uid == 0 || uid == crate::sys::geteuid())
}

fn handle(c: UnixStream, ctx: &Ctx) -> io::Result<()> {
    let mut w = c.try_clone()?;
    if !peer_allowed(&c) {
        ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return writeln!(w, "{}", json!({"ok": false, "error": "permission denied"}));
    }
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line)?;
    // Progress lines go out while the request runs, at most ten a second;
    // the last line is the reply.
    let mut out = w.try_clone()?;
    let mut last: Option<std::time::Instant> = None;
    let mut progress = |done: u64, total: u64| {
        if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100)) {
            last = Some(std::time::Instant::now());
            let _ = writeln!(out, "{}", json!({"progress": [done, total]}));
        }
    };
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(r) => reply(execute(r, ctx, &mut progress)),
        Err(e) => {
            ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            json!({"ok": false, "error": format!("bad request: {e}")}).into()
        }
    };
    let mut w = io::BufWriter::new(w);
    serde_json::to_writer(&mut w, &reply)?;
    writeln!(w)?;
    w.flush()
}

/// Where a long request reports how far it got: (done, total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Run a request against a store (also used directly when nothing is mounted).
pub fn execute(r: Request, ctx: &Ctx, progress: Progress) -> Result<Reply, ControlError> {
    let (store, v) = (ctx.store, ctx.versioner);
    let value = match r {
        Request::Log { path } => {
            return Ok(Reply::Log {
                ok: true,
                versions: store.history(&unhex(&path)),
                versions_dir: ctx.versions_dir.to_string(),
            });
        }
        Request::Generations { last } => {
            return Ok(Reply::Generations {
                ok: true,
                generations: store.generations(last.unwrap_or(usize::MAX)),
            });
        }
        Request::Snapshot { path } => {
            let v = v.ok_or(ControlError::VersioningDisabled)?;
            let p = path.map(|p| unhex(&p));
            let n = v.snapshot(p.as_deref())?;
            Ok(json!({"ok": true, "captured": n}))
        }
        Request::Pin { path, number } => {
            store.set_pin(&unhex(&path), number, true)?;
            Ok(json!({"ok": true}))
        }
        Request::Unpin { path, number } => {
            store.set_pin(&unhex(&path), number, false)?;
            Ok(json!({"ok": true}))
        }
        Request::Gc { dry_run } => {
            let (lines, freed) = store.gc(dry_run, progress);
            Ok(json!({"ok": true, "lines": lines, "freed": freed}))
        }
        Request::Verify { repair: false } => {
            store.flush_pending();
            let p: Vec<String> = store
                .verify(|n, total| progress(n as u64, total as u64))
                .into_iter()
                .map(|p| p.message)
                .collect();
            Ok(json!({"ok": true, "problems": p}))
        }
        Request::Verify { repair: true } => {
            store.flush_pending();
            let (found, left) = store.repair()?;
            let msg = |v: Vec<crate::store::verify::Problem>| -> Vec<String> {
                v.into_iter().map(|p| p.message).collect()
            };
            Ok(json!({"ok": true, "repaired": msg(found), "problems": msg(left)}))
        }
        Request::Du => {
            let d = store.du();
            Ok(json!({"ok": true, "categories": d.categories, "directories": d.directories}))
        }
        Request::Stats => {
            let (sealing, _) = store.busy();
            Ok(json!({
                "ok": true,
                "stats": &store.stats,
                "versions": store.with_index(|i| i.total_versions()),
                "store_bytes": store.store_bytes(),
                "space": store.space_status().ok(),
                "settling": v.map_or(0, |v| v.settling()),
                "sealing": sealing,
                "failed_seals": store.failed_seals(),
                "digests_pending": store.digests_pending(),
                "metrics": ctx.metrics,
                "data_path": ctx.data_path,
                "view_inodes": ctx.view_inodes,
                "fuse_requests": ctx.fuse_requests,
                "last_seal_ns": store.stats.last_seal_ns.load(std::sync::atomic::Ordering::Relaxed),
                "versioning": v.is_some(),
                "archive": store.archive().map(|a| json!({
                    "url": a.opts.url,
                    "node": a.opts.node,
                    "stats": &a.stats,
                })),
            }))
        }
        Request::Wait { timeout_ms } => wait_quiet(store, v, timeout_ms),
    };
    value.map(Reply::Value)
}

/// Poll every 2 ms until quiet twice in a row (a seal finishing can start a
/// space pass; the second look sees it).
fn wait_quiet(
    store: &Store,
    v: Option<&Versioner>,
    timeout_ms: u64,
) -> Result<Value, ControlError> {
    let start = std::time::Instant::now();
    let _h = store.hurry();
    let mut quiet_looks = 0;
    loop {
        // Settling first: what leaves it is already counted as sealing.
        let settling = v.map_or(0, |v| v.settling());
        let (sealing, space_busy) = store.busy();
        let digests = store.digests_pending();
        if settling == 0 && sealing == 0 && !space_busy && digests == 0 {
            quiet_looks += 1;
            if quiet_looks == 2 {
                let waited = start.elapsed().as_secs_f64() * 1000.0;
                return Ok(json!({"ok": true, "waited_ms": waited}));
            }
        } else {
            quiet_looks = 0;
        }
        if start.elapsed().as_millis() as u64 >= timeout_ms {
            return Err(ControlError::NotQuiet(format!(
                "not quiet after {timeout_ms} ms: {settling} file(s) settling, {sealing} seal(s) queued, {digests} digest(s) to take, space thread {}",
                if space_busy { "busy" } else { "idle" }
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Send one request to the daemon serving `store_path`.
/// Send `r` to the daemon and wait for its reply, passing on the progress
/// lines a long request (gc, verify) sends before it.
pub fn request(store_path: &Path, r: &Request, progress: Progress) -> io::Result<Value> {
    let addr = SocketAddr::from_abstract_name(socket_name(store_path).as_bytes())?;
    let mut c = UnixStream::connect_addr(&addr)?;
    writeln!(c, "{}", serde_json::to_string(r).map_err(io::Error::other)?)?;
    let mut rd = BufReader::new(c);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without a reply",
            ));
        }
        let v: Value = serde_json::from_str(&line).map_err(io::Error::other)?;
        match v["progress"]
            .as_array()
            .map(|a| (a[0].as_u64(), a[1].as_u64()))
        {
            Some((Some(d), Some(t))) => progress(d, t),
            _ => return Ok(v),
        }
    }
}
