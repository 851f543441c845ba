//! Each configuration key and command through a real mount: what it promises,
//! and a clear error for bad input.

mod common;
use common::*;
use std::time::Duration;

fn mount_with(tag: &str, cfg: &str) -> Mount {
    Mount::new(
        tag,
        Opts {
            config: Some(cfg.into()),
            ..Opts::default()
        },
    )
}

fn numbers(m: &Mount, rel: &str) -> Vec<u64> {
    versions_of(m, rel)
        .iter()
        .map(|e| e[24..30].parse().unwrap())
        .collect()
}

#[test]
fn config_check_prints_the_effective_config_or_names_the_bad_key() {
    let root = tmpdir("cfgcheck");
    let good = root.join("good.json");
    std::fs::write(
        &good,
        "// seed\n{ \"autosave\": { \"max_keep\": 3 }, \"compression\": { \"level\": 19 } }",
    )
    .unwrap();
    let o = ckptfs(&["config", "check", &good.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["retention"]["max_versions"], 3);
    assert_eq!(v["retention"]["keep_within"], serde_json::Value::Null);
    assert_eq!(v["compression"]["level"], 19);
    for (bad, key) in [
        (r#"{"compression": {"level": 25}}"#, "compression.level"),
        (
            r#"{"compression": {"categories": ["nope"]}}"#,
            "compression.categories",
        ),
        (
            r#"{"retention": {"keep_within": "3 parsecs"}}"#,
            "keep_within",
        ),
        (r#"{"versions_dir": {"name": "a/b"}}"#, "versions_dir.name"),
        (r#"{"versions_dir": {"visibility": "maybe"}}"#, "visibility"),
    ] {
        let f = root.join("bad.json");
        std::fs::write(&f, bad).unwrap();
        let o = ckptfs(&["config", "check", &f.display().to_string()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(
            err.contains(key) || err.contains("unknown variant"),
            "{bad}: {err}"
        );
        assert!(
            err.contains("bad.json") && err.lines().count() == 1,
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn autosave_disabled_is_a_plain_mount() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "disabled",
            r#"{ "autosave": { "enabled": false, "settle_ms": 50 } }"#,
        );
        for i in 0..3u8 {
            std::fs::write(m.p("f.bin"), [i; 100]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(std::fs::read(m.p("f.bin")).unwrap(), [2u8; 100]);
        assert!(versions_of(&m, "f.bin").is_empty());
        assert_eq!(stats(&m)["versions"], 0);
    });
}

#[test]
fn versions_dir_name_and_visibility() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "vdirname",
            r#"{ "autosave": { "settle_ms": 50 }, "versions_dir": { "name": "history", "visibility": "visible" } }"#,
        );
        std::fs::write(m.p("f.bin"), b"one").unwrap();
        wait_for("v1", 30, || m.p("history/f.bin/latest").exists());
        let names: Vec<String> = std::fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"history".to_string()), "visible: {names:?}");
        // `.versions` is an ordinary name now.
        std::fs::create_dir(m.p(".versions")).unwrap();
        assert!(m.p(".versions").is_dir());
        drop(m);
        let m = mount_with(
            "vdisabled",
            r#"{ "autosave": { "settle_ms": 50 }, "versions_dir": { "visibility": "disabled" } }"#,
        );
        std::fs::write(m.p("f.bin"), b"one").unwrap();
        m.wait_sealed();
        assert_eq!(
            std::fs::metadata(m.p(".versions"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOENT)
        );
        // History is still kept, only not shown.
        wait_for("a version in the store", 30, || stats(&m)["versions"] == 1);
    });
}

#[test]
fn a_custom_ignore_list_replaces_the_default() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "ignore",
            r#"{ "autosave": { "settle_ms": 50 }, "ignore": ["*.scratch"] }"#,
        );
        std::fs::write(m.p("a.scratch"), b"x").unwrap();
        std::fs::write(m.p("b.tmp"), b"y").unwrap();
        wait_for("b.tmp versioned", 30, || {
            versions_of(&m, "b.tmp").len() == 1
        });
        m.wait_sealed();
        assert!(versions_of(&m, "a.scratch").is_empty());
    });
}

#[test]
fn max_store_bytes_bounds_the_store() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "maxstore",
            r#"{ "autosave": { "settle_ms": 50 }, "retention": { "max_store_bytes": 1048576 } }"#,
        );
        for i in 0..5u8 {
            std::fs::write(m.p("w.bin"), vec![i; 600 << 10]).unwrap();
            wait_for("sealed", 30, || !versions_of(&m, "w.bin").is_empty());
            m.wait_sealed();
        }
        wait_for("the quota", 30, || {
            stats(&m)["store_bytes"].as_u64().unwrap() <= 1 << 20
        });
        assert!(stats(&m)["stats"]["evicted_quota"].as_u64().unwrap() > 0);
        // The newest state is the one kept.
        let v = versions_of(&m, "w.bin");
        let last = std::fs::read(m.p(".versions/w.bin").join(v.last().unwrap())).unwrap();
        assert_eq!(last, vec![4u8; 600 << 10]);
    });
}

