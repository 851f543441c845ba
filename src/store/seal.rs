//! Capture (on the caller's thread, fast) and sealing (on worker threads).
//!
//! Capture puts the content into `incoming/` — a hard link when the caller says
//! nobody will write the inode in place, a reflink or copy otherwise — and records
//! what it knows in a line appended to `captures` first (never an xattr: a linked
//! capture shares the user's inode), so a crash before sealing loses nothing: the next mount
//! seals what it finds there. Sealing digests, classifies, drops duplicates, moves
//! the object to its shard and writes the metadata. `captures` is emptied whenever
//! nothing is left to seal (see `capture_log`).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use super::layout;
use super::meta::{self, Digest, VersionMeta};
use super::{Capture, How, Reason, Store, Writer, hex, now_ns, unhex};
use crate::classify;
use crate::sys;

/// A version ready to publish (metadata written under a temp name).
pub struct Prepared {
    name: String,
    meta: VersionMeta,
    dir: String,
    dfd: std::os::fd::OwnedFd,
    tmp: String,
    /// The temp metadata file, kept open to fsync it in small batches.
    tmp_file: std::fs::File,
    copied: bool,
}

/// `CKPTFS_CLASSIFY=0` turns classification off, only to measure what it costs
/// (scripts/bench-versions.sh --no-classify); versions are then "binary".
fn classification_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("CKPTFS_CLASSIFY").is_ok_and(|v| v == "0"))
}

pub enum Job {
    Seal(String, Capture),
    Stop,
}

/// Capture records in `incoming/`, the sealing queues and their workers.
/// How long a seal worker waits for more captures before sealing a batch
/// when someone waits for the seals (`Store::hurry`).
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// Otherwise a burst of captures (an untar, `rm -rf`, a step's many small
/// files) is sealed once it pauses this long: sealing a 4 KiB file costs the
/// daemon more CPU than creating it, and on a machine with few cores it would
/// slow the burst itself. The captures are safe in `incoming/` meanwhile.
const QUIET: std::time::Duration = std::time::Duration::from_millis(20);
/// ... but never later than this after the burst's first capture, nor with
/// more than `GATHER_MAX` queued, so a burst that does not stop is still
/// sealed (and its space accounted) as it goes.
const DEFER_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const GATHER_MAX: usize = 32_768;
/// Versions committed by one sync (`commit`).
const BATCH: usize = 512;
/// Nice of the seal workers and the archiver: their work (a digest reads the
/// whole version) follows a save and must not slow the next one on a machine
/// with few cores; it still runs whenever a core is idle. The space sweeper
/// keeps normal priority: a writer may be waiting for the room it makes.
pub(crate) const BACKGROUND_NICE: i32 = 10;

