//! Command line: `mount.rs` (mount, umount), `log_cmd.rs`, `restore.rs`, and
//! `admin.rs` for the small store commands; `target.rs` finds the store a path
//! belongs to. Shared arguments are flattened.
//!
//! Exit codes: 0 success; 1 the operation failed (message on stderr); 2 bad usage
//! (clap); 3 `verify` found problems.

mod admin;
mod generations;
mod log_cmd;
mod mount;
mod restore;
mod restore_at;
mod status;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ckptfs",
    version,
    about = "Keep every earlier state of every file in a checkpoint directory"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
pub struct ConfigArg {
    /// JSON configuration file (`//` comments allowed).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount DIR over itself (or on MOUNTPOINT) and keep the history of every file.
    Mount(mount::MountCmd),
    /// Unmount, sealing everything pending first.
    Umount(mount::UmountCmd),
    /// List the versions of a file.
    Log(log_cmd::LogCmd),
    /// Copy a version back (to the file itself, or --to DEST); with --at, a
    /// file or a whole directory as it was at an instant or a step.
    Restore(restore::RestoreCmd),
    /// The moments a burst of saves settled (`.versions/@<T>`), with steps.
    Generations(generations::GenerationsCmd),
    /// Make the current state of PATH (or of every file) a version now.
    Snapshot(admin::PathOpt),
    /// Keep a version whatever the retention policy says.
    Pin(admin::PinCmd),
    /// Let retention consider a pinned version again.
    Unpin(admin::PinCmd),
    /// Apply the retention policy now (--dry-run shows what would go and why the rest stays).
    Gc(admin::GcCmd),
    /// Check every version's digest and the index against the objects.
    Verify(admin::VerifyCmd),
    /// Counters of the running daemon (JSON).
    Stats(admin::DirOpt),
    /// A short summary: mount, data path, versions, space, seals, errors, metrics.
    Status(admin::DirOpt),
    /// Wait until every file closed so far is sealed and the store is quiet.
    Wait(admin::WaitCmd),
    /// Store bytes and version counts per category and top-level directory.
    Du(admin::DuCmd),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: admin::ConfigCmd,
    },
}

/// A progress bar when stderr is a terminal.
pub fn bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || len == 0 {
        return None;
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_message(what.to_string());
    Some(b)
}

/// Why a command failed; `Display` is the one line printed after "ckptfs: ".
#[derive(Debug)]
pub enum CliError {
    /// The configuration file was refused (names the file and the key).
    Config(crate::config::ConfigError),
    /// The store refused (commands run without a daemon).
    Store(crate::store::StoreError),
    /// The running daemon answered with an error; its message.
    Daemon(String),
    /// Any other failure, worded for the user: it names the path and the problem.
    Failed(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Config(e) => write!(f, "{e}"),
            CliError::Store(e) => write!(f, "{e}"),
            CliError::Daemon(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::Config(e)
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(e: crate::store::StoreError) -> Self {
        CliError::Store(e)
    }
}

impl From<String> for CliError {
    fn from(m: String) -> Self {
        CliError::Failed(m)
    }
}

pub type CliResult = Result<ExitCode, CliError>;

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser=error,s3=error"),
    )
    .format_timestamp_millis()
    .init();
    // `mount.ckptfs DIR MOUNTPOINT -o opts` (fstab / mount -t fuse.ckptfs).
    let args: Vec<String> = std::env::args().collect();
    let prog = std::path::Path::new(&args[0])
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // mount.fuse3 runs `ckptfs SOURCE MOUNTPOINT -o OPTS` for type fuse.ckptfs.
    let as_helper = prog.starts_with("mount.") || args.get(1).is_some_and(|a| a.starts_with('/'));
    let cli = if as_helper {
        let mut v = vec!["ckptfs".to_string(), "mount".to_string()];
        v.extend(args[1..].iter().cloned());
        Cli::parse_from(v)
    } else {
        Cli::parse()
    };
    let r = match cli.cmd {
        Cmd::Mount(c) => mount::run(c),
        Cmd::Umount(c) => mount::run_umount(c),
        Cmd::Log(c) => log_cmd::run(c),
        Cmd::Restore(c) => restore::run(c),
        Cmd::Generations(c) => generations::run(c),
        Cmd::Snapshot(c) => admin::snapshot(c),
        Cmd::Pin(c) => admin::pin(c, true),
        Cmd::Unpin(c) => admin::pin(c, false),
        Cmd::Gc(c) => admin::gc(c),
        Cmd::Verify(c) => admin::verify(c),
        Cmd::Stats(c) => admin::stats(c),
        Cmd::Status(c) => status::run(c),
        Cmd::Wait(c) => admin::wait(c),
        Cmd::Du(c) => admin::du(c),
        Cmd::Config { cmd } => admin::config(cmd),
    };
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("ckptfs: {msg}");
            ExitCode::from(1)
        }
    }
}

pub fn load_config(c: &ConfigArg) -> Result<crate::config::Config, CliError> {
    match &c.config {
        Some(p) => Ok(crate::config::Config::load(p)?),
        None => Ok(crate::config::Config::default()),
    }
}
