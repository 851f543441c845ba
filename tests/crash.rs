//! Crash safety: SIGKILL the daemon while writers are busy, remount, and check
//! that every version whose close or fsync returned is present, byte-identical,
//! and that `verify` is clean.

mod common;
use common::*;
use std::collections::BTreeMap;

/// Writers save files; each save's bytes are recorded after close returns.
fn writers(m: &Mount, rounds: usize) -> BTreeMap<String, Vec<Vec<u8>>> {
    let out = sh_ok(&format!(
        r#"cd {d} && python3 - <<'PY'
import os, random, threading, json, hashlib
random.seed(1)
saved = {{}}
lock = threading.Lock()
def w(k):
    for r in range({rounds}):
        name = f"w{{k}}.bin"
        data = os.urandom(random.randrange(1, 200_000))
        if r % 3 == 0:
            with open(name + ".tmp", "wb") as f: f.write(data); f.flush(); os.fsync(f.fileno())
            os.replace(name + ".tmp", name)
        else:
            with open(name, "wb") as f: f.write(data)
        with lock: saved.setdefault(name, []).append(data.hex())
ts = [threading.Thread(target=w, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(saved))
PY"#,
        d = m.mnt.display()
    ));
    let v: BTreeMap<String, Vec<String>> = serde_json::from_str(out.trim()).unwrap();
    v.into_iter()
        .map(|(k, xs)| {
            (
                k,
                xs.into_iter()
                    .map(|h| {
                        (0..h.len() / 2)
                            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                            .collect()
                    })
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn sigkill_loses_no_closed_state() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let cfg = r#"{ "autosave": { "settle_ms": 50 }, "retention": { "keep_last": 1000, "keep_within": "1d" } }"#;
        let mut m = Mount::new(
            "crash",
            Opts {
                config: Some(cfg.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        let saved = writers(&m, 12);
        // Kill mid-flight: seals may be queued, captures half-sealed.
        m.crash();
        assert!(!is_mounted(&m.mnt));
        m.mount();
        let _ = ckptfs(&["snapshot", &m.mnt.display().to_string()]);
        for (name, states) in &saved {
            // The last state is the live file; every earlier state that was
            // displaced by a later save must be a version.
            assert_eq!(
                &std::fs::read(m.p(name)).unwrap(),
                states.last().unwrap(),
                "{name} live"
            );
            let mut have: Vec<Vec<u8>> = versions_of(&m, name)
                .iter()
                .map(|e| std::fs::read(m.p(".versions").join(name).join(e)).unwrap())
                .collect();
            have.push(std::fs::read(m.p(name)).unwrap());
            for (i, s) in states.iter().enumerate() {
                assert!(
                    have.contains(s),
                    "{name}: state {i} of {} lost",
                    states.len()
                );
            }
        }
        let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
        assert!(
            o.status.success(),
            "verify: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    });
}
