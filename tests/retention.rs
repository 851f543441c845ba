//! Retention through a real mount: policy after each seal, pins, gc --dry-run,
//! compression of old text versions, and space safety on a small disk.

mod common;
use common::*;

fn python(m: &Mount, code: &str) -> String {
    sh_ok(&format!(
        "cd {} && python3 - <<'PY'\n{code}\nPY",
        m.mnt.display()
    ))
}

#[test]
fn keep_last_pins_and_gc_dry_run() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let cfg = r#"{ "autosave": { "settle_ms": 50, "max_keep": 3 }, "retention": { "keep_within": "0s", "min_free_bytes": 0 } }"#;
        let m = Mount::new(
            "keeplast",
            Opts {
                config: Some(cfg.into()),
                ..Opts::default()
            },
        );
        std::fs::write(m.p("m.bin"), b"v1").unwrap();
        wait_for("v1", 60, || versions_of(&m, "m.bin").len() == 1);
        let o = ckptfs(&["pin", &m.p("m.bin").display().to_string(), "1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Each state sealed before the next write (else they coalesce).
        for i in 2..=8 {
            std::fs::write(m.p("m.bin"), format!("v{i}")).unwrap();
            m.wait_sealed();
        }
        wait_for("retention", 60, || versions_of(&m, "m.bin").len() == 4);
        let v = versions_of(&m, "m.bin");
        // Pinned v1 and the newest three.
        let nums: Vec<&str> = v.iter().map(|e| &e[24..30]).collect();
        assert_eq!(nums, vec!["000001", "000006", "000007", "000008"], "{v:?}");
        assert_eq!(
            std::fs::read(m.p(".versions/m.bin").join(&v[0])).unwrap(),
            b"v1"
        );
        // The live file is untouched by retention.
        assert_eq!(std::fs::read(m.p("m.bin")).unwrap(), b"v8");
        // Dry run: nothing goes now; each survivor says which rule keeps it.
        let o = ckptfs(&["gc", "--dry-run", "--json", &m.mnt.display().to_string()]);
        let g: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let lines = g["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 4);
        assert!(
            lines
                .iter()
                .all(|l| !l["kept_by"].as_array().unwrap().is_empty())
        );
        assert_eq!(lines[0]["kept_by"][0], "Pinned");
        // Unpin: the next seal lets retention drop v1.
        assert!(
            ckptfs(&["unpin", &m.p("m.bin").display().to_string(), "1"])
                .status
                .success()
        );
        std::fs::write(m.p("m.bin"), b"v9").unwrap();
        wait_for("unpinned v1 evicted", 30, || {
            versions_of(&m, "m.bin").len() == 3
        });
        // Unknown version: clear error, nothing changes.
        let o = ckptfs(&["pin", &m.p("m.bin").display().to_string(), "42"]);
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no version"));
    });
}

#[test]
fn old_text_versions_are_compressed_and_read_back_identically() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let cfg =
            r#"{ "autosave": { "settle_ms": 50 }, "compression": { "compress_after": "0s" } }"#;
        let m = Mount::new(
            "compress",
            Opts {
                config: Some(cfg.into()),
                ..Opts::default()
            },
        );
        let mut states = Vec::new();
        for i in 0..3 {
            let text: String = (0..20000)
                .map(|k| format!("2026-11-26 10:00:{:02} INFO step {k} round {i}\n", k % 60))
                .collect();
            std::fs::write(m.p("train.log"), &text).unwrap();
            states.push(text.into_bytes());
            wait_for("seal", 10, || versions_of(&m, "train.log").len() == i + 1);
        }
        // Old versions (not the newest, which shares the live inode) get packed.
        wait_for("compression", 30, || {
            let log: serde_json::Value = serde_json::from_slice(
                &ckptfs(&["log", "--json", &m.p("train.log").display().to_string()]).stdout,
            )
            .unwrap_or_default();
            log.as_array()
                .is_some_and(|a| a.iter().filter(|v| v["compressed"] == true).count() == 2)
        });
        // du shows the saving.
        let du: serde_json::Value =
            serde_json::from_slice(&ckptfs(&["du", "--json", &m.mnt.display().to_string()]).stdout)
                .unwrap();
        let log = &du["categories"]["log"];
        assert!(
            log["on_disk"].as_u64().unwrap() * 2 < log["bytes"].as_u64().unwrap(),
            "{du}"
        );
        let v = versions_of(&m, "train.log");
        for (e, want) in v.iter().zip(&states) {
            let p = m.p(".versions/train.log").join(e);
            assert_eq!(&std::fs::read(&p).unwrap(), want);
            // Random offsets.
            let f = std::fs::File::open(&p).unwrap();
            use std::os::unix::fs::FileExt;
            for off in [0u64, 1, 4095, 123_457, want.len() as u64 - 10] {
                let mut buf = [0u8; 64];
                let n = f.read_at(&mut buf, off).unwrap();
                assert_eq!(
                    &buf[..n],
                    &want[off as usize..(off as usize + 64).min(want.len())]
                );
            }
        }
        let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    });
}

