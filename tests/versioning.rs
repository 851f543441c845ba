//! Versions from real writers, the `.versions` view, zero-copy sealing, restore.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;

fn du_store(m: &Mount) -> u64 {
    // Blocks held only by the store (objects not shared with a live file). The
    // store must be visible: these tests mount elsewhere (`mountpoint: true`).
    assert!(m.store().join("objects").is_dir(), "store not visible");
    let o = sh_ok(&format!(
        "set -o pipefail; find {}/objects -type f -name '*.data' -links 1 -printf '%b\\n' | awk '{{s+=$1}} END {{print s*512+0}}'",
        m.store().display()
    ));
    o.trim().parse().unwrap()
}

fn python(m: &Mount, code: &str) -> String {
    sh_ok(&format!(
        "cd {} && python3 - <<'PY'\n{code}\nPY",
        m.mnt.display()
    ))
}

#[test]
fn triggers_view_and_restore() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes_and_writeback() {
            let m = Mount::new(
                "triggers",
                Opts {
                    config: Some(FAST.into()),
                    ..opts
                },
            );
            // Three saves by O_TRUNC rewrite: three versions, newest = live.
            for i in 1..=3 {
                std::fs::write(m.p("model.ckpt"), format!("state {i}\n")).unwrap();
                wait_for("seal", 10, || versions_of(&m, "model.ckpt").len() == i);
            }
            let v = versions_of(&m, "model.ckpt");
            assert!(v[0].ends_with("-000001-close.ckpt"), "{v:?}");
            // Entries: content, mtime of the content, read-only.
            let e1 = m.p(".versions/model.ckpt").join(&v[0]);
            assert_eq!(std::fs::read(&e1).unwrap(), b"state 1\n");
            assert!(std::fs::OpenOptions::new().write(true).open(&e1).is_err());
            assert_eq!(
                std::fs::read(m.p(".versions/model.ckpt/latest")).unwrap(),
                b"state 3\n"
            );
            assert_eq!(
                std::fs::read(m.p(".versions/model.ckpt/previous")).unwrap(),
                b"state 2\n"
            );
            // Hidden from the root listing, reachable by name.
            let names: Vec<String> = std::fs::read_dir(&m.mnt)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert!(!names.iter().any(|n| n == ".versions"), "{names:?}");
            // Writes into .versions are refused with EROFS.
            let err = std::fs::write(m.p(".versions/model.ckpt/new"), b"x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
            // Sidecar index.
            let idx: serde_json::Value = serde_json::from_slice(
                &std::fs::read(m.p(".versions/model.ckpt/.index.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(idx["versions"].as_array().unwrap().len(), 3);
            // Restore with cp: the displaced state is kept too.
            sh_ok(&format!(
                "cp {} {}",
                e1.display(),
                m.p("model.ckpt").display()
            ));
            assert_eq!(std::fs::read(m.p("model.ckpt")).unwrap(), b"state 1\n");
            wait_for("restore seal", 10, || {
                versions_of(&m, "model.ckpt").len() == 4
            });
            // Unlink: history stays, also after the file is gone.
            std::fs::remove_file(m.p("model.ckpt")).unwrap();
            assert!(std::fs::metadata(m.p("model.ckpt")).is_err());
            assert_eq!(versions_of(&m, "model.ckpt").len(), 4);
            // Rename over: the target's old content becomes a version, the temp file gets none.
            std::fs::write(m.p("cfg.json"), b"{\"v\": 1}").unwrap();
            wait_for("cfg v1", 10, || versions_of(&m, "cfg.json").len() == 1);
            std::fs::write(m.p("cfg.json.tmp"), b"{\"v\": 2}").unwrap();
            std::fs::rename(m.p("cfg.json.tmp"), m.p("cfg.json")).unwrap();
            wait_for("cfg v2", 10, || versions_of(&m, "cfg.json").len() == 2);
            assert!(versions_of(&m, "cfg.json.tmp").is_empty());
            // CLI: log --json and restore --to
            let o = ckptfs(&["log", "--json", &m.p("cfg.json").display().to_string()]);
            let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(log.as_array().unwrap().len(), 2);
            assert_eq!(log[0]["category"], "json");
            let dest = m.root.join("restored.json");
            let o = ckptfs(&[
                "restore",
                &m.p("cfg.json").display().to_string(),
                "1",
                "--to",
                &dest.display().to_string(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(std::fs::read(&dest).unwrap(), b"{\"v\": 1}");
            let o = ckptfs(&["restore", &m.p("cfg.json").display().to_string(), "99"]);
            assert!(
                !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no version")
            );
            // fsync makes a version while the writer keeps the file open.
            python(
                &m,
                "import os\nfd=os.open('log.txt', os.O_CREAT|os.O_WRONLY, 0o644)\nos.write(fd, b'line1\\n'); os.fsync(fd)\nimport time; time.sleep(0.3)\nos.write(fd, b'line2\\n'); os.close(fd)",
            );
            wait_for("log versions", 10, || versions_of(&m, "log.txt").len() == 2);
            let v = versions_of(&m, "log.txt");
            assert!(v[0].contains("-fsync"), "{v:?}");
            assert_eq!(
                std::fs::read(m.p(".versions/log.txt").join(&v[0])).unwrap(),
                b"line1\n"
            );
            // snapshot: the state of a file a writer still holds open becomes a
            // new `-snapshot` entry with exactly those bytes.
            {
                use std::io::Write;
                let mut f = std::fs::File::create(m.p("open.bin")).unwrap();
                f.write_all(b"state at the snapshot").unwrap();
                let o = ckptfs(&["snapshot", &m.p("open.bin").display().to_string()]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let v = versions_of(&m, "open.bin");
                assert_eq!(v.len(), 1, "{v:?}");
                assert!(v[0].contains("-000001-snapshot"), "{v:?}");
                assert_eq!(
                    std::fs::read(m.p(".versions/open.bin").join(&v[0])).unwrap(),
                    b"state at the snapshot"
                );
                f.write_all(b", then more").unwrap();
            }
            // A snapshot of an unchanged file adds nothing.
            let before = versions_of(&m, "cfg.json");
            let o = ckptfs(&["snapshot", &m.p("cfg.json").display().to_string()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(versions_of(&m, "cfg.json"), before);
            // verify is clean
            let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        }
    });
}

#[test]
fn pre_mount_files_become_version_one_when_first_changed() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let root = tmpdir("premount");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old.bin"), b"from before the mount").unwrap();
        std::fs::write(dir.join("db"), b"0123456789").unwrap();
        let m = Mount::over(
            root,
            dir,
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        assert!(versions_of(&m, "old.bin").is_empty());
        std::fs::write(m.p("old.bin"), b"new").unwrap();
        wait_for("v1+v2", 10, || versions_of(&m, "old.bin").len() == 2);
        let v = versions_of(&m, "old.bin");
        assert_eq!(
            std::fs::read(m.p(".versions/old.bin").join(&v[0])).unwrap(),
            b"from before the mount"
        );
        // In-place write (no O_TRUNC): the old content is copied before the write.
        python(
            &m,
            "import os\nfd=os.open('db', os.O_RDWR)\nos.pwrite(fd, b'AB', 3)\nos.close(fd)",
        );
        wait_for("db versions", 10, || versions_of(&m, "db").len() == 2);
        let v = versions_of(&m, "db");
        assert_eq!(
            std::fs::read(m.p(".versions/db").join(&v[0])).unwrap(),
            b"0123456789"
        );
        assert_eq!(
            std::fs::read(m.p(".versions/db").join(&v[1])).unwrap(),
            b"012AB56789"
        );
        // Another in-place write: the version sharing the inode is unshared first.
        python(
            &m,
            "import os\nfd=os.open('db', os.O_RDWR)\nos.pwrite(fd, b'ZZ', 0)\nos.close(fd)",
        );
        wait_for("db v3", 10, || versions_of(&m, "db").len() == 3);
        assert_eq!(
            std::fs::read(m.p(".versions/db").join(&v[1])).unwrap(),
            b"012AB56789"
        );
        assert_eq!(std::fs::read(m.p("db")).unwrap(), b"ZZ2AB56789");
    });
}

#[test]
fn o_trunc_rewrites_and_renames_copy_no_data() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        let m = Mount::new(
            "zerocopy",
            Opts {
                config: Some(FAST.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        let size = 32 << 20;
        let before = du_store(&m);
        for i in 0..5u8 {
            python(
                &m,
                &format!("open('big.bin','wb').write(bytes([{i}])*{size})"),
            );
            wait_for("seal", 20, || {
                versions_of(&m, "big.bin").len() == i as usize + 1
            });
        }
        for i in 0..5u8 {
            python(
                &m,
                &format!(
                    "import os\nopen('r.bin.tmp','wb').write(bytes([{i}])*{size})\nos.replace('r.bin.tmp','r.bin')"
                ),
            );
            wait_for("seal", 20, || {
                versions_of(&m, "r.bin").len() == i as usize + 1
            });
        }
        let grown = du_store(&m) - before;
        // Data written: 10 × 32 MiB; the store holds the 8 non-live states, by inode.
        let written = 10 * size as u64;
        assert!(grown <= written, "store grew {grown} for {written} written");
        // Backing view: the newest version shares the live inode; through the
        // mount the store's link is not counted.
        assert_eq!(
            m.dir.join("big.bin").metadata().unwrap().nlink(),
            2,
            "newest version shares the live inode"
        );
        assert_eq!(m.p("big.bin").metadata().unwrap().nlink(), 1);
        assert!(
            grown >= 8 * size as u64 * 9 / 10,
            "old states are kept: {grown}"
        );
        // And the store did not copy: the stats say so.
        let o = ckptfs(&["stats", &m.mnt.display().to_string()]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["stats"]["captures_copied"], 0, "{s}");
        assert_eq!(s["stats"]["bytes_copied"], 0, "{s}");
    });
}

#[test]
fn appends_share_storage() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let m = Mount::new("appends", Opts { config: Some(r#"{"autosave": {"settle_ms": 0}, "retention": {"keep_last": 100000, "min_free_bytes": 0}}"#.into()), mountpoint: true, ..Opts::default() });
        python(
            &m,
            "import time\nfor i in range(300):\n    with open('train.log','a') as f: f.write('step %06d loss 0.5\\n' % i)\n    time.sleep(0.06)",
        );
        wait_for("versions", 20, || versions_of(&m, "train.log").len() >= 250);
        let n = versions_of(&m, "train.log").len();
        let live = std::fs::metadata(m.p("train.log")).unwrap().len();
        let grown = du_store(&m);
        // O(file size), not O(n²): every version is a prefix sharing one inode.
        assert!(
            grown < 10 * live.max(4096) + 64 * 1024,
            "{n} versions, store {grown} bytes, file {live}"
        );
        let objects = sh_ok(&format!(
            "find {}/objects -name '*.data' | wc -l",
            m.store().display()
        ));
        assert!(objects.trim().parse::<usize>().unwrap() >= 250, "{objects}");
        let v = versions_of(&m, "train.log");
        let first = std::fs::read(m.p(".versions/train.log").join(&v[0])).unwrap();
        assert!(first.starts_with(b"step 000000"));
        assert!(first.len() < 100);
    });
}

#[test]
fn real_writers_round_trip_through_versions() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let m = Mount::new(
            "writers",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        let have = |module: &str| {
            sh(&format!("python3 -c 'import {module}'"))
                .status
                .success()
        };
        let mut states: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        if have("numpy") {
            let mut s = Vec::new();
            for i in 0..3 {
                python(
                    &m,
                    &format!("import numpy as np\nnp.save('arr.npy', np.arange(1000) * {i})"),
                );
                s.push(std::fs::read(m.p("arr.npy")).unwrap());
                wait_for("npy", 10, || versions_of(&m, "arr.npy").len() == i + 1);
            }
            states.push(("arr.npy", s));
        } else {
            skip("the numpy writer (pip install numpy)");
        }
        if have("h5py") {
            let mut s = Vec::new();
            for i in 0..2 {
                python(
                    &m,
                    &format!(
                        "import h5py, numpy as np\nwith h5py.File('w.h5','w') as f: f['x'] = np.ones(100) * {i}"
                    ),
                );
                s.push(std::fs::read(m.p("w.h5")).unwrap());
                wait_for("h5", 10, || versions_of(&m, "w.h5").len() == i + 1);
            }
            states.push(("w.h5", s));
        } else {
            skip("the h5py writer (pip install h5py)");
        }
        // temp + os.replace writer
        let mut s = Vec::new();
        for i in 0..3 {
            python(
                &m,
                &format!(
                    "import os\nwith open('state.json.tmp','w') as f: f.write('{{\"step\": {i}}}')\nos.replace('state.json.tmp','state.json')"
                ),
            );
            s.push(std::fs::read(m.p("state.json")).unwrap());
            wait_for("json", 10, || versions_of(&m, "state.json").len() == i + 1);
        }
        states.push(("state.json", s));
        // sqlite3: in-place random writes, WAL
        let mut s = Vec::new();
        for i in 0..3 {
            let before = versions_of(&m, "app.db").len();
            sh_ok(&format!(
                "cd {} && sqlite3 app.db 'create table if not exists t(x); insert into t values ({i});'",
                m.mnt.display()
            ));
            s.push(std::fs::read(m.p("app.db")).unwrap());
            wait_for("db", 10, || versions_of(&m, "app.db").len() > before);
            m.wait_sealed();
        }
        states.push(("app.db", s));
        for (name, want) in &states {
            let got: Vec<Vec<u8>> = versions_of(&m, name)
                .iter()
                .map(|e| std::fs::read(m.p(".versions").join(name).join(e)).unwrap())
                .collect();
            let digest = |v: &Vec<Vec<u8>>| {
                v.iter()
                    .map(|b| format!("{}:{}", b.len(), blake3::hash(b).to_hex()))
                    .collect::<Vec<_>>()
            };
            let (g, w) = (digest(&got), digest(want));
            // Every state a writer left is a version, in order (writers that fsync
            // mid-save, like SQLite, leave more versions than saves).
            let mut it = g.iter();
            assert!(
                w.iter().all(|x| it.any(|y| y == x)),
                "{name}: states {w:?} not all among versions {g:?}"
            );
            assert_eq!(
                g.last(),
                w.last(),
                "{name}: newest version is the live state"
            );
        }
        // HF-Trainer-like rotation: checkpoint dirs written, the oldest rmtree'd.
        for step in [100, 200, 300] {
            python(
                &m,
                &format!(
                    "import os, shutil\nos.makedirs('out/checkpoint-{step}', exist_ok=True)\nopen('out/checkpoint-{step}/model.safetensors','wb').write(b'w{step}' * 1000)\nopen('out/checkpoint-{step}/trainer_state.json','w').write('{{\"global_step\": {step}}}')\nckpts = sorted(os.listdir('out'), key=lambda d: int(d.split('-')[1]))\nfor d in ckpts[:-2]: shutil.rmtree('out/' + d)"
                ),
            );
            m.wait_sealed();
        }
        assert!(std::fs::metadata(m.p("out/checkpoint-100")).is_err());
        wait_for("rotated history", 10, || {
            versions_of(&m, "out/checkpoint-100/model.safetensors").len() == 1
        });
        let v = versions_of(&m, "out/checkpoint-100/model.safetensors");
        assert_eq!(
            std::fs::read(
                m.p(".versions/out/checkpoint-100/model.safetensors")
                    .join(&v[0])
            )
            .unwrap(),
            b"w100".repeat(1000)
        );
    });
}

#[test]
fn concurrent_writers_keep_posix_semantics() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let m = Mount::new(
            "concurrent",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        python(
            &m,
            r#"
import os, threading
fd0 = os.open('shared.bin', os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd0, b'\0' * 4096, 0)
def w(k):
    fd = os.open('shared.bin', os.O_RDWR)
    for i in range(200):
        os.pwrite(fd, bytes([k]) * 16, (k * 16 + i * 128) % 4096)
    os.close(fd)
ts = [threading.Thread(target=w, args=(k,)) for k in range(1, 5)]
[t.start() for t in ts]; [t.join() for t in ts]
data = os.pread(fd0, 4096, 0)
os.close(fd0)
# Every 16-byte slot holds exactly one writer's bytes (no torn or lost writes).
for k in range(1, 5):
    for i in range(200):
        off = (k * 16 + i * 128) % 4096
        assert data[off:off+16] in [bytes([j]) * 16 for j in range(1, 5)], off
"#,
        );
        wait_for("version", 10, || !versions_of(&m, "shared.bin").is_empty());
        let o = ckptfs(&["stats", &m.mnt.display().to_string()]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            s["stats"]["conflicts"].as_u64().unwrap() >= 1,
            "conflict counted: {s}"
        );
    });
}

/// Two writer processes with the same file open, overlapping writes: each
/// writer's state at its close becomes a version, and nothing else does.
#[test]
fn each_of_two_overlapping_writer_processes_leaves_its_closing_state() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        for opts in modes_and_writeback() {
            let m = Mount::new(
                "twowriters",
                Opts {
                    config: Some(FAST.into()),
                    ..opts.clone()
                },
            );
            let out = python(
                &m,
                r#"
import os, sys, json, subprocess
CHILD = """
import os, sys
fd = os.open("shared.bin", os.O_RDWR | os.O_CREAT, 0o644)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "write":
        os.pwrite(fd, bytes([int(cmd[1])]) * int(cmd[3]), int(cmd[2]))
    elif cmd[0] == "close":
        os.close(fd)
    print("ok", flush=True)
"""
def spawn():
    return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
def do(p, cmd):
    p.stdin.write(cmd + "\n"); p.stdin.flush()
    assert p.stdout.readline().strip() == "ok"
a = spawn(); do(a, "ping")      # both open the (empty) file before anyone writes
b = spawn(); do(b, "ping")
do(a, "write 65 0 8192")        # A: 'A' * 8 KiB
do(b, "write 66 4096 8192")     # B overlaps A's second half
do(a, "write 67 0 1024")        # A writes again
state_a = open("shared.bin", "rb").read()
do(a, "close")                  # B still has it open
# The kernel tells the daemon of a close (FUSE RELEASE) after close() has
# returned: B's next write must wait until A's state is kept.
import time
deadline = time.time() + 10
def kept():
    try:
        return [e for e in os.listdir(".versions/shared.bin") if e[0].isdigit()]
    except FileNotFoundError:
        return []
while not kept():
    assert time.time() < deadline, "A's close was not seen"
    time.sleep(0.01)
do(b, "write 68 10000 100")
state_b = open("shared.bin", "rb").read()
do(b, "close")
a.stdin.close(); b.stdin.close(); a.wait(); b.wait()
print(json.dumps({"a": state_a.hex(), "b": state_b.hex()}))
"#,
            );
            let v: serde_json::Value =
                serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
            let hex = |k: &str| -> Vec<u8> {
                let h = v[k].as_str().unwrap();
                (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                    .collect()
            };
            let (a, b) = (hex("a"), hex("b"));
            assert_ne!(a, b);
            wait_for("both states", 10, || {
                versions_of(&m, "shared.bin").len() >= 2
            });
            m.wait_sealed();
            let got: Vec<Vec<u8>> = versions_of(&m, "shared.bin")
                .iter()
                .map(|e| std::fs::read(m.p(".versions/shared.bin").join(e)).unwrap())
                .collect();
            assert!(
                got == vec![a.clone(), b.clone()],
                "{opts:?}: the versions are exactly A's and B's closing states ({} found)",
                got.len()
            );
            assert_eq!(std::fs::read(m.p("shared.bin")).unwrap(), b);
        }
    });
}

