//! The FUSE adapter: a passthrough filesystem over the backing directory, with the
//! store hidden and the `.versions` view added. The only module that names `fuser`.
//!
//! Callbacks are thin shims over helpers that return `io::Result`; the errno is
//! converted once, at reply time.

mod acl;
mod attr;
mod creds;
mod dir_ops;
mod dispatch;
mod file_ops;
mod handles;
pub mod inode;
mod killpriv;
mod node_ops;
pub mod op_stats;
mod options;
mod pending;
pub mod versioning;
mod versions_view;
mod xattr_ops;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fuser::Errno;

use crate::store::Store;
use handles::Handles;
use inode::{Inode, InodeStore, ROOT_INO};
pub use options::{FsOptions, VersioningOptions};

/// How long the kernel may cache entries and attributes of live files. Every change
/// goes through the mount, so long is safe (as passthrough_hp does).
const TTL: Duration = Duration::from_secs(86400);

pub struct CkptFs {
    inodes: Arc<InodeStore>,
    handles: Arc<Handles>,
    opts: FsOptions,
    store: Option<Arc<Store>>,
    versioner: Option<Arc<versioning::Versioner>>,
    view: versions_view::View,
    /// Set in `init` when the kernel accepted passthrough (also read by the daemon).
    pub passthrough_flag: Arc<AtomicBool>,
    /// How many inodes the `.versions` view holds (`ckptfs stats`).
    pub view_inodes: Arc<std::sync::atomic::AtomicU64>,
    /// Set in `init` when the kernel accepted the writeback cache.
    pub writeback_flag: Arc<AtomicBool>,
    /// Request counts and latency, when `FsOptions::count_requests` (the
    /// metrics endpoint reads them).
    pub op_stats: Option<Arc<op_stats::OpStats>>,
    /// Set by the daemon once the session exists: tells the kernel to drop
    /// attributes it caches when the daemon changes them on its own
    /// (`killpriv`).
    pub notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl CkptFs {
    /// The daemon changed `ino`'s attributes outside a reply that carries
    /// them: the kernel must ask again. Attributes only (offset -1), so this is
    /// safe inside a request, even a write holding the inode's pages.
    fn attrs_changed(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(fuser::INodeNo(ino), -1, 0)
        {
            log::debug!("invalidating the attributes of inode {ino}: {e}");
        }
    }
}

pub(crate) fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The one translation of the store's errors at the FUSE boundary.
pub(crate) fn store_err(e: crate::store::StoreError) -> io::Error {
    err(e.to_errno())
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

impl CkptFs {
    /// `root` is the backing directory, opened before the mount covers it.
    /// `vopts` apply when there is a store and they enable versioning.
    pub fn new(
        root: OwnedFd,
        opts: FsOptions,
        store: Option<Arc<Store>>,
        vopts: VersioningOptions,
    ) -> io::Result<Self> {
        let inodes = Arc::new(InodeStore::new(root, opts.fd_cache.max(16))?);
        let handles = Arc::new(Handles::default());
        let versioner = store.as_ref().filter(|_| vopts.enabled).map(|s| {
            versioning::Versioner::start(inodes.clone(), handles.clone(), s.clone(), vopts)
        });
        let view = versions_view::View::new(
            store.clone(),
            Some(inodes.clone()),
            opts.hidden_store.as_ref().map(|(_, n)| n.clone()),
        );
        Ok(Self {
            view_inodes: view.nodes_held(),
            view,
            inodes,
            handles,
            versioner,
            store,
            passthrough_flag: Arc::new(AtomicBool::new(false)),
            writeback_flag: Arc::new(AtomicBool::new(false)),
            notifier: Arc::default(),
            op_stats: opts
                .count_requests
                .then(|| Arc::new(op_stats::OpStats::default())),
            opts,
        })
    }

    fn timed(&self, op: op_stats::Op) -> op_stats::Timed<'_> {
        op_stats::Timed::start(self.op_stats.as_deref(), op)
    }

    pub fn uses_file_handles(&self) -> bool {
        self.inodes.uses_handles()
    }

    /// The versioning engine, when this mount keeps history.
    fn ver(&self) -> Option<&versioning::Versioner> {
        self.versioner.as_deref()
    }

    fn passthrough(&self) -> bool {
        self.passthrough_flag.load(Ordering::Relaxed)
    }

    /// Flags for the daemon's own open of a backing file. With the writeback
    /// cache the kernel writes back pages (and reads to fill them) through any
    /// open of the inode at the offsets it chooses, so the backing fd must be
    /// readable and must not append.
    fn backing_flags(&self, flags: i32) -> i32 {
        let mut f = flags & !file_ops::STRIP;
        if self.writeback_flag.load(Ordering::Relaxed) {
            if f & libc::O_ACCMODE == libc::O_WRONLY {
                f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
            }
            f &= !libc::O_APPEND;
        }
        f
    }

    /// The store's own directory: the live view must never show it or let anyone
    /// touch it. The name is compared first, so other names cost nothing.
    fn is_hidden(&self, parent: u64, name: &OsStr) -> bool {
        self.opts.hidden_store.as_ref().is_some_and(|(key, n)| {
            n == name.as_bytes()
                && self
                    .inodes
                    .get(parent)
                    .is_ok_and(|p| p.backing.read().key == *key)
        })
    }

    fn is_versions_name(&self, parent: u64, name: &OsStr) -> bool {
        parent == ROOT_INO
            && self
                .opts
                .versions_name
                .as_deref()
                .is_some_and(|h| h == name.as_bytes())
    }

    /// The choke point: resolve (parent, name) to the parent's fd and a C name.
    /// Every operation on a live name goes through here, then uses `*at` calls.
    fn at(&self, parent: u64, name: &OsStr) -> io::Result<(Arc<Inode>, Arc<OwnedFd>, CString)> {
        if versions_view::is_virtual(parent) {
            return Err(err(libc::EROFS));
        }
        if self.is_hidden(parent, name) {
            return Err(err(libc::ENOENT));
        }
        if self.is_versions_name(parent, name) {
            return Err(err(libc::EROFS));
        }
        let p = self.inodes.get(parent)?;
        let fd = self.inodes.path_fd(&p)?;
        Ok((p, fd, crate::sys::cstr(name)?))
    }

    /// Look up a child on the backing filesystem and intern it (one lookup ref).
    fn lookup_live(&self, parent: u64, name: &OsStr) -> io::Result<fuser::FileAttr> {
        let (_, pfd, cname) = self.at(parent, name)?;
        let fd = crate::sys::openat(pfd.as_fd(), &cname, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = crate::sys::fstat(fd.as_fd())?;
        let inode = self.inodes.intern(fd, &st)?;
        *inode.loc.lock() = (parent, name.as_bytes().to_vec());
        Ok(self.live_attr(inode.ino, &st))
    }

    /// Attributes of a live object as users must see them: hard links the store
    /// holds for versions are not the user's links, so they do not count.
    fn live_attr(&self, ino: u64, st: &libc::stat) -> fuser::FileAttr {
        let mut a = attr::to_attr(ino, st);
        if a.nlink > 1
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && let Some(s) = &self.store
        {
            a.nlink = a.nlink.saturating_sub(s.links_to(st.st_ino)).max(1);
        }
        a
    }

    fn stat_inode(&self, inode: &Arc<Inode>) -> io::Result<libc::stat> {
        let fd = self.inodes.path_fd(inode)?;
        crate::sys::fstat(fd.as_fd())
    }

    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// The versioning engine (for the control socket: snapshot).
    pub fn versioner(&self) -> Option<Arc<versioning::Versioner>> {
        self.versioner.clone()
    }

    /// Seal everything pending (unmount, signals).
    fn flush_all(&self) {
        if let Some(v) = &self.versioner {
            v.seal_all_pending(crate::store::Reason::Unmount);
            v.stop();
        }
        if let Some(s) = &self.store {
            s.flush_pending();
        }
    }
}