pub(super) struct Sealer {
    pub(super) incoming: OwnedFd,
    /// `captures`, opened for appending (None in a read-only open: records go
    /// to `.cap` files then). One line is one write, so threads never interleave.
    /// A capture holds it shared from its record until its object is in
    /// `incoming/`; a rewrite (`capture_log`) takes it alone.
    pub(super) log: RwLock<Option<OwnedFd>>,
    /// Records in `captures` (about: appends since it was emptied or rewritten).
    pub(super) log_records: AtomicU64,
    /// `captures` should have been emptied while a rewrite ran.
    pub(super) empty_owed: AtomicBool,
    /// A rewrite of `captures` is running.
    pub(super) compacting: AtomicBool,
    /// A failed seal's record could not be kept in its own file (a full
    /// disk): `captures` holds it, so it is never emptied again while this
    /// daemon runs (only rewritten, which keeps records still in `incoming/`).
    pub(super) log_holds_failed: AtomicBool,
    /// Failed seals waiting for a retry (`failed`).
    pub(super) failed: Mutex<super::failed::Failed>,
    /// Makes capture names unique within this process.
    pub(super) seq: AtomicU64,
    /// One queue per worker; a path always goes to the same one (in order).
    pub(super) queues: Vec<crossbeam_channel::Sender<Job>>,
    pub(super) receivers: Mutex<Vec<crossbeam_channel::Receiver<Job>>>,
    /// Waiters for the seals (`Store::hurry`): no sealing is deferred then.
    pub(super) hurry: std::sync::atomic::AtomicUsize,
    /// Captures from before their record is written until they are sealed, and
    /// the wake-up when it reaches 0 (when `captures` is emptied too).
    pub(super) inflight: Mutex<u64>,
    pub(super) idle: Condvar,
    pub(super) workers: Mutex<Vec<JoinHandle<()>>>,
    pub(super) stop: AtomicBool,
    /// When retention last ran for paths with long histories (see `retention_due`).
    pub(super) retained_at: Mutex<HashMap<Vec<u8>, std::time::Instant>>,
    /// Held by each retention decision and its evictions (`retain_path`).
    pub(super) retention: Mutex<()>,
    /// Open shard directories (`objects/<category>/<xx>`): a version's
    /// directory is then one mkdirat and one openat, not a walk from the top.
    pub(super) shards: Mutex<HashMap<String, std::sync::Arc<OwnedFd>>>,
    /// Serializes creating a version's directory (and its first file) against
    /// eviction removing the directory with a path's last version. Not the
    /// shares lock: captures in the FUSE request path would wait on mkdirs.
    pub(super) dirs: Mutex<()>,
}

impl Sealer {
    pub(super) fn new(incoming: OwnedFd, log: Option<OwnedFd>, workers: usize) -> Self {
        let (mut queues, mut receivers) = (Vec::new(), Vec::new());
        for _ in 0..workers {
            let (s, r) = crossbeam_channel::unbounded();
            queues.push(s);
            receivers.push(r);
        }
        Self {
            incoming,
            log: RwLock::new(log),
            log_records: AtomicU64::new(0),
            empty_owed: AtomicBool::new(false),
            compacting: AtomicBool::new(false),
            log_holds_failed: AtomicBool::new(false),
            failed: Mutex::new(Default::default()),
            hurry: std::sync::atomic::AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            queues,
            receivers: Mutex::new(receivers),
            inflight: Mutex::new(0),
            idle: Condvar::new(),
            workers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            retained_at: Mutex::new(HashMap::new()),
            retention: Mutex::new(()),
            shards: Mutex::new(HashMap::new()),
            dirs: Mutex::new(()),
        }
    }
}

