//! What the store holds, summed for `ckptfs du`.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::Store;

/// One row of [`Store::du`].
#[derive(Default, Serialize)]
pub struct DuRow {
    pub versions: u64,
    pub bytes: u64,
    pub on_disk: u64,
    /// Of those, in the archive tier (no local object): versions and bytes.
    pub archived: u64,
    pub archived_bytes: u64,
}

/// What the store holds, by category and by top-level directory (`.` for
/// files at the top of the mount).
#[derive(Default)]
pub struct Du {
    pub categories: BTreeMap<String, DuRow>,
    pub directories: BTreeMap<String, DuRow>,
}

/// Paths summed per hold of the index lock: `du` (and the metrics refresh)
/// stat objects, so the lock is let go between chunks for seals to commit.
const CHUNK: usize = 2048;

impl Store {
    /// Versions and bytes (logical and on disk, each object inode counted
    /// once) per category and per top-level directory.
    pub fn du(&self) -> Du {
        let mut d = Du::default();
        let mut seen = HashSet::new();
        let mut from: Option<crate::store::meta::PathKey> = None;
        loop {
            let idx = self.index.read();
            let range = match &from {
                Some(k) => idx.paths.range::<[u8], _>((
                    std::ops::Bound::Excluded(&k[..]),
                    std::ops::Bound::Unbounded,
                )),
                None => idx.paths.range::<[u8], _>(..),
            };
            let mut last = None;
            for (p, h) in range.take(CHUNK) {
                last = Some(p);
                let top = match p.iter().position(|&b| b == b'/') {
                    Some(k) => String::from_utf8_lossy(&p[..k]).into_owned(),
                    None => ".".to_string(),
                };
                for m in &h.versions {
                    let archived = m.archived.is_some();
                    // An archived version has no local object (its old inode
                    // number may be reused: do not count it as seen).
                    let first = archived || seen.insert(m.object_ino);
                    let bytes = if first { m.size } else { 0 };
                    let disk = if first && !archived {
                        self.object_disk_bytes(m)
                    } else {
                        0
                    };
                    for row in [
                        d.categories.entry(m.category().to_string()).or_default(),
                        d.directories.entry(top.clone()).or_default(),
                    ] {
                        row.versions += 1;
                        row.bytes += bytes;
                        row.on_disk += disk;
                        if archived {
                            row.archived += 1;
                            row.archived_bytes += m.size;
                        }
                    }
                }
            }
            match last {
                Some(p) => from = Some(p.clone()),
                None => return d,
            }
        }
    }
}