#[test]
fn unmount_seals_pending_and_interval_versions_long_writers() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        // settle_ms far away: only the unmount can seal this save.
        let cfg = r#"{ "autosave": { "settle_ms": 600000, "interval_seconds": 1 } }"#;
        let mut m = Mount::new(
            "unmountseal",
            Opts {
                config: Some(cfg.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        std::fs::write(m.p("pending.txt"), b"sealed at unmount").unwrap();
        // A writer that stays open and keeps changing the file.
        python(
            &m,
            "import os, time\nf = open('open.log', 'w')\nfor i in range(4):\n    f.write(f'line {i}\\n'); f.flush(); time.sleep(0.8)\nf.close()",
        );
        m.unmount();
        m.mount();
        let v = versions_of(&m, "pending.txt");
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("-unmount"), "{v:?}");
        let v = versions_of(&m, "open.log");
        assert!(
            v.iter().any(|e| e.contains("-interval")),
            "interval versions of a long writer: {v:?}"
        );
    });
}

/// A version shares its inode with the live file; the same inode truncated or
/// rewritten in place through a second name that is not versioned (a hard link
/// with an ignored name) must not change the version.
#[test]
fn a_version_survives_changes_through_an_unversioned_hard_link() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes_and_writeback() {
            let m = Mount::new(
                "hardlink",
                Opts {
                    config: Some(FAST.into()),
                    ..opts.clone()
                },
            );
            let x: Vec<u8> = (0..126_976u32).map(|i| (i % 253) as u8).collect();
            std::fs::write(m.p("a.bin"), &x).unwrap();
            wait_for("v1", 30, || versions_of(&m, "a.bin").len() == 1);
            std::fs::hard_link(m.p("a.bin"), m.p("b.tmp")).unwrap();
            // Through the ignored name: a path truncate, then an in-place write.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(m.p("b.tmp"))
                .unwrap();
            f.set_len(567).unwrap();
            drop(f);
            sh_ok(&format!("truncate -s 100 {}", m.p("b.tmp").display()));
            let v = versions_of(&m, "a.bin");
            let kept = std::fs::read(m.p(".versions/a.bin").join(&v[0])).unwrap();
            assert!(kept == x, "{opts:?}: v1 changed to {} bytes", kept.len());
            let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        }
    });
}

