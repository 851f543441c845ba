//! `ckptfs status [DIR]`: a short summary a person reads (`stats` stays JSON
//! for scripts).

use std::process::ExitCode;

use serde_json::Value;

use super::admin::DirOpt;
use super::log_cmd::human;
use super::{CliResult, load_config, target};
use crate::control::Request;

fn ago(ns: i64) -> String {
    if ns <= 0 {
        return "never".into();
    }
    let secs = (crate::store::now_ns() - ns).max(0) / 1_000_000_000;
    let when = crate::store::layout::stamp(ns);
    let span = match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    };
    format!("{span} ago ({})", &when[..15])
}

pub fn run(c: DirOpt) -> CliResult {
    let dir = c.dir.clone().unwrap_or_else(|| ".".into());
    let t = target::locate(&dir)?;
    let v = t.ask(Request::Stats, &load_config(&c.config)?)?;
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    let st = &v["stats"];
    let sp = &v["space"];
    let mount = match &t.mountpoint {
        Some(mp) => format!("{} (store {})", mp.display(), t.store_path.display()),
        None => format!("not mounted (store {})", t.store_path.display()),
    };
    println!("mount        {mount}");
    if let Some(p) = v["data_path"].as_str() {
        let on = if v["versioning"].as_bool() == Some(false) {
            ", versioning off"
        } else {
            ""
        };
        println!("data path    {p}{on}");
    }
    println!(
        "versions     {} ({} in the store)",
        n(&v["versions"]),
        human(n(&v["store_bytes"]))
    );
    if sp.is_object() {
        println!(
            "free space   {} of {}; reserve {}{}",
            human(n(&sp["free"])),
            human(n(&sp["total"])),
            human(n(&sp["reserve"])),
            if sp["pressure"].as_bool() == Some(true) {
                "  UNDER PRESSURE: evicting history"
            } else {
                ""
            }
        );
    }
    println!(
        "pending      {} settling, {} sealing{}",
        n(&v["settling"]),
        n(&v["sealing"]),
        match n(&v["failed_seals"]) {
            0 => String::new(),
            f => format!(", {f} failed (no room): sealed again once there is"),
        }
    );
    println!(
        "last seal    {}",
        ago(v["last_seal_ns"].as_i64().unwrap_or(0))
    );
    println!(
        "errors       {} (seal {}, capture {}, ENOSPC to writers {}); conflicts {}",
        n(&st["errors"]),
        n(&st["errors_seal"]),
        n(&st["errors_capture"]),
        n(&st["enospc_returned"]),
        n(&st["conflicts"])
    );
    println!(
        "evicted      {} ({} for quota, {} under pressure)",
        n(&st["evictions"]),
        n(&st["evicted_quota"]),
        n(&st["evicted_pressure"])
    );
    println!(
        "metrics      {}",
        v["metrics"]
            .as_str()
            .unwrap_or("off (mount --metrics [ADDR:]PORT)")
    );
    Ok(ExitCode::SUCCESS)
}
