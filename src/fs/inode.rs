//! The inode store: FUSE inode numbers ↔ backing objects, without an fd per inode.
//!
//! Each entry remembers its backing object by kernel file handle
//! (`name_to_handle_at`), so a tree of any size costs no descriptors. A bounded FIFO
//! cache keeps recently used `O_PATH` fds so hot inodes skip `open_by_handle_at`.
//! Where handles are unavailable (not root, or a filesystem without export support)
//! the entry pins its `O_PATH` fd instead; that mode is bounded by `RLIMIT_NOFILE`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::sys::{self, KHandle};

pub const ROOT_INO: u64 = 1;

/// FUSE inode numbers are the backing inode numbers, so `st_ino` is what the
/// plain directory shows, stable across remounts and equal to readdir's `d_ino`
/// (git, rsync, backup tools and `find -inum` compare them). Objects whose number
/// cannot be used (another device, a number still held by an entry the kernel
/// knows, 1) get one from here up; `.versions` uses 1<<62 and above.
pub const SYNTHETIC_BASE: u64 = 1 << 61;

/// Backing identity: device and inode number on the backing filesystem.
pub type BackingKey = (u64, u64);

/// Where an entry finds its backing object again.
pub struct Backing {
    pub key: BackingKey,
    pub handle: Option<KHandle>,
}

pub struct Inode {
    pub ino: u64,
    /// `S_IFMT` bits of the backing object; the type never changes.
    pub fmt: u32,
    pub backing: RwLock<Backing>,
    fd: Mutex<Option<Arc<OwnedFd>>>,
    nlookup: AtomicU64,
    /// security.capability: 0 unknown, 1 absent, 2 present (see xattr ops).
    pub caps: AtomicU8,
    /// Shared passthrough backing file of this inode (all opens must use the same).
    pub passthrough: Mutex<Weak<fuser::BackingId>>,
    /// Last known (parent inode, name): how versioning names the file. For hard
    /// links it is the name last used.
    pub loc: Mutex<(u64, Vec<u8>)>,
    /// Serializes version capture against opens for writing of this inode.
    pub vlock: Mutex<()>,
    /// An fsync linked this inode into the store while it stayed open (daemon
    /// path, zero copy): the version holds its first `linked_upto` bytes, so
    /// a write below that must first give the version its own copy. 0 when
    /// nothing was linked so (every write is at or above it).
    pub linked_upto: AtomicU64,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.fmt == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.fmt == libc::S_IFREG
    }
}

pub struct InodeStore {
    /// Any fd on the backing filesystem; `open_by_handle_at` resolves against it.
    mount_fd: OwnedFd,
    use_handles: bool,
    map: RwLock<HashMap<u64, Arc<Inode>>>,
    by_key: RwLock<HashMap<BackingKey, u64>>,
    next: AtomicU64,
    cache: Mutex<VecDeque<Weak<Inode>>>,
    cache_cap: usize,
}

impl InodeStore {
    /// `root` is the backing directory, opened before the mount covered it.
    pub fn new(root: OwnedFd, cache_cap: usize) -> io::Result<Self> {
        let st = sys::fstat(root.as_fd())?;
        let mount_fd = root.try_clone()?;
        // Handles need CAP_DAC_READ_SEARCH for open_by_handle_at; probe once.
        let use_handles = match sys::name_to_handle(root.as_fd()) {
            Ok(h) => sys::open_by_handle(mount_fd.as_fd(), &h, libc::O_PATH).is_ok(),
            Err(_) => false,
        };
        let handle = if use_handles {
            sys::name_to_handle(root.as_fd()).ok()
        } else {
            None
        };
        let root_inode = Arc::new(Inode {
            ino: ROOT_INO,
            fmt: libc::S_IFDIR,
            backing: RwLock::new(Backing {
                key: (st.st_dev, st.st_ino),
                handle,
            }),
            fd: Mutex::new(Some(Arc::new(root))),
            nlookup: AtomicU64::new(2),
            caps: AtomicU8::new(0),
            passthrough: Mutex::new(Weak::new()),
            loc: Mutex::new((0, Vec::new())),
            vlock: Mutex::new(()),
            linked_upto: AtomicU64::new(0),
        });
        let mut map = HashMap::new();
        map.insert(ROOT_INO, root_inode);
        let mut by_key = HashMap::new();
        by_key.insert((st.st_dev, st.st_ino), ROOT_INO);
        Ok(Self {
            mount_fd,
            use_handles,
            map: RwLock::new(map),
            by_key: RwLock::new(by_key),
            next: AtomicU64::new(SYNTHETIC_BASE),
            cache: Mutex::new(VecDeque::new()),
            cache_cap,
        })
    }