#[test]
fn user_files_named_like_the_views_own_entries_keep_their_history() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = Mount::new(
            "reservednames",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        // DeepSpeed's tag file at the top of the mount, and a `previous` deeper.
        std::fs::create_dir(m.p("run")).unwrap();
        for step in ["global_step100", "global_step200"] {
            std::fs::write(m.p("latest"), step).unwrap();
            std::fs::write(m.p("run/previous"), step).unwrap();
            m.wait_sealed();
        }
        let top: Vec<String> = std::fs::read_dir(m.p(".versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(top.contains(&"latest".to_string()), "{top:?}");
        for (rel, dir) in [
            ("latest", ".versions/latest"),
            ("run/previous", ".versions/run/previous"),
        ] {
            assert_eq!(versions_of(&m, rel).len(), 2, "{rel}");
            assert!(m.p(dir).is_dir(), "{dir}");
            // Inside the file's own version list the reserved names mean theirs.
            assert_eq!(
                std::fs::read(m.p(dir).join("latest")).unwrap(),
                b"global_step200"
            );
            assert_eq!(
                std::fs::read(m.p(dir).join("previous")).unwrap(),
                b"global_step100"
            );
        }
    });
}

#[test]
fn versions_record_the_training_step_their_path_names() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = Mount::new(
            "steps",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        for (rel, step) in [
            ("out/checkpoint-500/model.safetensors", Some(500)),
            ("ds/global_step20/mp_rank_00_model_states.pt", Some(20)),
            ("pl/epoch=3-step=1200.ckpt", Some(1200)),
            ("orbax/7000/state/d/0", Some(7000)),
            ("notes.txt", None),
        ] {
            std::fs::create_dir_all(m.p(rel).parent().unwrap()).unwrap();
            std::fs::write(m.p(rel), rel).unwrap();
            m.wait_sealed();
            let o = ckptfs(&["log", "--json", &m.p(rel).display().to_string()]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v[0]["step"].as_u64(), step, "{rel}: {v}");
        }
        let o = ckptfs(&[
            "log",
            &m.p("out/checkpoint-500/model.safetensors")
                .display()
                .to_string(),
        ]);
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(table.lines().next().unwrap().contains("step"), "{table}");
        assert!(table.lines().nth(1).unwrap().contains(" 500 "), "{table}");
    });
}