impl Store {
    /// Capture the current content of `fd` (any fd on the inode, O_PATH is fine) as
    /// the next version of `relpath`. Returns once the content is safe in the store.
    /// On ENOSPC history is evicted and the capture tried again; with nothing
    /// left to evict the state is not kept (logged and counted): history never
    /// makes the writer's operation fail.
    pub fn capture(
        &self,
        fd: BorrowedFd<'_>,
        relpath: &[u8],
        reason: Reason,
        writer: Option<Writer>,
        how: How,
    ) -> io::Result<()> {
        // The caller says which inode, why and who; the store reads the rest
        // (size, mode, owner, mtime) from the inode itself.
        let cap = Capture {
            path_hex: hex(relpath),
            reason,
            sealed_ns: now_ns(),
            mtime_ns: 0,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            writer,
            copied: false,
        };
        let size = sys::fstat(fd).map(|s| s.st_size as u64).unwrap_or(0);
        if how == How::CloneOnly && self.shares.no_reflink.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        match self.with_room(size, || self.capture_once(fd, cap.clone(), how)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.shares.same_fs => {
                self.stats.history_skipped.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "no room for a version of {} ({:?}) even after evicting history: not kept",
                    String::from_utf8_lossy(relpath),
                    cap.reason
                );
                Ok(())
            }
            // Answers, not failures: no reflink here (remembered), or the
            // file changed under a `CopyStable` copy.
            Err(e) if how == How::CloneOnly && e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                self.shares.no_reflink.store(true, Ordering::Relaxed);
                Err(e)
            }
            Err(e) if how == How::CopyStable && e.raw_os_error() == Some(libc::EAGAIN) => Err(e),
            Err(e) => {
                self.stats.error(&self.stats.errors_capture);
                Err(e)
            }
            r => r,
        }
    }

    /// Counters for a version just made durable.
    fn count_sealed(&self, m: &VersionMeta) {
        let now = now_ns();
        *self
            .stats
            .sealed_by
            .lock()
            .entry((m.reason(), m.category().to_string()))
            .or_default() += 1;
        // A close is captured `settle` after it happened.
        let mut lag = std::time::Duration::from_nanos((now - m.sealed_ns).max(0) as u64);
        if m.reason() == Reason::Close {
            lag += self.opts.settle;
        }
        self.stats.seal_lag.0.observe(lag);
        self.stats.last_seal_ns.store(now as u64, Ordering::Relaxed);
    }

    fn capture_once(&self, fd: BorrowedFd<'_>, mut cap: Capture, how: How) -> io::Result<()> {
        let st = sys::fstat(fd)?;
        // Empty content is never a version: there is nothing to lose.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size == 0 {
            return Ok(());
        }
        cap.size = st.st_size as u64;
        cap.mode = st.st_mode & 0o7777;
        cap.uid = st.st_uid;
        cap.gid = st.st_gid;
        cap.mtime_ns = sys::mtime_ns(&st);
        let name = format!(
            "{:x}-{}-{}",
            cap.sealed_ns,
            std::process::id(),
            self.sealer.seq.fetch_add(1, Ordering::Relaxed)
        );
        // Counted from before its record is written, so that `captures` is not
        // emptied under it; uncounted again if it fails.
        self.count();
        match self.capture_counted(fd, cap, how, &st, name) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.uncount(1);
                Err(e)
            }
        }
    }

    fn capture_counted(
        &self,
        fd: BorrowedFd<'_>,
        mut cap: Capture,
        how: How,
        st: &libc::stat,
        name: String,
    ) -> io::Result<()> {
        let cname = CString::new(name.clone()).map_err(io::Error::other)?;
        let proc = sys::proc_path(fd.as_raw_fd());
        // The record goes first, so a crash never leaves content nobody can name.
        // Plain write, no fsync: a daemon crash keeps the page cache, and a power
        // loss loses the unsynced link as well (FORMAT.md, crash assumptions).
        let will_link = how == How::Link && self.shares.same_fs;
        cap.copied = !will_link;
        let log = self.sealer.log.read();
        self.write_record(log.as_ref(), &name, &cap)?;
        let _g = self.shares.lock.lock();
        let mut linked = false;
        if will_link {
            linked = sys::link_fd(fd, self.sealer.incoming.as_fd(), &cname).is_ok();
        }
        if !linked {
            if will_link {
                cap.copied = true;
                self.write_record(log.as_ref(), &name, &cap)?;
            }
            let r = sys::open_path(&proc, libc::O_RDONLY, 0).and_then(|src| {
                let dst = sys::openat(
                    self.sealer.incoming.as_fd(),
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                if how == How::CloneOnly {
                    sys::ficlone(dst.as_fd(), src.as_fd())
                        .map_err(|_| io::Error::from_raw_os_error(libc::EOPNOTSUPP))
                } else {
                    self.copy_into(&src, &dst, cap.size)?;
                    if how == How::CopyStable && !sys::same_state(st, &sys::fstat(fd)?) {
                        return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                    }
                    Ok(())
                }
            });
            if let Err(e) = r {
                // Its record in `captures` names an object that is gone: skipped.
                let _ = sys::unlinkat(self.sealer.incoming.as_fd(), &cname, 0);
                return Err(e);
            }
            self.stats.captures_copied.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.captures_linked.fetch_add(1, Ordering::Relaxed);
        }
        self.shares.pending.lock().insert(
            name.clone(),
            (st.st_ino, format!("{}/{name}", layout::INCOMING)),
        );
        drop(_g);
        drop(log);
        self.enqueue(name, cap);
        Ok(())
    }

    /// Queue a counted capture (see `capture_once`) for sealing.
    pub(super) fn enqueue(&self, name: String, cap: Capture) {
        self.later.busy_now();
        let shard = layout::path_hash(&unhex(&cap.path_hex)).as_bytes()[0] as usize
            % self.sealer.queues.len();
        if let Err(crossbeam_channel::SendError(Job::Seal(name, cap))) =
            self.sealer.queues[shard].send(Job::Seal(name, cap))
        {
            // The workers are gone (a shutdown): the next mount seals it,
            // from a record that must outlive `captures`, emptied below.
            self.keep_record(&name, &cap);
            self.uncount(1);
        }
    }

    /// A capture is in flight (from before its record is written).
    pub(super) fn count(&self) {
        self.count_n(1);
    }

    pub(super) fn count_n(&self, jobs: u64) {
        *self.sealer.inflight.lock() += jobs;
    }

    /// `jobs` captures are sealed, dropped or failed. At 0 every record in
    /// `captures` is done with (a failed seal's record went to a `.cap` file
    /// first): the log starts afresh.
    pub(super) fn uncount(&self, jobs: u64) {
        let mut n = self.sealer.inflight.lock();
        *n -= jobs;
        if *n == 0 {
            self.empty_log();
            self.sealer.idle.notify_all();
        }
    }

    /// Seal what a crash left in `incoming/`, oldest first.
    pub(super) fn recover_incoming(&self) {
        // Counted throughout, so `captures` is kept until all of it is queued.
        self.count();
        self.recover_counted();
        self.uncount(1);
    }

    fn recover_counted(&self) {
        let mut logged = self.read_capture_log();
        let Ok(dup) = self.sealer.incoming.try_clone() else {
            return;
        };
        let Ok(mut names) = sys::read_dir_fd(dup) else {
            return;
        };
        names.sort();
        for (n, _, _) in names {
            let name = String::from_utf8_lossy(&n).into_owned();
            if let Some(obj) = name.strip_suffix(layout::CAP_SUFFIX) {
                // A record whose object was already published: nothing to redo.
                let c = CString::new(obj).unwrap_or_default();
                if sys::fstatat(self.sealer.incoming.as_fd(), &c).is_err() {
                    let _ = sys::unlinkat(
                        self.sealer.incoming.as_fd(),
                        &CString::new(name).unwrap(),
                        0,
                    );
                }
                continue;
            }
            if name.starts_with('.') {
                continue;
            }
            if layout::is_unshare_temp(&name) {
                let _ = sys::unlinkat(
                    self.sealer.incoming.as_fd(),
                    &CString::new(name).unwrap(),
                    0,
                );
                continue;
            }
            // A `.cap` file (format 3, or kept after a failed seal), else the log.
            let file = layout::cap_name(&name);
            let from_file = meta::read_at(self.sealer.incoming.as_fd(), &file)
                .ok()
                .map(|b| serde_json::from_slice::<Capture>(&b).ok());
            // Moved into the log, so its seal leaves no file behind.
            if let Some(Some(cap)) = &from_file
                && self
                    .write_record(self.sealer.log.read().as_ref(), &name, cap)
                    .is_ok()
            {
                let c = CString::new(file).expect("no NUL");
                let _ = sys::unlinkat(self.sealer.incoming.as_fd(), &c, 0);
            }
            // An unreadable file (torn by a full disk): the log's record.
            match from_file.flatten().or_else(|| logged.remove(&name)) {
                Some(cap) => {
                    log::info!("recovering capture {name}");
                    self.count();
                    self.enqueue(name, cap)
                }
                None => log::warn!("incoming/{name}: no capture record; left for `ckptfs verify`"),
            }
        }
    }

    /// Seal in batches: every prepared version's metadata is made durable with one
    /// filesystem sync per batch instead of two fsyncs per version.
    pub(super) fn worker(&self, r: crossbeam_channel::Receiver<Job>) {
        sys::nice_this_thread(BACKGROUND_NICE);
        let mut stop = false;
        while !stop {
            let Ok(first) = r.recv() else { break };
            let mut jobs = vec![first];
            self.gather(&r, &mut jobs);
            for batch in jobs.chunks(BATCH) {
                stop |= self.seal_batch(batch);
            }
        }
    }

    /// Wait for the rest of a burst of captures (see `QUIET`). Group commit
    /// too: a stream of captures comes faster than its syncs.
    fn gather(&self, r: &crossbeam_channel::Receiver<Job>, jobs: &mut Vec<Job>) {
        let start = std::time::Instant::now();
        while !matches!(jobs.last(), Some(Job::Stop)) {
            let hurry = self.sealer.hurry.load(Ordering::SeqCst) > 0;
            if jobs.len() >= GATHER_MAX
                || (hurry && jobs.len() >= BATCH)
                || start.elapsed() >= DEFER_MAX
            {
                return;
            }
            let pause = if hurry { GATHER } else { QUIET };
            match r.try_recv().or_else(|_| r.recv_timeout(pause)) {
                Ok(j) => jobs.push(j),
                Err(_) => return,
            }
        }
    }

    /// Seal one batch; true when it holds the stop request.
    fn seal_batch(&self, batch: &[Job]) -> bool {
        let mut stop = false;
        let mut local: HashMap<Vec<u8>, (Same, u64)> = HashMap::new();
        let mut prepared = Vec::new();
        let mut jobs = 0u64;
        let mut failed = false;
        for job in batch {
            let Job::Seal(name, cap) = job else {
                stop = true;
                continue;
            };
            jobs += 1;
            // Never waits for seals: this is the thread that does them.
            match self.with_room_nowait(1 << 20, || self.prepare(name, cap, &mut local)) {
                Ok(Some(p)) => prepared.push(p),
                Ok(None) => {}
                Err(e) => {
                    failed = true;
                    self.stats.error(&self.stats.errors_seal);
                    log::error!(
                        "sealing {} ({name}): {e}",
                        String::from_utf8_lossy(&unhex(&cap.path_hex))
                    );
                }
            }
        }
        if let Err(e) = self.commit(prepared) {
            failed = true;
            self.stats.error(&self.stats.errors_seal);
            log::error!("committing versions: {e}");
        }
        if failed {
            self.keep_failed(batch);
        }
        self.uncount(jobs);
        self.compact_log_if_due();
        stop
    }

    /// While the guard lives, seal workers do not defer (see `QUIET`):
    /// someone waits for the seals (`ckptfs wait`, a shutdown, room).
    pub fn hurry(&self) -> Hurry<'_> {
        self.sealer.hurry.fetch_add(1, Ordering::SeqCst);
        Hurry(self)
    }

    fn forget_pending(&self, name: &str) {
        self.shares.pending.lock().remove(name);
    }

    /// Digest, deduplicate, classify, number; write the metadata to a temp name.
    fn prepare(
        &self,
        name: &str,
        cap: &Capture,
        local: &mut HashMap<Vec<u8>, (Same, u64)>,
    ) -> io::Result<Option<Prepared>> {
        let relpath = unhex(&cap.path_hex);
        let cname = CString::new(name).map_err(io::Error::other)?;
        // An unshare may re-point the name at a private copy while we read
        // (a write into the live inode follows it): what we read from the old
        // inode may then hold that write. Read again until the name still is
        // the inode we read, checked under the lock unshare holds.
        // A big version's digest comes later, after the saves (`digest_later`).
        let later = cap.size >= super::digest_later::LATER_MIN;
        let (obj, digest, head, tail, size, ino) = loop {
            let obj = sys::openat(self.sealer.incoming.as_fd(), &cname, libc::O_RDONLY, 0)?;
            let (digest, head, tail, size) = read_object(&obj, cap.size, !later)?;
            let ino = sys::fstat(obj.as_fd())?.st_ino;
            let _g = self.shares.lock.lock();
            if sys::fstatat(self.sealer.incoming.as_fd(), &cname)?.st_ino == ino {
                break (obj, digest, head, tail, size, ino);
            }
        };
        let now = Same {
            size,
            digest,
            ino,
            mtime_ns: cap.mtime_ns,
        };
        let (last, next) = match local.get(&relpath) {
            Some((l, n)) => (Some(*l), *n),
            None => {
                let idx = self.index.read();
                let h = idx.get(&relpath);
                (
                    h.and_then(|h| h.latest()).map(|l| Same {
                        size: l.size,
                        digest: l.digest,
                        ino: l.object_ino,
                        mtime_ns: l.mtime_ns,
                    }),
                    idx.next_number(&relpath),
                )
            }
        };
        if last.is_some_and(|l| l.same_as(&now)) {
            let _g = self.shares.lock.lock();
            self.forget_pending(name);
            sys::unlinkat(self.sealer.incoming.as_fd(), &cname, 0)?;
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            // Identical to the last version: still a successful seal pass.
            self.stats
                .last_seal_ns
                .store(now_ns() as u64, Ordering::Relaxed);
            self.note_generation(None, None);
            return Ok(None);
        }
        let class = if classification_off() {
            classify::Class {
                category: "binary",
                mime: "application/octet-stream".into(),
                complete: None,
                why: String::new(),
            }
        } else {
            let fname = relpath.rsplit(|&b| b == b'/').next().unwrap_or(&relpath);
            classify::classify(&head, &tail, size, &String::from_utf8_lossy(fname))
        };
        let ost = sys::fstat(obj.as_fd())?;
        if ost.st_nlink == 1 {
            // Only the store holds this inode now: its cached pages are cold
            // history. Give them back so the writer's next save reuses them.
            sys::fadvise_dontneed(obj.as_fd());
        }
        drop(obj);
        let number = next;
        let m = VersionMeta {
            path: relpath.as_slice().into(),
            number,
            sealed_ns: cap.sealed_ns,
            mtime_ns: cap.mtime_ns,
            size,
            origin: meta::intern_origin(meta::Origin {
                format: layout::FORMAT_VERSION,
                mode: cap.mode,
                uid: cap.uid,
                gid: cap.gid,
                kind: meta::intern_kind(class.category, &class.mime, &class.why),
                writer: cap.writer.clone().map(meta::intern_writer),
                reason: cap.reason,
                complete: class.complete,
                pinned: false,
                compressed: false,
                digest_pending: later,
            }),
            digest,
            object_ino: ost.st_ino,
            archived: None,
        };
        let dir = layout::version_dir(m.category(), &relpath);
        // Metadata goes to a temp name first; the object stays in incoming/ until
        // that is durable, so a crash at any point leaves either a capture that
        // the next mount seals again or a complete version.
        let bytes = serde_json::to_vec_pretty(&m).map_err(io::Error::other)?;
        let tmp = format!(".{}.tmp", layout::meta_name(number));
        let ctmp = CString::new(tmp.clone()).map_err(io::Error::other)?;
        // Eviction removes a path's directory with its last version; the temp
        // file keeps it non-empty from here on.
        let (dfd, f) = {
            let _g = self.sealer.dirs.lock();
            let dfd = self.version_dir_fd(&dir)?;
            let f = sys::openat(
                dfd.as_fd(),
                &ctmp,
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            )?;
            (dfd, f)
        };
        let mut f = std::fs::File::from(f);
        std::io::Write::write_all(&mut f, &bytes)?;
        // Within a batch the inode rule is not used: an unshare between two
        // captures of the batch re-points the first, not this record (0: none).
        local.insert(relpath, (Same { ino: 0, ..now }, number + 1));
        Ok(Some(Prepared {
            name: name.to_string(),
            meta: m,
            dir,
            dfd,
            tmp,
            tmp_file: f,
            copied: cap.copied,
        }))
    }

    /// Make a batch durable: sync, move objects into place, publish metadata,
    /// sync again, then update the index and apply retention.
    fn commit(&self, batch: Vec<Prepared>) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let _q = self.quiesce.read();
        // Small batches fsync just their own files; big ones (rm -rf of a tree)
        // use one filesystem-wide sync, which also waits for unrelated dirty data.
        let small = batch.len() <= 16;
        if small {
            for p in &batch {
                p.tmp_file.sync_data()?;
                if p.copied {
                    let c = CString::new(p.name.as_str()).map_err(io::Error::other)?;
                    sys::fsync(
                        sys::openat(self.sealer.incoming.as_fd(), &c, libc::O_RDONLY, 0)?.as_fd(),
                        true,
                    )?;
                }
            }
        } else {
            sys::syncfs(self.dir.as_fd())?;
        }
        let mut done = Vec::new();
        for p in batch {
            let cname = CString::new(p.name.as_str()).map_err(io::Error::other)?;
            let data = layout::data_name(p.meta.number);
            let cdata = CString::new(data.as_str()).map_err(io::Error::other)?;
            let r = (|| -> io::Result<()> {
                let _g = self.shares.lock.lock();
                sys::renameat2(
                    self.sealer.incoming.as_fd(),
                    &cname,
                    p.dfd.as_fd(),
                    &cdata,
                    0,
                )?;
                if let Some(e) = self.shares.pending.lock().get_mut(&p.name) {
                    e.1 = format!("{}/{data}", p.dir);
                }
                let ctmp = CString::new(p.tmp.as_str()).map_err(io::Error::other)?;
                let fin =
                    CString::new(layout::meta_name(p.meta.number)).map_err(io::Error::other)?;
                sys::renameat2(p.dfd.as_fd(), &ctmp, p.dfd.as_fd(), &fin, 0)
            })();
            match r {
                Ok(()) => done.push(p),
                Err(e) => {
                    self.stats.error(&self.stats.errors_seal);
                    log::error!(
                        "publishing {} v{}: {e}",
                        p.meta.display_path(),
                        p.meta.number
                    );
                }
            }
        }
        if small {
            let mut synced = std::collections::HashSet::new();
            for p in &done {
                if synced.insert(p.dir.as_str()) {
                    sys::fsync(p.dfd.as_fd(), false)?;
                }
            }
        } else {
            sys::syncfs(self.dir.as_fd())?;
        }
        let mut sealed = Vec::with_capacity(done.len());
        for p in done {
            sealed.push(p.meta.path.clone());
            self.note_generation(Some(&p.meta), None);
            self.count_sealed(&p.meta);
            {
                let _g = self.shares.lock.lock();
                // Queued once in the index: the digest thread looks it up there.
                let later = p.meta.digest_pending().then(|| p.meta.path.clone());
                let number = p.meta.number;
                self.index.write().insert(p.meta);
                if let Some(path) = later {
                    self.digest_later(&path, number);
                }
                self.forget_pending(&p.name);
            }
            self.stats.sealed.fetch_add(1, Ordering::Relaxed);
        }
        // Retention evicts (which takes `quiesce` itself): outside the guard.
        drop(_q);
        let mut seen = std::collections::HashSet::new();
        for relpath in sealed {
            if seen.insert(relpath.clone()) && self.retention_due(&relpath) {
                self.retain_path(&relpath);
            }
        }
        Ok(())
    }

    /// `mkdir -p` of a version's directory (`version_dir`): its shard
    /// directory's fd is kept, since eviction removes only the leaf.
    fn version_dir_fd(&self, rel: &str) -> io::Result<OwnedFd> {
        let Some((shard, leaf)) = rel.rsplit_once('/') else {
            return self.mkdirs(rel);
        };
        let cached = self.sealer.shards.lock().get(shard).cloned();
        let parent = match cached {
            Some(p) => p,
            None => {
                let p = std::sync::Arc::new(self.mkdirs(shard)?);
                let mut shards = self.sealer.shards.lock();
                if shards.len() >= 4096 {
                    shards.clear();
                }
                shards.insert(shard.to_string(), p.clone());
                p
            }
        };
        let c = CString::new(leaf).map_err(io::Error::other)?;
        match sys::mkdirat(parent.as_fd(), &c, 0o700) {
            // The shard was removed behind us (by hand, `gc`): walk again.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.sealer.shards.lock().remove(shard);
                return self.mkdirs(rel);
            }
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        sys::openat(parent.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)
    }

    /// `mkdir -p` under the store, returning the last directory.
    pub(super) fn mkdirs(&self, rel: &str) -> io::Result<std::os::fd::OwnedFd> {
        let mut cur = self.dir.try_clone()?;
        for comp in rel.split('/') {
            let c = CString::new(comp).map_err(io::Error::other)?;
            match sys::mkdirat(cur.as_fd(), &c, 0o700) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
            cur = sys::openat(cur.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        }
        Ok(cur)
    }
}

