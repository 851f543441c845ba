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
    /// An archived version: chunks fetched as reads touch them.
    Archived(crate::store::ArchivedFile),
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
    /// Opened for writing with O_APPEND (a log, not a save).
    pub appends: bool,
    /// When it was opened.
    pub opened: std::time::Instant,
    /// Opened by execve (`FMODE_EXEC`): the file is a running program's text.
    pub exec: bool,
    /// Some write, truncate or fallocate happened through this handle (or, with
    /// passthrough, it was opened for writing: the daemon cannot see the writes).
    pub dirty: AtomicBool,
}

impl FileH {
    /// A live file whose data goes through the daemon (the kernel's cached I/O
    /// mode for this inode while the handle is open).
    pub fn on_daemon_path(&self) -> bool {
        self.backing.is_none() && matches!(self.src, Source::Live(_))
    }

    pub fn fd(&self) -> io::Result<&OwnedFd> {
        match &self.src {
            Source::Live(f) | Source::Version(f, _) => Ok(f),
            Source::Memory(_) | Source::Archived(_) => Err(super::err(libc::EINVAL)),
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

/// How many handles are open on one inode, by kind (kept with the handles so
/// the per-open questions below are O(1), not a scan of every open file).
#[derive(Default, Clone, Copy)]
struct Counts {
    open: usize,
    writers: usize,
    /// Writers that opened with O_APPEND.
    appenders: usize,
    execs: usize,
    /// Live opens served on the daemon data path (no passthrough backing).
    daemon: usize,
}

#[derive(Default)]
struct Files {
    by_fh: HashMap<u64, Arc<FileH>>,
    by_ino: HashMap<u64, Counts>,
}

#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    files: RwLock<Files>,
    dirs: RwLock<HashMap<u64, Arc<DirH>>>,
}

impl Handles {
    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_file(&self, h: FileH) -> u64 {
        let id = self.id();
        let mut f = self.files.write();
        let c = f.by_ino.entry(h.ino).or_default();
        c.open += 1;
        c.writers += usize::from(h.writable);
        c.appenders += usize::from(h.writable && h.appends);
        c.execs += usize::from(h.exec);
        c.daemon += usize::from(h.on_daemon_path());
        f.by_fh.insert(id, Arc::new(h));
        id
    }

    pub fn file(&self, fh: u64) -> io::Result<Arc<FileH>> {
        self.files
            .read()
            .by_fh
            .get(&fh)
            .cloned()
            .ok_or_else(|| super::err(libc::EBADF))
    }

    pub fn remove_file(&self, fh: u64) -> Option<Arc<FileH>> {
        let mut f = self.files.write();
        let h = f.by_fh.remove(&fh)?;
        if let Some(c) = f.by_ino.get_mut(&h.ino) {
            c.open -= 1;
            c.writers -= usize::from(h.writable);
            c.appenders -= usize::from(h.writable && h.appends);
            c.execs -= usize::from(h.exec);
            c.daemon -= usize::from(h.on_daemon_path());
            if c.open == 0 {
                f.by_ino.remove(&h.ino);
            }
        }
        Some(h)
    }

    fn counts(&self, ino: u64) -> Counts {
        self.files
            .read()
            .by_ino
            .get(&ino)
            .copied()
            .unwrap_or_default()
    }

    /// Open handles on a live inode (for deciding zero-copy vs. copy on truncate).
    pub fn open_count(&self, ino: u64) -> usize {
        self.counts(ino).open
    }

    /// Handles that still write into inode `ino`.
    pub fn writers(&self, ino: u64) -> usize {
        self.counts(ino).writers
    }

    /// Does every handle writing into `ino` append (O_APPEND)? Then no write
    /// can change bytes that are already there.
    pub fn only_appenders(&self, ino: u64) -> bool {
        let c = self.counts(ino);
        c.writers == c.appenders
    }

    /// Live handles of inode `ino` served on the daemon data path.
    pub fn daemon_opens(&self, ino: u64) -> usize {
        self.counts(ino).daemon
    }

    /// Handles through which a running program executes inode `ino`.
    pub fn execs(&self, ino: u64) -> usize {
        self.counts(ino).execs
    }

    /// Is a save in progress: a file open for writing, not appending, opened
    /// less than `long` ago? (A writer that stays open longer, an event file or
    /// a log, gets interval versions and does not hold a generation back.)
    pub fn saving(&self, long: std::time::Duration) -> bool {
        let f = self.files.read();
        f.by_fh
            .values()
            .any(|h| h.writable && !h.appends && h.opened.elapsed() < long)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ino: u64, writable: bool, exec: bool) -> FileH {
        FileH {
            ino,
            inode: None,
            src: Source::Memory(Vec::new()),
            backing: None,
            writable,
            appends: false,
            opened: std::time::Instant::now(),
            exec,
            dirty: AtomicBool::new(false),
        }
    }

    #[test]
    fn counts_follow_opens_and_releases() {
        let hs = Handles::default();
        let a = hs.add_file(h(7, true, false));
        let b = hs.add_file(h(7, false, true));
        let c = hs.add_file(h(8, false, false));
        assert_eq!((hs.open_count(7), hs.writers(7), hs.execs(7)), (2, 1, 1));
        assert_eq!((hs.open_count(8), hs.writers(8), hs.execs(8)), (1, 0, 0));
        assert!(hs.remove_file(a).is_some());
        assert!(hs.remove_file(a).is_none(), "a handle is released once");
        assert_eq!((hs.open_count(7), hs.writers(7), hs.execs(7)), (1, 0, 1));
        hs.remove_file(b);
        hs.remove_file(c);
        assert_eq!((hs.open_count(7), hs.open_count(8)), (0, 0));
        assert!(hs.files.read().by_ino.is_empty(), "no entries left behind");
    }

    #[test]
    fn a_save_is_a_recent_writer_that_does_not_append() {
        let hs = Handles::default();
        let long = std::time::Duration::from_secs(60);
        let r = hs.add_file(h(1, false, false));
        assert!(!hs.saving(long), "a reader saves nothing");
        let mut log = h(2, true, false);
        log.appends = true;
        let l = hs.add_file(log);
        assert!(!hs.saving(long), "an appender is a log");
        let mut old = h(3, true, false);
        old.opened = std::time::Instant::now() - 2 * long;
        let o = hs.add_file(old);
        assert!(!hs.saving(long), "open longer than `long`: an event file");
        let w = hs.add_file(h(4, true, false));
        assert!(hs.saving(long));
        for fh in [r, l, o, w] {
            hs.remove_file(fh);
        }
        assert!(!hs.saving(long));
    }
}