#[test]
fn a_checkpoint_loop_that_would_fill_the_disk_keeps_running() {
    if !can_mount() {
        return;
    }
    bounded(400, || {
        for opts in modes() {
            let cfg = r#"{ "autosave": { "settle_ms": 50 }, "retention": { "keep_last": 100, "keep_within": "1d", "min_free_bytes": "10%" } }"#;
            let o = Opts {
                config: Some(cfg.into()),
                ..opts.clone()
            };
            let Some(DiskMount { disk, mut m }) = Mount::on_small_disk("space", 160, o) else {
                return;
            };
            // 30 saves of 24 MiB = 720 MiB through a 160 MiB disk, each distinct.
            let out = python(
                &m,
                r#"
import os, hashlib, json
done = []
for i in range(30):
    data = i.to_bytes(4, 'little') * (6 << 20)
    with open('model.ckpt', 'wb') as f:
        f.write(data)
        f.flush(); os.fsync(f.fileno())
    done.append(hashlib.blake2b(data).hexdigest())
    import time; time.sleep(0.3)
print(json.dumps(done))
"#,
            );
            let digests: Vec<String> =
                serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
            assert_eq!(digests.len(), 30, "every save succeeded");
            let live = std::fs::read(m.p("model.ckpt")).unwrap();
            assert_eq!(&blake2b(&live), digests.last().unwrap());
            // Every retained version is byte-identical to the save it records.
            let v = versions_of(&m, "model.ckpt");
            assert!(!v.is_empty());
            for e in &v {
                let b = std::fs::read(m.p(".versions/model.ckpt").join(e)).unwrap();
                assert!(digests.contains(&blake2b(&b)), "{e} matches a save");
            }
            // A write bigger than the disk gets ENOSPC (after every unpinned
            // version was given up for it) and changes nothing else: the live
            // file and the pinned version survive.
            let before = versions_of(&m, "model.ckpt");
            let pinned = &before[0];
            let n: u64 = pinned[24..30].parse().unwrap();
            let o = ckptfs(&[
                "pin",
                &m.p("model.ckpt").display().to_string(),
                &n.to_string(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let r = sh(&format!(
                "dd if=/dev/zero of={} bs=1M count=400 2>&1",
                m.p("huge.bin").display()
            ));
            assert!(!r.status.success(), "400 MiB cannot fit");
            let _ = std::fs::remove_file(m.p("huge.bin"));
            assert_eq!(std::fs::read(m.p("model.ckpt")).unwrap(), live);
            let after = versions_of(&m, "model.ckpt");
            assert!(after.contains(pinned), "the pin survives ENOSPC: {after:?}");
            let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
            m.unmount();
            drop(disk);
        }
    });
}

fn stat(m: &Mount, key: &str) -> u64 {
    let o = ckptfs(&["stats", m.mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["stats"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {s}"))
}

/// A long history is decided incrementally once retention has settled it, and
/// the result is what the rules say: a pinned v1 and the newest 80. An unpin
/// unsettles it, so the next decision is a full one and lets v1 go.
#[test]
fn a_long_history_is_retained_incrementally() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let cfg = r#"{ "autosave": { "settle_ms": 0, "fsync_min_interval": "0s" }, "retention": { "keep_last": 80, "keep_within": "0s", "min_free_bytes": 0 } }"#;
        let m = Mount::new(
            "incremental",
            Opts {
                config: Some(cfg.into()),
                ..Opts::default()
            },
        );
        let f = m.p("log.bin");
        std::fs::write(&f, b"state 0").unwrap();
        wait_for("v1", 60, || versions_of(&m, "log.bin").len() == 1);
        let o = ckptfs(&["pin", &f.display().to_string(), "1"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Each state fsynced and sealed before the next (states do not coalesce).
        let save = |from: u32, to: u32| {
            for i in from..to {
                let mut w = std::fs::File::create(&f).unwrap();
                std::io::Write::write_all(&mut w, format!("state {i}").as_bytes()).unwrap();
                w.sync_all().unwrap();
                drop(w);
                m.wait_sealed();
            }
        };
        save(1, 150);
        let full_before = stat(&m, "retention_full");
        let inc_before = stat(&m, "retention_incremental");
        save(150, 400);
        let full = stat(&m, "retention_full") - full_before;
        let inc = stat(&m, "retention_incremental") - inc_before;
        // Every seal of the long history after the first was incremental (the
        // sweep may decide it in full once, when nothing changed).
        assert!(full <= 1, "{full} full decisions, {inc} incremental");
        assert!(inc >= 200, "{full} full decisions, {inc} incremental");
        let v = versions_of(&m, "log.bin");
        assert_eq!(v.len(), 81, "{v:?}");
        assert_eq!(&v[0][24..30], "000001");
        let dir = m.p(".versions/log.bin");
        let states: Vec<String> = v
            .iter()
            .map(|e| String::from_utf8(std::fs::read(dir.join(e)).unwrap()).unwrap())
            .collect();
        let want: Vec<String> = std::iter::once(0)
            .chain(320..400)
            .map(|i| format!("state {i}"))
            .collect();
        assert_eq!(states, want);
        // Unpin: the next seal decides in full and takes v1.
        assert!(
            ckptfs(&["unpin", &f.display().to_string(), "1"])
                .status
                .success()
        );
        let full_before = stat(&m, "retention_full");
        save(400, 401);
        wait_for("unpinned v1 evicted", 30, || {
            versions_of(&m, "log.bin").len() == 80
        });
        assert!(stat(&m, "retention_full") > full_before);
        let v = versions_of(&m, "log.bin");
        assert_eq!(std::fs::read(dir.join(&v[0])).unwrap(), b"state 321");
    });
}
