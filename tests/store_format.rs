//! The on-disk format: a committed format-1 store (tests/fixtures/store-v1) is read
//! unmounted and mounted by every test run; stores and records from a newer
//! format are refused with a clear message.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn fixture_copy(tag: &str) -> PathBuf {
    let root = tmpdir(tag);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    sh_ok(&format!("cp -a {}/. {}/", src.display(), root.display()));
    root
}

fn log_json(path: &Path) -> Result<serde_json::Value, String> {
    let o = ckptfs(&["log", "--json", &path.display().to_string()]);
    if o.status.success() {
        Ok(serde_json::from_slice(&o.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn format_1_store_reads_unmounted_by_snapshot_and_by_scan() {
    let root = fixture_copy("fmt1");
    let v = log_json(&root.join("notes.txt")).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // Without the snapshot's validity (a crash marker), the same by scanning.
    std::fs::write(root.join(".ckptfs/dirty"), b"").unwrap();
    let v2 = log_json(&root.join("notes.txt")).unwrap();
    assert_eq!(v, v2);
    for (i, m) in v.as_array().unwrap().iter().enumerate() {
        let dest = root.join(format!("restored{i}"));
        let o = ckptfs(&[
            "restore",
            &root.join("notes.txt").display().to_string(),
            &m["number"].to_string(),
            "--to",
            &dest.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            format!("state {}\n", i + 1).as_bytes()
        );
    }
    let o = ckptfs(&["verify", &root.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn newer_formats_are_refused() {
    let root = fixture_copy("fmt2");
    let next = ckptfs::store::layout::FORMAT_VERSION + 1;
    std::fs::write(
        root.join(".ckptfs/FORMAT"),
        format!("ckptfs-store {next}\n"),
    )
    .unwrap();
    let e = log_json(&root.join("notes.txt")).unwrap_err();
    assert!(e.contains("newer") && e.contains("upgrade"), "{e}");
    if can_mount() {
        let _down = UnmountOnDrop(root.clone());
        let o = ckptfs(&["mount", &root.display().to_string()]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("newer"));
        assert!(!is_mounted(&root));
    }
    // A single record from the future is refused too (scan path).
    std::fs::write(root.join(".ckptfs/FORMAT"), b"ckptfs-store 1\n").unwrap();
    std::fs::write(root.join(".ckptfs/dirty"), b"").unwrap();
    let meta = sh_ok(&format!(
        "find {}/.ckptfs/objects -name v000002.json",
        root.display()
    ));
    let p = meta.trim();
    let s = std::fs::read_to_string(p)
        .unwrap()
        .replace("\"format\": 1", &format!("\"format\": {next}"));
    std::fs::write(p, s).unwrap();
    let e = log_json(&root.join("notes.txt")).unwrap_err();
    assert!(
        e.contains("newer ckptfs") && e.contains("v000002.json"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn format_1_store_mounts() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let root = fixture_copy("fmt1mount");
        let m = Mount::over(root.clone(), root.clone(), Opts::default());
        assert_eq!(versions_of(&m, "notes.txt").len(), 3);
        assert_eq!(
            std::fs::read(m.p(".versions/notes.txt/latest")).unwrap(),
            b"state 3\n"
        );
        // Opened by a daemon, the store becomes the current format (each adds
        // the journal, generations, archived versions, the captures log;
        // nothing to convert):
        // a delete is then recorded.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::remove_file(m.p("notes.txt")).unwrap();
        let t = sh_ok(&format!("date -u -d @{before} +%Y%m%dT%H%M%SZ"));
        let at = m.p(".versions").join(format!("@{}", t.trim()));
        assert_eq!(std::fs::read(at.join("notes.txt")).unwrap(), b"state 3\n");
        let mut m = m;
        m.unmount(); // (dropping the Mount would remove its directory)
        assert_eq!(
            std::fs::read_to_string(root.join(".ckptfs/FORMAT")).unwrap(),
            format!("ckptfs-store {}\n", ckptfs::store::layout::FORMAT_VERSION)
        );
        let journal = std::fs::read_to_string(root.join(".ckptfs/journal")).unwrap();
        assert!(journal.contains("\"op\":\"delete\""), "{journal}");
        // The clean unmount wrote the binary snapshot (format 2); read
        // unmounted, it gives what a scan of the metadata files gives.
        let snap = std::fs::read(root.join(".ckptfs/index.snapshot")).unwrap();
        assert!(snap.starts_with(b"CKPTIDX2\n"));
        let by_snapshot = log_json(&root.join("notes.txt")).unwrap();
        assert_eq!(by_snapshot.as_array().unwrap().len(), 3);
        std::fs::write(root.join(".ckptfs/dirty"), b"").unwrap();
        assert_eq!(log_json(&root.join("notes.txt")).unwrap(), by_snapshot);
    });
}
