//! `.versions/@<T>/`: the whole mounted tree, read-only, as it was at instant
//! T. Each path resolves to a version or to the live file (`Store::state_at`);
//! directories exist at T when the live one was there then or something below
//! them held a state. This file reads the live tree for the store (the store
//! never touches it) and turns what it finds into FUSE attributes and handles.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use fuser::{FileAttr, FileType};

use super::super::attr::{kind_of, to_attr};
use super::super::err;
use super::super::handles::{DirEntry, Source};
use super::super::inode::ROOT_INO;
use super::{View, join, virt_attr};
use crate::store::timeline::Live;
use crate::store::{Content, Found};
use crate::sys;

/// What a path of the point-in-time tree is.
pub(super) enum AtKind {
    File(Found),
    Dir,
}

impl View {
    fn root(&self) -> Option<Arc<OwnedFd>> {
        let inodes = self.inodes.as_ref()?;
        inodes.path_fd(&inodes.get(ROOT_INO).ok()?).ok()
    }

    /// The live tree's parent directory of `p` (opened beneath the root, no
    /// symlink followed) and `p`'s last component.
    fn live_parent(&self, p: &[u8]) -> Option<(OwnedFd, CString)> {
        let (dir, name) = match p.iter().rposition(|&b| b == b'/') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (&b"."[..], p),
        };
        let pfd = sys::open_beneath(&*self.root()?, dir).ok()?;
        Some((pfd, CString::new(name).ok()?))
    }

    /// Extended attribute `name` of the live file or directory at `p` (no
    /// symlink followed; "" is the root).
    pub(super) fn live_getxattr(&self, p: &[u8], name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
        let no = || err(libc::ENODATA);
        let fd = if p.is_empty() {
            self.root().ok_or_else(no)?
        } else {
            let (pfd, leaf) = self.live_parent(p).ok_or_else(no)?;
            let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
            Arc::new(sys::openat(pfd.as_fd(), &leaf, flags, 0)?)
        };
        if sys::fstat(fd.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(no());
        }
        sys::getxattr(&sys::proc_path(fd.as_raw_fd()), name, 1 << 16)
    }

    /// `lstat` of live path `p` ("" is the root); never the store's directory.
    pub(super) fn live_lstat(&self, p: &[u8]) -> Option<libc::stat> {
        if p.is_empty() {
            return sys::fstat(self.root()?.as_fd()).ok();
        }
        if self.hidden.as_deref() == Some(p) {
            return None;
        }
        let (pfd, name) = self.live_parent(p)?;
        sys::fstatat(pfd.as_fd(), &name).ok()
    }

    /// The live non-directory (`dir` false) or directory at `p`, with the
    /// time its inode was born (one statx).
    fn live(&self, p: &[u8], dir: bool) -> Option<Live> {
        if p.is_empty() {
            // The mount's root was there before anything in it.
            return dir.then_some(Live { born_ns: i64::MIN });
        }
        if self.hidden.as_deref() == Some(p) {
            return None;
        }
        let (pfd, name) = self.live_parent(p)?;
        let (mode, born_ns) = sys::mode_and_birth(pfd.as_fd(), &name).ok()?;
        ((mode & libc::S_IFMT == libc::S_IFDIR) == dir).then_some(Live { born_ns })
    }

    /// What `p` was at `t`, if it existed.
    pub(super) fn at_kind(&self, t: i64, p: &[u8]) -> Option<AtKind> {
        let s = self.store.as_ref()?;
        if p.is_empty() {
            return Some(AtKind::Dir);
        }
        let lf = |q: &[u8]| self.live(q, false);
        let ld = |q: &[u8]| self.live(q, true);
        if let Some(f) = s.state_at(p, t, &lf) {
            return Some(AtKind::File(f));
        }
        s.dir_at(p, t, &ld, &lf).then_some(AtKind::Dir)
    }

    pub(super) fn at_attr(&self, ino: u64, t: i64, p: &[u8]) -> io::Result<FileAttr> {
        let live = |q: &[u8]| self.live_lstat(q).map(|st| to_attr(ino, &st));
        match self.at_kind(t, p).ok_or_else(|| err(libc::ENOENT))? {
            AtKind::File(Found::Version(m)) => {
                let perm = (m.mode() & 0o7777) as u16;
                let mut a = virt_attr(
                    ino,
                    FileType::RegularFile,
                    perm,
                    m.size,
                    m.mtime_ns,
                    m.sealed_ns,
                );
                (a.uid, a.gid) = (m.uid(), m.gid());
                Ok(a)
            }
            AtKind::File(Found::Live(q)) => {
                let mut a = live(&q).ok_or_else(|| err(libc::ENOENT))?;
                a.nlink = 1;
                Ok(a)
            }
            // A directory that no longer exists: its mode and times are not
            // kept, so it reads as a plain directory of the moment.
            AtKind::Dir => Ok(live(p)
                .filter(|a| a.kind == FileType::Directory)
                .unwrap_or_else(|| {
                    let mut a = virt_attr(ino, FileType::Directory, 0o755, 0, t, t);
                    a.nlink = 2;
                    a
                })),
        }
    }

    /// Names in live directory `d` (the store's own directory left out).
    fn live_names(&self, d: &[u8]) -> Vec<Vec<u8>> {
        let fd = if d.is_empty() {
            self.root().and_then(|r| sys::open_beneath(&r, b".").ok())
        } else {
            self.live_parent(d).and_then(|(pfd, name)| {
                let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                sys::openat(pfd.as_fd(), &name, flags, 0).ok()
            })
        };
        let Some(fd) = fd else { return Vec::new() };
        // An O_PATH fd cannot be listed: open the directory itself.
        let Ok(dirfd) = sys::openat(fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0) else {
            return Vec::new();
        };
        sys::read_dir_fd(dirfd)
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _, _)| n)
            .filter(|n| n != b"." && n != b"..")
            .filter(|n| !(d.is_empty() && self.hidden.as_deref() == Some(n.as_slice())))
            .collect()
    }

    pub(super) fn at_list(&self, t: i64, d: &[u8]) -> io::Result<Vec<DirEntry>> {
        let s = self.store.as_ref().ok_or_else(|| err(libc::ENOENT))?;
        let mut names: Vec<Vec<u8>> = self.live_names(d);
        names.extend(s.with_index(|i| i.children(d)));
        if let Some(to) = s.went_to(d, t) {
            names.extend(self.live_names(&to));
            names.extend(s.with_index(|i| i.children(&to)));
        }
        let mut out: BTreeMap<Vec<u8>, FileType> = BTreeMap::new();
        for n in names {
            if out.contains_key(&n) {
                continue;
            }
            let q = join(d, &n);
            let kind = match self.at_kind(t, &q) {
                Some(AtKind::Dir) => FileType::Directory,
                Some(AtKind::File(Found::Version(_))) => FileType::RegularFile,
                Some(AtKind::File(Found::Live(l))) => match self.live_lstat(&l) {
                    Some(st) => kind_of(st.st_mode),
                    None => continue,
                },
                None => continue,
            };
            out.insert(n, kind);
        }
        let dot = |n: &[u8]| DirEntry {
            name: n.to_vec(),
            ino: 1,
            kind: FileType::Directory,
        };
        let mut v = vec![dot(b"."), dot(b"..")];
        v.extend(
            out.into_iter()
                .map(|(name, kind)| DirEntry { name, ino: 1, kind }),
        );
        Ok(v)
    }

    pub(super) fn at_open(&self, t: i64, p: &[u8]) -> io::Result<Source> {
        let s = self.store.as_ref().ok_or_else(|| err(libc::ENOENT))?;
        match self.at_kind(t, p) {
            Some(AtKind::File(Found::Version(m))) => Ok(match s.open_version(&m)? {
                Content::Object(fd, size) => Source::Version(fd, size),
                Content::Decoded(bytes) => Source::Memory(bytes),
                Content::Archived(a) => Source::Archived(a),
            }),
            Some(AtKind::File(Found::Live(q))) => {
                let (pfd, name) = self.live_parent(&q).ok_or_else(|| err(libc::ENOENT))?;
                let fd = sys::openat(pfd.as_fd(), &name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let size = sys::fstat(fd.as_fd())?.st_size as u64;
                Ok(Source::Version(fd, size))
            }
            Some(AtKind::Dir) => Err(err(libc::EISDIR)),
            None => Err(err(libc::ENOENT)),
        }
    }

    pub(super) fn at_readlink(&self, t: i64, p: &[u8]) -> io::Result<Vec<u8>> {
        match self.at_kind(t, p) {
            Some(AtKind::File(Found::Live(q))) => {
                let (pfd, name) = self.live_parent(&q).ok_or_else(|| err(libc::ENOENT))?;
                sys::readlinkat(pfd.as_fd(), &name)
            }
            _ => Err(err(libc::EINVAL)),
        }
    }
}
