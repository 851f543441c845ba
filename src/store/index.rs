//! The in-memory index: every retained version by path, built at mount by
//! scanning the per-version metadata files (they are the truth).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::ino_map::InoMap;
use super::layout::{self, OBJECTS};
use super::meta::{PathKey, VersionMeta};
use crate::sys;

#[derive(Default, Clone, Debug)]
pub struct PathHist {
    /// Retained versions, ascending by number.
    pub versions: Vec<VersionMeta>,
}

impl PathHist {
    pub fn latest(&self) -> Option<&VersionMeta> {
        self.versions.last()
    }
    pub fn get(&self, n: u64) -> Option<&VersionMeta> {
        self.versions
            .binary_search_by_key(&n, |v| v.number)
            .ok()
            .map(|i| &self.versions[i])
    }
    pub fn next_number(&self) -> u64 {
        self.versions.last().map(|v| v.number + 1).unwrap_or(1)
    }

    /// Insert keeping the order. Grows by an eighth, not by doubling (a
    /// first version would reserve four): most paths keep few versions and
    /// the index holds millions.
    /// Returns the version it replaced (same number), if any.
    fn put(&mut self, m: VersionMeta) -> Option<VersionMeta> {
        match self.versions.binary_search_by_key(&m.number, |v| v.number) {
            Ok(i) => Some(std::mem::replace(&mut self.versions[i], m)),
            Err(i) => {
                if self.versions.len() == self.versions.capacity() {
                    self.versions.reserve_exact(1 + self.versions.len() / 8);
                }
                self.versions.insert(i, m);
                None
            }
        }
    }
}

#[derive(Default)]
pub struct Index {
    /// Path → its versions. Keys are shared with the records (`VersionMeta::path`).
    pub paths: BTreeMap<PathKey, PathHist>,
    /// Object inode → the path whose versions have it as their object: finds
    /// the versions sharing a live file's inode (which of the path's versions,
    /// by their `object_ino`). One path per inode almost always; the others,
    /// after a rename, in `by_ino_more`. 16 bytes an entry after a load, not
    /// a list each.
    by_ino: InoMap,
    by_ino_more: HashMap<u64, Vec<PathKey>>,
    /// How many versions are on an inode, for the inodes with more than one
    /// (an appended log's): `sharing_count` answers every getattr of a live
    /// file that shares its inode, so it must not scan a history.
    ino_versions: HashMap<u64, u32>,
    /// Problems met while scanning (unreadable or foreign metadata).
    pub problems: Vec<String>,
    /// The number of a path's newest version when space pressure evicted it, so
    /// the next version of that path does not reuse the number while this daemon
    /// runs (views cache entries by number). Dropped once the path has a newer one.
    evicted_newest: HashMap<Vec<u8>, u64>,
    /// Deletes and renames with their times (the journal), for the
    /// point-in-time view. Not in the snapshot: the journal is its own file.
    pub journal: super::journal::Journal,
    /// Long histories that retention has settled (every version kept by the
    /// rules), so the next decision can be incremental (`policy::after_append`).
    /// Only in memory: a mount decides each history in full once.
    marks: HashMap<PathKey, Settled>,
    /// Moves on every change that can unsettle a history (an unpin, a version
    /// inserted below the newest). A mark is set only if it did not move while
    /// its decision ran: the decision reads under one lock and marks under another.
    unsettled: u64,
    /// Moves on every version inserted, removed or moved off an inode: what
    /// space pressure could evict may have changed (`Store::evict_for_space`).
    changes: u64,
}

/// What retention settled for one path: its newest version then, under which rules.
#[derive(Clone, Debug)]
pub struct Settled {
    pub newest: u64,
    pub rules: crate::policy::Rules,
}

