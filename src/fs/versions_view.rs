//! The read-only `.versions` tree: `.versions/<relpath>/` lists the retained
//! versions of `<relpath>` (also after it was deleted), with `latest`,
//! `previous`, `latest-complete` symlinks and an `.index.json` sidecar;
//! directories mirror the tree.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuser::{FileAttr, FileType, INodeNo};
use parking_lot::RwLock;

use super::acl;
use super::attr::time_ns;
use super::err;
use super::handles::{DirEntry, FileH, Handles, Source};
use super::inode::{InodeStore, ROOT_INO};
use crate::store::{Content, Store, VersionMeta, layout};

mod at;

/// Virtual inode numbers live above this bit; live inodes come from a counter below.
pub const VIRT_BASE: u64 = 1 << 62;
const VTTL: Duration = Duration::from_secs(1);

pub fn is_virtual(ino: u64) -> bool {
    ino >= VIRT_BASE
}

/// Names a file's version list adds beside its entries.
const RESERVED: &[&[u8]] = &[b"latest", b"previous", b"latest-complete", b".index.json"];

/// Chooses the version a symlink names.
type Pick = fn(&[VersionMeta]) -> Option<&VersionMeta>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Node {
    /// A directory of the view ("" is `.versions` itself); also the version list
    /// of the file at that path.
    Dir(Vec<u8>),
    Entry(Vec<u8>, u64),
    Latest(Vec<u8>),
    Previous(Vec<u8>),
    LatestComplete(Vec<u8>),
    Index(Vec<u8>),
    /// A path of the point-in-time tree `.versions/@<T>/` ("" is its root).
    At(i64, Vec<u8>),
}

/// How many generations `ls .versions` lists (every instant stays reachable
/// by name).
const LISTED_GENERATIONS: usize = 1000;

/// `@<T>` for each generation, newest last, then `@step-N` for each step
/// first complete in one of them.
fn generation_entries(gens: &[crate::store::Generation]) -> Vec<DirEntry> {
    let dir = |name: String| DirEntry {
        name: name.into_bytes(),
        ino: 1,
        kind: FileType::Directory,
    };
    let mut steps = std::collections::BTreeSet::new();
    let mut out: Vec<DirEntry> = gens
        .iter()
        .map(|g| {
            steps.extend(g.complete.iter().copied());
            dir(format!("@{}", layout::stamp(g.t)))
        })
        .collect();
    out.extend(steps.into_iter().map(|s| dir(format!("@step-{s}"))));
    out
}

/// The view's inodes. Each is kept while the kernel holds it: from its first
/// lookup until the kernel forgets as many lookups as it was given (a walk
/// of `.versions`, or of `@<T>` for many instants, would otherwise keep a
/// node per path visited for the daemon's life).
#[derive(Default)]
struct Nodes {
    by_node: HashMap<Arc<Node>, u64>,
    /// The node and the lookups the kernel holds of it.
    by_ino: HashMap<u64, (Arc<Node>, u64)>,
    /// The next number: never reused while the daemon runs.
    next: u64,
}

pub struct View {
    store: Option<Arc<Store>>,
    inodes: Option<Arc<InodeStore>>,
    nodes: RwLock<Nodes>,
    /// How many inodes the view holds (`ckptfs stats`: `view_inodes`).
    nodes_held: Arc<std::sync::atomic::AtomicU64>,
    /// The store's directory name when it sits at the top of the live tree.
    hidden: Option<Vec<u8>>,
}

const XATTRS: &[&str] = &[
    "user.ckptfs.number",
    "user.ckptfs.sealed",
    "user.ckptfs.reason",
    "user.ckptfs.category",
    "user.ckptfs.mime",
    "user.ckptfs.complete",
    "user.ckptfs.digest",
    "user.ckptfs.pinned",
    "user.ckptfs.object",
];

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = dir.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// Attributes of a node the view makes up (owned by root unless set after).
fn virt_attr(
    ino: u64,
    kind: FileType,
    perm: u16,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time_ns(mtime_ns),
        mtime: time_ns(mtime_ns),
        ctime: time_ns(ctime_ns),
        crtime: time_ns(ctime_ns),
        kind,
        perm,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// One line of `.index.json`. Fields in the order serde_json's maps print
/// them (sorted), as the file has always had them.
#[derive(serde::Serialize)]
struct IndexLine<'a> {
    category: &'a str,
    complete: Option<bool>,
    digest: &'a crate::store::Digest,
    entry: String,
    incomplete_reason: Option<&'a str>,
    mime: &'a str,
    mtime: String,
    number: u64,
    pinned: bool,
    reason: &'a str,
    sealed: String,
    size: u64,
    step: Option<u64>,
    writer: Option<&'a crate::store::Writer>,
}

