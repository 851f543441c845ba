//! `ckptfs mount` and `ckptfs umount`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{CliResult, ConfigArg, load_config};
use crate::daemon::{self, MountArgs};

#[derive(clap::Args)]
pub struct MountCmd {
    /// The directory to protect (mounted over itself unless MOUNTPOINT is given).
    dir: PathBuf,
    /// Mount somewhere else; DIR stays the backing directory.
    mountpoint: Option<PathBuf>,
    /// Stay in the foreground (logs to stderr).
    #[arg(short, long)]
    foreground: bool,
    /// Serve file data through the daemon even if the kernel offers passthrough.
    #[arg(long)]
    no_passthrough: bool,
    /// On the daemon data path (no passthrough: not root, or --no-passthrough),
    /// let the kernel cache writes and send them in bulk (experimental; see
    /// the README).
    #[arg(long)]
    writeback_cache: bool,
    /// Where the store lives (default DIR/.ckptfs; elsewhere means copies, not links).
    #[arg(long)]
    store: Option<PathBuf>,
    /// FUSE request threads (8 measured steadier unlink latency than 4 here).
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Mount options as mount(8) passes them (for fstab): `store=PATH`,
    /// `config=FILE`, `passthrough=0|1`, `no_passthrough`, and mount(8)'s generic
    /// options (`rw`, `defaults`, `nofail`, `x-…`, …), which need nothing from us.
    /// Anything else is an error.
    #[arg(short = 'o')]
    options: Option<String>,
    /// Serve Prometheus metrics on this port (127.0.0.1) or ADDR:PORT
    /// (overrides `metrics.listen`).
    #[arg(long, value_name = "[ADDR:]PORT")]
    metrics: Option<String>,
    #[command(flatten)]
    config: ConfigArg,
}

/// mount(8)'s options that hold for every ckptfs mount as it is (it is always
/// rw, nosuid, nodev, exec, relatime) or that only mount(8) itself reads; `suid`
/// and `dev` are accepted because mount helpers add them for root, and have no
/// effect. Others (`ro`, `noexec`, `sync`, …) would be silently untrue: errors.
const GENERIC: &[&str] = &[
    "defaults", "rw", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail",
    "_netdev", "nosuid", "nodev", "suid", "dev", "exec", "relatime", "async", "loud", "silent",
];

pub fn run(mut c: MountCmd) -> CliResult {
    if let Some(o) = c.options.take() {
        for opt in o.split(',').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("store", v)) => c.store = Some(v.into()),
                Some(("config", v)) => c.config.config = Some(v.into()),
                Some(("passthrough", "0")) => c.no_passthrough = true,
                Some(("passthrough", "1")) => {}
                Some(("metrics", v)) => c.metrics = Some(v.into()),
                _ if opt == "no_passthrough" => c.no_passthrough = true,
                _ if opt == "writeback_cache" => c.writeback_cache = true,
                _ if GENERIC.contains(&opt) || opt.starts_with("x-") => {}
                _ => {
                    return Err(format!(
                        "-o {opt}: unknown mount option (known: store=PATH, config=FILE, passthrough=0|1, no_passthrough, writeback_cache, metrics=[ADDR:]PORT, and mount(8)'s generic options)"
                    ).into());
                }
            }
        }
    }
    let config = load_config(&c.config)?;
    let metrics = c
        .metrics
        .as_deref()
        .or(config.metrics.listen.as_deref())
        .map(crate::metrics::parse_listen)
        .transpose()?;
    daemon::mount(MountArgs {
        metrics,
        dir: c.dir,
        mountpoint: c.mountpoint,
        foreground: c.foreground,
        passthrough: !c.no_passthrough,
        writeback_cache: c.writeback_cache,
        store: c.store,
        threads: c.threads,
        config,
    })
    .map_err(|e| e.0)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct UmountCmd {
    /// The mounted directory.
    dir: PathBuf,
    /// Seconds to wait for the daemon to finish sealing.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

pub fn run_umount(c: UmountCmd) -> CliResult {
    let mp = std::path::absolute(&c.dir).map_err(|e| format!("{}: {e}", c.dir.display()))?;
    let Some(store) = daemon::is_ckptfs_mount(&mp) else {
        return Err(format!("{}: not a ckptfs mount", mp.display()).into());
    };
    let dead = std::fs::metadata(&mp).is_err();
    if let Err(e) = daemon::unmount(&mp, dead) {
        if e.raw_os_error() == Some(libc::EBUSY) {
            return Err(format!(
                "{}: busy (a process has files open or its cwd there)",
                mp.display()
            )
            .into());
        }
        return Err(format!("{}: {e}", mp.display()).into());
    }
    // Wait for the daemon to seal pending versions and let go of the store lock.
    let lock = store.join(crate::store::layout::LOCK_FILE);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(c.timeout) {
        let Ok(f) = std::fs::File::open(&lock) else {
            break;
        };
        if crate::sys::try_lock(std::os::fd::AsFd::as_fd(&f), false).unwrap_or(false) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "ckptfs: {}: unmounted; the daemon is still sealing after {} s and finishes in the background",
        mp.display(),
        c.timeout
    );
    Ok(ExitCode::SUCCESS)
}