impl Index {
    pub fn insert(&mut self, mut m: VersionMeta) {
        self.changes += 1;
        if self
            .evicted_newest
            .get(&m.path[..])
            .is_some_and(|&n| n <= m.number)
        {
            self.evicted_newest.remove(&m.path[..]);
        }
        // One allocation per path, shared by its versions and the inode map.
        let h = match self.paths.get_key_value(&m.path[..]) {
            Some((k, _)) => {
                m.path = k.clone();
                self.paths.get_mut(&m.path[..]).expect("just found")
            }
            None => {
                // A fresh allocation, made by this thread: records parsed on the
                // scan threads are then all freed, and their arenas with them.
                m.path = PathKey::from(&m.path[..]);
                self.paths.entry(m.path.clone()).or_default()
            }
        };
        let (ino, path) = (m.object_ino, m.path.clone());
        // Retention's marks: an unpin, or a version slipped in below the newest
        // (archive adoption), unsettles the history; a record rewritten in
        // place (pin, compression, archiving) does not.
        let unsettles = match h.get(m.number) {
            Some(old) => old.pinned() && !m.pinned(),
            None => h.latest().is_some_and(|l| m.number < l.number),
        };
        let h = if unsettles {
            self.unsettle(&path);
            self.paths.get_mut(&path[..]).expect("just found")
        } else {
            h
        };
        match h.put(m) {
            Some(old) if old.object_ino == ino => {}
            Some(old) => {
                let still = h.versions.iter().any(|v| v.object_ino == old.object_ino);
                self.version_left(old.object_ino, &path, still);
                self.list_ino(ino, path);
            }
            None => self.list_ino(ino, path),
        }
    }

    /// A version of `relpath` on inode `ino` is gone; `still` says whether
    /// another version of that path is on it.
    fn version_left(&mut self, ino: u64, relpath: &[u8], still: bool) {
        if let Some(n) = self.ino_versions.get_mut(&ino) {
            *n -= 1;
            if *n <= 1 {
                self.ino_versions.remove(&ino);
            }
        }
        if !still {
            self.unlist(ino, relpath);
        }
    }

    /// `path` has one more version on inode `ino`.
    fn list_ino(&mut self, ino: u64, path: PathKey) {
        let Some(first) = self.by_ino.get(ino) else {
            self.by_ino.insert(ino, path);
            return;
        };
        let other = *first != path;
        *self.ino_versions.entry(ino).or_insert(1) += 1;
        if other {
            let more = self.by_ino_more.entry(ino).or_default();
            if !more.contains(&path) {
                more.push(path);
            }
        }
    }

    /// Done loading: the inode map into its compact form.
    pub fn loaded(&mut self) {
        self.by_ino.compact();
    }

    /// Insert many versions at once (a mount's load): each new path's vector
    /// is allocated once at its size, so the index is not left with the holes
    /// of growing it version by version, and a path is looked up once, not
    /// once per version.
    pub fn insert_many(&mut self, mut ms: Vec<VersionMeta>) {
        ms.sort_unstable_by(|a, b| (&a.path, a.number).cmp(&(&b.path, b.number)));
        let mut runs = Vec::new();
        let mut i = 0;
        while i < ms.len() {
            let n = ms[i..].iter().take_while(|m| m.path == ms[i].path).count();
            runs.push(n);
            i += n;
        }
        let mut it = ms.into_iter();
        for n in runs {
            self.insert_path(it.by_ref().take(n).collect());
        }
    }

    /// Insert the versions of one path, in ascending numbers (a load); the
    /// path is looked up once and its vector allocated at its size.
    pub fn insert_path(&mut self, run: Vec<VersionMeta>) {
        let Some(first) = run.first() else { return };
        self.changes += 1;
        let sorted = run.windows(2).all(|w| w[0].number < w[1].number);
        if !sorted || self.paths.contains_key(&first.path[..]) {
            run.into_iter().for_each(|m| self.insert(m));
            return;
        }
        // The loaded path itself (shared by a scan's versions of one path).
        let key = first.path.clone();
        let mut versions: Vec<VersionMeta> = Vec::with_capacity(run.len());
        for mut m in run {
            m.path = key.clone();
            self.list_ino(m.object_ino, key.clone());
            versions.push(m);
        }
        let newest = versions.last().map_or(0, |v| v.number);
        if self
            .evicted_newest
            .get(&key[..])
            .is_some_and(|&e| e <= newest)
        {
            self.evicted_newest.remove(&key[..]);
        }
        self.paths.insert(key, PathHist { versions });
    }

