//! Open file and directory handles. Ids come from a counter and are never reused.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::inode::Inode;

/// What an open file handle reads from.
pub enum Source {
    /// A live backing file.
    Live(OwnedFd),
    /// A version entry: its object file, of which the first `size` bytes are the
    /// version (an object shared with an appended file is longer).
    Version(OwnedFd, u64),
    /// Generated or decompressed content (`.index.json`, compressed versions).
    Memory(Vec<u8>),
}

pub struct FileH {
    pub ino: u64,
    /// The live inode (None for version entries).
    pub inode: Option<Arc<Inode>>,
    pub src: Source,
    /// Keeps the inode's passthrough registration alive while this handle is open.
    pub backing: Option<Arc<fuser::BackingId>>,
    /// Opened for writing.
    pub writable: bool,
    /// Opened by execve (`FMODE_EXEC`): the file is a running program's text.
    pub exec: bool,
    /// Some write, truncate or fallocate happened through this handle (or, with
    /// passthrough, it was opened for writing: the daemon cannot see the writes).
    pub dirty: AtomicBool,
}

impl FileH {
    pub fn fd(&self) -> io::Result<&OwnedFd> {
        match &self.src {
            Source::Live(f) | Source::Version(f, _) => Ok(f),
            Source::Memory(_) => Err(super::err(libc::EINVAL)),
        }
    }
}

/// A directory listing taken at opendir (and again on rewind).
pub struct DirH {
    pub ino: u64,
    pub entries: Mutex<Vec<DirEntry>>,
}

#[derive(Clone)]
pub struct DirEntry {
    pub name: Vec<u8>,
    /// d_ino reported by plain readdir.
    pub ino: u64,
    pub kind: fuser::FileType,
}

#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    files: RwLock<HashMap<u64, Arc<FileH>>>,
    dirs: RwLock<HashMap<u64, Arc<DirH>>>,
}

impl Handles {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_file(&self, h: FileH) -> u64 {
        let id = self.id();
        self.files.write().insert(id, Arc::new(h));
        id
    }

    pub fn file(&self, fh: u64) -> io::Result<Arc<FileH>> {
        self.files
            .read()
            .get(&fh)
            .cloned()
            .ok_or_else(|| super::err(libc::EBADF))
    }

    pub fn remove_file(&self, fh: u64) -> Option<Arc<FileH>> {
        self.files.write().remove(&fh)
    }

    /// Open handles on a live inode (for deciding zero-copy vs. copy on truncate).
    pub fn open_count(&self, ino: u64) -> usize {
        self.files.read().values().filter(|h| h.ino == ino).count()
    }

    /// Handles that still write into inode `ino`.
    pub fn writers(&self, ino: u64) -> usize {
        self.files
            .read()
            .values()
            .filter(|h| h.ino == ino && h.writable)
            .count()
    }

    /// Handles through which a running program executes inode `ino`.
    pub fn execs(&self, ino: u64) -> usize {
        self.files
            .read()
            .values()
            .filter(|h| h.ino == ino && h.exec)
            .count()
    }

    pub fn add_dir(&self, h: DirH) -> u64 {
        let id = self.id();
        self.dirs.write().insert(id, Arc::new(h));
        id
    }

    pub fn dir(&self, fh: u64) -> io::Result<Arc<DirH>> {
        self.dirs
            .read()
            .get(&fh)
            .cloned()
            .ok_or_else(|| super::err(libc::EBADF))
    }

    pub fn remove_dir(&self, fh: u64) {
        self.dirs.write().remove(&fh);
    }
}