#[test]
fn compression_categories_choose_what_is_packed() {
    if !can_mount() {
        return;
    }
    bounded(90, || {
        let m = mount_with(
            "zcats",
            r#"{ "autosave": { "settle_ms": 50 },
                 "compression": { "compress_after": "0s", "categories": ["csv"], "level": 19 } }"#,
        );
        for i in 0..2 {
            let csv: String = (0..20000).map(|k| format!("{k},{i},0.5\n")).collect();
            std::fs::write(m.p("m.csv"), format!("step,run,loss\n{csv}")).unwrap();
            let log: String = (0..20000)
                .map(|k| format!("2026-11-30 09:00:00 INFO step {k} run {i}\n"))
                .collect();
            std::fs::write(m.p("t.log"), log).unwrap();
            wait_for("sealed", 30, || {
                versions_of(&m, "m.csv").len() == i + 1 && versions_of(&m, "t.log").len() == i + 1
            });
        }
        let compressed = |p: &str| {
            let o = ckptfs(&["log", "--json", &m.p(p).display().to_string()]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .filter(|x| x["compressed"] == true)
                .count()
        };
        wait_for("the csv's old version packed", 30, || {
            compressed("m.csv") == 1
        });
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(compressed("t.log"), 0, "log is not a listed category");
    });
}

#[test]
fn keep_every_n_and_daily_keep_exactly_their_survivors() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "gfs",
            r#"{ "autosave": { "settle_ms": 50 },
                 "retention": { "keep_last": 1, "keep_within": null, "keep_every_n": 3, "keep_daily": 1 } }"#,
        );
        for i in 1..=7u8 {
            std::fs::write(m.p("g.bin"), [i; 64]).unwrap();
            wait_for("sealed", 30, || {
                numbers(&m, "g.bin").last() == Some(&(i as u64))
            });
        }
        // keep_every_n 3 keeps 3 and 6; daily and keep_last keep the newest (7).
        wait_for("retention", 30, || numbers(&m, "g.bin") == vec![3, 6, 7]);
    });
}

#[test]
fn fsync_copy_limit_on_ext4() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        for (limit, copies) in [(0u64, false), (1 << 20, true)] {
            let cfg =
                format!(r#"{{ "autosave": {{ "settle_ms": 50, "fsync_copy_limit": {limit} }} }}"#);
            let m = mount_with("fsynclimit", &cfg);
            let out = sh_ok(&format!(
                "cd {} && python3 -c \"import os; fd=os.open('f.bin', os.O_CREAT|os.O_WRONLY, 0o644); os.write(fd, b'a'*4096); os.fsync(fd); os.write(fd, b'b'*10); os.close(fd)\" && echo done",
                m.mnt.display()
            ));
            assert!(out.contains("done"));
            wait_for("sealed at close", 30, || {
                !versions_of(&m, "f.bin").is_empty()
            });
            m.wait_sealed();
            let s = stats(&m);
            let copied = s["stats"]["captures_copied"].as_u64().unwrap();
            let n = versions_of(&m, "f.bin").len();
            if copies {
                // The fsynced state (copied) and the state at close.
                assert!(copied >= 1, "{s}");
                assert_eq!(n, 2);
            } else {
                // Too big to copy here (no reflink on ext4): the state at close.
                assert_eq!(copied, 0, "{s}");
                assert_eq!(n, 1);
            }
        }
    });
}

