//! Capture (on the caller's thread, fast) and sealing (on worker threads).
//!
//! Capture puts the content into `incoming/` — a hard link when the caller says
//! nobody will write the inode in place, a reflink or copy otherwise — and records
//! what it knows in a `user.ckptfs.capture` xattr (or a `.cap` sidecar where xattrs
//! are not supported), so a crash before sealing loses nothing: the next mount
//! seals what it finds there. Sealing digests, classifies, drops duplicates, moves
//! the object to its shard and writes the metadata.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;

use super::layout;
use super::meta::{self, VersionMeta};
use super::{Capture, How, Store, hex, unhex};
use crate::classify;
use crate::sys;

pub enum Job {
    Seal(String, Capture),
    Stop,
}

const CAP_XATTR: &std::ffi::CStr = c"user.ckptfs.capture";

impl Store {
    /// Capture the current content of `fd` (any fd on the inode, O_PATH is fine) as
    /// the next version of `relpath`. Returns once the content is safe in the store.
    pub fn capture(
        &self,
        fd: BorrowedFd<'_>,
        relpath: &[u8],
        mut cap: Capture,
        how: How,
    ) -> io::Result<()> {
        let st = sys::fstat(fd)?;
        // Empty content is never a version: there is nothing to lose.
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size == 0 {
            return Ok(());
        }
        cap.path_hex = hex(relpath);
        cap.size = st.st_size as u64;
        cap.mode = st.st_mode & 0o7777;
        cap.uid = st.st_uid;
        cap.gid = st.st_gid;
        cap.mtime_ns = st.st_mtime * 1_000_000_000 + st.st_mtime_nsec;
        let name = format!(
            "{:x}-{}-{}",
            cap.sealed_ns,
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        );
        let cname = CString::new(name.clone()).map_err(io::Error::other)?;
        let proc = sys::proc_path(fd.as_raw_fd());
        let _g = self.share_lock.lock();
        let mut linked = false;
        if how == How::Link && self.same_fs {
            // SAFETY: valid C strings; AT_FDCWD with an absolute /proc path.
            let r = sys::cvt(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    proc.as_ptr(),
                    self.incoming.as_raw_fd(),
                    cname.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            });
            linked = r.is_ok();
        }
        if !linked {
            let src = sys::open_path(&proc, libc::O_RDONLY, 0)?;
            let dst = sys::openat(
                self.incoming.as_fd(),
                &cname,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )?;
            let r = if how == How::CloneOnly {
                sys::ficlone(dst.as_fd(), src.as_fd())
                    .map_err(|_| io::Error::from_raw_os_error(libc::EOPNOTSUPP))
            } else {
                self.copy_into(&src, &dst, cap.size)
            };
            if let Err(e) = r {
                let _ = sys::unlinkat(self.incoming.as_fd(), &cname, 0);
                return Err(e);
            }
            cap.copied = true;
            self.stats.captures_copied.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.captures_linked.fetch_add(1, Ordering::Relaxed);
        }
        let info = serde_json::to_vec(&cap).map_err(io::Error::other)?;
        let ipath = format!("/proc/self/fd/{}/{name}", self.incoming.as_raw_fd());
        let cipath = CString::new(ipath).map_err(io::Error::other)?;
        if sys::setxattr(&cipath, CAP_XATTR, &info, 0).is_err() {
            meta::write_atomic(self.incoming.as_fd(), &format!("{name}.cap"), &info)?;
        }
        if linked {
            self.pending_ino
                .lock()
                .entry(st.st_ino)
                .or_default()
                .push(name.clone());
        }
        drop(_g);
        self.enqueue(name, cap);
        Ok(())
    }

    fn enqueue(&self, name: String, cap: Capture) {
        *self.inflight.lock() += 1;
        let shard =
            layout::path_hash(&unhex(&cap.path_hex)).as_bytes()[0] as usize % self.queues.len();
        if self.queues[shard]
            .send(super::seal::Job::Seal(name, cap))
            .is_err()
        {
            let mut n = self.inflight.lock();
            *n -= 1;
            self.idle.notify_all();
        }
    }

    /// Seal what a crash left in `incoming/`, oldest first.
    pub(super) fn recover_incoming(&self) {
        let Ok(dup) = self.incoming.try_clone() else {
            return;
        };
        let Ok(mut names) = sys::read_dir_fd(dup) else {
            return;
        };
        names.sort();
        for (n, _, _) in names {
            let name = String::from_utf8_lossy(&n).into_owned();
            if name.ends_with(".cap") || name.starts_with('.') {
                continue;
            }
            if name.starts_with("unshare-") || name.ends_with(".unshare") {
                let _ = sys::unlinkat(self.incoming.as_fd(), &CString::new(name).unwrap(), 0);
                continue;
            }
            let ipath = format!("/proc/self/fd/{}/{name}", self.incoming.as_raw_fd());
            let info = sys::getxattr(&CString::new(ipath).unwrap(), CAP_XATTR, 64 * 1024)
                .or_else(|_| meta::read_at(self.incoming.as_fd(), &format!("{name}.cap")));
            match info
                .ok()
                .and_then(|b| serde_json::from_slice::<Capture>(&b).ok())
            {
                Some(cap) => {
                    log::info!("recovering capture {name}");
                    self.enqueue(name, cap)
                }
                None => log::warn!("incoming/{name}: no capture record; left for `ckptfs verify`"),
            }
        }
    }

    pub(super) fn worker(&self, r: crossbeam_channel::Receiver<Job>) {
        while let Ok(job) = r.recv() {
            let Job::Seal(name, cap) = job else { break };
            if let Err(e) = self.seal(&name, &cap) {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "sealing {} ({name}): {e}",
                    String::from_utf8_lossy(&unhex(&cap.path_hex))
                );
            }
            let mut n = self.inflight.lock();
            *n -= 1;
            if *n == 0 {
                self.idle.notify_all();
            }
        }
    }

    fn forget_pending(&self, name: &str) {
        let mut pi = self.pending_ino.lock();
        pi.retain(|_, v| {
            v.retain(|n| n != name);
            !v.is_empty()
        });
    }

    fn seal(&self, name: &str, cap: &Capture) -> io::Result<()> {
        let relpath = unhex(&cap.path_hex);
        let cname = CString::new(name).map_err(io::Error::other)?;
        let obj = sys::openat(self.incoming.as_fd(), &cname, libc::O_RDONLY, 0)?;
        // Digest the captured length (the object may be a longer appended inode).
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        let mut head = Vec::new();
        while off < cap.size {
            let want = ((cap.size - off) as usize).min(buf.len());
            let n = sys::pread_full(obj.as_fd(), &mut buf[..want], off)?;
            if n == 0 {
                break;
            }
            if head.len() < classify::WINDOW {
                let take = (classify::WINDOW - head.len()).min(n);
                head.extend_from_slice(&buf[..take]);
            }
            hasher.update(&buf[..n]);
            off += n as u64;
        }
        let size = off;
        let digest = hasher.finalize().to_hex().to_string();
        let _g = self.share_lock.lock();
        let dup = self
            .index
            .read()
            .get(&relpath)
            .and_then(|h| h.latest())
            .is_some_and(|l| l.size == size && l.digest == digest);
        if dup {
            drop(_g);
            self.forget_pending(name);
            sys::unlinkat(self.incoming.as_fd(), &cname, 0)?;
            let _ = sys::unlinkat(
                self.incoming.as_fd(),
                &CString::new(format!("{name}.cap")).unwrap(),
                0,
            );
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let tail_len = (size as usize).min(classify::WINDOW);
        let mut tail = vec![0u8; tail_len];
        let n = sys::pread_full(obj.as_fd(), &mut tail, size - tail_len as u64)?;
        tail.truncate(n);
        let fname = relpath.rsplit(|&b| b == b'/').next().unwrap_or(&relpath);
        let class = classify::classify(&head, &tail, size, &String::from_utf8_lossy(fname));
        if cap.copied {
            sys::fsync(obj.as_fd(), true)?;
        }
        let ost = sys::fstat(obj.as_fd())?;
        drop(obj);
        let number = self
            .index
            .read()
            .get(&relpath)
            .map(|h| h.next_number())
            .unwrap_or(1);
        let mut m = VersionMeta {
            format: layout::FORMAT_VERSION,
            path: String::new(),
            path_hex: None,
            number,
            sealed_ns: cap.sealed_ns,
            mtime_ns: cap.mtime_ns,
            size,
            mode: cap.mode,
            uid: cap.uid,
            gid: cap.gid,
            digest,
            category: class.category.to_string(),
            mime: class.mime,
            complete: class.complete,
            incomplete_reason: class.why,
            reason: cap.reason,
            writer: cap.writer.clone(),
            pinned: false,
            object_ino: ost.st_ino,
            compressed: false,
        };
        m.set_relpath(&relpath);
        let dir = layout::version_dir(&m.category, &relpath);
        let dfd = self.mkdirs(&dir)?;
        let data = CString::new(layout::data_name(number)).map_err(io::Error::other)?;
        // Object before its metadata: a crash in between leaves an orphan object
        // that `verify` reports, never metadata without content.
        sys::renameat2(self.incoming.as_fd(), &cname, dfd.as_fd(), &data, 0)?;
        let bytes = serde_json::to_vec_pretty(&m).map_err(io::Error::other)?;
        meta::write_atomic(dfd.as_fd(), &layout::meta_name(number), &bytes)?;
        let _ = sys::unlinkat(
            self.incoming.as_fd(),
            &CString::new(format!("{name}.cap")).unwrap(),
            0,
        );
        self.index.write().insert(m.clone());
        self.forget_pending(name);
        drop(_g);
        self.stats.sealed.fetch_add(1, Ordering::Relaxed);
        log::debug!("sealed {} v{number} ({})", m.path, m.reason.as_str());
        self.retain_path(&relpath, &m.category);
        Ok(())
    }

    /// `mkdir -p` under the store, returning the last directory.
    pub(super) fn mkdirs(&self, rel: &str) -> io::Result<std::os::fd::OwnedFd> {
        let mut cur = self.dir.try_clone()?;
        for comp in rel.split('/') {
            let c = CString::new(comp).map_err(io::Error::other)?;
            // SAFETY: valid fd and name.
            let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o700) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e);
                }
            }
            cur = sys::openat(cur.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        }
        Ok(cur)
    }
}