#[derive(serde::Serialize)]
struct IndexFile<'a> {
    #[serde(serialize_with = "index_lines")]
    versions: &'a [VersionMeta],
}

fn index_lines<S: serde::Serializer>(hist: &&[VersionMeta], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(hist.iter().map(|m| {
        IndexLine {
            category: m.category(),
            complete: m.complete(),
            digest: &m.digest,
            entry: String::from_utf8_lossy(&layout::entry_name(
                m.sealed_ns,
                m.number,
                m.reason().as_str(),
                m.relpath(),
            ))
            .into_owned(),
            incomplete_reason: Some(m.incomplete_reason()).filter(|r| !r.is_empty()),
            mime: m.mime(),
            mtime: layout::stamp(m.mtime_ns),
            number: m.number,
            pinned: m.pinned(),
            reason: m.reason().as_str(),
            sealed: layout::stamp(m.sealed_ns),
            size: m.size,
            step: m.step(),
            writer: m.writer(),
        }
    }))
}

/// `.index.json` of a history, written to `out` line by line (a file's
/// 10,000 versions never become a tree of values in memory).
fn write_index_json(hist: &[VersionMeta], out: &mut impl io::Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &IndexFile { versions: hist })?;
    out.write_all(b"\n")
}

fn index_json(hist: &[VersionMeta]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = write_index_json(hist, &mut out);
    out
}

/// The size of `.index.json`, counted without keeping it.
fn index_json_len(hist: &[VersionMeta]) -> u64 {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = write_index_json(hist, &mut c);
    c.0
}

impl View {
    pub fn new(
        store: Option<Arc<Store>>,
        inodes: Option<Arc<InodeStore>>,
        hidden: Option<Vec<u8>>,
    ) -> Self {
        // `.versions` itself: never forgotten (see `forget`).
        let root = Arc::new(Node::Dir(Vec::new()));
        let mut nodes = Nodes {
            next: VIRT_BASE + 1,
            ..Nodes::default()
        };
        nodes.by_node.insert(root.clone(), VIRT_BASE);
        nodes.by_ino.insert(VIRT_BASE, (root, 1));
        Self {
            store,
            inodes,
            nodes: RwLock::new(nodes),
            nodes_held: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            hidden,
        }
    }

    fn store(&self) -> io::Result<&Arc<Store>> {
        self.store.as_ref().ok_or_else(|| err(libc::ENOENT))
    }

    /// The inode of `n` for a reply that gives the kernel a lookup of it
    /// (`forget` gives it back).
    fn looked_up(&self, n: Node) -> u64 {
        let mut w = self.nodes.write();
        if let Some(&i) = w.by_node.get(&n) {
            if let Some(e) = w.by_ino.get_mut(&i) {
                e.1 += 1;
            }
            return i;
        }
        let i = w.next;
        w.next += 1;
        let n = Arc::new(n);
        w.by_node.insert(n.clone(), i);
        w.by_ino.insert(i, (n, 1));
        self.nodes_held
            .store(w.by_ino.len() as u64, std::sync::atomic::Ordering::Relaxed);
        i
    }

