//! Objects that share their inode with a live file: a hard-linked capture is
//! zero-copy until the live file is written in place; then every version on
//! that inode gets a private copy first (`unshare`), or gives way when there is
//! no room for one (the live tree comes first).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::{Store, StoreError, StoreResult, VersionMeta, layout};
use crate::sys;

/// Captured objects that may share their inode with a live file.
pub(super) struct Shares {
    /// The store is on the backing filesystem (hard links possible).
    pub(super) same_fs: bool,
    /// A reflink into the store failed as unsupported: `How::CloneOnly`
    /// answers EOPNOTSUPP at once from then on (no record, no temp file).
    pub(super) no_reflink: std::sync::atomic::AtomicBool,
    /// Captured but not yet committed: incoming name → (object inode, where the
    /// object is now, relative to the store). Hard-linked captures may share a
    /// live inode; `unshare` must find them wherever the worker has moved them.
    pub(super) pending: Mutex<HashMap<String, (u64, String)>>,
    /// Serializes unshare against capture for the same inode.
    pub(super) lock: Mutex<()>,
}

impl Store {
    /// How many hard links to live inode `ino` belong to the store.
    pub fn links_to(&self, ino: u64) -> u32 {
        if !self.shares.same_fs {
            return 0;
        }
        let p = self
            .shares
            .pending
            .lock()
            .values()
            .filter(|(i, _)| *i == ino)
            .count();
        let v = self.index.read().sharing_count(ino);
        (p + v) as u32
    }

    /// The live file `fd` (its inode is `ino`) is about to be written in place:
    /// give every version that shares its inode a private copy first. Without
    /// room for the copy even after evicting history, those versions give way
    /// (the live file comes first), unless one is pinned: then ENOSPC.
    ///
    /// Whether anything shares the inode is only asked under the shares lock
    /// (in `unshare_once`): outside it, a seal moving a capture from pending
    /// into the index would be seen in neither, and the write would change a
    /// sealed object.
    /// Can a capture be a hard link (the store shares the live tree's
    /// filesystem)? Else links are copies.
    pub fn links_here(&self) -> bool {
        self.shares.same_fs
    }

    pub fn unshare(&self, fd: BorrowedFd<'_>, ino: u64) -> StoreResult<()> {
        let size = sys::fstat(fd)?.st_size as u64;
        match self.with_room(size, || self.unshare_once(fd, ino)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && self.shares.same_fs => {
                self.give_way(ino)
            }
            r => Ok(r?),
        }
    }