pub struct Hurry<'a>(&'a Store);

impl Drop for Hurry<'_> {
    fn drop(&mut self) {
        self.0.sealer.hurry.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What tells a state from the newest version before it.
#[derive(Clone, Copy)]
struct Same {
    size: u64,
    digest: Digest,
    ino: u64,
    mtime_ns: i64,
}

impl Same {
    /// The same content: the same digest, or, when one is still to come
    /// (`digest_later`), the same inode at the same size and mtime. A version
    /// keeps its inode only while nothing writes it in place (that unshares
    /// it first), and appends change the size: an fsync'd save and its close
    /// are one state.
    fn same_as(&self, o: &Same) -> bool {
        self.size == o.size
            && if !self.digest.is_empty() && !o.digest.is_empty() {
                self.digest == o.digest
            } else {
                self.ino != 0 && self.ino == o.ino && self.mtime_ns == o.mtime_ns
            }
    }
}

/// The digest of an object's first `len` bytes (a version whose digest came
/// later, `digest_later`).
pub(super) fn digest_of(obj: &OwnedFd, len: u64) -> io::Result<Digest> {
    let (d, _, _, n) = read_object(obj, len, true)?;
    if n != len {
        return Err(io::Error::other(format!(
            "the object holds {n} bytes, the version {len}"
        )));
    }
    Ok(d)
}

/// Read the captured length of an object (it may be a longer, appended
/// inode): the head the classifier asks for and the tail, and with `digest`
/// the BLAKE3 of it all. Without, only the head and the tail are read (a big
/// version's digest comes later, `digest_later`).
fn read_object(
    obj: &OwnedFd,
    len: u64,
    digest: bool,
) -> io::Result<(Digest, Vec<u8>, Vec<u8>, u64)> {
    let mut hasher = digest.then(blake3::Hasher::new);
    let len = if digest {
        len
    } else {
        len.min(sys::fstat(obj.as_fd())?.st_size as u64)
    };
    // Sized to the object: a zeroed 1 MiB per seal was most of the CPU of
    // versioning 20,000 small files (an `rm -rf`).
    let chunk = if digest { 1 << 20 } else { classify::WINDOW };
    let mut buf = vec![0u8; (len as usize).clamp(1, chunk)];
    let mut off = 0u64;
    let mut head = Vec::new();
    let mut head_want = classify::WINDOW;
    while off < len {
        if hasher.is_none() && head.len() >= head_want {
            off = len;
            break;
        }
        let want = ((len - off) as usize).min(buf.len());
        let n = sys::pread_full(obj.as_fd(), &mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        // Keep the head the classifier asks for: 64 KiB, or a whole
        // header that runs past it (it asks again each time it is met).
        let mut used = 0;
        while head.len() < head_want && used < n {
            let take = (head_want - head.len()).min(n - used);
            head.extend_from_slice(&buf[used..used + take]);
            used += take;
            if head.len() == head_want {
                head_want = head_want.max(classify::head_wanted(&head, len));
            }
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        off += n as u64;
    }
    // The head came with the digest pass; the tail costs one more read.
    let tail_len = (off as usize).min(classify::WINDOW);
    let mut tail = vec![0u8; tail_len];
    let n = sys::pread_full(obj.as_fd(), &mut tail, off - tail_len as u64)?;
    tail.truncate(n);
    Ok((
        hasher.map_or(Digest::NONE, |h| Digest::of(h.finalize())),
        head,
        tail,
        off,
    ))
}
