//! `.versions/@<T>/`: the whole tree as it was at an instant, on real mounts in
//! both data paths, checked against trees recorded at those instants and
//! against a model of random namespace operations.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

const NOW: &str = r#"{ "autosave": { "settle_ms": 0 } }"#;

/// Now, in the `@<T>` form, between two pauses so that nothing sealed just
/// before or after lands on the same microsecond.
fn instant() -> String {
    std::thread::sleep(std::time::Duration::from_millis(5));
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    std::thread::sleep(std::time::Duration::from_millis(5));
    let o = sh_ok(&format!(
        "date -u -d @{} +%Y%m%dT%H%M%S",
        ns / 1_000_000_000
    ));
    format!("{}.{:09}Z", o.trim(), ns % 1_000_000_000)
}

/// Relative path → file bytes, or None for a directory.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// Every file under `dir` and every directory.
fn tree(dir: &Path) -> Tree {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut Tree) {
        let mut es: Vec<_> = std::fs::read_dir(d).unwrap().flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                walk(base, &p, out);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_deleted_checkpoint_directory_comes_back_as_each_save_left_it() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let m = Mount::new(
                "pit-saves",
                Opts {
                    config: Some(NOW.into()),
                    ..opts
                },
            );
            let run = m.p("run1");
            let expected = m.root.join("expected");
            let mut moments = Vec::new();
            // Save 1: three files. Save 2: rewritten, a fourth added. Save 3:
            // one rewritten, one removed.
            let saves: [&[(&str, Option<&str>)]; 3] = [
                &[
                    ("model.bin", Some("w1")),
                    ("optim.bin", Some("o1")),
                    ("state.json", Some("{\"step\":1}")),
                ],
                &[
                    ("model.bin", Some("w2")),
                    ("optim.bin", Some("o2")),
                    ("state.json", Some("{\"step\":2}")),
                    ("rng.bin", Some("r2")),
                ],
                &[("model.bin", Some("w3")), ("optim.bin", None)],
            ];
            std::fs::create_dir(&run).unwrap();
            for (i, save) in saves.iter().enumerate() {
                for (name, content) in save.iter() {
                    match content {
                        Some(c) => std::fs::write(run.join(name), c.repeat(1000)).unwrap(),
                        None => std::fs::remove_file(run.join(name)).unwrap(),
                    }
                }
                m.wait_sealed();
                let keep = expected.join(i.to_string());
                sh_ok(&format!(
                    "mkdir -p {0} && cp -a {1} {0}/run1",
                    keep.display(),
                    run.display()
                ));
                moments.push(instant());
            }
            std::fs::remove_dir_all(&run).unwrap();
            m.wait_sealed();
            assert!(!run.exists());
            for (i, t) in moments.iter().enumerate() {
                let dest = m.root.join(format!("restored{i}"));
                sh_ok(&format!(
                    "mkdir -p {0} && cp -a {1}/.versions/@{t}/run1 {0}/run1",
                    dest.display(),
                    m.mnt.display()
                ));
                let want = tree(&expected.join(i.to_string()));
                assert_eq!(
                    tree(&dest),
                    want,
                    "@{t} (after save {}), {:?}",
                    i + 1,
                    m.opts.passthrough
                );
                // Modes as of then, too.
                let o = sh_ok(&format!(
                    "cd {0} && find . -type f -printf '%p %m\\n' | sort; cd {1} && find . -type f -printf '%p %m\\n' | sort",
                    dest.display(),
                    expected.join(i.to_string()).display()
                ));
                let lines: Vec<&str> = o.lines().collect();
                let (a, b) = lines.split_at(lines.len() / 2);
                assert_eq!(a, b);
            }
            // Before the first save the directory did not exist.
            let before = sh(&format!(
                "ls {}/.versions/@20200101T000000Z/run1",
                m.mnt.display()
            ));
            assert!(!before.status.success(), "run1 listed before it existed");
        }
    });
}

#[test]
fn user_names_the_view_uses_itself_stay_reachable() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let m = Mount::new(
                "pit-names",
                Opts {
                    config: Some(NOW.into()),
                    ..opts
                },
            );
            // DeepSpeed's tag file, and names the view gives meaning to.
            for (name, a, b) in [
                ("latest", "global_step1", "global_step2"),
                ("previous", "p1", "p2"),
                (".index.json", "{}", "{\"a\":1}"),
                ("@odd", "o1", "o2"),
            ] {
                std::fs::write(m.p(name), a).unwrap();
                m.wait_sealed();
                std::fs::write(m.p(name), b).unwrap();
                m.wait_sealed();
                let view = if name.starts_with('@') {
                    format!("@{name}")
                } else {
                    name.to_string()
                };
                let hist = m.p(".versions").join(&view);
                let entries = versions_of(&m, &view);
                assert_eq!(entries.len(), 2, "{name}: {entries:?}");
                assert_eq!(
                    std::fs::read(hist.join(&entries[0])).unwrap(),
                    a.as_bytes(),
                    "{name}"
                );
                assert_eq!(
                    std::fs::read(hist.join("latest")).unwrap(),
                    b.as_bytes(),
                    "{name}"
                );
                let listed = sh_ok(&format!("ls -a {}", m.p(".versions").display()));
                assert!(
                    listed.lines().any(|l| l == view),
                    "{view} not listed: {listed}"
                );
            }
            // And in the tree of an instant, by their own names.
            let t = instant();
            let at = m.p(".versions").join(format!("@{t}"));
            assert_eq!(std::fs::read(at.join("latest")).unwrap(), b"global_step2");
            assert_eq!(std::fs::read(at.join("@odd")).unwrap(), b"o2");
        }
    });
}

