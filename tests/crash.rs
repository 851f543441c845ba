//! Crash safety: SIGKILL the daemon while writers are still writing, remount,
//! and check that every state whose close or fsync returned before the kill is
//! present (as a version or as the live file), byte-identical, and that
//! `verify` is clean. In both data paths.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

/// Four writer threads save files until the mount goes away. After each close
/// (or fsync + rename) returns, the state's digest is appended to `log`, outside
/// the mount, and fsynced: that is what must survive.
const WRITERS: &str = r#"
import os, sys, random, threading, hashlib
mnt, log = sys.argv[1], sys.argv[2]
lf = open(log, "a"); lock = threading.Lock()
def w(k):
    rnd = random.Random(k)
    r = 0
    while True:
        name = f"w{k}.bin"
        data = os.urandom(rnd.randrange(1, 200_000))
        try:
            if r % 3 == 0:
                with open(f"{mnt}/{name}.tmp", "wb") as f:
                    f.write(data); f.flush(); os.fsync(f.fileno())
                os.replace(f"{mnt}/{name}.tmp", f"{mnt}/{name}")
            else:
                with open(f"{mnt}/{name}", "wb") as f:
                    f.write(data)
        except OSError:
            return
        with lock:
            lf.write(f"{name} {hashlib.blake2b(data).hexdigest()}\n"); lf.flush(); os.fsync(lf.fileno())
        r += 1
ts = [threading.Thread(target=w, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
"#;

#[test]
fn sigkill_while_writing_loses_no_closed_state() {
    if !can_mount() {
        return;
    }
    bounded(400, || {
        for opts in modes_and_writeback() {
            let cfg = r#"{ "autosave": { "settle_ms": 50 }, "retention": { "keep_last": 100000, "keep_within": "1y" } }"#;
            let mut m = Mount::new(
                "crash",
                Opts {
                    config: Some(cfg.into()),
                    mountpoint: true,
                    ..opts.clone()
                },
            );
            let log = m.root.join("acknowledged.log");
            let mut child = Command::new("python3")
                .args(["-c", WRITERS, &m.mnt.display().to_string()])
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let acked = || {
                std::fs::read_to_string(&log)
                    .map(|s| s.lines().count())
                    .unwrap_or(0)
            };
            wait_for("40 acknowledged saves", 120, || acked() >= 40);
            // Mid-flight: the writers are running, seals queued, captures half-made.
            assert!(child.try_wait().unwrap().is_none(), "the writers still run");
            m.crash();
            // They stop on their own: the next operation fails.
            wait_for("the writers to stop", 30, || {
                child.try_wait().unwrap().is_some()
            });
            assert!(!is_mounted(&m.mnt));
            m.mount();
            let lines = std::fs::read_to_string(&log).unwrap();
            let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for l in lines.lines() {
                let (name, digest) = l.split_once(' ').unwrap();
                want.entry(name.into()).or_default().insert(digest.into());
            }
            assert!(want.len() == 4, "all four writers saved: {want:?}");
            for (name, digests) in &want {
                let mut have: BTreeSet<String> = versions_of(&m, name)
                    .iter()
                    .map(|e| blake2b(&std::fs::read(m.p(".versions").join(name).join(e)).unwrap()))
                    .collect();
                have.insert(blake2b(&std::fs::read(m.p(name)).unwrap()));
                let lost: Vec<_> = digests.difference(&have).collect();
                assert!(
                    lost.is_empty(),
                    "{opts:?} {name}: {} of {} acknowledged states lost",
                    lost.len(),
                    digests.len()
                );
            }
            let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
            assert!(
                o.status.success(),
                "verify: {}",
                String::from_utf8_lossy(&o.stdout)
            );
            m.unmount();
        }
    });
}