    pub fn remove(&mut self, relpath: &[u8], number: u64) -> Option<VersionMeta> {
        self.changes += 1;
        let h = self.paths.get_mut(relpath)?;
        let i = h
            .versions
            .binary_search_by_key(&number, |v| v.number)
            .ok()?;
        let m = h.versions.remove(i);
        // A removal keeps a settled history settled (`policy::incremental`).
        if i == h.versions.len() {
            let e = self.evicted_newest.entry(relpath.to_vec()).or_default();
            *e = (*e).max(number);
        }
        // The path leaves the inode's list when no version of it is left on
        // that inode (appended logs keep several on one).
        let still = h.versions.iter().any(|v| v.object_ino == m.object_ino);
        if h.versions.is_empty() {
            self.paths.remove(relpath);
            self.marks.remove(relpath);
        } else if h.versions.capacity() > h.versions.len() * 2 {
            h.versions.shrink_to_fit();
        }
        self.version_left(m.object_ino, relpath, still);
        Some(m)
    }

    /// `relpath` no longer has a version on inode `ino`.
    fn unlist(&mut self, ino: u64, relpath: &[u8]) {
        if let Some(more) = self.by_ino_more.get_mut(&ino) {
            more.retain(|p| &p[..] != relpath);
            if self.by_ino.get(ino).is_some_and(|p| &p[..] == relpath) {
                match more.pop() {
                    Some(p) => self.by_ino.insert(ino, p),
                    None => {
                        self.by_ino.remove(ino);
                    }
                }
            }
            if more.is_empty() {
                self.by_ino_more.remove(&ino);
            }
        } else if self.by_ino.get(ino).is_some_and(|p| &p[..] == relpath) {
            self.by_ino.remove(ino);
        }
    }

    /// The paths with a version on inode `ino`.
    fn paths_on(&self, ino: u64) -> impl Iterator<Item = &PathKey> {
        self.by_ino
            .get(ino)
            .into_iter()
            .chain(self.by_ino_more.get(&ino).into_iter().flatten())
    }

    /// The versions (path, number) whose object is inode `ino`.
    pub fn sharing(&self, ino: u64) -> Vec<(PathKey, u64)> {
        let mut out = Vec::new();
        for p in self.paths_on(ino) {
            if let Some(h) = self.paths.get(&p[..]) {
                out.extend(
                    h.versions
                        .iter()
                        .filter(|v| v.object_ino == ino)
                        .map(|v| (p.clone(), v.number)),
                );
            }
        }
        out
    }

    /// How many versions' object is inode `ino`.
    pub fn sharing_count(&self, ino: u64) -> usize {
        match self.by_ino.get(ino) {
            None => 0,
            Some(_) => self.ino_versions.get(&ino).map_or(1, |&n| n as usize),
        }
    }

    /// No version's object is inode `ino` any more (it was unshared).
    pub fn forget_ino(&mut self, ino: u64) {
        self.changes += 1;
        self.by_ino.remove(ino);
        self.by_ino_more.remove(&ino);
        self.ino_versions.remove(&ino);
    }