    /// No room to copy for the versions sharing live inode `ino`: drop them.
    fn give_way(&self, ino: u64) -> StoreResult<()> {
        let enospc = || StoreError::from(io::Error::from_raw_os_error(libc::ENOSPC));
        if self.shares.pending.lock().values().any(|(i, _)| *i == ino) {
            return Err(enospc()); // a capture in flight needs this content
        }
        let sharing: Vec<(crate::store::meta::PathKey, u64)> = self.with_index(|i| {
            i.sharing(ino)
                .into_iter()
                .filter(|(p, n)| i.get(p).and_then(|h| h.get(*n)).is_some())
                .collect()
        });
        let pinned = self.with_index(|i| {
            sharing
                .iter()
                .any(|(p, n)| i.get(p).and_then(|h| h.get(*n)).is_some_and(|m| m.pinned()))
        });
        if pinned {
            return Err(enospc());
        }
        for (p, n) in sharing {
            log::warn!(
                "no room to keep {} v{n} apart from the live file it shares: evicted (live tree first)",
                String::from_utf8_lossy(&p)
            );
            self.evict(&p, n)?;
            self.stats.history_skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.index.write().forget_ino(ino);
        Ok(())
    }

    /// One attempt of [`Store::unshare`]. Each name is checked to still be that
    /// inode before it is re-pointed, so a version is never given someone else's
    /// content.
    fn unshare_once(&self, fd: BorrowedFd<'_>, ino: u64) -> io::Result<()> {
        let _q = self.quiesce.read();
        let _g = self.shares.lock.lock();
        let mut locations: Vec<String> = self
            .shares
            .pending
            .lock()
            .values()
            .filter(|(i, _)| *i == ino)
            .map(|(_, loc)| loc.clone())
            .collect();
        let versions: Vec<VersionMeta> = {
            let idx = self.index.read();
            idx.sharing(ino)
                .into_iter()
                .filter_map(|(p, n)| idx.get(&p).and_then(|h| h.get(n)).cloned())
                .collect()
        };
        locations.extend(versions.iter().map(|m| self.object_path(m)));
        locations.sort();
        locations.dedup();
        let same = |loc: &str| {
            CString::new(loc)
                .ok()
                .and_then(|c| sys::fstatat(self.dir.as_fd(), &c).ok())
                .is_some_and(|st| st.st_ino == ino)
        };
        locations.retain(|l| same(l));
        if locations.is_empty() {
            // Nothing shares it (the common case: no write lock), or the
            // index's entry is stale: forget it.
            if !versions.is_empty() {
                self.index.write().forget_ino(ino);
            }
            return Ok(());
        }
        let tmp = format!(
            "{}/unshare-{}-{}",
            layout::INCOMING,
            std::process::id(),
            self.sealer.seq.fetch_add(1, Ordering::Relaxed)
        );
        let ctmp = CString::new(tmp.clone()).map_err(io::Error::other)?;
        let st = sys::fstat(fd)?;
        let copy = sys::openat(
            self.dir.as_fd(),
            &ctmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        let src = sys::open_path(
            &sys::proc_path(std::os::fd::AsRawFd::as_raw_fd(&fd)),
            libc::O_RDONLY,
            0,
        )?;
        let r = self.copy_into(&src, &copy, st.st_size as u64);
        if let Err(e) = r {
            let _ = sys::unlinkat(self.dir.as_fd(), &ctmp, 0);
            return Err(e);
        }
        let new_ino = sys::fstat(copy.as_fd())?.st_ino;
        drop(copy);
        // Re-point each name at the copy: link to a temp name, rename over.
        for loc in &locations {
            let t = CString::new(format!("{loc}.unshare")).map_err(io::Error::other)?;
            let c = CString::new(loc.as_str()).map_err(io::Error::other)?;
            sys::linkat(self.dir.as_fd(), &ctmp, self.dir.as_fd(), &t, 0)?;
            sys::renameat2(self.dir.as_fd(), &t, self.dir.as_fd(), &c, 0)?;
        }
        let _ = sys::unlinkat(self.dir.as_fd(), &ctmp, 0);
        for (_, (i, loc)) in self.shares.pending.lock().iter_mut() {
            if *i == ino && locations.contains(loc) {
                *i = new_ino;
            }
        }
        let mut idx = self.index.write();
        for m in versions {
            if !locations.contains(&self.object_path(&m)) {
                continue;
            }
            let mut m2 = m.clone();
            m2.object_ino = new_ino;
            self.rewrite_meta(&m2)?;
            idx.insert(m2); // in place: the number is the same
        }
        idx.forget_ino(ino);
        drop(idx);
        self.stats.unshares.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reflink `src` into `dst` where possible, else copy in kernel.
    pub(super) fn copy_into(&self, src: &OwnedFd, dst: &OwnedFd, len: u64) -> io::Result<()> {
        Self::carry_acl(src.as_fd(), dst.as_fd());
        if sys::ficlone(dst.as_fd(), src.as_fd()).is_ok() {
            return Ok(());
        }
        sys::copy_range(src.as_fd(), dst.as_fd(), len)?;
        self.stats.bytes_copied.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;

    use crate::store::testing::{store, wait_for};
    use crate::store::{How, Reason};
    use crate::sys;

    /// An access ACL (xattr form): owner rw, user 65534 none, group r,
    /// mask r, others r.
    fn deny_nobody() -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 0, 65534),
            (0x04, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 4, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    /// A version copied into the store (not linked) keeps the file's ACL on
    /// its object, which is what `.versions` shows once the file is gone.
    #[test]
    fn a_copied_version_keeps_the_files_acl() {
        let (root, s) = store("acl-copy");
        let p = root.join("live").join("a.bin");
        std::fs::write(&p, b"secret").unwrap();
        let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let acl = deny_nobody();
        sys::setxattr(&cp, c"system.posix_acl_access", &acl, 0).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        s.capture(f.as_fd(), b"a.bin", Reason::Close, None, How::Copy)
            .unwrap();
        wait_for("the copy sealed", || {
            s.with_index(|i| i.total_versions()) == 1
        });
        let m = s.with_index(|i| i.get(b"a.bin").and_then(|h| h.latest()).cloned());
        let m = m.unwrap();
        assert_eq!(
            s.stats
                .captures_copied
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(s.object_acl(&m).unwrap(), acl);
        s.shutdown();
        let _ = std::fs::remove_dir_all(&root);
    }
}
