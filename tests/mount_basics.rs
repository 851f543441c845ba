//! Mounting: in place and elsewhere, the hidden store, clean unmounts, refusals.

mod common;
use common::*;
use std::path::Path;

#[test]
fn mount_in_place_hides_store_and_unmounts_to_plain_dir() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let root = tmpdir("inplace");
            let dir = root.join("data");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("before.txt"), b"pre-mount\n").unwrap();
            let mut m = Mount::over(root, dir.clone(), opts);
            // Pre-existing content is visible, the store is not.
            assert_eq!(std::fs::read(m.p("before.txt")).unwrap(), b"pre-mount\n");
            let names: Vec<String> = std::fs::read_dir(&m.mnt)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, vec!["before.txt".to_string()]);
            assert!(std::fs::metadata(m.p(".ckptfs")).is_err());
            assert!(std::fs::create_dir(m.p(".ckptfs")).is_err());
            assert!(std::fs::write(m.p(".ckptfs"), b"x").is_err());
            std::fs::write(m.p("x"), b"1").unwrap();
            assert!(std::fs::rename(m.p("x"), m.p(".ckptfs")).is_err());
            assert!(std::fs::remove_dir_all(m.p(".ckptfs")).is_err());
            // .versions is hidden from readdir but reachable.
            assert!(std::fs::metadata(m.p(".versions")).unwrap().is_dir());
            std::fs::write(m.p("after.txt"), b"written through the mount\n").unwrap();
            m.unmount();
            // A plain directory with every file as last written, store intact.
            assert_eq!(
                std::fs::read(dir.join("after.txt")).unwrap(),
                b"written through the mount\n"
            );
            assert_eq!(
                std::fs::read(dir.join("before.txt")).unwrap(),
                b"pre-mount\n"
            );
            assert!(dir.join(".ckptfs/FORMAT").exists());
        }
    });
}

