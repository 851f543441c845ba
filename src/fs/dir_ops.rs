//! Directory listing: opendir takes a snapshot, readdir/readdirplus page through it.
//! The store and the `.versions` view are filtered out of the root's listing.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use fuser::{FileType, INodeNo, ReplyDirectory, ReplyDirectoryPlus};

use super::attr::kind_of_dtype;
use super::handles::{DirEntry, DirH};
use super::inode::ROOT_INO;
use super::{CkptFs, TTL, errno, versions_view};
use crate::sys;

/// Entries handed to one READDIR reply at most: a reply is a page of at most
/// `max_pages` × 4 KiB, and the smallest entry takes 24 bytes.
const PAGE_ENTRIES: usize = 1024;

impl CkptFs {
    fn list_live(&self, ino: u64) -> io::Result<Vec<DirEntry>> {
        let inode = self.inodes.get(ino)?;
        let fd = self
            .inodes
            .open(&inode, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let raw = sys::read_dir_fd(fd)?;
        let mut out = Vec::with_capacity(raw.len() + 3);
        out.push(DirEntry {
            name: b".".to_vec(),
            ino: 1,
            kind: FileType::Directory,
        });
        out.push(DirEntry {
            name: b"..".to_vec(),
            ino: 1,
            kind: FileType::Directory,
        });
        for (name, d_ino, dtype) in raw {
            if self.is_hidden(ino, OsStr::from_bytes(&name))
                || name.starts_with(super::versioning::SWAP_PREFIX)
            {
                continue;
            }
            if ino == ROOT_INO && self.is_versions_name(ino, OsStr::from_bytes(&name)) {
                continue;
            }
            out.push(DirEntry {
                name,
                ino: d_ino.max(1),
                kind: kind_of_dtype(dtype),
            });
        }
        if ino == ROOT_INO
            && self.opts.versions_visible
            && let Some(v) = &self.opts.versions_name
        {
            out.push(DirEntry {
                name: v.clone(),
                ino: 1,
                kind: FileType::Directory,
            });
        }
        Ok(out)
    }

    fn list(&self, ino: u64) -> io::Result<Vec<DirEntry>> {
        if versions_view::is_virtual(ino) {
            self.view.list(ino)
        } else {
            self.list_live(ino)
        }
    }

    pub(super) fn do_opendir(&self, ino: u64) -> io::Result<u64> {
        let entries = self.list(ino)?;
        Ok(self.handles.add_dir(DirH {
            ino,
            entries: parking_lot::Mutex::new(entries),
        }))
    }

    /// Entries from `offset` on (at most `PAGE_ENTRIES`); a rewind (offset 0) takes a fresh snapshot.
    fn page(&self, ino: u64, fh: u64, offset: u64) -> io::Result<Vec<(u64, DirEntry)>> {
        let d = self.handles.dir(fh)?;
        if offset == 0 {
            *d.entries.lock() = self.list(ino)?;
        }
        let e = d.entries.lock();
        // At most what one reply can hold (the kernel asks for a page at a
        // time): cloning the whole rest per request made listing a file's
        // 10,000 versions quadratic.
        Ok(e.iter()
            .enumerate()
            .skip(offset as usize)
            .take(PAGE_ENTRIES)
            .map(|(i, x)| (i as u64 + 1, x.clone()))
            .collect())
    }

    pub(super) fn do_readdir(&self, ino: u64, fh: u64, offset: u64, mut reply: ReplyDirectory) {
        match self.page(ino, fh, offset) {
            Ok(entries) => {
                for (off, e) in entries {
                    // d_ino is the backing inode number: no lookup per entry.
                    if reply.add(INodeNo(e.ino), off, e.kind, OsStr::from_bytes(&e.name)) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    pub(super) fn do_readdirplus(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.page(ino, fh, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e)),
        };
        let virt = versions_view::is_virtual(ino);
        for (off, e) in entries {
            let name = OsStr::from_bytes(&e.name);
            if e.name == b"." || e.name == b".." {
                // No lookup reference for these: reply with attr of the dir itself
                // but ino 0 tells the kernel not to create an entry.
                let Ok((a, _)) = self.do_getattr(ino, None) else {
                    continue;
                };
                if reply.add(INodeNo(0), off, name, &TTL, &a, fuser::Generation(0)) {
                    break;
                }
                continue;
            }
            let r = if virt || (ino == ROOT_INO && self.is_versions_name(ino, name)) {
                self.view.lookup(ino, name)
            } else {
                self.lookup_live(ino, name).map(|a| (a, TTL))
            };
            let Ok((a, ttl)) = r else { continue };
            if reply.add(a.ino, off, name, &ttl, &a, fuser::Generation(0)) {
                // The kernel did not take this entry: give back its lookup reference.
                if versions_view::is_virtual(a.ino.0) {
                    self.view.forget(a.ino.0, 1);
                } else {
                    self.inodes.forget(a.ino.0, 1);
                }
                break;
            }
        }
        reply.ok()
    }

    /// Used by tests and metrics: inodes known and fds held by the inode store.
    pub fn inode_stats(&self) -> (usize, usize) {
        (self.inodes.len(), self.inodes.cached_fds())
    }
}
