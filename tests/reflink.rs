//! On a filesystem that reflinks (btrfs, loop-mounted here), the copies ckptfs
//! must make — before an in-place write to bytes a version owns, and for an fsync
//! while the writer holds the file — are FICLONE clones, not data copies; and
//! `restore --at` clones from the store object.

mod common;
use common::*;
use std::process::Command;

struct Btrfs {
    root: std::path::PathBuf,
    img: std::path::PathBuf,
    mnt: std::path::PathBuf,
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
        // The test's directory too (the config file, the mount point).
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn in_place_writes_and_fsync_use_reflinks_on_btrfs() {
    if !can_mount() {
        return;
    }
    if !sh("command -v mkfs.btrfs").status.success() {
        skip("btrfs for reflinks: mkfs.btrfs (apt-get install btrfs-progs)");
        return;
    }
    bounded(180, || {
        let root = tmpdir("reflink");
        let fs = Btrfs {
            root: root.clone(),
            img: root.join("btrfs.img"),
            mnt: root.join("btrfs"),
        };
        std::fs::create_dir_all(&fs.mnt).unwrap();
        let ok = sh(&format!(
            "truncate -s 400M {i} && mkfs.btrfs -q -f {i} && mount -o loop {i} {m}",
            i = fs.img.display(),
            m = fs.mnt.display()
        ));
        if !ok.status.success() {
            skip(&format!(
                "btrfs for reflinks: cannot loop-mount it: {}",
                String::from_utf8_lossy(&ok.stderr).trim()
            ));
            return;
        }
        let dir = fs.mnt.join("ckpt");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = r#"{ "autosave": { "settle_ms": 50, "fsync_copy_limit": 0 } }"#;
        let mut m = Mount::over(
            root.clone(),
            dir,
            Opts {
                config: Some(cfg.into()),
                ..Opts::default()
            },
        );
        let size = 16 << 20;
        std::fs::write(m.p("db.bin"), vec![1u8; size]).unwrap();
        wait_for("v1", 10, || versions_of(&m, "db.bin").len() == 1);
        // In-place write: the version sharing the inode gets a clone first.
        sh_ok(&format!(
            "python3 -c \"import os; fd=os.open('{}', os.O_RDWR); os.pwrite(fd, b'\\x02'*4096, 0); os.close(fd)\"",
            m.p("db.bin").display()
        ));
        wait_for("v2", 10, || versions_of(&m, "db.bin").len() == 2);
        // fsync of a big file still open for writing: a clone, not deferred.
        sh_ok(&format!(
            "python3 -c \"import os, time; fd=os.open('{}', os.O_RDWR); os.pwrite(fd, b'\\x03'*4096, 8192); os.fsync(fd); time.sleep(0.5); os.pwrite(fd, b'\\x04'*4096, 8192); os.close(fd)\"",
            m.p("db.bin").display()
        ));
        wait_for("fsync + close versions", 10, || {
            versions_of(&m, "db.bin").len() == 4
        });
        let v = versions_of(&m, "db.bin");
        assert!(v[2].contains("-fsync"), "{v:?}");
        let read = |e: &str| std::fs::read(m.p(".versions/db.bin").join(e)).unwrap();
        assert_eq!(read(&v[0]), vec![1u8; size]);
        assert_eq!(&read(&v[1])[..4096], &[2u8; 4096][..]);
        assert_eq!(&read(&v[2])[8192..8192 + 4096], &[3u8; 4096][..]);
        assert_eq!(&read(&v[3])[8192..8192 + 4096], &[4u8; 4096][..]);
        let s: serde_json::Value =
            serde_json::from_slice(&ckptfs(&["stats", &m.mnt.display().to_string()]).stdout)
                .unwrap();
        assert!(s["stats"]["unshares"].as_u64().unwrap() >= 1, "{s}");
        assert_eq!(s["stats"]["bytes_copied"], 0, "reflinks, not copies: {s}");
        // `restore --at` the first state's instant, onto the same btrfs: the
        // store object is cloned, not read through the mount.
        let t = &v[0][..v[0].find('-').unwrap()];
        let dest = fs.mnt.join("restored.bin");
        let o = ckptfs(&[
            "restore",
            "--at",
            t,
            m.p("db.bin").to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.contains("1 reflinked"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), vec![1u8; size]);
        m.unmount();
    });
}
