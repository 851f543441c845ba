//! Running ckptfs the way a system does: `mount -t fuse.ckptfs` and an fstab
//! line (`mount -T FSTAB`), through the `mount.fuse.ckptfs` helper name, and
//! the shipped systemd unit's shape.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const HELPER: &str = "/sbin/mount.fuse.ckptfs";

/// The helper symlink for the test's lifetime (only when none was there),
/// and the mount taken down whatever happens.
struct Helper {
    made: bool,
    mnt: PathBuf,
}

impl Drop for Helper {
    fn drop(&mut self) {
        unmount_if_mounted(&self.mnt);
        if self.made {
            let _ = std::fs::remove_file(HELPER);
        }
    }
}

#[test]
fn mount_t_fuse_ckptfs_and_an_fstab_line_mount_it() {
    if !can_mount() {
        return;
    }
    if !sh("command -v mount && mount -V").status.success() {
        skip("util-linux mount(8)");
        return;
    }
    bounded(90, || {
        let root = tmpdir("service");
        let dir = root.join("ckpt");
        std::fs::create_dir(&dir).unwrap();
        let cfg = root.join("cfg.json");
        std::fs::write(&cfg, FAST).unwrap();
        let made = match std::fs::read_link(HELPER) {
            Ok(t) if t == Path::new(BIN) => false,
            Ok(t) => {
                skip(&format!("{HELPER} exists and points at {}", t.display()));
                return;
            }
            Err(_) => {
                std::os::unix::fs::symlink(BIN, HELPER).unwrap();
                true
            }
        };
        let _h = Helper {
            made,
            mnt: dir.clone(),
        };
        let d = dir.display();
        let c = cfg.display();
        // mount(8) runs /sbin/mount.fuse.ckptfs SOURCE DIR -o OPTIONS.
        sh_ok(&format!(
            "mount -t fuse.ckptfs {d} {d} -o config={c},nofail"
        ));
        assert!(is_mounted(&dir));
        std::fs::write(dir.join("a.txt"), "one").unwrap();
        std::fs::write(dir.join("a.txt"), "two").unwrap();
        wait_for("a version of a.txt", 10, || {
            std::fs::read_dir(dir.join(".versions/a.txt")).is_ok_and(|r| r.count() >= 2)
        });
        sh_ok(&format!("{BIN} umount {d}"));
        assert!(!is_mounted(&dir));
        // The same through an fstab line.
        let fstab = root.join("fstab");
        std::fs::write(
            &fstab,
            format!("# test fstab\n{d} {d} fuse.ckptfs defaults,config={c},nofail,x-test 0 0\n"),
        )
        .unwrap();
        sh_ok(&format!("mount -T {} {d}", fstab.display()));
        assert!(is_mounted(&dir));
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");
        // An option that would be silently untrue is refused, nothing mounted.
        sh_ok(&format!("{BIN} umount {d}"));
        let o = sh(&format!("mount -t fuse.ckptfs {d} {d} -o ro"));
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("-o ro"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!is_mounted(&dir));
        drop(_h);
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn the_systemd_unit_waits_for_the_mount_and_stops_with_a_sealing_umount() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/ckptfs@.service"
    ))
    .unwrap();
    let line = |k: &str| {
        unit.lines()
            .find(|l| l.starts_with(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in the unit"))
            .to_string()
    };
    // `ckptfs mount` forks once the mount is ready; stop seals first.
    assert_eq!(line("Type"), "Type=forking");
    assert!(line("ExecStart").contains("ckptfs mount \"%f\""));
    assert!(line("ExecStop").contains("ckptfs umount \"%f\""));
    // The stop timeout covers the umount's own.
    let t: u64 = line("TimeoutStopSec")["TimeoutStopSec=".len()..]
        .parse()
        .unwrap();
    assert!(t > 600);
    if sh("command -v systemd-analyze").status.success() {
        let o = sh(&format!(
            "systemd-analyze verify --man=no {}/contrib/systemd/ckptfs@.service",
            env!("CARGO_MANIFEST_DIR")
        ));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("Unknown key") && !err.contains("Invalid"),
            "{err}"
        );
    }
}
