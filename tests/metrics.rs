//! The Prometheus endpoint against a real Prometheus server (Debian's
//! `prometheus`): it scrapes a real mount, sees `up`, the sealed-versions
//! counter rise by the versions made and the latency histogram fill. The
//! shipped alert rules pass `promtool check rules` and their unit tests; the
//! Grafana dashboard queries only metrics the endpoint exports.

mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");

fn have(cmd: &str) -> bool {
    let ok = sh(&format!("command -v {cmd}")).status.success();
    if !ok {
        skip(&format!("{cmd} (apt-get install prometheus)"));
    }
    ok
}

/// GET `path` from 127.0.0.1:`port`; the body.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = Vec::new();
    s.read_to_end(&mut r).ok()?;
    let r = String::from_utf8_lossy(&r).into_owned();
    let (head, body) = r.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    // tiny_http and Prometheus may answer chunked.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        return Some(out);
    }
    Some(body.to_string())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a one-series instant query, if it has one.
fn query(port: u16, q: &str) -> Option<f64> {
    let body = get(port, &format!("/api/v1/query?query={}", urlencode(q)))?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Metric names the endpoint exports, with the suffixes Prometheus sees.
fn exported(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        if w.next() != Some("#") || w.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (w.next(), w.next()) else {
            continue;
        };
        match kind {
            "counter" => out.push(format!("{name}_total")),
            "histogram" => {
                for s in ["bucket", "sum", "count"] {
                    out.push(format!("{name}_{s}"));
                }
            }
            _ => out.push(name.to_string()),
        }
    }
    out
}

/// Every `ckptfs_…` name in `text`.
fn names_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(k) = text[i..].find("ckptfs_") {
        let start = i + k;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(text[start..end].to_string());
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn alert_rules_pass_promtool() {
    if !have("promtool") {
        return;
    }
    let dir = Path::new(CONTRIB).join("prometheus");
    let o = sh(&format!(
        "cd {} && promtool check rules ckptfs-rules.yml && promtool test rules ckptfs-rules.test.yml",
        dir.display()
    ));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_real_prometheus_scrapes_the_mount() {
    if !can_mount() || !have("prometheus") {
        return;
    }
    bounded(180, || {
        let mport = free_port();
        let m = Mount::new(
            "metrics",
            Opts {
                config: Some(FAST.into()),
                args: vec!["--metrics".into(), mport.to_string()],
                ..Opts::default()
            },
        );
        let pport = free_port();
        let cfg = m.root.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/prometheus/ckptfs-rules.yml\nscrape_configs:\n  - job_name: ckptfs\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n",
                CONTRIB
            ),
        )
        .unwrap();
        let _prom = Prometheus(
            Command::new("prometheus")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    m.root.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("prometheus to scrape the mount (up == 1)", 60, || {
            query(pport, r#"up{job="ckptfs"}"#) == Some(1.0)
        });
        let sealed = r#"sum(ckptfs_versions_sealed_total{job="ckptfs"}) or vector(0)"#;
        let before = query(pport, sealed).unwrap();
        for i in 0..5 {
            std::fs::write(m.p(&format!("f{i}.txt")), format!("state {i}\n")).unwrap();
        }
        m.wait_sealed();
        wait_for("the sealed counter to rise by 5", 30, || {
            query(pport, sealed) == Some(before + 5.0)
        });
        wait_for("request latencies", 30, || {
            query(
                pport,
                r#"sum(ckptfs_fuse_request_duration_seconds_count{job="ckptfs",op="create"})"#,
            )
            .is_some_and(|n| n >= 5.0)
        });
        assert_eq!(
            query(
                pport,
                r#"ckptfs_build_info{job="ckptfs",data_path=~"passthrough|daemon"}"#
            ),
            Some(1.0)
        );
        // The dashboard and the rules ask only for what is exported.
        let text = get(mport, "/metrics").unwrap();
        let have = exported(&text);
        let dash = std::fs::read_to_string(Path::new(CONTRIB).join("grafana/ckptfs.json")).unwrap();
        let d: Value = serde_json::from_str(&dash).unwrap();
        let mut asked = Vec::new();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                asked.extend(names_in(t["expr"].as_str().unwrap()));
            }
        }
        let rules = std::fs::read_to_string(Path::new(CONTRIB).join("prometheus/ckptfs-rules.yml"))
            .unwrap();
        asked.extend(names_in(&rules));
        assert!(asked.len() > 10, "{asked:?}");
        // The usage gauges appear once the first sum is done.
        wait_for("per-category usage", 20, || {
            get(mport, "/metrics").is_some_and(|t| t.contains("ckptfs_store_bytes{"))
        });
        let missing: Vec<&String> = asked.iter().filter(|n| !have.contains(n)).collect();
        assert!(missing.is_empty(), "queried but not exported: {missing:?}");
        // Every family exported is in the README's tables.
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let undocumented: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| !readme.contains(&format!("| `{name}")))
            .collect();
        assert!(
            undocumented.is_empty(),
            "not in the README: {undocumented:?}"
        );
        assert_eq!(get(mport, "/healthz").as_deref(), Some("ok\n"));
        // The summary a person reads names the endpoint and what is kept.
        let o = ckptfs(&["status", m.mnt.to_str().unwrap()]);
        let st = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for want in [
            format!("metrics      http://127.0.0.1:{mport}/metrics"),
            "versions     5 ".to_string(),
            "data path    ".to_string(),
            "reserve ".to_string(),
        ] {
            assert!(st.contains(&want), "{want:?} not in:\n{st}");
        }
        // No label is a path: the files written never appear in a scrape.
        let text = get(mport, "/metrics").unwrap();
        assert!(!text.contains("f0.txt"));
    });
}