/// A tiny deterministic generator (no dependency for one test).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn random_namespace_histories_match_a_model_at_every_instant() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let runs = modes()
            .into_iter()
            .flat_map(|o| (0..3).map(move |k| (k, o.clone())));
        for (seed, opts) in runs {
            let m = Mount::new(
                "pit-model",
                Opts {
                    config: Some(NOW.into()),
                    ..opts
                },
            );
            let mut rng = Lcg(seed as u64 + 7);
            let mut model: Tree = BTreeMap::new();
            let mut snaps: Vec<(String, Tree)> = Vec::new();
            let mut ops: Vec<String> = Vec::new();
            let dirs = ["", "a", "a/b", "c"];
            let names = ["x", "y", "z.bin", "w.json"];
            for step in 0..120 {
                let files: Vec<String> = model
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| k.clone())
                    .collect();
                let live_dirs: Vec<&str> = dirs
                    .iter()
                    .copied()
                    .filter(|d| d.is_empty() || model.contains_key(*d))
                    .collect();
                let pick_path = |rng: &mut Lcg| {
                    let d = live_dirs[rng.next(live_dirs.len())];
                    let n = names[rng.next(names.len())];
                    if d.is_empty() {
                        n.to_string()
                    } else {
                        format!("{d}/{n}")
                    }
                };
                match rng.next(5) {
                    // mkdir (parents first)
                    0 => {
                        let d = dirs[1 + rng.next(dirs.len() - 1)];
                        let parent_ok = d
                            .rsplit_once('/')
                            .is_none_or(|(p, _)| model.contains_key(p));
                        if parent_ok && !model.contains_key(d) {
                            std::fs::create_dir(m.p(d)).unwrap();
                            ops.push(format!("{step}: mkdir {d}"));
                            model.insert(d.to_string(), None);
                        }
                    }
                    // create or overwrite
                    1 | 2 => {
                        let p = pick_path(&mut rng);
                        if model.get(&p).is_some_and(|v| v.is_none()) {
                            continue; // a directory
                        }
                        let content = format!("{p} at step {step}\n")
                            .repeat(1 + rng.next(50))
                            .into_bytes();
                        std::fs::write(m.p(&p), &content).unwrap();
                        ops.push(format!("{step}: write {p}"));
                        model.insert(p, Some(content));
                    }
                    // rename a file (to a new name or over another file)
                    3 if !files.is_empty() => {
                        let from = files[rng.next(files.len())].clone();
                        let to = pick_path(&mut rng);
                        if to == from || model.get(&to).is_some_and(|v| v.is_none()) {
                            continue;
                        }
                        std::fs::rename(m.p(&from), m.p(&to)).unwrap();
                        ops.push(format!("{step}: rename {from} {to}"));
                        let c = model.remove(&from).unwrap();
                        model.insert(to, c);
                    }
                    // unlink
                    4 if !files.is_empty() => {
                        let p = files[rng.next(files.len())].clone();
                        std::fs::remove_file(m.p(&p)).unwrap();
                        ops.push(format!("{step}: unlink {p}"));
                        model.remove(&p);
                    }
                    _ => continue,
                }
                m.wait_sealed();
                if rng.next(3) == 0 {
                    let t = instant();
                    ops.push(format!("   @{t}"));
                    snaps.push((t, model.clone()));
                }
            }
            assert!(snaps.len() >= 5, "too few instants: {}", snaps.len());
            let show = |t: &Tree| -> Vec<String> {
                t.iter()
                    .map(|(k, v)| match v {
                        None => format!("{k}/"),
                        Some(c) => format!(
                            "{k}: {} x{}",
                            String::from_utf8_lossy(c).lines().next().unwrap_or(""),
                            c.len()
                        ),
                    })
                    .collect()
            };
            for (t, want) in &snaps {
                let got = tree(&m.p(".versions").join(format!("@{t}")));
                assert_eq!(
                    show(&got),
                    show(want),
                    "@{t} differs from the model ({:?}); operations:\n{}",
                    m.opts.passthrough,
                    ops.join("\n")
                );
            }
        }
    });
}
