//! The daemon's memory stays put while people look at a long history: through
//! commands (below) and through `.versions` (the view's inodes follow the
//! kernel's). Each control connection runs on its own thread, and glibc keeps
//! what such a thread freed in its arena for the daemon's life: a reply built
//! as a JSON value tree (~2.8 KB per version) once grew the daemon by that
//! much per `ckptfs log`, up to one arena per connection (16 on 2 cores).
//! Bytes are deterministic enough to bound, unlike timings.

mod common;
use common::*;

fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn asking_for_a_long_history_does_not_grow_the_daemon() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let m = Mount::new(
            "rsslog",
            Opts {
                config: Some(
                    r#"{ "autosave": { "settle_ms": 0 },
                         "retention": { "keep_last": 100000, "keep_within": "100y" } }"#
                        .into(),
                ),
                ..Opts::default()
            },
        );
        const N: usize = 3000;
        let f = m.p("metrics.json");
        for i in 0..N {
            std::fs::write(&f, format!("{{\"step\": {i}}}\n")).unwrap();
        }
        m.wait_sealed();
        let pid = m.daemon_pid().expect("the daemon's pid");
        let log = || {
            let o = ckptfs(&["log", &f.display().to_string()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout
        };
        // The history is really this long (else the bound below proves nothing).
        let rows = String::from_utf8_lossy(&log()).lines().count();
        assert!(
            rows > N * 9 / 10,
            "ckptfs log listed {rows} lines for {N} saves"
        );
        let before = rss_kib(pid);
        for _ in 0..20 {
            log();
        }
        let grew = rss_kib(pid).saturating_sub(before);
        eprintln!("20 `ckptfs log` of {N} versions: the daemon grew {grew} KiB");
        // A value tree per reply: ~8 MiB per call here, >100 MiB over the 20.
        // Streamed: the history's clone (~0.3 MiB) per connection thread.
        assert!(
            grew < 16 * 1024,
            "20 `ckptfs log` of {N} versions grew the daemon by {grew} KiB"
        );
    });
}

/// The `.versions` view keeps an inode only while the kernel holds it: a
/// walk of the tree at many instants (what `restore --at` does for each
/// instant asked) once left a node per path and instant for the daemon's life.
#[test]
fn the_view_forgets_what_the_kernel_forgets() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        let m = Mount::new(
            "viewforget",
            Opts {
                config: Some(r#"{ "autosave": { "settle_ms": 0 } }"#.into()),
                ..Opts::default()
            },
        );
        const FILES: usize = 400;
        for i in 0..FILES {
            std::fs::write(m.p(&format!("f{i}.txt")), format!("state {i}")).unwrap();
        }
        m.wait_sealed();
        let held = || {
            stats(&m)["view_inodes"]
                .as_u64()
                .expect("stats has view_inodes")
        };
        let start = held();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for k in 1..=6 {
            let o = sh(&format!(
                "ls -l {}/@$(date -u -d @{} +%Y%m%dT%H%M%SZ) | wc -l",
                m.p(".versions").display(),
                now + k
            ));
            let lines: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
            assert!(lines > FILES, "the tree at an instant lists {lines} lines");
        }
        let walked = held();
        assert!(
            walked >= start + 6 * FILES as u64,
            "6 walks of {FILES} files: {start} -> {walked} inodes"
        );
        // What the kernel lets go of, it forgets (FORGET); the daemon with it.
        if std::fs::write("/proc/sys/vm/drop_caches", "2").is_err() {
            skip("dropping the kernel's dentries (/proc/sys/vm/drop_caches needs root)");
            return;
        }
        wait_for("the view to forget the walks' inodes", 20, || {
            held() < start + 50
        });
    });
}
