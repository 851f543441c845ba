//! What each FUSE event means for history: the engine's entry points, called
//! by the operation groups (`node_ops.rs`, `file_ops.rs`) at the moment the
//! event happens, before the change reaches the backing file.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{How, Inode, ROOT_INO, Reason, Versioner, writer_of};
use crate::store::{Change, Writer};
use crate::sys;

/// The least time a passthrough fsync's version waits for the writer's close
/// before the file is copied (when `settle_ms` is shorter).
const FSYNC_HOLD: std::time::Duration = std::time::Duration::from_millis(100);

impl Versioner {
    /// Called with the inode's vlock held through the truncate itself, so no
    /// seal can link the inode into the store in between.
    pub(crate) fn before_truncate(
        &self,
        pid: u32,
        inode: &Arc<Inode>,
        size: u64,
    ) -> io::Result<()> {
        let Some(p) = self.path_of(inode) else {
            // Not versioned under this name; a version under another may share it.
            return self.before_inplace_change(inode);
        };
        self.before_rewrite(inode, &p, Reason::Truncate, size, pid)
    }

    /// The path of `name` in directory `parent`, relative to the mount root.
    pub(crate) fn child_path(&self, parent: u64, name: &OsStr) -> Option<Vec<u8>> {
        let mut p = if parent == ROOT_INO {
            Vec::new()
        } else {
            self.inodes.relpath(parent)?
        };
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name.as_bytes());
        Some(p)
    }

    /// The journal records when a versioned name was unlinked, for the
    /// point-in-time view (an ignored name is never shown there).
    pub(crate) fn journal_delete(&self, p: &[u8]) {
        if self.versioned(p) {
            self.store.note_change(Change::Deleted(p));
        }
    }

    /// Likewise for a rename; recorded when either name is versioned.
    pub(crate) fn journal_rename(&self, from: &[u8], to: &[u8]) {
        if self.versioned(from) || self.versioned(to) {
            self.store.note_change(Change::Renamed(from, to));
        }
    }

    /// `relpath` (from [`Versioner::child_path`]) is about to be unlinked or
    /// renamed over: keep its content first.
    pub(crate) fn before_destroy(
        &self,
        pid: u32,
        relpath: Option<&[u8]>,
        pfd: &Arc<OwnedFd>,
        cname: &CStr,
        reason: Reason,
    ) -> io::Result<()> {
        let Ok(st) = sys::fstatat(pfd.as_fd(), cname) else {
            return Ok(());
        };
        // Only non-empty regular files have content to keep.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size == 0 {
            return Ok(());
        }
        let Some(relpath) = relpath else {
            return Ok(());
        };
        if !self.versioned(relpath) {
            return Ok(());
        }
        let live = self.inodes.by_backing((st.st_dev, st.st_ino));
        let _g = live.as_ref().map(|i| i.vlock.lock());
        let pending = live
            .as_ref()
            .is_some_and(|i| self.pending.lock().remove(&i.ino).is_some());
        if !pending && self.already_kept(relpath, &st) {
            return Ok(()); // the common unlink (`rm -rf` of saved files): no open
        }
        let fd = sys::openat(pfd.as_fd(), cname, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let writers = live
            .as_ref()
            .map(|i| self.handles.writers(i.ino))
            .unwrap_or(0);
        let how = if writers == 0 { How::Link } else { How::Copy };
        self.capture(&fd, relpath, reason, writer_of(pid), how)?;
        // About to leave the live tree: cold history now. Not worth three
        // syscalls for a small file (rm -rf of many).
        if st.st_nlink == 1 && writers == 0 && st.st_size >= 1 << 20 {
            self.cold.drop_later(Arc::new(fd));
        }
        Ok(())
    }

    pub(crate) fn before_write_open(
        &self,
        pid: u32,
        inode: &Arc<Inode>,
        flags: i32,
    ) -> io::Result<()> {
        let Some(p) = self.path_of(inode) else {
            // This name is not versioned, but a version made under another
            // name (a hard link, a name since renamed) may share the inode.
            if flags & libc::O_TRUNC != 0 || flags & libc::O_APPEND == 0 {
                return self.before_inplace_change(inode);
            }
            return Ok(());
        };
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            self.writer_opened(inode);
        }
        if flags & libc::O_TRUNC != 0 {
            self.before_rewrite(inode, &p, Reason::Overwrite, 0, pid)
        } else {
            self.before_write(inode, &p, flags & libc::O_APPEND != 0, pid)
        }
    }

    /// A write through the daemon at `offset`: if an fsync linked the inode
    /// into the store while it stayed open and the write lands inside the
    /// linked bytes, the version gets its own copy first (appends need none).
    pub(crate) fn before_daemon_write(&self, inode: &Arc<Inode>, offset: u64) -> io::Result<()> {
        if offset >= inode.linked_upto.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _g = inode.vlock.lock();
        if offset >= inode.linked_upto.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.before_inplace_change(inode)?;
        inode.linked_upto.store(0, Ordering::SeqCst);
        Ok(())
    }

    pub(crate) fn before_inplace_change(&self, inode: &Arc<Inode>) -> io::Result<()> {
        let fd = self.inodes.path_fd(inode)?;
        let st = sys::fstat(fd.as_fd())?;
        self.store
            .unshare(fd.as_fd(), st.st_ino)
            .map_err(crate::fs::store_err)
    }

    pub(crate) fn note_dirty(&self, inode: &Arc<Inode>) {
        if self.handles.writers(inode.ino) == 0 && self.path_of(inode).is_some() {
            self.schedule(inode, Reason::Close, None);
        }
    }

    pub(crate) fn after_create(&self, inode: &Arc<Inode>) {
        if self.path_of(inode).is_some() {
            self.writer_opened(inode);
        }
    }

    /// A second writer opened a file that already has one: POSIX semantics hold
    /// for the live file; we count and log it, and every displaced state still
    /// becomes a version at the triggers.
    pub(crate) fn note_conflict(&self, inode: &Arc<Inode>, pid: u32) {
        self.store.stats.conflicts.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "concurrent writers on {} (new writer pid {pid})",
            String::from_utf8_lossy(&self.inodes.relpath(inode.ino).unwrap_or_default())
        );
    }

    /// A renamed file now lives under a (maybe versioned) new name: its content is
    /// the new state of that name.
    pub(crate) fn after_rename_target(&self, inode: &Arc<Inode>) {
        if self.path_of(inode).is_some() {
            self.schedule(inode, Reason::Close, None);
        }
    }

    pub(crate) fn on_dirty_release(&self, inode: &Arc<Inode>, pid: u32) {
        if self.handles.writers(inode.ino) > 0 {
            // Another writer keeps the file open and will change it: this
            // writer's last state is kept now (guarantee 4), as at an fsync.
            self.capture_while_open(inode, pid, Reason::Close);
            return;
        }
        self.last_fsync.lock().remove(&inode.ino);
        // The last writer is gone: later writers unshare at their open.
        inode.linked_upto.store(0, Ordering::SeqCst);
        let Some(p) = self.path_of(inode) else { return };
        // A save ended: the reserve learns its size now, not at the seal (a
        // rewrite before the settle time would seal it as an overwrite).
        if let Ok(st) = self
            .inodes
            .path_fd(inode)
            .and_then(|fd| sys::fstat(fd.as_fd()))
        {
            self.store.note_save(&p, st.st_size as u64);
        }
        self.open_dirty.lock().remove(&inode.ino);
        let owed = self.settle_owed(inode);
        let reason = match self.pending.lock().get(&inode.ino) {
            Some(p) if p.reason == Reason::Fsync && owed => Reason::Fsync,
            _ => Reason::Close,
        };
        self.schedule(inode, reason, writer_of(pid));
    }

    pub(crate) fn on_fsync(&self, inode: &Arc<Inode>, pid: u32) {
        // A file fsynced all the time (a database, a logger) gets one fsync
        // version per interval; its later states are kept by the next fsync
        // after it, the open-and-dirty interval, or the last close.
        {
            let mut last = self.last_fsync.lock();
            let now = Instant::now();
            if last
                .get(&inode.ino)
                .is_some_and(|t| now.duration_since(*t) < self.opts.fsync_min_interval)
            {
                self.store
                    .stats
                    .fsync_throttled
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            last.insert(inode.ino, now);
        }
        self.capture_while_open(inode, pid, Reason::Fsync);
    }

    /// Capture the state of a file that stays open for writing (fsync, or a
    /// writer's close while another writer remains).
    fn capture_while_open(&self, inode: &Arc<Inode>, pid: u32, reason: Reason) {
        let Some(p) = self.path_of(inode) else { return };
        let _g = inode.vlock.lock();
        let r = self.inodes.path_fd(inode).and_then(|fd| {
            let st = sys::fstat(fd.as_fd())?;
            if self.already_kept(&p, &st) {
                return Ok(());
            }
            // The writer still holds the file, so a hard link would change under
            // it. On the daemon data path every later write passes here first:
            // link now (zero copy) and copy only if a write lands below the
            // linked size (`before_daemon_write`). Appenders cannot change what
            // is there: link too. Otherwise (passthrough, writes unseen)
            // reflink where the filesystem can, copy if the user opted in with
            // `fsync_copy_limit`, else owe the version: the close (or the file
            // left unchanged for the settle time) takes it if the state is
            // still the synced one (`settle_owed`).
            let all_daemon =
                self.handles.daemon_opens(inode.ino) == self.handles.open_count(inode.ino);
            let appends = self.handles.only_appenders(inode.ino);
            let small = (st.st_size as u64) <= self.opts.fsync_copy_limit;
            let how = if (all_daemon || appends) && self.store.links_here() {
                if all_daemon {
                    inode
                        .linked_upto
                        .fetch_max(st.st_size as u64, Ordering::SeqCst);
                }
                How::Link
            } else if small || reason != Reason::Fsync {
                // A writer's close while another writes on (guarantee 4):
                // that state cannot wait for a later trigger.
                How::Copy
            } else {
                How::CloneOnly
            };
            match self.capture(&fd, &p, reason, writer_of(pid), how) {
                Ok(()) => {
                    self.pending.lock().remove(&inode.ino);
                    Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    // Owed: a save closes right after its fsync, so wait at
                    // least FSYNC_HOLD for that close before copying instead.
                    self.owed.lock().insert(inode.ino, st);
                    let hold = self.opts.settle.max(FSYNC_HOLD);
                    self.schedule_in(inode, reason, writer_of(pid), hold);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        });
        if let Err(e) = r {
            log::warn!(
                "{} version of {}: {e}",
                reason.as_str(),
                String::from_utf8_lossy(&p)
            );
        }
    }
}

impl Versioner {
    /// A passthrough fsync owed a version (`capture_while_open`). Is the
    /// file still in the state that fsync synced? If a write moved it, that
    /// state is gone (passthrough writes bypass the daemon) and is counted.
    /// Forgets the debt either way.
    fn settle_owed(&self, inode: &Arc<Inode>) -> bool {
        let Some(synced) = self.owed.lock().remove(&inode.ino) else {
            return true;
        };
        let now = self
            .inodes
            .path_fd(inode)
            .and_then(|fd| sys::fstat(fd.as_fd()));
        if now.is_ok_and(|st| sys::same_state(&synced, &st)) {
            return true;
        }
        self.store
            .stats
            .fsync_superseded
            .fetch_add(1, Ordering::Relaxed);
        log::info!(
            "{}: written again after fsync before its close; the state at close is kept",
            String::from_utf8_lossy(&self.inodes.relpath(inode.ino).unwrap_or_default())
        );
        false
    }

    /// The settle timer found an owed fsync version whose writer is still
    /// open: copy it now if the file has not changed since the fsync (and
    /// does not change during the copy). Returns whether it was taken.
    pub(super) fn take_owed_while_open(&self, inode: &Arc<Inode>, writer: Option<Writer>) -> bool {
        let Some(synced) = self.owed.lock().get(&inode.ino).copied() else {
            return false;
        };
        let Some(relpath) = self.path_of(inode) else {
            return false;
        };
        let r = self.inodes.path_fd(inode).and_then(|fd| {
            if !sys::same_state(&synced, &sys::fstat(fd.as_fd())?) {
                return Err(io::Error::from_raw_os_error(libc::EAGAIN));
            }
            self.capture(&fd, &relpath, Reason::Fsync, writer, How::CopyStable)
        });
        match r {
            Ok(()) => {
                self.owed.lock().remove(&inode.ino);
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                self.settle_owed(inode);
                false
            }
            Err(e) => {
                log::warn!(
                    "fsync version of {}: {e}",
                    String::from_utf8_lossy(&relpath)
                );
                false
            }
        }
    }
}
