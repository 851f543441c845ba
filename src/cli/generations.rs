//! `ckptfs generations [DIR]`: the moments a burst of saves settled, with the
//! paths changed and the steps saved, as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliResult, ConfigArg, load_config, target};
use crate::control::Request;
use crate::store::{Generation, layout, unhex};

#[derive(clap::Args)]
pub struct GenerationsCmd {
    /// A directory inside the mount (default: the current one).
    dir: Option<PathBuf>,
    /// Only the newest N.
    #[arg(long)]
    last: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// The generations of the store that `dir` belongs to, oldest first.
pub fn list(
    dir: &std::path::Path,
    last: Option<usize>,
    cfg: &ConfigArg,
) -> Result<Vec<Generation>, super::CliError> {
    let t = target::locate(dir)?;
    let v = t.ask(Request::Generations { last }, &load_config(cfg)?)?;
    Ok(serde_json::from_value(v["generations"].clone()).map_err(|e| e.to_string())?)
}

fn numbers(v: &[u64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let s: Vec<String> = v.iter().map(u64::to_string).collect();
    s.join(",")
}

pub fn run(c: GenerationsCmd) -> CliResult {
    let dir = c.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let gens = list(&dir, c.last, &c.config)?;
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&gens).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<26} {:>7}  {:<14} {:<14} under",
        "instant (UTC)", "paths", "steps", "complete"
    );
    for g in &gens {
        let tops: Vec<String> = g
            .tops_hex
            .iter()
            .map(|h| match unhex(h) {
                t if t.is_empty() => "/".to_string(),
                t => String::from_utf8_lossy(&t).into_owned(),
            })
            .collect();
        println!(
            "@{:<25} {:>7}  {:<14} {:<14} {}",
            layout::stamp(g.t),
            g.paths,
            numbers(&g.steps),
            numbers(&g.complete),
            tops.join(" ")
        );
    }
    if gens.is_empty() {
        eprintln!("no generations yet: one is recorded when a burst of saves has settled");
    }
    Ok(ExitCode::SUCCESS)
}