#[test]
fn mount_elsewhere_and_refuse_second_mount() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = Mount::new(
            "elsewhere",
            Opts {
                mountpoint: true,
                ..Opts::default()
            },
        );
        std::fs::write(m.p("f"), b"data").unwrap();
        assert_eq!(std::fs::read(m.dir.join("f")).unwrap(), b"data");
        // Refused mounts below: one that happened anyway is not left behind.
        let _down = UnmountOnDrop(m.dir.clone());
        // Same store again (in place over the backing dir): refused, nothing mounted.
        let o = ckptfs(&["mount", &m.dir.display().to_string()]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("already mounted"), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(!is_mounted(&m.dir));
        // Same mountpoint again: refused too.
        let o = ckptfs(&[
            "mount",
            &m.root.join("other").display().to_string(),
            &m.mnt.display().to_string(),
        ]);
        assert!(!o.status.success());
    });
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let root = tmpdir("badinput");
    let file = root.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    for (arg, want) in [
        (
            root.join("missing").display().to_string(),
            "no such directory",
        ),
        (file.display().to_string(), "not a directory"),
    ] {
        let o = ckptfs(&["mount", &arg]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&arg) && err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!root.join("missing").exists());
    assert!(!root.join(".ckptfs").exists());
    // A bad configuration names the key and the file, before mounting.
    let cfg = root.join("bad.json");
    std::fs::write(&cfg, r#"{"autosave": {"max_kep": 3}}"#).unwrap();
    let d = root.join("d");
    std::fs::create_dir(&d).unwrap();
    let _down = UnmountOnDrop(d.clone());
    let o = ckptfs(&[
        "mount",
        &d.display().to_string(),
        "--config",
        &cfg.display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("max_kep") && err.contains("bad.json"),
        "{err}"
    );
    assert!(!d.join(".ckptfs").exists(), "nothing changed");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn signals_and_umount_commands_unmount_cleanly() {
    if !can_mount() {
        return;
    }
    bounded(90, || {
        for how in ["sigterm", "sigint", "fusermount", "umount"] {
            let mut m = Mount::new("signals", Opts::default());
            std::fs::write(m.p("f"), b"kept").unwrap();
            let pid = m.daemon_pid().expect("daemon pid");
            match how {
                // SAFETY: sending a signal to a pid.
                "sigterm" => unsafe {
                    libc::kill(pid, libc::SIGTERM);
                },
                // SAFETY: sending a signal to a pid.
                "sigint" => unsafe {
                    libc::kill(pid, libc::SIGINT);
                },
                "fusermount" => {
                    sh_ok(&format!("fusermount3 -u {}", m.mnt.display()));
                }
                _ => {
                    sh_ok(&format!("umount {}", m.mnt.display()));
                }
            }
            wait_for("daemon exit", 20, || {
                !Path::new(&format!("/proc/{pid}")).exists()
            });
            assert!(!is_mounted(&m.mnt), "{how}: still mounted");
            assert_eq!(std::fs::read(m.dir.join("f")).unwrap(), b"kept");
            m.unmount();
        }
    });
}

#[test]
fn non_root_user_can_mount_via_fusermount() {
    if !can_mount() {
        return;
    }
    // Needs a non-root account and fusermount3.
    if sh("id nobody && which fusermount3").status.code() != Some(0) {
        skip("a non-root user `nobody` and fusermount3 (apt-get install fuse3)");
        return;
    }
    // Debian makes /dev/fuse 0666; this machine ships it 0600, which shuts every
    // non-root user out of FUSE (fusermount3 opens it with the caller's rights).
    // Open it up for the test the way a stock system has it, and restore after.
    use std::os::unix::fs::PermissionsExt;
    let old = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o777;
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.0));
        }
    }
    let _restore = Restore(old);
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    bounded(120, || {
        let root = tmpdir("nonroot");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        sh_ok(&format!(
            "chmod 755 {r} && chown nobody {d}",
            r = root.display(),
            d = dir.display()
        ));
        let cfg = root.join("cfg.json");
        std::fs::write(&cfg, FAST).unwrap();
        let bin = BIN;
        // The versioning suite's core cases, all as `nobody`: a close, an
        // O_TRUNC rewrite, an fsync'd save, a rename over, an unlink; then
        // the history through `.versions`, `log`, `restore` and `verify`.
        let script = format!(
            r#"set -e
d={d}
{bin} mount $d --config {cfg}
echo one > $d/f; {bin} wait $d
echo two > $d/f; {bin} wait $d
python3 -c "import os; fd=os.open('$d/f', os.O_WRONLY|os.O_TRUNC); os.write(fd, b'three\n'); os.fsync(fd); os.close(fd)"
{bin} wait $d
echo four > $d/g; mv $d/g $d/f; {bin} wait $d
rm $d/f; {bin} wait $d
echo "versions: $(ls $d/.versions/f | grep -c '^[0-9]')"
for v in 1 2 3 4; do echo "v$v: $(cat $d/.versions/f/*-00000$v-*)"; done
echo "data path: $({bin} stats $d | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_path"])')"
{bin} log --json $d/f | python3 -c 'import json,sys; print("reasons:", " ".join(v["reason"] for v in json.load(sys.stdin)))'
{bin} restore $d/f 3 --to $d/restored
echo "restored: $(cat $d/restored)"
{bin} verify $d > /dev/null && echo verify clean
echo "owner: $(stat -c %U $d/restored $d/.ckptfs | sort -u | tr '\n' ' ')"
"#,
            d = dir.display(),
            cfg = cfg.display()
        );
        std::fs::write(root.join("as-nobody.sh"), &script).unwrap();
        let o = sh(&format!(
            "setpriv --reuid=nobody --regid=nogroup --clear-groups sh {s}; setpriv --reuid=nobody --regid=nogroup --clear-groups {bin} umount {d}",
            s = root.join("as-nobody.sh").display(),
            d = dir.display()
        ));
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        if is_mounted(&dir) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&dir)
                .status();
        }
        for want in [
            "versions: 4",
            "v1: one",
            "v2: two",
            "v3: three",
            "v4: four",
            "data path: daemon",
            "reasons: close close fsync close",
            "restored: three",
            "verify clean",
            "owner: nobody ",
        ] {
            assert!(out.contains(want), "{want:?} missing:\n{out}\nstderr {err}");
        }
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn mount_options_are_understood_or_refused() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let root = tmpdir("mountopts");
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        // A failed check below does not leave a mount behind.
        let _down = UnmountOnDrop(dir.clone());
        // `ro` would be silently untrue: refused, nothing mounted.
        for bad in ["ro", "defaults,bogus=1", "noexec"] {
            let o = ckptfs(&["mount", &d, "-o", bad]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "-o {bad} must fail");
            assert!(err.contains("unknown mount option"), "{err}");
            assert_eq!(mount_count(&dir), 0);
        }
        // fstab's generic options plus ours: store= is honoured.
        let store = root.join("st");
        let opts = format!(
            "defaults,nofail,x-systemd.automount,passthrough=0,writeback_cache,store={}",
            store.display()
        );
        let o = ckptfs(&["mount", &d, "-o", &opts]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("data path: daemon, writeback cache"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(store.join("FORMAT").exists());
        let o = ckptfs(&["umount", &d]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = std::fs::remove_dir_all(&root);
    });
}
