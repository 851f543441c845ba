//! Classification at seal time through a real mount: torn saves are visible,
//! `latest-complete` points at the newest good checkpoint, metadata reaches
//! `.index.json`, xattrs and `ckptfs log`; the sharded layout stays shallow.

mod common;
use common::*;

fn python(m: &Mount, code: &str) -> std::process::Output {
    sh(&format!(
        "cd {} && python3 - <<'PY'\n{code}\nPY",
        m.mnt.display()
    ))
}

#[test]
fn torn_saves_are_flagged_and_latest_complete_skips_them() {
    if !can_mount() {
        return;
    }
    if !sh("python3 -c 'import safetensors, numpy'")
        .status
        .success()
    {
        skip("the Python writers safetensors and numpy (pip install safetensors numpy)");
        return;
    }
    bounded(120, || {
        let m = Mount::new(
            "torn",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        // A good save, then one killed half-way (the writer dies: SIGKILL).
        let o = python(
            &m,
            "import numpy as np\nfrom safetensors.numpy import save_file\nsave_file({'w': np.ones((256, 256), dtype=np.float32)}, 'model.safetensors')",
        );
        assert!(o.status.success());
        wait_for("v1", 10, || versions_of(&m, "model.safetensors").len() == 1);
        let o = python(
            &m,
            r#"
import os, numpy as np
from safetensors.numpy import save
data = save({'w': np.zeros((256, 256), dtype=np.float32)})
fd = os.open('model.safetensors', os.O_WRONLY | os.O_TRUNC)
os.write(fd, data[: len(data) // 2])
os.kill(os.getpid(), 9)
"#,
        );
        assert!(!o.status.success(), "writer was killed");
        wait_for("v2", 10, || versions_of(&m, "model.safetensors").len() == 2);
        // Same for a zip save (torch.save-like): killed before the central directory.
        python(
            &m,
            "import zipfile\nwith zipfile.ZipFile('ckpt.zip', 'w') as z: z.writestr('archive/data.pkl', b'x' * 5000)",
        );
        wait_for("zip v1", 10, || versions_of(&m, "ckpt.zip").len() == 1);
        python(
            &m,
            "import os, zipfile\nz = zipfile.ZipFile('ckpt.zip', 'w')\nz.writestr('archive/data.pkl', b'y' * 5000)\nz.fp.flush()\nos.kill(os.getpid(), 9)",
        );
        wait_for("zip v2", 10, || versions_of(&m, "ckpt.zip").len() == 2);
        for (name, cat) in [
            ("model.safetensors", "safetensors"),
            ("ckpt.zip", "pytorch"),
        ] {
            let v = versions_of(&m, name);
            let idx: serde_json::Value = serde_json::from_slice(
                &std::fs::read(m.p(".versions").join(name).join(".index.json")).unwrap(),
            )
            .unwrap();
            let vs = idx["versions"].as_array().unwrap();
            assert_eq!(vs[0]["complete"], true, "{name}: {idx}");
            assert_eq!(vs[1]["complete"], false, "{name}: {idx}");
            assert_eq!(vs[1]["category"], cat, "{name}");
            let lc =
                std::fs::read_link(m.p(".versions").join(name).join("latest-complete")).unwrap();
            assert_eq!(
                lc.to_string_lossy(),
                v[0],
                "{name}: latest-complete skips the torn save"
            );
            let x = sh_ok(&format!(
                "getfattr --only-values -n user.ckptfs.complete {}/{}/{} 2>/dev/null || python3 -c \"import os,sys; print(os.getxattr(sys.argv[1], 'user.ckptfs.complete').decode())\" {}/{}/{}",
                m.p(".versions").display(),
                name,
                v[1],
                m.p(".versions").display(),
                name,
                v[1]
            ));
            assert_eq!(x.trim(), "false");
            let log = String::from_utf8(ckptfs(&["log", &m.p(name).display().to_string()]).stdout)
                .unwrap();
            assert!(log.contains(" NO "), "log shows the torn version: {log}");
            // Live files never carry ckptfs xattrs.
            let live = sh(&format!(
                "python3 -c \"import os,sys; print(os.listxattr(sys.argv[1]))\" {}",
                m.p(name).display()
            ));
            assert!(!String::from_utf8_lossy(&live.stdout).contains("ckptfs"));
        }
    });
}

#[test]
fn ten_thousand_files_spread_over_shards() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let m = Mount::new(
            "shards",
            Opts {
                config: Some(FAST.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        python(
            &m,
            "import os\nfor d in range(10):\n    os.makedirs(f'run{d}', exist_ok=True)\n    for i in range(1000):\n        open(f'run{d}/step{i}.json', 'w').write('{\"step\": %d}' % i)",
        );
        let count = || {
            let v: serde_json::Value =
                serde_json::from_slice(&ckptfs(&["stats", &m.mnt.display().to_string()]).stdout)
                    .unwrap_or_default();
            v["versions"].as_u64().unwrap_or(0)
        };
        wait_for("10,000 versions", 120, || count() == 10_000);
        // No directory of the store holds more than a few hundred entries.
        let out = sh_ok(&format!(
            "find {}/objects -type d | while read d; do echo \"$(ls -A \"$d\" | wc -l) $d\"; done | sort -n | tail -1",
            m.store().display()
        ));
        let max: usize = out.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            max <= 300,
            "largest store directory has {max} entries: {out}"
        );
        let shards = sh_ok(&format!("ls {}/objects/json | wc -l", m.store().display()));
        assert!(
            shards.trim().parse::<usize>().unwrap() > 200,
            "spread over shards: {shards}"
        );
        // du per category and per top-level directory.
        let du: serde_json::Value =
            serde_json::from_slice(&ckptfs(&["du", "--json", &m.mnt.display().to_string()]).stdout)
                .unwrap();
        assert_eq!(du["categories"]["json"]["versions"], 10_000);
        assert_eq!(du["directories"]["run3"]["versions"], 1000);
    });
}

/// Headers longer than the 64 KiB window (a safetensors file of 1,500 tensors,
/// a GGUF vocabulary of 20,000 tokens) are read whole at seal time, so a torn
/// copy is flagged and a whole one is complete.
#[test]
fn headers_beyond_the_window_are_read_whole_when_sealing() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let m = Mount::new(
            "bigheader",
            Opts {
                config: Some(FAST.into()),
                ..Opts::default()
            },
        );
        let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (name, torn) in [
            ("big-header.safetensors", "torn-tail-big-header.safetensors"),
            ("big-vocab.gguf", "torn-half-big-vocab.gguf"),
        ] {
            std::fs::copy(fx.join(name), m.p(name)).unwrap();
            wait_for("whole sealed", 30, || versions_of(&m, name).len() == 1);
            std::fs::copy(fx.join(torn), m.p(name)).unwrap();
            wait_for("torn sealed", 30, || versions_of(&m, name).len() == 2);
            let o = ckptfs(&["log", "--json", &m.p(name).display().to_string()]);
            let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let vs = log.as_array().unwrap();
            assert_eq!(vs[0]["complete"], true, "{name}: {log}");
            assert_eq!(vs[1]["complete"], false, "{name}: {log}");
        }
    });
}
