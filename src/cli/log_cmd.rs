//! `ckptfs log PATH`: the versions of one file, as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliResult, ConfigArg, load_config, target};
use crate::control::Request;
use crate::store::{VersionMeta, hex, layout};

#[derive(clap::Args)]
pub struct LogCmd {
    path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub fn versions(
    path: &std::path::Path,
    cfg: &ConfigArg,
) -> Result<(target::Target, Vec<VersionMeta>, String), super::CliError> {
    let t = target::locate(path)?;
    let v = t.ask(
        Request::Log {
            path: hex(&t.relpath),
        },
        &load_config(cfg)?,
    )?;
    let vs: Vec<VersionMeta> =
        serde_json::from_value(v["versions"].clone()).map_err(|e| e.to_string())?;
    let vdir = v["versions_dir"]
        .as_str()
        .unwrap_or(".versions")
        .to_string();
    Ok((t, vs, vdir))
}

pub fn run(c: LogCmd) -> CliResult {
    let (t, vs, _) = versions(&c.path, &c.config)?;
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&vs).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if vs.is_empty() {
        println!("{}: no versions", t.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:<24}  {:>10}  {:<9}  {:<11}  {:<8}  {:<3}  {:>8}  {:<7}  entry",
        "number", "sealed (UTC)", "size", "reason", "category", "complete", "pin", "step", "tier"
    );
    for m in &vs {
        println!(
            "{:>6}  {:<24}  {:>10}  {:<9}  {:<11}  {:<8}  {:<3}  {:>8}  {:<7}  {}",
            m.number,
            layout::stamp(m.sealed_ns),
            human(m.size),
            m.reason().as_str(),
            m.category(),
            match m.complete() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            },
            if m.pinned() { "pin" } else { "" },
            m.step().map_or("-".to_string(), |s| s.to_string()),
            if m.archived.is_some() {
                "archive"
            } else {
                "local"
            },
            String::from_utf8_lossy(&layout::entry_name(
                m.sealed_ns,
                m.number,
                m.reason().as_str(),
                m.relpath()
            )),
        );
    }
    Ok(ExitCode::SUCCESS)
}
