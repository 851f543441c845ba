//! The mount daemon: checks the target, takes the store lock, forks into the
//! background, mounts, serves, and seals everything on the way out.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{CkptFs, FsOptions};
use crate::store::{Store, layout};
use crate::sys;

/// Everything `ckptfs mount` needs.
#[derive(Clone, Debug)]
pub struct MountArgs {
    pub dir: PathBuf,
    pub mountpoint: Option<PathBuf>,
    pub foreground: bool,
    pub passthrough: bool,
    /// Ask for the kernel's writeback cache on the daemon data path.
    pub writeback_cache: bool,
    pub store: Option<PathBuf>,
    pub threads: usize,
    pub config: crate::config::Config,
    /// Serve Prometheus metrics here.
    pub metrics: Option<std::net::SocketAddr>,
}

/// A user-facing failure: one line naming the path and the reason.
#[derive(Debug)]
pub struct MountError(pub String);

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(msg: String) -> Result<T, MountError> {
    Err(MountError(msg))
}

/// Mount entries: (mountpoint, fstype, source), with octal escapes undone.
pub fn mounts() -> Vec<(PathBuf, String, String)> {
    let Ok(s) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let unesc = |x: &str| -> String {
        let b = x.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && let Ok(v) = u8::from_str_radix(&x[i + 1..i + 4], 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mp = pre.split(' ').nth(4)?;
            let mut p = post.split(' ');
            let fstype = p.next()?;
            let source = p.next()?;
            Some((PathBuf::from(unesc(mp)), fstype.to_string(), unesc(source)))
        })
        .collect()
}

/// Mount source of a ckptfs mount: `ckptfs:<store path>`.
pub const SOURCE_PREFIX: &str = "ckptfs:";

/// ckptfs mounts as (mountpoint, store path). Root mounts show fstype `fuse`,
/// fusermount3 ones `fuse.ckptfs`; the source names us either way.
pub fn ckptfs_mounts() -> Vec<(PathBuf, PathBuf)> {
    mounts()
        .into_iter()
        .filter(|(_, t, _)| t == "fuse" || t == "fuse.ckptfs")
        .filter_map(|(mp, _, s)| Some((mp, PathBuf::from(s.strip_prefix(SOURCE_PREFIX)?))))
        .collect()
}

pub fn is_ckptfs_mount(path: &Path) -> Option<PathBuf> {
    ckptfs_mounts()
        .into_iter()
        .rev()
        .find(|(mp, _)| mp == path)
        .map(|(_, s)| s)
}

/// Unmount `path`: umount2 as root, fusermount3 otherwise.
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    if sys::geteuid() == 0 {
        let c = CString::new(path.as_os_str().as_bytes())?;
        return sys::umount(&c, lazy);
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg(path).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn open_dir(path: &Path, what: &str) -> Result<OwnedFd, MountError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        MountError(format!(
            "{}: {what} path contains a NUL byte",
            path.display()
        ))
    })?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return fail(format!("{}: no such directory", path.display()));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return fail(format!(
                "{}: a crashed mount is still attached (run `ckptfs umount {}` first)",
                path.display(),
                path.display()
            ));
        }
        Err(e) => return fail(format!("{}: {e}", path.display())),
        Ok(m) if !m.is_dir() => {
            return fail(format!("{}: not a directory", path.display()));
        }
        Ok(_) => {}
    }
    sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .map_err(|e| MountError(format!("{}: cannot open {what}: {e}", path.display())))
}

/// Take the one-daemon-per-store lock; returns the lock file (keep it open).
fn lock_store(store_dir: &OwnedFd, store_path: &Path) -> Result<File, MountError> {
    let f = sys::openat(
        store_dir.as_fd(),
        &CString::new(layout::LOCK_FILE).expect("no NUL"),
        libc::O_RDWR | libc::O_CREAT,
        0o644,
    )
    .map_err(|e| {
        MountError(format!(
            "{}/{}: {e}",
            store_path.display(),
            layout::LOCK_FILE
        ))
    })?;
    let mut file = File::from(f);
    if !sys::try_lock(file.as_fd(), true).unwrap_or(false) {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        return fail(format!(
            "{}: already mounted (store locked by ckptfs pid {})",
            store_path.display(),
            pid.trim()
        ));
    }
    Ok(file)
}

