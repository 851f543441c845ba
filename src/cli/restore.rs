//! `ckptfs restore PATH VERSION [--to DEST]`: copy a version back. Through the
//! mount this is an ordinary write, so the state it replaces becomes a version.
//! `--at` (a file or a directory at an instant or step) is `restore_at.rs`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliResult, ConfigArg, load_config, log_cmd};
use crate::store::{Content, Store, VersionMeta, layout};

#[derive(clap::Args)]
pub struct RestoreCmd {
    path: PathBuf,
    /// A number, an entry name, `latest`, `previous` or `latest-complete`.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    version: Option<String>,
    /// Restore PATH (a file or a directory) as it was at this instant
    /// (YYYYMMDDTHHMMSS[.ffffff]Z, UTC) or step (step-N).
    #[arg(long, value_name = "T|step-N")]
    at: Option<String>,
    /// Write here instead of over PATH.
    #[arg(long)]
    to: Option<PathBuf>,
    /// With --at: replace DEST when it exists.
    #[arg(long, requires = "at")]
    force: bool,
    #[command(flatten)]
    config: ConfigArg,
}

pub fn pick<'a>(vs: &'a [VersionMeta], v: &str) -> Option<&'a VersionMeta> {
    match v {
        "latest" => vs.last(),
        "previous" => vs.len().checked_sub(2).map(|i| &vs[i]),
        "latest-complete" => vs.iter().rev().find(|m| m.complete() != Some(false)),
        _ => {
            let n = v
                .parse::<u64>()
                .ok()
                .or_else(|| layout::parse_entry_number(v.as_bytes()))?;
            vs.iter().find(|m| m.number == n)
        }
    }
}

pub fn run(c: RestoreCmd) -> CliResult {
    let version = match (&c.at, &c.version) {
        (Some(at), _) => {
            return super::restore_at::run(&c.path, at, c.to.as_deref(), c.force, &c.config);
        }
        (None, Some(v)) => v.clone(),
        (None, None) => unreachable!("clap requires VERSION without --at"),
    };
    let (t, vs, vdir) = log_cmd::versions(&c.path, &c.config)?;
    let Some(m) = pick(&vs, &version) else {
        let have: Vec<String> = vs.iter().map(|m| m.number.to_string()).collect();
        return Err(format!(
            "{}: no version {:?} (have: {})",
            c.path.display(),
            version,
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        )
        .into());
    };
    let dest = c.to.clone().unwrap_or_else(|| c.path.clone());
    let mut src: Box<dyn Read> = match &t.mountpoint {
        Some(mp) => {
            let entry = layout::entry_name(m.sealed_ns, m.number, m.reason().as_str(), &t.relpath);
            use std::os::unix::ffi::OsStrExt;
            let p = mp
                .join(&vdir)
                .join(std::ffi::OsStr::from_bytes(&t.relpath))
                .join(std::ffi::OsStr::from_bytes(&entry));
            Box::new(std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => {
            let s = Store::open_path(&t.store_path, load_config(&c.config)?.store_options())
                .map_err(|e| e.to_string())?;
            match s.open_version(m).map_err(|e| e.to_string())? {
                Content::Object(fd, size) => Box::new(std::fs::File::from(fd).take(size)),
                Content::Decoded(bytes) => Box::new(std::io::Cursor::new(bytes)),
                Content::Archived(a) => Box::new(std::io::Cursor::new(
                    a.read_all()
                        .map_err(|e| format!("reading version {}: {e}", m.number))?,
                )),
            }
        }
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&dest)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let bar = super::bar(m.size, "restore");
    let mut buf = vec![0u8; 8 << 20];
    let mut done = 0u64;
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| format!("reading version {}: {e}", m.number))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        done += n as u64;
        if let Some(b) = &bar {
            b.set_position(done);
        }
    }
    out.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if done != m.size {
        return Err(format!(
            "version {} holds {done} bytes, expected {}",
            m.number, m.size
        )
        .into());
    }
    eprintln!(
        "restored {} version {} ({} bytes) to {}",
        t.display(),
        m.number,
        done,
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}
