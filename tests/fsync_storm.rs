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
        for opts in modes_and_writeback() {
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

/// `ckptfs log` of a file, for failure messages.
fn log(m: &Mount, name: &str) -> String {
    String::from_utf8_lossy(&ckptfs(&["log", m.p(name).to_str().unwrap()]).stdout).into_owned()
}

/// Run a short Python program (`f` is the path, `os` and `time` imported).
fn py(path: &std::path::Path, body: &str) {
    sh_ok(&format!(
        "python3 -c \"import os, time; f='{}'\n{body}\"",
        path.display()
    ));
}

#[test]
fn an_fsync_keeps_its_state_whatever_the_writer_does_next_and_copies_only_when_it_must() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        for opts in modes_and_writeback() {
            let daemon = !opts.passthrough;
            let mut m = Mount::new(
                "fsync-link",
                Opts {
                    config: Some(r#"{ "autosave": { "settle_ms": 1000 } }"#.into()),
                    ..opts
                },
            );
            let copied = |m: &Mount| stats(m)["stats"]["bytes_copied"].as_u64().unwrap();
            let states = |m: &Mount, name: &str| -> Vec<Vec<u8>> {
                versions_of(m, name)
                    .iter()
                    .map(|e| std::fs::read(m.p(".versions").join(name).join(e)).unwrap())
                    .collect()
            };

            // fsync, then close: one version, the synced bytes, nothing copied
            // (linked at the fsync, or at the close with passthrough).
            let before = copied(&m);
            py(
                &m.p("saved.bin"),
                "fd=os.open(f, os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b'A'*(8<<20)); os.fsync(fd); os.close(fd)",
            );
            m.wait_sealed();
            let got = states(&m, "saved.bin");
            assert!(
                got == vec![vec![b'A'; 8 << 20]],
                "{daemon}: {} versions: {}",
                got.len(),
                log(&m, "saved.bin")
            );
            assert_eq!(
                copied(&m),
                before,
                "{daemon}: fsync then close copies nothing"
            );

            // A new file: fsync, then at once an in-place write and an append.
            py(
                &m.p("edited.bin"),
                "fd=os.open(f, os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b'B'*100000); os.fsync(fd); os.pwrite(fd, b'C'*10, 0); os.write(fd, b'D'*5); os.close(fd)",
            );
            m.wait_sealed();
            let synced = vec![b'B'; 100000];
            let mut closing = synced.clone();
            closing[..10].copy_from_slice(b"CCCCCCCCCC");
            closing.extend(b"DDDDD");
            let got = states(&m, "edited.bin");
            assert!(
                got.last() == Some(&closing),
                "{daemon}: the closing state is newest: {}",
                log(&m, "edited.bin")
            );
            if daemon {
                // The write below the linked size copied the version first.
                assert!(got.contains(&synced), "the fsynced state is kept");
                assert_eq!(got.len(), 2, "{}", log(&m, "edited.bin"));
                assert!(stats(&m)["stats"]["unshares"].as_u64().unwrap() >= 1);
            } else {
                // Passthrough: the daemon never sees that write, so the synced
                // state is gone by the close; counted (README, limits).
                assert_eq!(got.len(), 1, "{}", log(&m, "edited.bin"));
                assert_eq!(stats(&m)["stats"]["fsync_superseded"].as_u64().unwrap(), 1);
            }

            // A new file: fsync, the writer pauses longer than the settle
            // time, then writes again: both states, in both paths.
            py(
                &m.p("paused.bin"),
                "fd=os.open(f, os.O_CREAT|os.O_WRONLY|os.O_TRUNC, 0o644); os.write(fd, b'E'*100000); os.fsync(fd); time.sleep(2.5); os.pwrite(fd, b'F'*10, 0); os.close(fd)",
            );
            m.wait_sealed();
            let mut later = vec![b'E'; 100000];
            later[..10].copy_from_slice(b"FFFFFFFFFF");
            assert!(
                states(&m, "paused.bin") == vec![vec![b'E'; 100000], later],
                "{daemon}: {}",
                log(&m, "paused.bin")
            );

            // An existing file rewritten in place (SQLite, HDF5 r+): served on
            // the daemon path in both modes, so the fsynced state survives an
            // immediate write.
            std::fs::write(m.p("db.bin"), vec![b'A'; 100000]).unwrap();
            m.wait_sealed();
            py(
                &m.p("db.bin"),
                "fd=os.open(f, os.O_RDWR); os.pwrite(fd, b'G'*20, 0); os.fsync(fd); os.pwrite(fd, b'H'*10, 5); os.close(fd)",
            );
            m.wait_sealed();
            let first = vec![b'A'; 100000];
            let mut g = first.clone();
            g[..20].copy_from_slice(&[b'G'; 20]);
            let mut h = g.clone();
            h[5..15].copy_from_slice(&[b'H'; 10]);
            assert!(
                states(&m, "db.bin") == vec![first, g, h],
                "{daemon}: {}",
                log(&m, "db.bin")
            );

            let o = ckptfs(&["verify", m.mnt.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{daemon}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
            m.unmount();
        }
    });
}