#[test]
fn a_closed_file_whose_inode_the_kernel_forgets_is_still_sealed() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        for opts in modes_and_writeback() {
            let mode = opts.passthrough;
            let m = Mount::new(
                "forgotten",
                Opts {
                    config: Some(r#"{ "autosave": { "settle_ms": 1500 } }"#.into()),
                    ..opts
                },
            );
            std::fs::create_dir(m.p("run")).unwrap();
            std::fs::write(m.p("run/model.bin"), b"closed, then forgotten").unwrap();
            // Evict unused dentries and inodes: the kernel sends FORGET for the
            // closed file (and its directory) before its settle time is up.
            sh_ok("sync; echo 2 > /proc/sys/vm/drop_caches");
            m.wait_sealed();
            let v = versions_of(&m, "run/model.bin");
            assert_eq!(v.len(), 1, "{mode}: {v:?}");
            assert_eq!(
                std::fs::read(m.p(".versions/run/model.bin").join(&v[0])).unwrap(),
                b"closed, then forgotten"
            );
        }
    });
}

/// A file rewritten with O_TRUNC while a reader holds it open, before its
/// last state was kept (within `settle_ms` of its close): the old state is
/// copied, not linked, since the truncate happens in place (the open reader
/// keeps the name from getting a fresh inode). Before, it was linked, and
/// version 1 read back the new bytes ("secon" for "first").
#[test]
fn a_rewrite_while_a_reader_holds_the_file_keeps_the_old_bytes() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes_and_writeback() {
            let m = Mount::new(
                "reader-trunc",
                Opts {
                    config: Some(r#"{ "autosave": { "settle_ms": 2000 } }"#.into()),
                    ..opts.clone()
                },
            );
            std::fs::write(m.p("model.bin"), b"first").unwrap();
            let reader = std::fs::File::open(m.p("model.bin")).unwrap();
            std::fs::write(m.p("model.bin"), b"second").unwrap();
            drop(reader);
            m.wait_sealed();
            let v = versions_of(&m, "model.bin");
            assert_eq!(v.len(), 2, "{opts:?}: {v:?}");
            let kept = std::fs::read(m.p(".versions/model.bin").join(&v[0])).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&kept),
                "first",
                "{opts:?}: version 1 changed with the file"
            );
            let now = std::fs::read(m.p(".versions/model.bin").join(&v[1])).unwrap();
            assert_eq!(now, b"second", "{opts:?}");
        }
    });
}

