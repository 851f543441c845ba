//! What the in-memory index costs per version, counted by the allocator (the
//! daemon's RSS is that plus its fixed base; `scripts/bench-mount.sh` prints
//! both). Bytes are deterministic, unlike timings, so the budget is asserted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ckptfs::store::Reason;
use ckptfs::store::index::Index;
use ckptfs::store::meta::{
    Digest, Origin, VersionMeta, Writer, intern_kind, intern_origin, intern_writer,
};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn version(path: &str, ino: u64, n: u64) -> VersionMeta {
    let t = 1_795_651_200_000_000_000 + n as i64 * 1_000_000_000;
    VersionMeta {
        path: path.as_bytes().into(),
        number: n,
        sealed_ns: t,
        mtime_ns: t - 1_000_000,
        size: 4096 + n,
        origin: intern_origin(Origin {
            format: 3,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            kind: intern_kind("text", "text/plain", ""),
            writer: Some(intern_writer(Writer {
                pid: 4242,
                command: "python3 train.py".into(),
            })),
            reason: Reason::Close,
            complete: None,
            pinned: false,
            compressed: false,
            digest_pending: false,
        }),
        digest: Digest::of(blake3::hash(format!("{path} {n}").as_bytes())),
        object_ino: ino,
        archived: None,
    }
}

/// Heap bytes per version of an index of `paths` paths × `per` versions
/// (paths shaped like a training run's: `run7/file1234.txt`), built seal by
/// seal or, with `at_once`, loaded as a mount does.
fn bytes_per_version(paths: usize, per: u64, at_once: bool) -> f64 {
    // Warm the interners so they are not counted as the index's.
    drop(version("warm", 1, 1));
    let mut all = Vec::new();
    let before = LIVE.load(Ordering::Relaxed);
    let mut idx = Index::default();
    for i in 0..paths {
        let p = format!("run{}/file{i}.txt", i % 100);
        for n in 1..=per {
            let v = version(&p, (i as u64) << 20 | n, n);
            if at_once {
                all.push(v);
            } else {
                idx.insert(v);
            }
        }
    }
    if at_once {
        idx.insert_many(all);
        idx.loaded();
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(idx.total_versions(), paths * per as usize);
    drop(idx);
    used as f64 / (paths as f64 * per as f64)
}

#[test]
fn a_version_costs_at_most_its_budget_in_the_index() {
    let record = std::mem::size_of::<VersionMeta>();
    let ten = bytes_per_version(20_000, 10, false);
    let one = bytes_per_version(100_000, 1, false);
    let loaded = bytes_per_version(20_000, 10, true);
    eprintln!(
        "index: record {record} B; {ten:.0} B/version at 10 versions a path, \
         {one:.0} at 1, {loaded:.0} at 10 loaded at once"
    );
    // Issue 15's budget is 150 B/version resident; the daemon adds its base
    // and the allocator's overhead (bench-mount.sh: ~145 at a million). Set
    // at the measured 127, 214 and 122 with a 96-byte record.
    assert!(record <= 96, "a record is {record} bytes");
    assert!(ten <= 135.0, "{ten:.0} bytes per version at 10 a path");
    assert!(
        loaded <= 130.0,
        "{loaded:.0} bytes per version loaded at once"
    );
    assert!(one <= 230.0, "{one:.0} bytes per version at 1 a path");
}
