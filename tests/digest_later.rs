//! Big versions (8 MiB and more) get their BLAKE3 digest after the saves that
//! made them (`store::digest_later`): the digest is then the content's, saves
//! of equal size are not taken for duplicates before it comes, `verify` is
//! clean, and a crash before it was taken only delays it to the next mount.

mod common;
use common::*;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const CFG: &str = r#"{ "autosave": { "settle_ms": 0 } }"#;

/// The digest `.versions` shows for an entry (`user.ckptfs.digest`).
fn digest_xattr(p: &std::path::Path) -> String {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: a NUL-terminated path and a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"user.ckptfs.digest".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n >= 0, "getxattr {}", p.display());
    String::from_utf8(buf[..n as usize].to_vec()).unwrap()
}

/// A save: O_TRUNC, `mib` MiB of `byte`, fsync, close.
fn save(m: &Mount, name: &str, byte: u8, mib: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(m.p(name)).unwrap();
    f.write_all(&vec![byte; mib * MIB]).unwrap();
    f.sync_all().unwrap();
}

/// Every version of `name` carries the BLAKE3 digest of its content; the
/// contents found, in order.
fn check_digests(m: &Mount, name: &str) -> Vec<u8> {
    let mut firsts = Vec::new();
    for e in versions_of(m, name) {
        let p = m.p(".versions").join(name).join(&e);
        let content = std::fs::read(&p).unwrap();
        assert_eq!(
            digest_xattr(&p),
            blake3::hash(&content).to_hex().to_string(),
            "{name} {e}: the digest is the content's"
        );
        firsts.push(content[0]);
    }
    firsts
}

#[test]
fn a_big_version_gets_its_digest_after_the_saves() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        for opts in modes() {
            let mode = opts.passthrough;
            let mut m = Mount::new(
                "digest-later",
                Opts {
                    config: Some(CFG.into()),
                    ..opts
                },
            );
            // Three saves of one size, each different: none is a duplicate
            // of the one before, although no digest is known at the seal.
            for b in [1u8, 2, 3] {
                save(&m, "model.ckpt", b, 12);
            }
            m.wait_sealed();
            let s = stats(&m);
            assert_eq!(s["digests_pending"], 0, "{mode}: {s}");
            assert!(
                s["stats"]["digests_later"].as_u64().unwrap() >= 3,
                "{mode}: {s}"
            );
            assert_eq!(s["stats"]["duplicates"], 0, "{mode}: {s}");
            let firsts = check_digests(&m, "model.ckpt");
            for b in [1u8, 2, 3] {
                assert!(firsts.contains(&b), "{mode}: save {b} is a version");
            }
            // A small file is digested at its seal, as before.
            std::fs::write(m.p("small.txt"), "small").unwrap();
            m.wait_sealed();
            check_digests(&m, "small.txt");
            verify_clean(&m);
            m.unmount();
        }
    });
}

#[test]
fn a_crash_before_the_digest_leaves_it_to_the_next_mount() {
    if !can_mount() {
        return;
    }
    bounded(180, || {
        let mut m = Mount::new(
            "digest-later-crash",
            Opts {
                config: Some(CFG.into()),
                ..Opts::default()
            },
        );
        save(&m, "model.ckpt", 7, 12);
        // Keep the mount busy (a capture every few ms holds the digest back)
        // until the version is sealed with its digest still to come, then crash.
        let t = Instant::now();
        let mut i = 0;
        loop {
            std::fs::write(m.p(&format!("log{}.txt", i % 8)), format!("{i}")).unwrap();
            i += 1;
            let s = stats(&m);
            if s["digests_pending"].as_u64().unwrap() > 0 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "never pending: {s}");
        }
        m.crash();
        m.mount();
        m.wait_sealed();
        let s = stats(&m);
        assert!(
            s["stats"]["digests_later"].as_u64().unwrap() >= 1,
            "the remount took the digest: {s}"
        );
        assert!(check_digests(&m, "model.ckpt").contains(&7));
        verify_clean(&m);
        m.unmount();
    });
}