#[test]
fn gc_removes_what_its_dry_run_listed() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        // keep_last 10 while sealing; gc then runs with keep_last 2 (offline).
        let mut m = Mount::new(
            "gc",
            Opts {
                config: Some(FAST.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        for i in 1..=5u8 {
            std::fs::write(m.p("f.bin"), [i; 64]).unwrap();
            wait_for("sealed", 30, || numbers(&m, "f.bin").len() == i as usize);
        }
        m.unmount();
        let cfg = m.root.join("gc.json");
        std::fs::write(
            &cfg,
            r#"{ "retention": { "keep_last": 2, "keep_within": null } }"#,
        )
        .unwrap();
        let d = m.dir.display().to_string();
        let c = cfg.display().to_string();
        let o = ckptfs(&["gc", "--dry-run", "--json", &d, "--config", &c]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dry: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let going: Vec<u64> = dry["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["kept_by"].as_array().unwrap().is_empty())
            .map(|l| l["number"].as_u64().unwrap())
            .collect();
        assert_eq!(going, vec![1, 2, 3]);
        let o = ckptfs(&["gc", &d, "--config", &c]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        m.mount();
        assert_eq!(numbers(&m, "f.bin"), vec![4, 5]);
    });
}

#[test]
fn restore_in_place_du_foreground_and_threads() {
    if !can_mount() {
        return;
    }
    bounded(90, || {
        let root = tmpdir("fg");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = root.join("c.json");
        std::fs::write(&cfg, FAST).unwrap();
        // -f stays in the foreground until unmounted; --threads is honoured.
        let mut child = std::process::Command::new(BIN)
            .args(["mount", "-f", "--threads", "2", &dir.display().to_string()])
            .args(["--config", &cfg.display().to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A failed assertion below must not leave the mount (and the
        // foreground daemon) behind.
        let _down = UnmountOnDrop(dir.clone());
        wait_for("the foreground mount", 30, || {
            mount_count(&dir) == 1 || child.try_wait().unwrap().is_some()
        });
        if mount_count(&dir) != 1 {
            let out = child.wait_with_output().unwrap();
            panic!("mount -f: {}", String::from_utf8_lossy(&out.stderr));
        }
        let f = dir.join("model.bin");
        std::fs::write(&f, b"first").unwrap();
        std::fs::write(&f, b"second").unwrap();
        wait_for("two versions", 30, || {
            std::fs::read_dir(dir.join(".versions/model.bin"))
                .map(|r| r.count() >= 5)
                .unwrap_or(false)
        });
        // restore without --to: in place; the state before it becomes a version.
        let o = ckptfs(&["restore", &f.display().to_string(), "1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&f).unwrap(), b"first");
        let o = ckptfs(&["du", "--json", &dir.display().to_string()]);
        let du: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            du["categories"]["text"]["versions"].as_u64().unwrap() >= 2,
            "{du}"
        );
        // Bad input: one clear line each, nothing changes.
        let fs = f.display().to_string();
        let bad = [
            (
                vec!["restore", &fs, "1", "--to", "/nonexistent/dir/x"],
                "/nonexistent/dir/x",
            ),
            (vec!["restore", &fs, "42"], "no version"),
            (vec!["log", "/etc/hostname"], "not inside a ckptfs mount"),
        ];
        for (args, want) in bad {
            let o = ckptfs(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            assert!(
                err.contains(want) && err.lines().count() == 1,
                "{args:?}: {err}"
            );
        }
        // A read-only place: one line naming it, the live file unchanged.
        let ro = root.join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        sh_ok(&format!("mount -t tmpfs -o ro tmpfs {}", ro.display()));
        let o = ckptfs(&[
            "restore",
            &fs,
            "1",
            "--to",
            &ro.join("x").display().to_string(),
        ]);
        let _ = std::process::Command::new("umount").arg(&ro).status();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            err.contains("Read-only file system") && err.contains("ro/x"),
            "{err}"
        );
        let nohist = dir.join("never-written.bin");
        let o = ckptfs(&["restore", &nohist.display().to_string(), "1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("have: none"), "{err}");
        assert_eq!(std::fs::read(&f).unwrap(), b"first");
        let o = ckptfs(&["umount", &dir.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            child.wait().unwrap().success(),
            "the foreground daemon exits 0"
        );
        assert_eq!(mount_count(&dir), 0);
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn keep_within_keeps_exactly_the_recent_span() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with(
            "within",
            r#"{ "autosave": { "settle_ms": 50 }, "retention": { "keep_last": 1, "keep_within": "2s" } }"#,
        );
        std::fs::write(m.p("k.bin"), [1u8; 64]).unwrap();
        wait_for("v1", 30, || numbers(&m, "k.bin") == vec![1]);
        std::thread::sleep(Duration::from_millis(3300));
        for i in 2..=3u8 {
            std::fs::write(m.p("k.bin"), [i; 64]).unwrap();
            wait_for("sealed", 30, || {
                numbers(&m, "k.bin").last() == Some(&(i as u64))
            });
        }
        // v1 is more than 2 s older than the newest; v2 is within.
        wait_for("retention", 30, || numbers(&m, "k.bin") == vec![2, 3]);
    });
}

#[test]
fn wait_returns_once_every_closed_file_is_sealed() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = mount_with("waitq", r#"{ "autosave": { "settle_ms": 3000 } }"#);
        let mnt = m.mnt.display().to_string();
        std::fs::write(m.p("a.bin"), [7u8; 4096]).unwrap();
        std::fs::write(m.p("b.bin"), [8u8; 4096]).unwrap();
        // Both still wait for their settle time.
        assert_eq!(stats(&m)["settling"], 2);
        let o = ckptfs(&["wait", &mnt, "--timeout", "0.1"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("2 file(s) settling"), "{err}");
        let o = ckptfs(&["wait", &mnt, "--print"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let waited: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        assert!(waited > 0.0, "it had to wait for the settle time");
        // No polling: the versions exist the moment `wait` returns.
        assert_eq!(numbers(&m, "a.bin"), vec![1]);
        assert_eq!(numbers(&m, "b.bin"), vec![1]);
        let s = stats(&m);
        assert_eq!((&s["settling"], &s["sealing"]), (&0.into(), &0.into()));
        let o = ckptfs(&["wait", &mnt, "--timeout=-1"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--timeout -1: not a number of seconds")
        );
    });
}