    /// Every path with its versions, in path order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &PathHist)> {
        self.paths.iter().map(|(k, h)| (&k[..], h))
    }

    /// Paths from `from` on, in order.
    pub fn range_from<'a>(
        &'a self,
        from: &[u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a PathHist)> + 'a {
        self.paths
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            .map(|(k, h)| (&k[..], h))
    }

    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    /// Take `fresh`'s versions (a rescan), keeping what this index remembers of
    /// evicted numbers.
    pub fn replace_with(&mut self, fresh: Index) {
        let evicted = std::mem::take(&mut self.evicted_newest);
        let journal = std::mem::take(&mut self.journal);
        let unsettled = self.unsettled + 1;
        let changes = self.changes + 1;
        *self = fresh;
        self.evicted_newest = evicted;
        self.journal = journal;
        self.unsettled = unsettled;
        self.changes = changes;
    }

    /// A count that moves whenever the versions change.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// `relpath`'s history may no longer be settled.
    fn unsettle(&mut self, relpath: &[u8]) {
        self.marks.remove(relpath);
        self.unsettled += 1;
    }

    /// What retention last settled for `relpath`.
    pub fn settled(&self, relpath: &[u8]) -> Option<&Settled> {
        self.marks.get(relpath)
    }

    /// The count of unsettling changes, read with a decision.
    pub fn unsettled_count(&self) -> u64 {
        self.unsettled
    }

    /// Retention settled `relpath` as `s`, by a decision that read the index
    /// when [`Index::unsettled_count`] was `seen`. Refused (returns false)
    /// when something unsettled a history since, or the path is gone.
    pub fn settle(&mut self, relpath: &[u8], s: Settled, seen: u64) -> bool {
        if self.unsettled != seen {
            return false;
        }
        let Some((key, _)) = self.paths.get_key_value(relpath) else {
            return false;
        };
        self.marks.insert(key.clone(), s);
        true
    }

    /// The number the next version of `relpath` gets: numbers only grow.
    pub fn next_number(&self, relpath: &[u8]) -> u64 {
        let after_evicted = self.evicted_newest.get(relpath).map_or(1, |n| n + 1);
        self.get(relpath)
            .map_or(1, |h| h.next_number())
            .max(after_evicted)
    }

    pub fn get(&self, relpath: &[u8]) -> Option<&PathHist> {
        self.paths.get(relpath)
    }

    pub fn total_versions(&self) -> usize {
        self.paths.values().map(|h| h.versions.len()).sum()
    }

    /// Immediate children names of directory `dir` ("" = root) among versioned paths.
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix: Vec<u8> = if dir.is_empty() {
            Vec::new()
        } else {
            let mut p = dir.to_vec();
            p.push(b'/');
            p
        };
        let mut out = std::collections::BTreeSet::new();
        let mut it = self.range_from(&prefix);
        while let Some((k, _)) = it.next() {
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            match rest.iter().position(|&b| b == b'/') {
                None => {
                    if !rest.is_empty() {
                        out.insert(rest.to_vec());
                    }
                }
                Some(i) => {
                    let comp = &rest[..i];
                    out.insert(comp.to_vec());
                    // Skip the rest of this child's subtree quickly.
                    let mut next = prefix.clone();
                    next.extend_from_slice(comp);
                    next.push(b'/' + 1);
                    it = self.range_from(&next);
                }
            }
        }
        out.into_iter().collect()
    }

    /// Is `dir` a directory in the history view (some versioned path below it)?
    pub fn is_dir(&self, dir: &[u8]) -> bool {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        self.range_from(&prefix)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

fn list(dir: BorrowedFd<'_>, name: &str) -> io::Result<(std::os::fd::OwnedFd, Vec<String>)> {
    let c = CString::new(name).map_err(io::Error::other)?;
    let fd = sys::openat(dir, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let dup = fd.try_clone()?;
    let names = sys::read_dir_fd(dup)?
        .into_iter()
        .map(|(n, _, _)| String::from_utf8_lossy(&n).into_owned())
        .collect();
    Ok((fd, names))
}

/// Rebuild the index by scanning `objects/<category>/<xx>/<md5>/v*.json`.
/// With `adopt`, a version whose object was published but whose (already
/// durable) metadata was still under its temp name when the daemon died is
/// completed; only the mounting daemon does that.
pub fn scan(store: BorrowedFd<'_>) -> io::Result<Index> {
    scan_with(store, false)
}

pub fn scan_with(store: BorrowedFd<'_>, adopt: bool) -> io::Result<Index> {
    let (objects, cats) = match list(store, OBJECTS) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Index::default()),
        Err(e) => return Err(e),
    };
    // Shard directories are independent: read them in parallel (a cold scan is
    // bound by I/O latency, not CPU).
    let mut shards = Vec::new();
    for cat in &cats {
        let (cfd, names) = list(objects.as_fd(), cat)?;
        let cfd = std::sync::Arc::new(cfd);
        for shard in names {
            shards.push((cat.clone(), cfd.clone(), shard));
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Found = (Vec<VersionMeta>, Vec<String>, Option<io::Error>);
    let results: Vec<Found> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    let (mut metas, mut problems, mut fatal) = (Vec::new(), Vec::new(), None);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((cat, cfd, shard)) = shards.get(i) else {
                            break;
                        };
                        if let Err(e) =
                            scan_shard(cat, cfd, shard, adopt, &mut metas, &mut problems)
                        {
                            fatal = Some(e);
                            break;
                        }
                    }
                    (metas, problems, fatal)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("scan thread"))
            .collect()
    });
    let mut idx = Index::default();
    let mut all = Vec::new();
    for (metas, problems, fatal) in results {
        if let Some(e) = fatal {
            return Err(e);
        }
        all.extend(metas);
        idx.problems.extend(problems);
    }
    idx.insert_many(all);
    Ok(idx)
}