    /// The live inode entry for a backing object, if the kernel knows it.
    pub fn by_backing(&self, key: BackingKey) -> Option<Arc<Inode>> {
        let ino = *self.by_key.read().get(&key)?;
        self.map.read().get(&ino).cloned()
    }

    pub fn uses_handles(&self) -> bool {
        self.use_handles
    }

    pub fn mount_fd(&self) -> BorrowedFd<'_> {
        self.mount_fd.as_fd()
    }

    pub fn get(&self, ino: u64) -> io::Result<Arc<Inode>> {
        self.map
            .read()
            .get(&ino)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of `O_PATH` fds currently cached for handle-backed inodes.
    pub fn cached_fds(&self) -> usize {
        self.cache.lock().len()
    }

    /// An `O_PATH` fd for the inode: from the cache or reopened by handle.
    pub fn path_fd(&self, inode: &Arc<Inode>) -> io::Result<Arc<OwnedFd>> {
        if let Some(fd) = inode.fd.lock().as_ref() {
            return Ok(fd.clone());
        }
        let fd = {
            let b = inode.backing.read();
            let h = b
                .handle
                .as_ref()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))?;
            Arc::new(sys::open_by_handle(
                self.mount_fd.as_fd(),
                h,
                libc::O_PATH | libc::O_NOFOLLOW,
            )?)
        };
        self.remember_fd(inode, fd.clone());
        Ok(fd)
    }

    fn remember_fd(&self, inode: &Arc<Inode>, fd: Arc<OwnedFd>) {
        let mut slot = inode.fd.lock();
        if slot.is_some() {
            return;
        }
        *slot = Some(fd);
        drop(slot);
        if inode.backing.read().handle.is_none() {
            return; // pinned: no way to reopen it
        }
        let mut q = self.cache.lock();
        q.push_back(Arc::downgrade(inode));
        while q.len() > self.cache_cap {
            if let Some(old) = q.pop_front().and_then(|w| w.upgrade()) {
                *old.fd.lock() = None;
            }
        }
    }

    /// Open the backing object for I/O with `flags` (never through a path).
    pub fn open(&self, inode: &Arc<Inode>, flags: i32) -> io::Result<OwnedFd> {
        let handle = inode.backing.read().handle.clone();
        match handle {
            Some(h) => sys::open_by_handle(self.mount_fd.as_fd(), &h, flags),
            None => {
                let fd = self.path_fd(inode)?;
                sys::open_path(
                    &sys::proc_path(std::os::fd::AsRawFd::as_raw_fd(&*fd)),
                    flags,
                    0,
                )
            }
        }
    }

    /// Find or create the entry for a backing object just opened as `fd` (O_PATH).
    /// Adds one lookup reference.
    pub fn intern(&self, fd: OwnedFd, st: &libc::stat) -> io::Result<Arc<Inode>> {
        let key = (st.st_dev, st.st_ino);
        let handle = if self.use_handles && st.st_dev == self.root_dev() {
            sys::name_to_handle(fd.as_fd()).ok()
        } else {
            None
        };
        let existing = self.by_key.read().get(&key).copied();
        if let Some(ino) = existing {
            // Count the reference under the map lock so a racing forget cannot
            // remove the entry between finding and counting it.
            let map = self.map.read();
            if let Some(inode) = map.get(&ino).cloned() {
                let same = {
                    let b = inode.backing.read();
                    b.key == key && (b.handle.is_none() || b.handle == handle)
                };
                if same {
                    inode.nlookup.fetch_add(1, Ordering::AcqRel);
                    drop(map);
                    self.remember_fd(&inode, Arc::new(fd));
                    return Ok(inode);
                }
            }
        }
        // New object (or the backing inode number was reused by a new file).
        let mut map = self.map.write();
        let ino = if st.st_dev == self.root_dev_of(&map)
            && st.st_ino > ROOT_INO
            && st.st_ino < SYNTHETIC_BASE
            && !map.contains_key(&st.st_ino)
        {
            st.st_ino
        } else {
            self.next.fetch_add(1, Ordering::Relaxed)
        };
        let inode = Arc::new(Inode {
            ino,
            fmt: st.st_mode & libc::S_IFMT,
            backing: RwLock::new(Backing { key, handle }),
            fd: Mutex::new(None),
            nlookup: AtomicU64::new(1),
            caps: AtomicU8::new(0),
            passthrough: Mutex::new(Weak::new()),
            loc: Mutex::new((0, Vec::new())),
            vlock: Mutex::new(()),
            linked_upto: AtomicU64::new(0),
        });
        map.insert(ino, inode.clone());
        drop(map);
        self.by_key.write().insert(key, ino);
        self.remember_fd(&inode, Arc::new(fd));
        Ok(inode)
    }

    fn root_dev(&self) -> u64 {
        self.root_dev_of(&self.map.read())
    }

    fn root_dev_of(&self, map: &HashMap<u64, Arc<Inode>>) -> u64 {
        map.get(&ROOT_INO)
            .map(|r| r.backing.read().key.0)
            .unwrap_or(0)
    }

    /// Point an entry at a different backing object (the versioning layer swaps the
    /// live file's inode when it moves the old one into the store).
    pub fn rebind(&self, inode: &Arc<Inode>, fd: OwnedFd, st: &libc::stat) {
        let key = (st.st_dev, st.st_ino);
        let handle = if self.use_handles {
            sys::name_to_handle(fd.as_fd()).ok()
        } else {
            None
        };
        let old_key = {
            let mut b = inode.backing.write();
            let old = b.key;
            b.key = key;
            b.handle = handle;
            old
        };
        {
            let mut bk = self.by_key.write();
            if bk.get(&old_key) == Some(&inode.ino) {
                bk.remove(&old_key);
            }
            bk.insert(key, inode.ino);
        }
        *inode.fd.lock() = Some(Arc::new(fd));
        if inode.backing.read().handle.is_some() {
            self.cache.lock().push_back(Arc::downgrade(inode));
        }
    }

    /// Path of the inode relative to the root, from the remembered locations.
    pub fn relpath(&self, ino: u64) -> Option<Vec<u8>> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut cur = ino;
        let map = self.map.read();
        for _ in 0..4096 {
            if cur == ROOT_INO {
                parts.reverse();
                return Some(parts.join(&b'/'));
            }
            let inode = map.get(&cur)?;
            let (parent, name) = inode.loc.lock().clone();
            if parent == 0 {
                return None;
            }
            parts.push(name);
            cur = parent;
        }
        None
    }

    /// Drop `n` lookup references; the entry goes away at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut map = self.map.write();
        let Some(inode) = map.get(&ino) else { return };
        let prev = inode.nlookup.fetch_sub(n, Ordering::AcqRel);
        if prev <= n {
            let inode = map.remove(&ino).expect("present");
            drop(map);
            let key = inode.backing.read().key;
            let mut bk = self.by_key.write();
            if bk.get(&key) == Some(&ino) {
                bk.remove(&key);
            }
            *inode.fd.lock() = None;
        }
    }
}