/// Pages of `p` in the page cache (util-linux `fincore`).
fn resident_pages(p: &std::path::Path) -> u64 {
    let o = sh_ok(&format!(
        "fincore --noheadings --output PAGES '{}'",
        p.display()
    ));
    o.trim()
        .parse()
        .unwrap_or_else(|e| panic!("fincore {}: {e}: {o:?}", p.display()))
}

#[test]
fn a_rewritten_files_old_pages_leave_the_page_cache() {
    // After an O_TRUNC rewrite the old inode is history only; its cached
    // pages go back as a truncate's would (`versioning/cold.rs`). Kept, the
    // next big save lands on cold memory (1 GiB saves were 4x slower here).
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let m = Mount::new(
                "cold-pages",
                Opts {
                    config: Some(r#"{ "autosave": { "settle_ms": 0 } }"#.into()),
                    mountpoint: true,
                    ..opts.clone()
                },
            );
            python(
                &m,
                "import os\nopen('big.bin', 'wb').write(os.urandom(16 << 20))",
            );
            m.wait_sealed();
            // Written back, so its pages are clean and can be dropped.
            sh_ok("sync");
            let objs = sh_ok(&format!(
                "find {}/objects -name '*.data'",
                m.store().display()
            ));
            let objs: Vec<&str> = objs.lines().collect();
            assert_eq!(objs.len(), 1, "{opts:?}: one version: {objs:?}");
            let obj = std::path::Path::new(objs[0]);
            // With `settle_ms: 0` the version shares the live inode, and its
            // seal leaves the pages to the live file.
            let before = resident_pages(obj);
            assert!(before >= 2048, "{opts:?}: {before} pages cached before");
            python(&m, "open('big.bin', 'wb').write(b'new')");
            wait_for("the old state's pages to leave the page cache", 10, || {
                resident_pages(obj) == 0
            });
            m.wait_sealed();
            assert_eq!(versions_of(&m, "big.bin").len(), 2, "{opts:?}");
            assert_eq!(std::fs::read(m.p("big.bin")).unwrap(), b"new");
        }
    });
}
