//! `snapshot`, `pin`/`unpin`, `gc`, `verify`, `stats`, `du`, `config check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::log_cmd::human;
use super::restore::pick;
use super::{CliResult, ConfigArg, bar, load_config, log_cmd, target};
use crate::control::Request;
use crate::store::hex;

#[derive(clap::Args)]
pub struct PathOpt {
    /// A file (default: every file under the current directory's mount).
    path: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DirOpt {
    /// A path inside the mount or the backing directory (default: current directory).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(clap::Args)]
pub struct WaitCmd {
    /// Give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Print how long it waited, in milliseconds.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    dir: DirOpt,
}

#[derive(clap::Args)]
pub struct PinCmd {
    path: PathBuf,
    /// A number, an entry name, `latest`, `previous` or `latest-complete`.
    version: String,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args)]
pub struct GcCmd {
    /// Show what would go and which rule keeps each survivor; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    dir: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args)]
pub struct DuCmd {
    #[arg(long)]
    json: bool,
    dir: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Subcommand)]
pub enum ConfigCmd {
    /// Load FILE, report the first problem or print the effective configuration.
    Check { file: PathBuf },
}

/// Run `f` with a progress bar on a terminal fed by its (done, total) reports.
fn with_bar<T>(
    what: &str,
    f: impl FnOnce(crate::control::Progress) -> Result<T, super::CliError>,
) -> Result<T, super::CliError> {
    let mut b: Option<indicatif::ProgressBar> = None;
    let r = f(&mut |done, total| {
        if b.is_none() {
            b = bar(total, what);
        }
        if let Some(b) = &b {
            b.set_length(total);
            b.set_position(done);
        }
    });
    if let Some(b) = b {
        b.finish_and_clear();
    }
    r
}

fn here(p: &Option<PathBuf>) -> PathBuf {
    p.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Mutating commands on an unmounted store take the daemon lock first.
fn lock_if_unmounted(t: &target::Target) -> Result<Option<std::fs::File>, super::CliError> {
    if t.mountpoint.is_some() {
        return Ok(None);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(t.store_path.join(crate::store::layout::LOCK_FILE))
        .map_err(|e| format!("{}: {e}", t.store_path.display()))?;
    if !crate::sys::try_lock(std::os::fd::AsFd::as_fd(&f), true).unwrap_or(false) {
        return Err(format!(
            "{}: store is in use by a ckptfs daemon",
            t.store_path.display()
        )
        .into());
    }
    Ok(Some(f))
}

pub fn snapshot(c: PathOpt) -> CliResult {
    let t = target::locate(&here(&c.path))?;
    if t.mountpoint.is_none() {
        return Err(format!(
            "{}: not mounted; snapshot needs the running daemon",
            t.store_path.display()
        )
        .into());
    }
    let rel = c.path.as_ref().map(|_| hex(&t.relpath));
    let v = t.ask(Request::Snapshot { path: rel }, &Default::default())?;
    println!("captured {} file(s)", v["captured"]);
    Ok(ExitCode::SUCCESS)
}

pub fn pin(c: PinCmd, on: bool) -> CliResult {
    let (t, vs, _) = log_cmd::versions(&c.path, &c.config)?;
    let m = pick(&vs, &c.version)
        .ok_or_else(|| format!("{}: no version {:?}", c.path.display(), c.version))?;
    let _lock = lock_if_unmounted(&t)?;
    let path = hex(&t.relpath);
    let r = if on {
        Request::Pin {
            path,
            number: m.number,
        }
    } else {
        Request::Unpin {
            path,
            number: m.number,
        }
    };
    t.ask(r, &load_config(&c.config)?)?;
    println!(
        "{} version {} {}",
        t.display(),
        m.number,
        if on { "pinned" } else { "unpinned" }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn gc(c: GcCmd) -> CliResult {
    let t = target::locate(&here(&c.dir))?;
    let _lock = if c.dry_run {
        None
    } else {
        lock_if_unmounted(&t)?
    };
    let v = with_bar("gc", |p| {
        t.ask_with_progress(
            Request::Gc { dry_run: c.dry_run },
            &load_config(&c.config)?,
            p,
        )
    })?;
    if c.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut gone = 0;
    for l in v["lines"].as_array().into_iter().flatten() {
        let kept: Vec<String> = l["kept_by"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| k.as_str().unwrap_or("").to_lowercase())
            .collect();
        if kept.is_empty() {
            gone += 1;
        }
        println!(
            "{:<6} {}  v{}  {}  {}",
            if kept.is_empty() {
                if c.dry_run { "would-go" } else { "removed" }
            } else {
                "keep"
            },
            l["path"].as_str().unwrap_or(""),
            l["number"],
            human(l["size"].as_u64().unwrap_or(0)),
            kept.join(",")
        );
    }
    println!(
        "{gone} version(s) {}; {} freed",
        if c.dry_run { "would go" } else { "removed" },
        human(v["freed"].as_u64().unwrap_or(0))
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct VerifyCmd {
    #[command(flatten)]
    at: DirOpt,
    /// Move damaged versions, unreadable records and orphan objects to
    /// `<store>/damaged/`, rebuild the index, and verify again.
    #[arg(long)]
    repair: bool,
}

pub fn verify(c: VerifyCmd) -> CliResult {
    let t = target::locate(&here(&c.at.dir))?;
    let v = with_bar("verify", |p| {
        t.ask_with_progress(
            Request::Verify { repair: c.repair },
            &load_config(&c.at.config)?,
            p,
        )
    })?;
    for p in v["repaired"].as_array().into_iter().flatten() {
        println!("repaired: {}", p.as_str().unwrap_or(""));
    }
    let problems = v["problems"].as_array().cloned().unwrap_or_default();
    for p in &problems {
        println!("{}", p.as_str().unwrap_or(""));
    }
    if problems.is_empty() {
        println!("store {} is consistent", t.store_path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problem(s)", problems.len());
        Ok(ExitCode::from(3))
    }
}

pub fn stats(c: DirOpt) -> CliResult {
    let t = target::locate(&here(&c.dir))?;
    let v = t.ask(Request::Stats, &load_config(&c.config)?)?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub fn wait(c: WaitCmd) -> CliResult {
    if !(c.timeout.is_finite() && c.timeout >= 0.0) {
        return Err(format!("--timeout {}: not a number of seconds", c.timeout).into());
    }
    let t = target::locate(&here(&c.dir.dir))?;
    let r = Request::Wait {
        timeout_ms: (c.timeout * 1000.0) as u64,
    };
    let v = t.ask(r, &load_config(&c.dir.config)?)?;
    if c.print {
        println!("{:.1}", v["waited_ms"].as_f64().unwrap_or(0.0));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn du(c: DuCmd) -> CliResult {
    let t = target::locate(&here(&c.dir))?;
    let v = t.ask(Request::Du, &load_config(&c.config)?)?;
    if c.json {
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    for (title, key) in [("category", "categories"), ("directory", "directories")] {
        println!(
            "{:<16} {:>9} {:>12} {:>12} {:>9} {:>12}",
            title, "versions", "bytes", "on disk", "archived", "archive bytes"
        );
        if let Some(o) = v[key].as_object() {
            for (k, r) in o {
                let n = |f: &str| r[f].as_u64().unwrap_or(0);
                println!(
                    "{:<16} {:>9} {:>12} {:>12} {:>9} {:>12}",
                    k,
                    n("versions"),
                    human(n("bytes")),
                    human(n("on_disk")),
                    n("archived"),
                    human(n("archived_bytes"))
                );
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn config(c: ConfigCmd) -> CliResult {
    match c {
        ConfigCmd::Check { file } => {
            let cfg = crate::config::Config::load(Path::new(&file))?;
            // The archive's bucket must answer before anything relies on it.
            if let Some(a) = cfg.store_options().archive {
                crate::store::probe_archive(&a)?;
                eprintln!(
                    "archive: {} reachable and writable as node {:?}",
                    a.url, a.node
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