fn write_pid(lock: &mut File) {
    let _ = lock.set_len(0);
    let _ = lock.write_all(format!("{}\n", std::process::id()).as_bytes());
}

/// Check, lock, fork, mount, serve. Returns once the filesystem is unmounted
/// (foreground) or, in the parent, once the child reports the mount ready.
pub fn mount(args: MountArgs) -> Result<(), MountError> {
    let dir = std::path::absolute(&args.dir)
        .map_err(|e| MountError(format!("{}: {e}", args.dir.display())))?;
    let mountpoint = match &args.mountpoint {
        Some(m) => {
            std::path::absolute(m).map_err(|e| MountError(format!("{}: {e}", m.display())))?
        }
        None => dir.clone(),
    };
    if let Some(src) = is_ckptfs_mount(&mountpoint) {
        if std::fs::metadata(&mountpoint).is_err() {
            // A daemon that died (kill -9) leaves a dead mount: detach it and go on.
            log::warn!("{}: detaching a dead ckptfs mount", mountpoint.display());
            let _ = unmount(&mountpoint, true);
        } else {
            return fail(format!(
                "{}: already mounted by ckptfs (store {})",
                mountpoint.display(),
                src.display()
            ));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return fail(
            "/dev/fuse: no such device (load the fuse module or run where FUSE is available)"
                .into(),
        );
    }
    let root = open_dir(&dir, "backing directory")?;
    if args.mountpoint.is_some() {
        drop(open_dir(&mountpoint, "mount point")?);
    }
    let versions_name = args.config.versions_dir.name.clone();
    // A real directory by the name of the view would be hidden: refuse.
    if args.config.versions_dir.visibility != crate::config::Visibility::Disabled
        && sys::fstatat(root.as_fd(), &CString::new(versions_name.clone()).unwrap()).is_ok()
    {
        return fail(format!(
            "{}: already holds a real `{versions_name}`; choose another name with versions_dir.name in the config",
            dir.display()
        ));
    }
    let store_path = match args.store.as_ref().or(args.config.save_path.as_ref()) {
        Some(p) => normalize(
            &std::path::absolute(p).map_err(|e| MountError(format!("{}: {e}", p.display())))?,
        ),
        None => dir.join(crate::store::layout::STORE_DIR),
    };
    check_store_place(&store_path, &dir, &mountpoint, &versions_name, &args.config)?;
    if let Err(e) = std::fs::create_dir_all(&store_path) {
        return fail(format!(
            "{}: cannot create store: {e}",
            store_path.display()
        ));
    }
    let store_dir = open_dir(&store_path, "store")?;
    // Same filesystem as the live tree: versions are hard links, not copies.
    let same_fs = match (sys::fstat(store_dir.as_fd()), sys::fstat(root.as_fd())) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev,
        _ => false,
    };
    // A store inside the backing tree is hidden like the default `.ckptfs`:
    // found by its parent directory and name wherever it sits.
    let hidden_store = hidden_store_name(&store_path, &dir);
    let mut lock = lock_store(&store_dir, &store_path)?;
    // Bound before the fork: a port in use is one line now, not a daemon
    // without its endpoint.
    let metrics = match args.metrics {
        Some(a) => Some(crate::metrics::bind(a).map_err(MountError)?),
        None => None,
    };
    let store = Store::open(store_dir, args.config.store_options(), same_fs)
        .map_err(|e| MountError(format!("{}: {e}", store_path.display())))?;

    let (mut rd, wr) = if args.foreground {
        (None, None)
    } else {
        pipe()
    };
    if !args.foreground {
        // SAFETY: single-threaded here (no threads started yet), so fork is sound.
        let pid = match unsafe { sys::fork() } {
            Ok(pid) => pid,
            Err(e) => return fail(format!("fork: {e}")),
        };
        if pid > 0 {
            // The daemon (the child) owns the store now. This process only
            // reports and exits: freeing its copy of a large index would
            // add a tenth of a second per 200,000 versions to every mount.
            std::mem::forget(store);
            drop(wr);
            let mut msg = String::new();
            let _ = rd.take().unwrap().read_to_string(&mut msg);
            return match msg.strip_prefix("OK ") {
                Some(line) => {
                    println!("{}", line.trim());
                    Ok(())
                }
                None if msg.is_empty() => fail(format!(
                    "{}: daemon exited before the mount was ready",
                    mountpoint.display()
                )),
                None => fail(msg.trim().to_string()),
            };
        }
        sys::setsid();
        redirect_stdio(&store_path);
    }
    drop(rd);
    write_pid(&mut lock);
    let r = serve(
        &args,
        root,
        store,
        &dir,
        &mountpoint,
        &store_path,
        hidden_store,
        versions_name,
        metrics,
        wr,
    );
    drop(lock);
    r
}