#[test]
fn a_bad_metrics_address_is_one_line_before_anything_is_mounted() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port().to_string();
        let dir = tmpdir("metrics-bad");
        // Refused mounts below: one that happened anyway is not left behind.
        let _down = UnmountOnDrop(dir.clone());
        for (arg, says) in [
            (port.as_str(), "Address already in use"),
            ("nowhere:80", "not a port or ADDR:PORT"),
        ] {
            let o = ckptfs(&["mount", dir.to_str().unwrap(), "--metrics", arg]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{err}");
            assert!(
                err.contains(says) && err.trim().lines().count() == 1,
                "{err}"
            );
            assert!(!is_mounted(&dir), "mounted despite {arg}");
        }
        let cfg = dir.with_extension("json");
        std::fs::write(&cfg, r#"{ "metrics": { "listen": "9x" } }"#).unwrap();
        let o = ckptfs(&["config", "check", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("metrics.listen"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&cfg);
    });
}

#[test]
fn gc_and_verify_show_the_daemons_progress_on_a_terminal() {
    if !can_mount() {
        return;
    }
    if !sh("command -v script").status.success() {
        skip("script(1) for a pseudo-terminal (util-linux)");
        return;
    }
    bounded(90, || {
        let m = Mount::new(
            "progress",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        for i in 0..37 {
            std::fs::write(m.p(&format!("f{i}")), format!("{i}\n")).unwrap();
        }
        m.wait_sealed();
        for cmd in ["verify", "gc --dry-run"] {
            // On a terminal the bar shows the daemon's count (37 versions, or
            // 37 paths); piped, no bar at all.
            let tty = sh_ok(&format!(
                "script -qfec '{BIN} {cmd} {}' /dev/null",
                m.mnt.display()
            ));
            assert!(tty.contains("/37"), "{cmd} on a terminal: {tty:?}");
            let piped = sh(&format!("{BIN} {cmd} {} 2>&1", m.mnt.display()));
            let out = String::from_utf8_lossy(&piped.stdout);
            assert!(
                !out.contains("/37") && !out.contains('\u{2591}'),
                "{cmd} piped: {out:?}"
            );
        }
    });
}