fn scan_shard(
    cat: &str,
    cfd: &std::os::fd::OwnedFd,
    shard: &str,
    adopt: bool,
    metas: &mut Vec<VersionMeta>,
    problems: &mut Vec<String>,
) -> io::Result<()> {
    let (sfd, hashes) = list(cfd.as_fd(), shard)?;
    for h in hashes {
        let (hfd, mut files) = list(sfd.as_fd(), &h)?;
        if adopt {
            adopt_temps(hfd.as_fd(), &mut files);
        }
        for f in files {
            if layout::parse_meta_name(&f).is_none() {
                continue;
            }
            let where_ = format!("{OBJECTS}/{cat}/{shard}/{h}/{f}");
            match super::meta::read_at(hfd.as_fd(), &f).and_then(|b| VersionMeta::parse(&b)) {
                Ok(mut m) => {
                    // The versions in one directory are one path's: share its
                    // bytes, so what this thread allocated per version is freed
                    // at once and reused, not left in its arena for good.
                    if let Some(l) = metas.last()
                        && l.path == m.path
                    {
                        m.path = l.path.clone();
                    }
                    metas.push(m)
                }
                Err(e) if e.to_string().contains("newer ckptfs") => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{where_}: {e}"),
                    ));
                }
                Err(e) => problems.push(format!("{where_}: {e}")),
            }
        }
    }
    Ok(())
}

