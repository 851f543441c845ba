//! Space safety on small loop filesystems, in both data paths (DESIGN §2.6): a
//! write into the mount gets ENOSPC only when the live tree and the pinned
//! versions alone do not fit. History is evicted, in the background ahead of the
//! next save and on the spot when a write meets ENOSPC.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Run Python `code` with `cwd` as its working directory; stdout.
fn python(cwd: &Path, code: &str) -> String {
    sh_ok(&format!(
        "cd {} && python3 - <<'PY'\n{code}\nPY",
        cwd.display()
    ))
}

/// The trainer rotation writer shared with scripts/bench-space.sh.
const ROTATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rotate.py");

fn stat_u64(m: &Mount, key: &str) -> u64 {
    stats(m)["stats"][key].as_u64().unwrap()
}

/// The newest version of `rel` (after its seal) holds exactly `digest`.
#[track_caller]
fn newest_version_is(m: &Mount, rel: &str, digest: &str) {
    wait_for(&format!("a version of {rel}"), 30, || {
        versions_of(m, rel)
            .last()
            .and_then(|e| std::fs::read(m.p(".versions").join(rel).join(e)).ok())
            .is_some_and(|b| blake2b(&b) == digest)
    });
}

fn summary(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

#[test]
fn rotation_under_new_names_writes_ten_disks_without_a_failed_save() {
    if !can_mount() {
        return;
    }
    bounded(900, || {
        for opts in modes() {
            // Defaults, as a new user mounts it.
            let Some(DiskMount { disk, mut m }) =
                Mount::on_small_disk("rotation", 128, opts.clone())
            else {
                return;
            };
            // 12 MiB checkpoints, 107 saves: 10x the disk, keeping the newest 2.
            let out = sh_ok(&format!(
                "python3 {ROTATE} {} --saves 107 --mb 12 --fsync",
                m.mnt.display()
            ));
            let s = summary(&out);
            assert_eq!(s["failed"], 0, "every save succeeds ({opts:?}): {out}");
            let live = s["live"].as_object().unwrap();
            assert_eq!(live.len(), 6, "the newest 2 checkpoints of 3 files");
            for (rel, digest) in live {
                let digest = digest.as_str().unwrap();
                let b = std::fs::read(m.p(rel)).unwrap();
                assert_eq!(blake2b(&b), digest, "{rel} is what was saved");
                // Their history is still there: the newest version is that save.
                newest_version_is(&m, rel, digest);
            }
            // Eviction under pressure really happened (else this proved nothing).
            assert!(stat_u64(&m, "evicted_pressure") > 0, "{}", stats(&m));
            if opts.passthrough {
                assert!(stat_u64(&m, "pressure_opens") > 0, "{}", stats(&m));
            }
            let sp = &stats(&m)["space"];
            assert!(sp["reserve"].as_u64().unwrap() > sp["min_free"].as_u64().unwrap());
            assert!(sp["largest_burst"].as_u64().unwrap() >= 12 << 20, "{sp}");
            verify_clean(&m);
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn one_file_rewritten_fifty_times_at_a_fifth_of_the_disk() {
    if !can_mount() {
        return;
    }
    bounded(600, || {
        for opts in modes() {
            let Some(DiskMount { disk, mut m }) =
                Mount::on_small_disk("rewrite", 128, opts.clone())
            else {
                return;
            };
            let out = python(
                &m.mnt,
                r#"
import os, hashlib, json
block = os.urandom(1 << 20)
failed, last = 0, None
for i in range(50):
    data = i.to_bytes(8, 'little') + block * 25
    try:
        with open('model.pt', 'wb') as f:
            f.write(data)
            if i % 2:
                f.flush(); os.fsync(f.fileno())
        last = hashlib.blake2b(data).hexdigest()
    except OSError as e:
        failed += 1
print(json.dumps({"failed": failed, "last": last}))
"#,
            );
            let s = summary(&out);
            assert_eq!(s["failed"], 0, "{opts:?}: {out}");
            let last = s["last"].as_str().unwrap();
            assert_eq!(blake2b(&std::fs::read(m.p("model.pt")).unwrap()), last);
            newest_version_is(&m, "model.pt", last);
            assert!(stat_u64(&m, "evicted_pressure") > 0, "{}", stats(&m));
            verify_clean(&m);
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn ten_thousand_small_files_written_and_deleted() {
    if !can_mount() {
        return;
    }
    bounded(900, || {
        for opts in modes() {
            // 32 MiB: 8,192 inodes; every deleted file's version takes 2-3.
            let fast = Opts {
                config: Some(FAST.into()),
                ..opts.clone()
            };
            let Some(DiskMount { disk, mut m }) = Mount::on_small_disk("smallfiles", 32, fast)
            else {
                return;
            };
            let out = python(
                &m.mnt,
                r#"
import os, json
failed = 0
for r in range(10):
    names = []
    for i in range(1000):
        n = f"shard-{r}-{i}.bin"
        try:
            with open(n, 'wb') as f:
                f.write(os.urandom(8192))
            names.append(n)
        except OSError as e:
            failed += 1
    for n in names:
        try:
            os.unlink(n)
        except OSError:
            failed += 1
print(json.dumps({"failed": failed}))
"#,
            );
            assert_eq!(summary(&out)["failed"], 0, "{opts:?}: {out}");
            assert!(stat_u64(&m, "evicted_pressure") > 0, "{}", stats(&m));
            verify_clean(&m);
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn pins_hold_under_pressure_and_only_they_can_fill_the_disk() {
    if !can_mount() {
        return;
    }
    bounded(600, || {
        for opts in modes() {
            let Some(DiskMount { disk, mut m }) = Mount::on_small_disk(
                "pins",
                64,
                Opts {
                    config: Some(FAST.into()),
                    ..opts.clone()
                },
            ) else {
                return;
            };
            let pinned: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
            std::fs::write(m.p("best.safetensors"), &pinned).unwrap();
            wait_for("v1", 30, || versions_of(&m, "best.safetensors").len() == 1);
            let o = ckptfs(&["pin", &m.p("best.safetensors").display().to_string(), "1"]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // The live file moves on: v1 is now history alone holds (16 MiB).
            std::fs::write(m.p("best.safetensors"), vec![7u8; 16 << 20]).unwrap();
            // Unpinned history of another file.
            for i in 0..3u8 {
                std::fs::write(m.p("other.bin"), vec![i; 6 << 20]).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            // 40 MiB cannot fit beside 16 MiB live + 16 MiB pinned + 6 MiB live
            // on a 64 MiB disk, whatever is evicted.
            let r = sh(&format!(
                "dd if=/dev/zero of={} bs=1M count=40 conv=fsync 2>&1",
                m.p("big.bin").display()
            ));
            let msg = String::from_utf8_lossy(&r.stdout);
            assert!(!r.status.success(), "{opts:?}: 40 MiB cannot fit");
            assert!(msg.contains("No space left on device"), "{msg}");
            // Everything unpinned was given up before the writer saw ENOSPC.
            assert!(stat_u64(&m, "evicted_pressure") > 0, "{}", stats(&m));
            std::fs::remove_file(m.p("big.bin")).unwrap();
            let v = versions_of(&m, "best.safetensors");
            let first = m.p(".versions/best.safetensors").join(&v[0]);
            assert!(v[0].contains("-000001-"), "{v:?}");
            assert!(
                std::fs::read(first).unwrap() == pinned,
                "the pinned version is intact"
            );
            assert_eq!(
                std::fs::read(m.p("best.safetensors")).unwrap(),
                vec![7u8; 16 << 20]
            );
            assert_eq!(std::fs::read(m.p("other.bin")).unwrap(), vec![2u8; 6 << 20]);
            verify_clean(&m);
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn kill_during_pressure_eviction_then_remount_is_consistent() {
    if !can_mount() {
        return;
    }
    bounded(900, || {
        for opts in modes() {
            let Some(DiskMount { disk, mut m }) = Mount::on_small_disk(
                "spacecrash",
                128,
                Opts {
                    config: Some(FAST.into()),
                    ..opts.clone()
                },
            ) else {
                return;
            };
            // A pinned version whose live file is gone: only the pin keeps it.
            std::fs::create_dir_all(m.p("keep")).unwrap();
            let pinned = vec![42u8; 3 << 20];
            std::fs::write(m.p("keep/pinned.bin"), &pinned).unwrap();
            wait_for("v1", 30, || versions_of(&m, "keep/pinned.bin").len() == 1);
            let pin = ckptfs(&["pin", &m.p("keep/pinned.bin").display().to_string(), "1"]);
            assert!(pin.status.success());
            std::fs::remove_file(m.p("keep/pinned.bin")).unwrap();
            let untouched = vec![9u8; 1 << 20];
            std::fs::write(m.p("keep/untouched.bin"), &untouched).unwrap();
            let mut child = Command::new("python3")
                .args([ROTATE, &m.mnt.display().to_string()])
                .args(["--saves", "400", "--mb", "12", "--fsync", "--progress"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Crash while the rotation keeps the disk under pressure.
            wait_for("pressure evictions", 120, || {
                stats(&m)["stats"]["evicted_pressure"].as_u64().unwrap_or(0) >= 20
            });
            m.crash();
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let saved = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["saved"].as_u64())
                .max()
                .expect("some saves finished before the crash");
            m.mount();
            verify_clean(&m);
            // What retention never chose is still there: the pin, the live tree.
            let v = versions_of(&m, "keep/pinned.bin");
            assert_eq!(v.len(), 1, "{v:?}");
            assert_eq!(
                std::fs::read(m.p(".versions/keep/pinned.bin").join(&v[0])).unwrap(),
                pinned
            );
            assert_eq!(std::fs::read(m.p("keep/untouched.bin")).unwrap(), untouched);
            // The last finished save (the trainer keeps 2) is whole on disk.
            let model =
                std::fs::read(m.p(&format!("checkpoint-{saved}/model.safetensors"))).unwrap();
            assert_eq!(&model[..8], &saved.to_le_bytes());
            assert_eq!(model.len(), 8 + (8 << 20));
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn the_seed_config_loaded_unchanged_keeps_at_most_three_versions() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let root = tmpdir("seedcap");
        let store = root.join("seed-store");
        // The seed file exactly; only the store is moved off /checkpoints by
        // the command line (which wins over `save_path`).
        let seed = r#"{ "autosave": { "enabled": true, "interval_seconds": 300,
                "save_path": "/checkpoints/latest", "max_keep": 3 } }"#;
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let m = Mount::over(
            root.clone(),
            dir,
            Opts {
                config: Some(seed.into()),
                args: vec!["--store".into(), store.display().to_string()],
                ..Opts::default()
            },
        );
        for i in 0..10u8 {
            std::fs::write(m.p("model.ckpt"), vec![i; 4096]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // The last save seals after the seed's default settle time (1.5 s).
        wait_for("the last save sealed", 30, || {
            versions_of(&m, "model.ckpt").last().is_some_and(|e| {
                std::fs::read(m.p(".versions/model.ckpt").join(e)).ok() == Some(vec![9u8; 4096])
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        let v = versions_of(&m, "model.ckpt");
        assert_eq!(v.len(), 3, "max_keep 3 is a cap: {v:?}");
        assert!(store.join("FORMAT").exists(), "--store wins over save_path");
    });
}

#[test]
fn a_store_inside_the_tree_is_hidden_and_linked_and_bad_places_are_refused() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let root = tmpdir("storeplace");
        let dir = root.join("data");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let cfg = format!(
            r#"{{ "autosave": {{ "settle_ms": 50, "save_path": "{}" }} }}"#,
            dir.join("sub/.hist").display()
        );
        let mut m = Mount::over(
            root.clone(),
            dir.clone(),
            Opts {
                config: Some(cfg),
                ..Opts::default()
            },
        );
        let names: Vec<String> = std::fs::read_dir(m.p("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.is_empty(), "the store is not listed: {names:?}");
        let e = std::fs::metadata(m.p("sub/.hist")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(std::fs::remove_dir_all(m.p("sub/.hist")).is_err());
        std::fs::write(m.p("w.bin"), vec![1u8; 1 << 20]).unwrap();
        wait_for("v1", 30, || versions_of(&m, "w.bin").len() == 1);
        // Same filesystem: the version is a link, not a copy.
        assert!(stat_u64(&m, "captures_linked") >= 1);
        assert_eq!(stat_u64(&m, "captures_copied"), 0);
        assert_eq!(stat_u64(&m, "bytes_copied"), 0);

        // A store inside another ckptfs mount is refused, nothing is created.
        let other = root.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let o = ckptfs(&[
            "mount",
            &other.display().to_string(),
            "--store",
            &m.p("sub/store2").display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("inside the ckptfs mount"), "{err}");
        assert!(!m.p("sub/store2").exists());
        m.unmount();
        assert!(
            dir.join("sub/.hist/FORMAT").exists(),
            "the store is where it was put"
        );

        // Inside the `.versions` view of the mount being made: refused.
        let o = ckptfs(&[
            "mount",
            &dir.display().to_string(),
            "--store",
            &dir.join(".versions/s").display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            err.contains(".versions") && err.lines().count() == 1,
            "{err}"
        );
        assert!(!dir.join(".versions").exists());
        assert_eq!(mount_count(&dir), 0);

        // Under the mount point of a mount made elsewhere: the mount would cover it.
        let mnt = root.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let o = ckptfs(&[
            "mount",
            &dir.display().to_string(),
            &mnt.display().to_string(),
            "--store",
            &mnt.join("s").display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("under the mount point"), "{err}");
        assert_eq!(mount_count(&mnt), 0);
    });
}

#[test]
fn an_inode_open_across_pressure_and_health_keeps_one_io_mode() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        for opts in modes() {
            let cfg = r#"{ "autosave": { "settle_ms": 50 },
                           "retention": { "reserve_bytes": "16M", "min_free_bytes": 0 } }"#;
            let o = Opts {
                config: Some(cfg.into()),
                ..opts.clone()
            };
            let Some(DiskMount { disk, mut m }) = Mount::on_small_disk("iomode", 64, o) else {
                return;
            };
            let before = stat_u64(&m, "pressure_opens");
            // filler.tmp is ignored (no versions): deleting it frees its space.
            let out = python(
                &m.mnt,
                r#"
import os, mmap, json
free = lambda: os.statvfs('.').f_bavail * os.statvfs('.').f_frsize
a = open('a.bin', 'wb')                       # healthy: passthrough where offered
a.write(b'A' * (1 << 20)); a.flush()
with open('filler.tmp', 'wb') as f:           # leave less than the 16M reserve
    f.write(b'\0' * (free() - (8 << 20)))
a2 = open('a.bin', 'r+b')                     # a.bin is open: same mode as before
a2.seek(1 << 20); a2.write(b'B' * 4096); a2.flush()
g = open('g.bin', 'w+b')                      # under pressure: daemon path
g.write(b'G' * (1 << 20)); g.flush()
os.unlink('filler.tmp')                       # healthy again
g2 = open('g.bin', 'r+b')                     # g.bin is open: same mode as before
mm = mmap.mmap(g2.fileno(), 0)
mm[0:4] = b'MMAP'; mm.flush(); mm.close()
g.seek(0); head = g.read(4)
for f in (a, a2, g, g2): f.close()
g3 = open('g.bin', 'rb'); whole = g3.read(); g3.close()
print(json.dumps({"head": head.decode(), "g": len(whole), "g_ok": whole[4:] == b'G' * ((1 << 20) - 4),
                  "a": open('a.bin', 'rb').read() == b'A' * (1 << 20) + b'B' * 4096}))
"#,
            );
            let s = summary(&out);
            assert_eq!(s["head"], "MMAP", "{out}");
            assert_eq!(s["g"], 1 << 20);
            assert_eq!(s["g_ok"], true);
            assert_eq!(s["a"], true);
            if opts.passthrough {
                assert!(stat_u64(&m, "pressure_opens") > before, "{}", stats(&m));
            }
            verify_clean(&m);
            m.unmount();
            drop(disk);
        }
    });
}

#[test]
fn a_category_quota_evicts_only_that_category() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let cfg = r#"{ "autosave": { "settle_ms": 50 },
                       "categories": { "log": { "max_store_bytes": 1048576, "keep_last": 100 } } }"#;
        let m = Mount::new(
            "catquota",
            Opts {
                config: Some(cfg.into()),
                ..Opts::default()
            },
        );
        for i in 0..5 {
            let text: String = (0..12000)
                .map(|k| format!("2026-11-30 08:00:00 INFO step {k} save {i}\n"))
                .collect();
            std::fs::write(m.p("train.log"), text).unwrap();
            std::fs::write(m.p("model.bin"), vec![i as u8 + 1; 600 << 10]).unwrap();
            wait_for("both sealed", 30, || {
                versions_of(&m, "train.log").len() > i.min(1)
                    && versions_of(&m, "model.bin").len() == i + 1
            });
        }
        // The space thread runs every 250 ms.
        wait_for("the log quota", 30, || {
            let v = versions_of(&m, "train.log");
            let bytes: u64 = v
                .iter()
                .map(|e| {
                    std::fs::metadata(m.p(".versions/train.log").join(e))
                        .unwrap()
                        .len()
                })
                .sum();
            bytes <= 1 << 20
        });
        assert!(stat_u64(&m, "evicted_quota") > 0);
        // The other category keeps all five (keep_last 10 by default).
        assert_eq!(versions_of(&m, "model.bin").len(), 5);
        let log = ckptfs(&["log", "--json", &m.p("train.log").display().to_string()]);
        let log: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .all(|v| v["category"] == "log"),
            "{log}"
        );
        verify_clean(&m);
    });
}

/// A 64 MiB disk mounted with `FAST`, 2,000 files of 1 KiB written, then
/// `fill` (Python, run after them) which must end in ENOSPC. None when this
/// machine cannot loop-mount.
fn full_of_live_files(tag: &str, fill: &str) -> Option<DiskMount> {
    let opts = Opts {
        config: Some(FAST.into()),
        ..Opts::default()
    };
    let dm = Mount::on_small_disk(tag, 64, opts)?;
    let code = format!(
        r#"
import os, json, time
for i in range(2000):
    with open(f"small-{{i}}", "wb") as f:
        f.write(os.urandom(1024))
full = 0
try:
{fill}
except OSError as e:
    full = e.errno
print(json.dumps({{"full": full}}))
"#
    );
    let out = python(&dm.m.mnt, &code);
    assert_eq!(summary(&out)["full"], libc::ENOSPC, "{out}");
    Some(dm)
}

/// A disk filled by live files, with nothing in history whose eviction would
/// free a block (every version shares its live file's inode): the daemon
/// does not search the whole history for room every 250 ms (each search
/// stats every version's object; 30,000 versions took half a core), and a
/// live file deleted is still evicted at once.
#[test]
fn a_disk_full_of_live_files_is_not_searched_over_and_over() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        // Most of the disk in one file, kept as a version while there is
        // room; then files of 64 KiB until none fits.
        let fill = r#"
    with open("big.bin", "wb") as f:
        f.write(os.urandom(40 << 20))
    for _ in range(300):
        if os.path.exists(".versions/big.bin/latest"):
            break
        time.sleep(0.1)
    for i in range(10000):
        with open(f"fill-{i}", "wb") as f:
            f.write(os.urandom(64 << 10))"#;
        let Some(DiskMount { disk, mut m }) = full_of_live_files("full-of-live", fill) else {
            return;
        };
        assert_eq!(versions_of(&m, "big.bin").len(), 1);
        m.wait_sealed();
        assert!(
            stats(&m)["space"]["pressure"].as_bool().unwrap(),
            "{}",
            stats(&m)
        );
        let before = stat_u64(&m, "space_searches");
        assert!(
            before > 0,
            "the full disk was never searched: {}",
            stats(&m)
        );
        std::thread::sleep(std::time::Duration::from_secs(14));
        let searched = stat_u64(&m, "space_searches") - before;
        // Every 250 ms would be 56; waits of 1, 2, 4, 8 s allow 4.
        assert!(searched <= 5, "{searched} searches in 14 s: {}", stats(&m));
        // Deleting the big file lets its version go: evicted without waiting
        // out the back-off, 8 s or more now. Deleted just after a search, so
        // that the next one by the clock is that far away.
        let last = stat_u64(&m, "space_searches");
        wait_for("the next search", 20, || {
            stat_u64(&m, "space_searches") > last
        });
        // (Evicted by `min_free` or the reserve, whichever pass comes first.)
        let evicted = stat_u64(&m, "evictions");
        std::fs::remove_file(m.p("big.bin")).unwrap();
        wait_for("the deleted file's version evicted", 4, || {
            stat_u64(&m, "evictions") > evicted
        });
        verify_clean(&m);
        m.unmount();
        drop(disk);
    });
}

/// Seals that fail because the disk is full (no room even for a version's
/// metadata, nor for a record of its own) are sealed by the next mount once
/// there is room: their records stay in `captures`. They were lost before
/// (the log was emptied once nothing was in flight, and the records' own
/// files were created empty), leaving objects in `incoming/` that held
/// blocks and were never sealed.
#[test]
fn seals_failed_on_a_full_disk_are_sealed_by_the_next_mount() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let Some(DiskMount { disk, mut m }) = full_with_failed_seals("seal-full") else {
            return;
        };
        m.unmount();
        // Room again: the live big file shrinks (outside the mount).
        let big = m.dir.join("big.bin");
        let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.set_len(1 << 20).unwrap();
        drop(f);
        m.mount();
        m.wait_sealed();
        assert_eq!(
            small_files_without_a_version(&m),
            0,
            "files without a version: {}",
            stats(&m)
        );
        verify_clean(&m);
        m.unmount();
        assert_incoming_empty(&m);
        drop(disk);
    });
}

/// [`full_of_live_files`], filled by one file written until ENOSPC while
/// the small files' seals still wait for the burst to pause: some of those
/// seals then fail for want of room.
fn full_with_failed_seals(tag: &str) -> Option<DiskMount> {
    let fill = r#"
    with open("big.bin", "wb") as f:
        while True:
            f.write(os.urandom(1 << 20))
            f.flush()"#;
    let dm = full_of_live_files(tag, fill)?;
    dm.m.wait_sealed();
    assert!(
        stat_u64(&dm.m, "errors_seal") > 0,
        "no seal failed, so this test shows nothing: {}",
        stats(&dm.m)
    );
    Some(dm)
}

fn small_files_without_a_version(m: &Mount) -> usize {
    (0..2000)
        .filter(|i| versions_of(m, &format!("small-{i}")).is_empty())
        .count()
}

/// After unmount: nothing waits in `incoming/` holding blocks.
#[track_caller]
fn assert_incoming_empty(m: &Mount) {
    let left = std::fs::read_dir(m.store().join("incoming"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "entries left in incoming/");
}

/// Seals that failed on a full disk do not wait for the next mount, and do
/// not hold the disk. The file that filled it is deleted through the mount:
/// its unsealed state, which nobody else holds, gives its blocks back (it
/// cannot be sealed with no room even for its metadata), and the small files'
/// failed seals are then done in this session. Before, the deleted file's
/// blocks stayed held in `incoming/` and the disk stayed full until the next
/// mount, which met the same full disk.
#[test]
fn failed_seals_are_retried_and_never_hold_the_disk() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let Some(DiskMount { disk, mut m }) = full_with_failed_seals("seal-retry") else {
            return;
        };
        // An operator sees them waiting.
        assert!(stats(&m)["failed_seals"].as_u64().unwrap() > 0);
        let status = ckptfs(&["status", &m.mnt.display().to_string()]);
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(status.contains("failed (no room)"), "{status}");
        std::fs::remove_file(m.p("big.bin")).unwrap();
        wait_for("the deleted file's blocks given back", 30, || {
            stats(&m)["space"]["free"].as_u64().unwrap() > 32 << 20
        });
        wait_for("every small file's failed seal done again", 60, || {
            small_files_without_a_version(&m) == 0
        });
        assert!(
            stat_u64(&m, "seals_retried") > 0,
            "sealed without a retry: {}",
            stats(&m)
        );
        verify_clean(&m);
        m.unmount();
        assert_incoming_empty(&m);
        drop(disk);
    });
}
