//! Generations, steps and whole-checkpoint restore on real mounts, both data
//! paths: a burst of saves becomes a generation once it settles; a step is
//! reachable as `.versions/@step-N` once its files are all complete;
//! `ckptfs restore --at` brings a directory back as it was, refusing what
//! would lose data. The Python test writes a checkpoint with the real writers
//! (safetensors, numpy, json, h5py) and loads the restore back with them.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const QUICK: &str = r#"{ "autosave": { "settle_ms": 0, "generation_quiet_ms": 300 } }"#;

fn gens(m: &Mount) -> Vec<Value> {
    let o = ckptfs(&["generations", "--json", m.mnt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Wait for generation number `n` (1-based) and return it.
fn generation(m: &Mount, n: usize) -> Value {
    let mut last = Vec::new();
    wait_for(&format!("generation {n}"), 30, || {
        last = gens(m);
        last.len() >= n
    });
    assert_eq!(last.len(), n, "one generation per burst: {last:?}");
    last[n - 1].clone()
}

fn nums(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// A safetensors file of `n` f32 values tagged by `tag`; `torn` cuts it short.
fn safetensors(n: usize, tag: u8, torn: bool) -> Vec<u8> {
    let h = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        4 * n
    );
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(h.as_bytes());
    b.extend(std::iter::repeat_n(tag, 4 * n));
    if torn {
        b.truncate(b.len() - 8);
    }
    b
}

fn stamp(ns: i64) -> String {
    let o = sh_ok(&format!(
        "date -u -d @{} +%Y%m%dT%H%M%S",
        ns.div_euclid(1_000_000_000)
    ));
    format!("{}.{:06}Z", o.trim(), ns.rem_euclid(1_000_000_000) / 1000)
}

fn restore(args: &[&str]) -> std::process::Output {
    let mut a = vec!["restore"];
    a.extend_from_slice(args);
    ckptfs(&a)
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let o = sh_ok(&format!("cd {} && find . -type f | sort", dir.display()));
    o.lines()
        .map(|l| (l.to_string(), std::fs::read(dir.join(l)).unwrap()))
        .collect()
}

#[test]
fn bursts_become_generations_and_steps_restore_whole() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        for opts in modes() {
            let mode = opts.passthrough;
            let m = Mount::new(
                "gens",
                Opts {
                    config: Some(QUICK.into()),
                    ..opts
                },
            );
            let out = m.p("out");
            std::fs::create_dir(&out).unwrap();
            // A logger appends all along: it never holds a generation back.
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(m.p("train.log"))
                .unwrap();
            use std::io::Write;
            let save = |step: u64, torn: bool| {
                let d = out.join(format!("checkpoint-{step}"));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(
                    d.join("model.safetensors"),
                    safetensors(1000, step as u8, torn),
                )
                .unwrap();
                std::fs::write(d.join("state.json"), format!("{{\"step\":{step}}}")).unwrap();
                std::fs::write(out.join("latest"), format!("checkpoint-{step}")).unwrap();
            };

            save(10, false);
            writeln!(log, "saved 10").unwrap();
            let g1 = generation(&m, 1);
            assert_eq!(
                (nums(&g1["steps"]), nums(&g1["complete"])),
                (vec![10], vec![10])
            );
            assert_eq!(g1["paths"], 3, "{g1}");

            // Step 20's weights are torn: the step is seen but not complete.
            save(20, true);
            let g2 = generation(&m, 2);
            assert_eq!(
                (nums(&g2["steps"]), nums(&g2["complete"])),
                (vec![20], vec![])
            );
            assert!(!m.p(".versions/@step-20").exists(), "{mode}");
            let o = restore(&[
                "--at",
                "step-20",
                out.to_str().unwrap(),
                "--to",
                "/nonexistent/x",
            ]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                !o.status.success() && err.contains("no generation has step 20 complete"),
                "{err}"
            );

            // The writer saves it again, whole; an old step is rotated away in
            // the same burst (a delete saves no step).
            save(20, false);
            std::fs::remove_dir_all(out.join("checkpoint-10")).unwrap();
            let g3 = generation(&m, 3);
            assert_eq!(
                (nums(&g3["steps"]), nums(&g3["complete"])),
                (vec![20], vec![20])
            );

            // A save in progress (open for writing, not appending) holds the
            // generation back until it is closed.
            let d30 = out.join("checkpoint-30");
            std::fs::create_dir(&d30).unwrap();
            let mut w = std::fs::File::create(d30.join("model.safetensors")).unwrap();
            w.write_all(&safetensors(1000, 30, false)).unwrap();
            std::fs::write(d30.join("state.json"), "{\"step\":30}").unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(
                gens(&m).len(),
                3,
                "a generation closed while a save was open ({mode})"
            );
            drop(w);
            let g4 = generation(&m, 4);
            assert_eq!(nums(&g4["complete"]), vec![30]);

            // `ls .versions` lists every generation and complete step.
            let names: Vec<String> = std::fs::read_dir(m.p(".versions"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            for g in [&g1, &g2, &g3, &g4] {
                let n = format!("@{}", stamp(g["t"].as_i64().unwrap()));
                assert!(names.contains(&n), "{n} not in {names:?}");
            }
            for s in ["@step-10", "@step-20", "@step-30"] {
                assert!(names.contains(&s.to_string()), "{s} not in {names:?}");
            }
            assert!(
                names.contains(&"out".to_string()),
                "the path tree stays: {names:?}"
            );

            // Whole-directory restore of a step rotated away.
            let r10 = m.root.join("r10");
            let o = restore(&[
                "--at",
                "step-10",
                out.join("checkpoint-10").to_str().unwrap(),
                "--to",
                r10.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                files(&r10),
                vec![
                    ("./model.safetensors".into(), safetensors(1000, 10, false)),
                    ("./state.json".into(), b"{\"step\":10}".to_vec()),
                ],
                "{mode}"
            );
            // The whole run at step 20: checkpoint-10 still there, 20 whole, the
            // tag naming 20, checkpoint-30 not yet.
            let r20 = m.root.join("r20");
            let o = restore(&[
                "--at",
                "@step-20",
                out.to_str().unwrap(),
                "--to",
                r20.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let got: Vec<String> = files(&r20).into_iter().map(|(p, _)| p).collect();
            assert_eq!(
                got,
                [
                    "./checkpoint-20/model.safetensors",
                    "./checkpoint-20/state.json",
                    "./latest"
                ],
                "{mode}"
            );
            assert_eq!(std::fs::read(r20.join("latest")).unwrap(), b"checkpoint-20");
            assert_eq!(
                std::fs::read(r20.join("checkpoint-20/model.safetensors")).unwrap(),
                safetensors(1000, 20, false)
            );
            // One file at an instant.
            let f = m.root.join("latest-then");
            let t1 = stamp(g1["t"].as_i64().unwrap());
            let o = restore(&[
                "--at",
                &t1,
                out.join("latest").to_str().unwrap(),
                "--to",
                f.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(std::fs::read(&f).unwrap(), b"checkpoint-10");

            // Refusals lose nothing: an existing DEST without --force, the
            // mount's own history view, an instant that is not one.
            std::fs::write(r10.join("state.json"), "mine").unwrap();
            let o = restore(&[
                "--at",
                "step-20",
                out.join("checkpoint-20").to_str().unwrap(),
                "--to",
                r10.to_str().unwrap(),
            ]);
            assert!(!o.status.success());
            assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
            assert_eq!(std::fs::read(r10.join("state.json")).unwrap(), b"mine");
            let inside = m.p(".versions/restored");
            let o = restore(&[
                "--at",
                "step-20",
                out.to_str().unwrap(),
                "--to",
                inside.to_str().unwrap(),
            ]);
            assert!(!o.status.success());
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("read-only"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let o = restore(&["--at", "yesterday", out.to_str().unwrap(), "--to", "/tmp/x"]);
            assert!(!o.status.success());
            assert!(String::from_utf8_lossy(&o.stderr).contains("\"yesterday\""));
            // --force replaces; restoring in place keeps what it replaced.
            let o = restore(&[
                "--at",
                "step-20",
                out.join("checkpoint-20").to_str().unwrap(),
                "--to",
                r10.to_str().unwrap(),
                "--force",
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                std::fs::read(r10.join("state.json")).unwrap(),
                b"{\"step\":20}"
            );
            std::fs::write(out.join("checkpoint-30/state.json"), "clobbered").unwrap();
            m.wait_sealed();
            let o = restore(&[
                "--at",
                "step-30",
                out.join("checkpoint-30").to_str().unwrap(),
                "--force",
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                std::fs::read(out.join("checkpoint-30/state.json")).unwrap(),
                b"{\"step\":30}"
            );
            m.wait_sealed();
            let kept = sh_ok(&format!(
                "cat {}/.versions/out/checkpoint-30/state.json/*",
                m.mnt.display()
            ));
            assert!(
                kept.contains("clobbered"),
                "the replaced state is in history: {kept}"
            );
            drop(log);
        }
    });
}

/// The Python writers a trainer uses, or a skip naming the missing one.
fn python_writers() -> bool {
    let o = sh("python3 -c 'import numpy, safetensors.numpy, h5py'");
    if !o.status.success() {
        skip("python3 with numpy, safetensors and h5py (scripts/install-test-deps.sh)");
        return false;
    }
    true
}

const SAVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/save_step.py");

#[test]
fn a_step_written_by_real_writers_and_rotated_away_loads_back_after_restore() {
    if !can_mount() || !python_writers() {
        return;
    }
    bounded(240, || {
        for opts in modes() {
            let m = Mount::new(
                "gens-py",
                Opts {
                    config: Some(QUICK.into()),
                    ..opts
                },
            );
            let run = m.p("run");
            for (i, step) in [100, 200, 300].into_iter().enumerate() {
                sh_ok(&format!(
                    "python3 {SAVER} save {} {step} --keep 1",
                    run.display()
                ));
                let g = generation(&m, i + 1);
                assert_eq!(nums(&g["complete"]), vec![step], "{g}");
            }
            assert!(!run.join("checkpoint-100").exists() && !run.join("checkpoint-200").exists());
            for step in [100, 200, 300] {
                let dest = m.root.join(format!("restored-{step}"));
                let src = run.join(format!("checkpoint-{step}"));
                let o = ckptfs(&[
                    "restore",
                    "--at",
                    &format!("step-{step}"),
                    src.to_str().unwrap(),
                    "--to",
                    dest.to_str().unwrap(),
                ]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                // The same libraries load it back, with the values of that step.
                let out = sh_ok(&format!("python3 {SAVER} check {} {step}", dest.display()));
                assert!(out.contains(&format!("step {step} ok")), "{out}");
            }
        }
    });
}