/// `path` with `.` and `..` resolved lexically (the store may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Refuse a store the mount would hide from itself or from its own history:
/// inside the `.versions` view, under the mount point of a mount made elsewhere
/// (the new mount would cover it), or inside any ckptfs mount.
fn check_store_place(
    store: &Path,
    dir: &Path,
    mountpoint: &Path,
    versions_name: &str,
    cfg: &crate::config::Config,
) -> Result<(), MountError> {
    if mountpoint != dir && store.starts_with(mountpoint) {
        return fail(format!(
            "{}: the store cannot live under the mount point {} (the mount would cover it); put it under {}",
            store.display(),
            mountpoint.display(),
            dir.display()
        ));
    }
    if cfg.versions_dir.visibility != crate::config::Visibility::Disabled
        && store.starts_with(mountpoint.join(versions_name))
    {
        return fail(format!(
            "{}: the store cannot live inside the read-only {versions_name} view of {}",
            store.display(),
            mountpoint.display()
        ));
    }
    if let Some((mp, _)) = ckptfs_mounts()
        .into_iter()
        .find(|(mp, _)| store.starts_with(mp))
    {
        return fail(format!(
            "{}: the store cannot live inside the ckptfs mount {}; put it on the backing side",
            store.display(),
            mp.display()
        ));
    }
    Ok(())
}

/// The store's (parent directory, name) when it lies inside the backing tree.
fn hidden_store_name(store: &Path, dir: &Path) -> Option<(crate::fs::inode::BackingKey, Vec<u8>)> {
    let real = std::fs::canonicalize(store).ok()?;
    let root = std::fs::canonicalize(dir).ok()?;
    if real == root || !real.starts_with(&root) {
        return None;
    }
    let parent = std::fs::metadata(real.parent()?).ok()?;
    use std::os::unix::fs::MetadataExt;
    Some((
        (parent.dev(), parent.ino()),
        real.file_name()?.as_bytes().to_vec(),
    ))
}

fn pipe() -> (Option<File>, Option<File>) {
    match sys::pipe() {
        Ok((r, w)) => (Some(r), Some(w)),
        Err(_) => (None, None),
    }
}

