//! `ckptfs verify` catches a damaged store and `verify --repair` mends it: each
//! kind of damage is made on purpose, must give exit 3 with the path and the
//! problem named, and after the repair `verify` passes with every healthy
//! version still there.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Versions made through a real mount, then unmounted: a.bin v1..v3 (binary,
/// v1 and v2 held by the store alone), notes.txt v1..v2 (text, v1 compressed).
struct Made {
    m: Mount,
}

impl Made {
    fn new(tag: &str) -> Made {
        let cfg = r#"{ "autosave": { "settle_ms": 50 },
                       "compression": { "compress_after": "0s" } }"#;
        let mut m = Mount::new(
            tag,
            Opts {
                config: Some(cfg.into()),
                mountpoint: true,
                ..Opts::default()
            },
        );
        for i in 1..=3u8 {
            std::fs::write(m.p("a.bin"), vec![i; 100_000]).unwrap();
            wait_for("a.bin sealed", 30, || {
                versions_of(&m, "a.bin").len() == i as usize
            });
        }
        for i in 1..=2 {
            let t: String = (0..5000)
                .map(|k| format!("line {k} of save {i}\n"))
                .collect();
            std::fs::write(m.p("notes.txt"), t).unwrap();
            wait_for("notes sealed", 30, || {
                versions_of(&m, "notes.txt").len() == i
            });
        }
        wait_for("notes v1 compressed", 30, || {
            !find(&m.store(), "v000001.data.zst").is_empty()
        });
        m.unmount();
        Made { m }
    }

    fn store(&self) -> PathBuf {
        self.m.store()
    }

    /// The one object or record of `path` vN named `file` (v000001.data, …).
    fn file_of(&self, path: &str, file: &str) -> PathBuf {
        let h = md5_hex(path);
        let hits: Vec<PathBuf> = find(&self.store(), file)
            .into_iter()
            .filter(|p| p.parent().unwrap().ends_with(&h))
            .collect();
        assert_eq!(hits.len(), 1, "{path} {file}: {hits:?}");
        hits[0].clone()
    }

    /// `ckptfs verify [--repair]` on the unmounted backing directory.
    fn verify(&self, repair: bool) -> (i32, String) {
        let dir = self.m.dir.display().to_string();
        let o = if repair {
            ckptfs(&["verify", "--repair", &dir])
        } else {
            ckptfs(&["verify", &dir])
        };
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code().unwrap_or(-1), out)
    }

    /// Damage found, named, repaired; then every other version still reads back.
    #[track_caller]
    fn caught_and_repaired(&mut self, want: &[&str], gone: &[(&str, usize)]) {
        let (rc, out) = self.verify(false);
        assert_eq!(rc, 3, "verify must fail: {out}");
        for w in want {
            assert!(out.contains(w), "verify output names {w:?}: {out}");
        }
        let (rc, out) = self.verify(true);
        assert_eq!(rc, 0, "repair leaves a consistent store: {out}");
        assert!(out.contains("repaired: "), "{out}");
        assert!(
            self.store().join("damaged").is_dir(),
            "quarantined, not deleted"
        );
        let (rc, out) = self.verify(false);
        assert_eq!(rc, 0, "{out}");
        // Mount again: the healthy versions are all there with their bytes.
        self.m.mount();
        let a = versions_of(&self.m, "a.bin");
        let n = versions_of(&self.m, "notes.txt");
        let lost = |p: &str| gone.iter().find(|(g, _)| *g == p).map_or(0, |(_, k)| *k);
        assert_eq!(a.len(), 3 - lost("a.bin"), "{a:?}");
        assert_eq!(n.len(), 2 - lost("notes.txt"), "{n:?}");
        for e in &a {
            let b = std::fs::read(self.m.p(".versions/a.bin").join(e)).unwrap();
            let k: u8 = e[24..30].parse().unwrap();
            assert_eq!(b, vec![k; 100_000], "{e}");
        }
        for e in &n {
            let b = std::fs::read_to_string(self.m.p(".versions/notes.txt").join(e)).unwrap();
            assert!(b.starts_with("line 0 of save"), "{e}");
        }
        let o = ckptfs(&["verify", &self.m.mnt.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        self.m.unmount();
    }
}

fn find(root: &Path, name: &str) -> Vec<PathBuf> {
    let out = sh_ok(&format!("find {} -name '{name}'", root.display()));
    out.lines().map(PathBuf::from).collect()
}

fn md5_hex(s: &str) -> String {
    let out = sh_ok(&format!("printf %s '{s}' | md5sum"));
    out.split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_flipped_byte_in_an_object() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vflip");
        let obj = s.file_of("a.bin", "v000001.data");
        let mut b = std::fs::read(&obj).unwrap();
        b[5000] ^= 0x40;
        std::fs::write(&obj, b).unwrap();
        s.caught_and_repaired(&["a.bin v1: damaged", "digest"], &[("a.bin", 1)]);
    });
}

#[test]
fn a_deleted_object() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vdel");
        std::fs::remove_file(s.file_of("a.bin", "v000002.data")).unwrap();
        s.caught_and_repaired(&["a.bin v2: object", "is missing"], &[("a.bin", 1)]);
    });
}

#[test]
fn an_orphan_object() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vorphan");
        let dir = s.file_of("a.bin", "v000001.data");
        let orphan = dir.with_file_name("v000077.data");
        std::fs::write(&orphan, b"who am I").unwrap();
        s.caught_and_repaired(&["v000077.data: object without metadata"], &[]);
    });
}

#[test]
fn a_damaged_metadata_record() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vmeta");
        let rec = s.file_of("a.bin", "v000002.json");
        std::fs::write(&rec, b"{ \"format\": 1, \"number\": ").unwrap();
        s.caught_and_repaired(
            &["v000002.json", "unreadable metadata record"],
            &[("a.bin", 1)],
        );
    });
}

#[test]
fn a_damaged_compressed_version() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vzst");
        let obj = s.file_of("notes.txt", "v000001.data.zst");
        let mut b = std::fs::read(&obj).unwrap();
        let k = b.len() / 2;
        b[k] ^= 0xff;
        std::fs::write(&obj, b).unwrap();
        s.caught_and_repaired(&["notes.txt v1: damaged"], &[("notes.txt", 1)]);
    });
}

#[test]
fn an_index_that_disagrees_with_the_store() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut s = Made::new("vindex");
        // Mounted elsewhere, so the store stays reachable beside the mount; a
        // record removed behind the daemon's back leaves its index stale.
        s.m.mount();
        let rec = s.file_of("a.bin", "v000001.json");
        std::fs::remove_file(&rec).unwrap();
        let mnt = s.m.mnt.display().to_string();
        let o = ckptfs(&["verify", &mnt]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(
            out.contains("a.bin v1: in the index, but the store holds no such metadata"),
            "{out}"
        );
        // Repaired through the running daemon: its index is rebuilt.
        let o = ckptfs(&["verify", "--repair", &mnt]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let o = ckptfs(&["verify", &mnt]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let v = versions_of(&s.m, "a.bin");
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v[0].contains("-000002-") && v[1].contains("-000003-"),
            "{v:?}"
        );
        s.m.unmount();
    });
}