    /// The kernel dropped `n` lookups of `ino`: at none left, the node goes.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == VIRT_BASE {
            return;
        }
        let mut w = self.nodes.write();
        let Some(e) = w.by_ino.get_mut(&ino) else {
            return;
        };
        e.1 = e.1.saturating_sub(n);
        if e.1 == 0
            && let Some((node, _)) = w.by_ino.remove(&ino)
        {
            w.by_node.remove(&*node);
            self.nodes_held
                .store(w.by_ino.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many inodes the view holds, live (for `ckptfs stats`).
    pub fn nodes_held(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.nodes_held.clone()
    }

    /// The lookup of `node` as `ino` for a reply: its attributes, or the
    /// lookup given back when there are none.
    fn reply_entry(&self, ino: u64, node: &Node) -> io::Result<(FileAttr, Duration)> {
        self.attr(ino, node).map(|a| (a, VTTL)).inspect_err(|_| {
            self.forget(ino, 1);
        })
    }

    /// The node of `ino`, shared with the table (no copy of its path).
    fn node(&self, ino: u64) -> io::Result<Arc<Node>> {
        self.nodes
            .read()
            .by_ino
            .get(&ino)
            .map(|(n, _)| n.clone())
            .ok_or_else(|| err(libc::ENOENT))
    }

    fn history(&self, p: &[u8]) -> Vec<VersionMeta> {
        self.store
            .as_ref()
            .map(|s| s.history(p))
            .unwrap_or_default()
    }

    /// One version, without copying the whole history (10,000 entries listed
    /// with `ls -l` means 10,000 lookups).
    fn version(&self, p: &[u8], n: u64) -> Option<VersionMeta> {
        let s = self.store.as_ref()?;
        s.with_index(|i| i.get(p).and_then(|h| h.get(n)).cloned())
    }

    /// Apply `f` to the history of `p` in place.
    fn with_history<R>(&self, p: &[u8], f: impl FnOnce(&[VersionMeta]) -> R) -> Option<R> {
        let s = self.store.as_ref()?;
        s.with_index(|i| i.get(p).map(|h| f(&h.versions)))
    }

    fn symlink_target(&self, n: &Node) -> Option<(Vec<u8>, VersionMeta)> {
        let (p, pick): (&[u8], Pick) = match n {
            Node::Latest(p) => (p, |h| h.last()),
            Node::Previous(p) => (p, |h| h.len().checked_sub(2).map(|i| &h[i])),
            Node::LatestComplete(p) => {
                (p, |h| h.iter().rev().find(|m| m.complete() != Some(false)))
            }
            _ => return None,
        };
        let m = self.with_history(p, |h| pick(h).cloned())??;
        Some((
            layout::entry_name(m.sealed_ns, m.number, m.reason().as_str(), p),
            m,
        ))
    }

    /// Current permission bits of the live file, if it exists.
    fn live_mode(&self, p: &[u8]) -> Option<u32> {
        self.live_lstat(p).map(|st| st.st_mode & 0o7777)
    }

    fn attr(&self, ino: u64, n: &Node) -> io::Result<FileAttr> {
        let base = |kind, perm, size, mtime_ns, ctime_ns| {
            virt_attr(ino, kind, perm, size, mtime_ns, ctime_ns)
        };
        match n {
            Node::At(t, p) => self.at_attr(ino, *t, p),
            Node::Dir(p) => {
                let t = self
                    .with_history(p, |h| h.last().map(|m| m.sealed_ns))
                    .flatten()
                    .unwrap_or(0);
                let mut a = base(FileType::Directory, 0o555, 0, t, t);
                a.nlink = 2;
                Ok(a)
            }
            Node::Entry(p, num) => {
                let m = self.version(p, *num).ok_or_else(|| err(libc::ENOENT))?;
                let m = &m;
                // The stricter of old and current permissions, never writable.
                let cur = self.live_mode(p).unwrap_or(m.mode());
                let perm = (m.mode() & cur & 0o555) as u16;
                let mut a = base(FileType::RegularFile, perm, m.size, m.mtime_ns, m.sealed_ns);
                a.uid = m.uid();
                a.gid = m.gid();
                Ok(a)
            }
            Node::Latest(_) | Node::Previous(_) | Node::LatestComplete(_) => {
                let (t, m) = self.symlink_target(n).ok_or_else(|| err(libc::ENOENT))?;
                Ok(base(
                    FileType::Symlink,
                    0o777,
                    t.len() as u64,
                    m.sealed_ns,
                    m.sealed_ns,
                ))
            }
            Node::Index(p) => {
                let (len, t) = self
                    .with_history(p, |h| (index_json_len(h), h.last().map(|m| m.sealed_ns)))
                    .filter(|(_, t)| t.is_some())
                    .ok_or_else(|| err(libc::ENOENT))?;
                let t = t.unwrap_or(0);
                Ok(base(FileType::RegularFile, 0o444, len, t, t))
            }
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<(FileAttr, Duration)> {
        self.store()?;
        if parent == ROOT_INO {
            let a = self.attr(VIRT_BASE, &Node::Dir(Vec::new()))?;
            return Ok((a, VTTL));
        }
        let parent = self.node(parent)?;
        let p = match &*parent {
            Node::Dir(p) => p,
            Node::At(t, d) => {
                // One resolution: the attributes say whether it existed at T.
                let node = Node::At(*t, join(d, name.as_bytes()));
                let ino = self.looked_up(node.clone());
                return self.reply_entry(ino, &node);
            }
            _ => return Err(err(libc::ENOTDIR)),
        };
        let mut name = name.as_bytes();
        // At the top, `@<T>` is the tree at T; a user's own name beginning with
        // `@` is reached as `@@name` (and as `@name` when that is no instant).
        if p.is_empty() && name.first() == Some(&b'@') {
            if let Some(t) = self.instant(&name[1..]) {
                let node = Node::At(t, Vec::new());
                let ino = self.looked_up(node.clone());
                return self.reply_entry(ino, &node);
            }
            if name.starts_with(b"@@") {
                name = &name[1..];
            }
        }
        // The reserved names exist only inside a file's own version list: at a
        // directory of the tree, `latest` is whatever the user named so (a
        // DeepSpeed tag file at the top of the mount).
        let reserved = match name {
            b"latest" => Some(Node::Latest(p.clone())),
            b"previous" => Some(Node::Previous(p.clone())),
            b"latest-complete" => Some(Node::LatestComplete(p.clone())),
            b".index.json" => Some(Node::Index(p.clone())),
            _ => None,
        };
        let reserved = reserved.filter(|_| !self.history(p).is_empty());
        let node = match reserved {
            Some(n) => n,
            None => match layout::parse_entry_number(name) {
                Some(n)
                    if self.version(p, n).is_some_and(|m| {
                        layout::entry_name(m.sealed_ns, m.number, m.reason().as_str(), p) == name
                    }) =>
                {
                    Node::Entry(p.clone(), n)
                }
                _ => {
                    let q = join(p, name);
                    let s = self.store()?;
                    let exists = s.with_index(|i| i.get(&q).is_some() || i.is_dir(&q));
                    if !exists {
                        return Err(err(libc::ENOENT));
                    }
                    Node::Dir(q)
                }
            },
        };
        let ino = self.looked_up(node.clone());
        self.reply_entry(ino, &node)
    }

    /// The instant a top-level `@…` name stands for: a UTC stamp, or
    /// `step-N` (the first generation in which step N was complete).
    fn instant(&self, name: &[u8]) -> Option<i64> {
        let name = std::str::from_utf8(name).ok()?;
        match name.strip_prefix("step-") {
            Some(n) => self.store.as_ref()?.step_at(n.parse().ok()?),
            None => layout::parse_stamp(name),
        }
    }

    pub fn getattr(&self, ino: u64) -> io::Result<(FileAttr, Duration)> {
        let n = self.node(ino)?;
        Ok((self.attr(ino, &n)?, VTTL))
    }

    pub fn readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        let n = self.node(ino)?;
        if let Node::At(t, p) = &*n {
            return self.at_readlink(*t, p);
        }
        self.symlink_target(&n)
            .map(|(t, _)| t)
            .ok_or_else(|| err(libc::EINVAL))
    }

    pub fn list(&self, ino: u64) -> io::Result<Vec<DirEntry>> {
        let node = self.node(ino)?;
        let p = match &*node {
            Node::Dir(p) => p,
            Node::At(t, d) => return self.at_list(*t, d),
            _ => return Err(err(libc::ENOTDIR)),
        };
        let s = self.store()?;
        let dot = |n: &[u8]| DirEntry {
            name: n.to_vec(),
            ino: 1,
            kind: FileType::Directory,
        };
        let mut out = vec![dot(b"."), dot(b"..")];
        let h = self.history(p);
        for c in s.with_index(|i| i.children(p)) {
            // A path that is both a file's history and a directory (a file
            // replaced by a directory): the file's reserved names win.
            if !h.is_empty() && RESERVED.contains(&c.as_slice()) {
                continue;
            }
            // `@…` at the top is the point-in-time view's: escape the user's.
            let name = if p.is_empty() && c.first() == Some(&b'@') {
                [b"@".as_slice(), &c].concat()
            } else {
                c
            };
            out.push(DirEntry {
                name,
                ino: 1,
                kind: FileType::Directory,
            });
        }
        if p.is_empty() {
            out.extend(generation_entries(&s.generations(LISTED_GENERATIONS)));
        }
        if !h.is_empty() {
            for m in &h {
                out.push(DirEntry {
                    name: layout::entry_name(m.sealed_ns, m.number, m.reason().as_str(), p),
                    ino: 1,
                    kind: FileType::RegularFile,
                });
            }
            let link = |n: &[u8]| DirEntry {
                name: n.to_vec(),
                ino: 1,
                kind: FileType::Symlink,
            };
            out.push(link(b"latest"));
            if h.len() > 1 {
                out.push(link(b"previous"));
            }
            if h.iter().any(|m| m.complete() != Some(false)) {
                out.push(link(b"latest-complete"));
            }
            out.push(DirEntry {
                name: b".index.json".to_vec(),
                ino: 1,
                kind: FileType::RegularFile,
            });
        }
        Ok(out)
    }

    pub fn open(&self, ino: u64, flags: i32, handles: &Handles) -> io::Result<u64> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(err(libc::EROFS));
        }
        let s = self.store()?;
        let src = match &*self.node(ino)? {
            Node::Entry(p, n) => {
                let m = self.version(p, *n).ok_or_else(|| err(libc::ENOENT))?;
                match s.open_version(&m)? {
                    Content::Object(fd, size) => Source::Version(fd, size),
                    Content::Decoded(bytes) => Source::Memory(bytes),
                    Content::Archived(a) => Source::Archived(a),
                }
            }
            Node::Index(p) => Source::Memory(index_json(&s.history(p))),
            Node::At(t, p) => self.at_open(*t, p)?,
            Node::Dir(_) => return Err(err(libc::EISDIR)),
            _ => return Err(err(libc::ELOOP)),
        };
        Ok(handles.add_file(FileH {
            ino,
            inode: None,
            src,
            backing: None,
            writable: false,
            appends: false,
            opened: std::time::Instant::now(),
            exec: false,
            dirty: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The version an entry, or a file of a point-in-time tree, reads.
    fn meta_of(&self, ino: u64) -> io::Result<VersionMeta> {
        match &*self.node(ino)? {
            Node::Entry(p, n) => self.version(p, *n).ok_or_else(|| err(libc::ENOENT)),
            Node::At(t, p) => match self.at_kind(*t, p) {
                Some(at::AtKind::File(crate::store::Found::Version(m))) => Ok(*m),
                _ => Err(err(libc::ENODATA)),
            },
            _ => Err(err(libc::ENODATA)),
        }
    }

    /// The access ACL of an entry or a point-in-time node: its live file's,
    /// narrowed to the permission bits the node shows (`fs::acl`).
    fn acl_of(&self, ino: u64) -> io::Result<Vec<u8>> {
        let node = self.node(ino)?;
        let live = match &*node {
            Node::Entry(p, _) => p.clone(),
            Node::At(t, p) => match self.at_kind(*t, p) {
                Some(at::AtKind::File(crate::store::Found::Live(q))) => q,
                Some(_) => p.clone(),
                None => return Err(err(libc::ENOENT)),
            },
            _ => return Err(err(libc::ENODATA)),
        };
        let perm = self.attr(ino, &node)?.perm;
        // A live file without an ACL: the mode bits alone (any other error
        // would fail the kernel's permission check itself). No live file:
        // the ACL its last state kept on the version's object inode.
        let raw = match self.live_getxattr(&live, c"system.posix_acl_access") {
            Ok(raw) => raw,
            Err(_) if self.live_lstat(&live).is_none() => {
                let m = self.meta_of(ino)?;
                self.store()?
                    .object_acl(&m)
                    .map_err(|_| err(libc::ENODATA))?
            }
            Err(_) => return Err(err(libc::ENODATA)),
        };
        acl::narrow(&raw, perm.into()).ok_or_else(|| err(libc::ENODATA))
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr) -> io::Result<Vec<u8>> {
        if name.as_bytes() == b"system.posix_acl_access" {
            return self.acl_of(ino);
        }
        let m = self.meta_of(ino)?;
        let v = match name.as_bytes() {
            b"user.ckptfs.number" => m.number.to_string(),
            b"user.ckptfs.sealed" => layout::stamp(m.sealed_ns),
            b"user.ckptfs.reason" => m.reason().as_str().to_string(),
            b"user.ckptfs.category" => m.category().to_string(),
            b"user.ckptfs.mime" => m.mime().to_string(),
            b"user.ckptfs.complete" => match m.complete() {
                Some(true) => "true".into(),
                Some(false) => "false".into(),
                None => "unknown".into(),
            },
            b"user.ckptfs.digest" => m.digest.to_string(),
            b"user.ckptfs.pinned" => m.pinned().to_string(),
            // Where its bytes lie in the store, for `restore` to reflink from.
            b"user.ckptfs.object" => self
                .store()?
                .object_file(&m)
                .ok_or_else(|| err(libc::ENODATA))?,
            _ => return Err(err(libc::ENODATA)),
        };
        Ok(v.into_bytes())
    }

    pub fn listxattr(&self, ino: u64) -> io::Result<Vec<u8>> {
        if self.meta_of(ino).is_err() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for x in XATTRS {
            out.extend_from_slice(x.as_bytes());
            out.push(0);
        }
        Ok(out)
    }
}