/// The background daemon logs to `<store>/daemon.log`.
fn redirect_stdio(store_path: &Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store_path.join(crate::store::layout::DAEMON_LOG));
    let null = File::open("/dev/null");
    if let Ok(n) = &null {
        let _ = sys::dup_onto(n.as_fd(), 0);
    }
    if let Ok(l) = &log {
        let _ = sys::dup_onto(l.as_fd(), 1);
        let _ = sys::dup_onto(l.as_fd(), 2);
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    args: &MountArgs,
    root: OwnedFd,
    store: Arc<Store>,
    dir: &Path,
    mountpoint: &Path,
    store_path: &Path,
    hidden_store: Option<(crate::fs::inode::BackingKey, Vec<u8>)>,
    versions_name: String,
    metrics: Option<std::net::TcpListener>,
    ready: Option<File>,
) -> Result<(), MountError> {
    let report = |ready: Option<File>, msg: &str| {
        if let Some(mut w) = ready {
            let _ = w.write_all(msg.as_bytes());
        }
    };
    // Block the stop signals before any thread starts; one thread waits for them.
    let set = sys::block_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    // The caller's umask is applied per request thread (fs::creds::CallerUmask),
    // so that a default ACL can replace it; ours must never apply.
    sys::umask(0);
    let opts = FsOptions {
        passthrough: args.passthrough,
        hidden_store,
        versions_name: (args.config.versions_dir.visibility != crate::config::Visibility::Disabled)
            .then(|| versions_name.into_bytes()),
        versions_visible: args.config.versions_dir.visibility == crate::config::Visibility::Visible,
        fd_cache: 4096,
        count_requests: metrics.is_some(),
        writeback_cache: args.writeback_cache,
    };
    let fs = CkptFs::new(
        root,
        opts,
        Some(store.clone()),
        args.config.versioning_options(),
    )
    .map_err(|e| MountError(format!("{}: {e}", dir.display())))?;
    let handles = fs.uses_file_handles();
    let is_root = sys::geteuid() == 0;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        fuser::MountOption::FSName(format!("{SOURCE_PREFIX}{}", store_path.display())),
        fuser::MountOption::Subtype("ckptfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    // Root lets other users in; the kernel enforces permissions (default_permissions).
    cfg.acl = if is_root {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    cfg.n_threads = Some(args.threads.max(1));
    cfg.clone_fd = true;
    // Without file handles (not root) every cached inode pins an fd: take the
    // whole hard limit, not the 1,024 soft default.
    match crate::sys::raise_nofile() {
        Ok(n) => log::info!("open files limit: {n}"),
        Err(e) => log::warn!("raising the open files limit: {e}"),
    }
    // Seal what a previous crash left behind before any new request arrives.
    store.start_workers();
    store.flush_pending();
    let versioner = fs.versioner();
    let pt = fs.passthrough_flag.clone();
    let view_inodes = fs.view_inodes.clone();
    let wb = fs.writeback_flag.clone();
    let ops = fs.op_stats.clone();
    let notifier = fs.notifier.clone();
    let made = if is_root {
        fuser::Session::new(fs, mountpoint, &cfg)
    } else {
        // Not root: /dev/fuse is usually closed to us; fusermount3 opens it.
        let o = format!(
            "fsname={SOURCE_PREFIX}{},subtype=ckptfs,default_permissions",
            store_path.display()
        );
        crate::fusermount::mount(mountpoint, &o)
            .and_then(|fd| fuser::Session::from_fd(fs, fd, cfg.acl, cfg.clone()))
    };
    let session = match made {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("{}: mount failed: {e}", mountpoint.display());
            store.shutdown();
            report(ready, &msg);
            return fail(msg);
        }
    };
    let _ = notifier.set(session.notifier());
    let versioner_m = versioner.clone();
    let mut metrics_at = None;
    if let Some(l) = metrics {
        metrics_at = l.local_addr().ok();
        let src = crate::metrics::Sources::new(store.clone(), versioner_m, ops.clone(), pt.clone());
        if let Err(e) = crate::metrics::serve(l, src) {
            log::warn!("metrics endpoint: {e}");
        }
    }
    if let Err(e) = crate::control::serve(
        store.clone(),
        versioner,
        store_path,
        args.config.versions_dir.name.clone(),
        metrics_at.map(|a| format!("http://{a}/metrics")),
        crate::control::Live {
            passthrough: pt.clone(),
            view_inodes,
            ops: ops.clone(),
        },
    ) {
        log::warn!("control socket: {e} (log/snapshot/gc will not reach this daemon)");
    }
    let line = format!(
        "ckptfs {}: mounted {} on {} (pid {}, data path: {}, file handles: {}{})",
        env!("CARGO_PKG_VERSION"),
        dir.display(),
        mountpoint.display(),
        std::process::id(),
        if pt.load(std::sync::atomic::Ordering::Relaxed) {
            "kernel passthrough"
        } else if wb.load(std::sync::atomic::Ordering::Relaxed) {
            "daemon, writeback cache"
        } else {
            "daemon"
        },
        if handles { "yes" } else { "no (fd per inode)" },
        metrics_at.map_or(String::new(), |a| format!(", metrics: http://{a}/metrics")),
    );
    eprintln!("{line}");
    report(ready, &format!("OK {line}\n"));
    let mp = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("ckptfs-signals".into())
        .spawn(move || {
            let sig = set.wait();
            log::info!("signal {sig}: unmounting {}", mp.display());
            if unmount(&mp, false).is_err() {
                let _ = unmount(&mp, true);
            }
        })
        .ok();
    let r = session.run();
    store.flush_pending();
    store.shutdown();
    log::info!("unmounted {}", mountpoint.display());
    r.map_err(|e| MountError(format!("{}: {e}", mountpoint.display())))
}
