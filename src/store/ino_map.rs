//! Object inode → the path whose versions have it as their object, sized for
//! millions of entries. What a mount loads is kept as a sorted vector, 16
//! bytes an entry; what changes after, in a hash map. A hash table alone costs
//! up to 2.3× its entries (load at most 7/8, sizes powers of two): 35 bytes a
//! version at a million, a quarter of the whole index.

use std::collections::HashMap;

use super::meta::PathKey;

#[derive(Default)]
pub struct InoMap {
    /// Sorted by inode, each once; `None` where an entry was removed since.
    frozen: Vec<(u64, Option<PathKey>)>,
    removed: usize,
    recent: HashMap<u64, PathKey, InoHash>,
}

impl InoMap {
    fn slot(&self, ino: u64) -> Option<usize> {
        self.frozen.binary_search_by_key(&ino, |e| e.0).ok()
    }

    pub fn get(&self, ino: u64) -> Option<&PathKey> {
        match self.recent.get(&ino) {
            Some(p) => Some(p),
            None => self.slot(ino).and_then(|i| self.frozen[i].1.as_ref()),
        }
    }

    #[cfg(test)]
    pub fn contains(&self, ino: u64) -> bool {
        self.get(ino).is_some()
    }

    /// Set `ino`'s path, replacing any.
    pub fn insert(&mut self, ino: u64, p: PathKey) {
        match self.slot(ino) {
            Some(i) => {
                if self.frozen[i].1.replace(p).is_none() {
                    self.removed -= 1;
                }
            }
            None => {
                self.recent.insert(ino, p);
                // Amortized: a compaction sorts everything, so it waits
                // until the map has grown by half.
                if self.recent.len() > 4096 + self.frozen.len() / 2 {
                    self.compact();
                }
            }
        }
    }

    pub fn remove(&mut self, ino: u64) -> Option<PathKey> {
        if let Some(p) = self.recent.remove(&ino) {
            return Some(p);
        }
        let i = self.slot(ino)?;
        let p = self.frozen[i].1.take()?;
        self.removed += 1;
        if self.removed * 2 > self.frozen.len() {
            self.compact();
        }
        Some(p)
    }

    pub fn len(&self) -> usize {
        self.frozen.len() - self.removed + self.recent.len()
    }

    /// Everything into one sorted vector of its exact size (after a load,
    /// and when the map or the removals have grown by half).
    pub fn compact(&mut self) {
        let mut all = Vec::with_capacity(self.len());
        all.extend(self.frozen.drain(..).filter(|e| e.1.is_some()));
        all.extend(self.recent.drain().map(|(i, p)| (i, Some(p))));
        all.sort_unstable_by_key(|e| e.0);
        self.frozen = all;
        self.removed = 0;
        self.recent = HashMap::default();
    }
}

/// Hashing inode numbers: a multiply and a rotation (as rustc's FxHash), not
/// SipHash. Nobody outside chooses them, and the map holds one per version.
#[derive(Clone, Copy, Default)]
pub struct InoHash;

impl std::hash::BuildHasher for InoHash {
    type Hasher = InoHasher;
    fn build_hasher(&self) -> InoHasher {
        InoHasher(0)
    }
}

pub struct InoHasher(u64);

impl std::hash::Hasher for InoHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_replaced_and_removed_across_compactions() {
        let mut m = InoMap::default();
        let p = |s: &str| PathKey::from(s);
        for i in 0..10_000u64 {
            m.insert(i * 3, p(&format!("f{i}")));
        }
        m.compact();
        assert_eq!((m.len(), m.recent.len()), (10_000, 0));
        assert_eq!(m.get(300).map(|k| &k[..]), Some(&b"f100"[..]));
        assert!(m.get(301).is_none());
        // Replace a loaded entry, remove one, add one, then reuse the removed slot.
        m.insert(300, p("g"));
        assert_eq!(m.remove(303).map(|k| k.to_vec()), Some(b"f101".to_vec()));
        assert!(m.remove(303).is_none() && !m.contains(303));
        m.insert(301, p("new"));
        assert_eq!(m.len(), 10_000);
        m.insert(303, p("back"));
        assert_eq!(m.len(), 10_001);
        let before: Vec<_> = (0..30_010).map(|i| m.get(i).map(|k| k.to_vec())).collect();
        m.compact();
        let after: Vec<_> = (0..30_010).map(|i| m.get(i).map(|k| k.to_vec())).collect();
        assert_eq!(before, after);
        assert_eq!(m.get(300).map(|k| &k[..]), Some(&b"g"[..]));
        // Removing most of it compacts on the way, and finds the rest still.
        for i in 0..9_000u64 {
            m.remove(i * 3);
        }
        assert!(m.frozen.len() < 10_000, "compacted");
        assert_eq!(m.len(), 1_001);
        assert_eq!(m.get(301).map(|k| &k[..]), Some(&b"new"[..]));
        assert_eq!(m.get(9_000 * 3).map(|k| &k[..]), Some(&b"f9000"[..]));
    }
}
