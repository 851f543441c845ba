//! Files fsynced all the time (a SQLite commit loop, an msync loop) get at
//! most one fsync version per `fsync_min_interval`, keep their last state,
//! and leave a consistent store; SQLite's rollback journal is not versioned.

mod common;
use common::*;
use std::time::Instant;

const CFG: &str = r#"{ "autosave": { "settle_ms": 100, "fsync_min_interval": "1s" } }"#;

#[test]
fn a_sqlite_commit_loop_and_an_msync_loop_are_throttled_and_keep_their_last_state() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        for opts in modes() {
            let mode = opts.passthrough;
            let mut m = Mount::new(
                "fsync-storm",
                Opts {
                    config: Some(CFG.into()),
                    ..opts
                },
            );
            let t = Instant::now();
            // 1,500 commits, each fsynced by SQLite (synchronous=FULL).
            sh_ok(&format!(
                "python3 - <<'PY'\nimport sqlite3\nc = sqlite3.connect('{}')\nc.execute('pragma synchronous=full')\nc.execute('create table t (i integer, v text)')\nc.commit()\nfor i in range(1500):\n    c.execute('insert into t values (?, ?)', (i, 'x' * 100))\n    c.commit()\nc.close()\nPY",
                m.p("state.db").display()
            ));
            // An msync loop over a mapped 1 MiB file, 2,000 flushes.
            sh_ok(&format!(
                "python3 - <<'PY'\nimport mmap, os\nfd = os.open('{}', os.O_RDWR | os.O_CREAT, 0o644)\nos.ftruncate(fd, 1 << 20)\nm = mmap.mmap(fd, 1 << 20)\nfor i in range(2000):\n    m[(i * 4096) % (1 << 20)] = i % 251\n    m.flush()\nm.close()\nos.close(fd)\nPY",
                m.p("mapped.bin").display()
            ));
            let secs = t.elapsed().as_secs() as usize;
            m.wait_sealed();
            // One fsync version per second at most, plus the closes and the
            // first states.
            let db = versions_of(&m, "state.db");
            assert!(
                db.len() <= secs + 4,
                "{mode}: {} versions of state.db in {secs} s",
                db.len()
            );
            assert!(
                versions_of(&m, "state.db-journal").is_empty(),
                "the journal is not versioned"
            );
            let mapped = versions_of(&m, "mapped.bin");
            assert!(
                mapped.len() <= secs + 4,
                "{mode}: {} versions of mapped.bin",
                mapped.len()
            );
            // The last state is a version: the newest equals the file.
            for (name, v) in [("state.db", &db), ("mapped.bin", &mapped)] {
                let newest =
                    std::fs::read(m.p(".versions").join(name).join(v.last().unwrap())).unwrap();
                assert!(
                    newest == std::fs::read(m.p(name)).unwrap(),
                    "{mode}: {name}'s last state"
                );
            }
            let o = ckptfs(&["stats", m.mnt.to_str().unwrap()]);
            let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert!(
                s["stats"]["fsync_throttled"].as_u64().unwrap() > 100,
                "{mode}: {s}"
            );
            let o = ckptfs(&["verify", m.mnt.to_str().unwrap()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
            m.unmount();
        }
    });
}

fn stats(m: &Mount) -> serde_json::Value {
    let o = ckptfs(&["stats", m.mnt.to_str().unwrap()]);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn an_fsync_keeps_its_state_whatever_the_writer_does_next_and_copies_only_when_it_must() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let daemon = !opts.passthrough;
            let mut m = Mount::new(
                "fsync-link",
                Opts {
                    config: Some(r#"{ "autosave": { "settle_ms": 50 } }"#.into()),
                    ..opts
                },
            );
            let copied = |m: &Mount| stats(m)["stats"]["bytes_copied"].as_u64().unwrap();
            // fsync, then close: one version, the synced bytes.
            let before = copied(&m);
            sh_ok(&format!(
                "python3 -c \"import os; fd=os.open('{}', os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b'A'*100000); os.fsync(fd); os.close(fd)\"",
                m.p("saved.bin").display()
            ));
            m.wait_sealed();
            let v = versions_of(&m, "saved.bin");
            assert_eq!(v.len(), 1, "{daemon}: {v:?}");
            assert_eq!(
                std::fs::read(m.p(".versions/saved.bin").join(&v[0])).unwrap(),
                vec![b'A'; 100000]
            );
            if daemon {
                // Linked at the fsync, nothing copied.
                assert_eq!(
                    copied(&m),
                    before,
                    "daemon path: an fsync then close copies nothing"
                );
            }
            // fsync, then an in-place write and an append before close: the
            // fsynced state and the closing state are both versions.
            sh_ok(&format!(
                "python3 -c \"import os; fd=os.open('{}', os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b'B'*100000); os.fsync(fd); os.pwrite(fd, b'C'*10, 0); os.write(fd, b'D'*5); os.close(fd)\"",
                m.p("edited.bin").display()
            ));
            m.wait_sealed();
            let v = versions_of(&m, "edited.bin");
            let read = |e: &str| std::fs::read(m.p(".versions/edited.bin").join(e)).unwrap();
            let states: Vec<Vec<u8>> = v.iter().map(|e| read(e)).collect();
            let synced = vec![b'B'; 100000];
            let mut closing = synced.clone();
            closing[..10].copy_from_slice(b"CCCCCCCCCC");
            closing.extend(b"DDDDD");
            assert!(
                states.contains(&synced),
                "{daemon}: the fsynced state is kept"
            );
            assert_eq!(
                states.last(),
                Some(&closing),
                "{daemon}: the closing state is the newest"
            );
            if daemon {
                let s = stats(&m);
                assert!(
                    s["stats"]["unshares"].as_u64().unwrap() >= 1,
                    "the write below the linked size copied first: {s}"
                );
            }
            let o = ckptfs(&["verify", m.mnt.to_str().unwrap()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
            m.unmount();
        }
    });
}