/// `.vN.json.tmp` + `vN.data` without `vN.json`: publish the metadata.
fn adopt_temps(dir: BorrowedFd<'_>, files: &mut Vec<String>) {
    let temps: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with(".v") && f.ends_with(".json.tmp"))
        .cloned()
        .collect();
    for t in temps {
        let fin = t[1..t.len() - 4].to_string();
        let data = fin.replace(".json", ".data");
        let c = |s: &str| CString::new(s).unwrap_or_default();
        if files.contains(&fin) || !files.iter().any(|f| f.starts_with(&data)) {
            let _ = sys::unlinkat(dir, &c(&t), 0);
            continue;
        }
        let ok = super::meta::read_at(dir, &t)
            .ok()
            .and_then(|b| VersionMeta::parse(&b).ok())
            .is_some();
        if ok && sys::renameat2(dir, &c(&t), dir, &c(&fin), 0).is_ok() {
            log::info!("completed interrupted seal {fin}");
            files.push(fin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: u64) -> VersionMeta {
        VersionMeta::sample(p, n)
    }

    /// What unsettles a history, and what does not (`policy::incremental`).
    #[test]
    fn marks_follow_what_unsettles_a_history() {
        let rules = crate::config::Retention::default().rules().unwrap();
        let mark = |newest| Settled {
            newest,
            rules: rules.clone(),
        };
        let mut i = Index::default();
        for n in [1, 2, 4] {
            i.insert(m("f", n));
        }
        assert!(i.settle(b"f", mark(4), i.unsettled_count()));
        // A record rewritten in place (a pin, compression) and a removal keep it.
        let mut p = m("f", 2);
        p.set_origin(|o| o.pinned = true);
        i.insert(p.clone());
        i.remove(b"f", 4);
        i.insert(m("f", 5));
        assert_eq!(i.settled(b"f").map(|s| s.newest), Some(4));
        // A version below the newest does not.
        i.insert(m("f", 3));
        assert!(i.settled(b"f").is_none());
        assert!(i.settle(b"f", mark(5), i.unsettled_count()));
        // Nor does an unpin.
        p.set_origin(|o| o.pinned = false);
        i.insert(p);
        assert!(i.settled(b"f").is_none());
        // A decision that read the index before an unsettling change may not mark.
        let seen = i.unsettled_count();
        i.insert(m("g", 2));
        i.insert(m("g", 1));
        assert!(!i.settle(b"f", mark(5), seen));
        assert!(i.settled(b"f").is_none());
        // The path gone, its mark goes.
        assert!(i.settle(b"f", mark(5), i.unsettled_count()));
        for n in [1, 2, 3, 5] {
            i.remove(b"f", n);
        }
        assert!(i.settled(b"f").is_none() && i.marks.is_empty());
    }

    #[test]
    fn children_lists_each_component_once() {
        let mut i = Index::default();
        for p in ["a", "b/x", "b/y", "b/c/z", "b.txt", "c"] {
            i.insert(m(p, 1));
        }
        assert_eq!(
            i.children(b""),
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"b.txt".to_vec(),
                b"c".to_vec()
            ]
        );
        assert_eq!(
            i.children(b"b"),
            vec![b"c".to_vec(), b"x".to_vec(), b"y".to_vec()]
        );
        assert!(i.is_dir(b"b") && !i.is_dir(b"a"));
    }

    #[test]
    fn insert_remove_keep_order_and_ino_map() {
        let mut i = Index::default();
        i.insert(m("f", 2));
        i.insert(m("f", 1));
        assert_eq!(
            i.get(b"f")
                .unwrap()
                .versions
                .iter()
                .map(|v| v.number)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(i.get(b"f").unwrap().next_number(), 3);
        i.remove(b"f", 1);
        assert!(!i.by_ino.contains(1));
        i.remove(b"f", 2);
        assert!(i.get(b"f").is_none());
    }

    #[test]
    fn versions_on_one_inode_are_found_across_paths_until_the_last_goes() {
        let mut i = Index::default();
        let on = |p: &str, n: u64, ino: u64| {
            let mut v = m(p, n);
            v.object_ino = ino;
            v
        };
        // An appended log: two versions on one inode; then renamed to g.
        i.insert(on("f", 1, 7));
        i.insert(on("f", 2, 7));
        i.insert(on("g", 1, 7));
        i.insert(on("h", 1, 8));
        let mut s = i.sharing(7);
        s.sort();
        let s: Vec<(&[u8], u64)> = s.iter().map(|(p, n)| (&p[..], *n)).collect();
        assert_eq!(s, vec![(&b"f"[..], 1), (b"f", 2), (b"g", 1)]);
        assert_eq!(i.sharing_count(7), 3);
        i.remove(b"f", 1);
        assert_eq!(i.sharing_count(7), 2);
        i.remove(b"f", 2);
        assert_eq!(i.sharing(7).len(), 1, "g still on it");
        i.remove(b"g", 1);
        assert_eq!(i.sharing_count(7), 0);
        assert!(
            i.by_ino.len() == 1 && i.by_ino_more.is_empty(),
            "only h's left"
        );
        // A version rewritten onto another inode (unshare) moves its count.
        i.insert(on("h", 1, 9));
        assert_eq!((i.sharing_count(8), i.sharing_count(9)), (0, 1));
        i.forget_ino(9);
        assert_eq!(i.sharing_count(9), 0);
    }

    #[test]
    fn a_load_at_once_is_the_same_index_as_one_by_one() {
        let mut vs = Vec::new();
        for (p, n) in [("b", 2), ("a", 1), ("b", 1), ("c", 3), ("a", 2), ("c", 1)] {
            let mut v = m(p, n);
            v.object_ino = if p == "c" {
                9
            } else {
                n * 100 + p.len() as u64
            };
            vs.push(v);
        }
        let mut one = Index::default();
        vs.iter().cloned().for_each(|v| one.insert(v));
        let mut many = Index::default();
        many.insert(m("a", 1)); // an existing path takes the slow way
        many.insert_many(vs);
        let dump = |i: &Index| -> Vec<(Vec<u8>, Vec<u64>)> {
            i.iter()
                .map(|(p, h)| (p.to_vec(), h.versions.iter().map(|v| v.number).collect()))
                .collect()
        };
        assert_eq!(dump(&one), dump(&many));
        assert_eq!(many.sharing_count(9), 2, "c's two versions on one inode");
        assert!(
            many.iter()
                .all(|(p, h)| h.versions.iter().all(|v| std::ptr::eq(&v.path[..], p))),
            "every record shares its path's key"
        );
    }

    #[test]
    fn numbers_never_go_back_when_the_newest_is_evicted() {
        let mut i = Index::default();
        for n in 1..=3 {
            i.insert(m("f", n));
        }
        i.remove(b"f", 3);
        assert_eq!(i.next_number(b"f"), 4, "3 is not given again");
        i.remove(b"f", 2);
        i.remove(b"f", 1);
        assert!(i.get(b"f").is_none());
        assert_eq!(i.next_number(b"f"), 4);
        i.insert(m("f", 4));
        assert_eq!(i.next_number(b"f"), 5);
        assert!(i.evicted_newest.is_empty(), "forgotten once superseded");
        // Replacing a version in place (unshare, compression) changes nothing.
        i.remove(b"f", 4);
        i.insert(m("f", 4));
        assert!(i.evicted_newest.is_empty());
        assert_eq!(i.next_number(b"g"), 1);
    }
}
