//! `captures`, the log of capture records (FORMAT.md, "Capture records"): one
//! line appended per capture before its object is placed in `incoming/`,
//! emptied whenever nothing is in flight, and rewritten without its finished
//! records when a stream of captures never lets it empty.

use std::ffi::CString;
use std::io::{self, BufRead, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::layout;
use super::meta;
use super::{Capture, Store};
use crate::sys;

/// The log is rewritten once it holds this much and more than twice as many
/// records as captures are in flight (so at least half of it is finished
/// with): a steady stream of captures (one every 10 ms, each sealed seconds
/// later) never empties it, and it grew ~250 bytes per capture for as long
/// as the stream lasted. A rewrite costs a look in `incoming/` per record and
/// comes at most once per in-flight count of new records.
pub(super) const COMPACT_MIN: u64 = 256 << 10;
/// How long a rewrite waits for the captures in progress (each holds the
/// log from writing its record until its object is in `incoming/`).
const GATE_WAIT: Duration = Duration::from_millis(100);

/// A line of `captures`: the object's name in `incoming/` and its record
/// (borrowed when written, owned when read).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct LogLine<'a> {
    pub(super) name: std::borrow::Cow<'a, str>,
    pub(super) cap: std::borrow::Cow<'a, Capture>,
}

impl Store {
    /// The capture record: a line of `captures` (JSON, see FORMAT.md), one
    /// write with no file to create, where a `.cap` file cost a create and an
    /// unlink per version. `log` is the caller's hold on the log (None in a
    /// read-only open: a `.cap` file then).
    pub(super) fn write_record(
        &self,
        log: Option<&OwnedFd>,
        name: &str,
        cap: &Capture,
    ) -> io::Result<()> {
        let Some(log) = log else {
            return self.write_record_file(name, cap);
        };
        // Led by a newline too: a line torn by a failed write never runs into
        // the next record.
        let mut line = Vec::with_capacity(320);
        line.push(b'\n');
        let l = LogLine {
            name: name.into(),
            cap: std::borrow::Cow::Borrowed(cap),
        };
        serde_json::to_writer(&mut line, &l).map_err(io::Error::other)?;
        line.push(b'\n');
        sys::write_all(log.as_fd(), &line)?;
        self.sealer.log_records.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The capture record as `incoming/<name>.cap`: the format-3 form, still
    /// used for a record that must outlive `captures` (its seal failed).
    pub(super) fn write_record_file(&self, name: &str, cap: &Capture) -> io::Result<()> {
        let info = serde_json::to_vec(cap).map_err(io::Error::other)?;
        let c = CString::new(layout::cap_name(name)).map_err(io::Error::other)?;
        let f = sys::openat(
            self.sealer.incoming.as_fd(),
            &c,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )?;
        let r = std::io::Write::write_all(&mut std::fs::File::from(f), &info);
        if r.is_err() {
            // An empty or torn file would hide the log's record at recovery.
            let _ = sys::unlinkat(self.sealer.incoming.as_fd(), &c, 0);
        }
        r
    }

    /// A capture that will not be sealed while this daemon runs keeps its
    /// record in `incoming/<name>.cap`, since `captures` is emptied once
    /// nothing is in flight; where that file cannot be written (a full
    /// disk), `captures` is no longer emptied.
    pub(super) fn keep_record(&self, name: &str, cap: &Capture) {
        if let Err(e) = self.write_record_file(name, cap) {
            self.sealer.log_holds_failed.store(true, Ordering::SeqCst);
            log::error!("keeping the capture record of {name}: {e}");
        }
    }

    /// The records in `captures` by object name (the last line for a name wins:
    /// a capture that fell back to copying writes its record again).
    pub(super) fn read_capture_log(&self) -> std::collections::HashMap<String, Capture> {
        let mut caps = std::collections::HashMap::new();
        let Ok(bytes) = meta::read_at(self.dir(), layout::CAPTURES) else {
            return caps;
        };
        for (_, _, line) in meta::json_lines::<LogLine>(&bytes) {
            match line {
                Ok(l) => {
                    caps.insert(l.name.into_owned(), l.cap.into_owned());
                }
                // A line a crash or a full disk tore: its capture has no record.
                Err(e) => log::warn!("{}: skipping a torn record: {e}", layout::CAPTURES),
            }
        }
        caps
    }

    /// Nothing is in flight: every record is done with, so the log starts
    /// afresh. The caller holds `inflight` (at 0), so no capture holds the
    /// log or writes a record meanwhile. While a rewrite runs it is left to
    /// the rewrite, decided under the log's lock, which the rewrite takes
    /// when it starts (and never holds while waiting for `inflight`).
    pub(super) fn empty_log(&self) {
        if self.sealer.log_holds_failed.load(Ordering::SeqCst) {
            return;
        }
        let log = self.sealer.log.write();
        if self.sealer.compacting.load(Ordering::SeqCst) {
            self.sealer.empty_owed.store(true, Ordering::SeqCst);
            return;
        }
        let Some(fd) = log.as_ref() else { return };
        match sys::ftruncate(fd.as_fd(), 0) {
            Ok(()) => self.sealer.log_records.store(0, Ordering::Relaxed),
            Err(e) => log::warn!("emptying {}: {e}", layout::CAPTURES),
        }
    }

    /// Rewrite `captures` when it has grown past its bound (see `COMPACT_MIN`).
    pub(super) fn compact_log_if_due(&self) {
        let size = {
            let log = self.sealer.log.read();
            let fd = log.as_ref().and_then(|fd| sys::fstat(fd.as_fd()).ok());
            fd.map_or(0, |st| st.st_size as u64)
        };
        let due = size > COMPACT_MIN
            && self.sealer.log_records.load(Ordering::Relaxed) > 2 * *self.sealer.inflight.lock();
        if !due || self.sealer.compacting.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.compact_log() {
            log::warn!("rewriting {}: {e}", layout::CAPTURES);
        }
        // Under `inflight`, as `empty_log` is called: an emptying either
        // came before (owed) or comes after and does it itself.
        let inflight = self.sealer.inflight.lock();
        self.sealer.compacting.store(false, Ordering::SeqCst);
        if self.sealer.empty_owed.swap(false, Ordering::SeqCst) && *inflight == 0 {
            self.empty_log();
        }
    }

    /// Keep only the records whose objects are still in `incoming/` (objects
    /// only ever leave it, sealed or dropped). The log is read outside the
    /// lock up to where it ended at a moment no capture was between its
    /// record and its object, line by line into `captures.tmp`; the lines
    /// added since are copied as they are, under the lock, and the new log is
    /// renamed over the old: a crash leaves one or the other, each with every
    /// live record.
    fn compact_log(&self) -> io::Result<()> {
        // From here until the rewrite ends the log is not emptied (`empty_log`).
        let len0 = {
            let Some(log) = self.sealer.log.try_write_for(GATE_WAIT) else {
                return Ok(());
            };
            let Some(fd) = log.as_ref() else {
                return Ok(());
            };
            sys::fstat(fd.as_fd())?.st_size as u64
        };
        let name = CString::new(layout::CAPTURES).expect("no NUL");
        let tmp = CString::new(layout::CAPTURES_TMP).expect("no NUL");
        let mut old = std::fs::File::from(sys::openat(
            self.dir(),
            &name,
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
        )?);
        let new = sys::openat(
            self.dir(),
            &tmp,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        )?;
        let r = self.rewrite(&mut old, &new, len0, &tmp, &name);
        if !matches!(r, Ok(true)) {
            let _ = sys::unlinkat(self.dir(), &tmp, 0);
        }
        r.map(drop)
    }

    /// `compact_log` from `old` into `new`; true when `new` replaced the log.
    fn rewrite(
        &self,
        old: &mut std::fs::File,
        new: &OwnedFd,
        len0: u64,
        tmp: &CString,
        name: &CString,
    ) -> io::Result<bool> {
        let mut out = io::BufWriter::new(std::fs::File::from(new.try_clone()?));
        let mut records = 0u64;
        let mut rd = io::BufReader::new((&mut *old).take(len0));
        let mut line = Vec::new();
        loop {
            line.clear();
            if rd.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let raw = line.strip_suffix(b"\n").unwrap_or(&line);
            let live = !raw.is_empty()
                && serde_json::from_slice::<LogLine>(raw).is_ok_and(|l| {
                    CString::new(l.name.as_bytes())
                        .is_ok_and(|c| sys::fstatat(self.sealer.incoming.as_fd(), &c).is_ok())
                });
            if live {
                out.write_all(b"\n")?;
                out.write_all(raw)?;
                out.write_all(b"\n")?;
                records += 1;
            }
        }
        out.flush()?;
        drop(rd);
        let Some(mut log) = self.sealer.log.try_write_for(GATE_WAIT) else {
            return Ok(false);
        };
        old.seek(io::SeekFrom::Start(len0))?;
        let mut tail = Vec::new();
        old.read_to_end(&mut tail)?;
        out.write_all(&tail)?;
        out.flush()?;
        records += meta::json_lines::<serde::de::IgnoredAny>(&tail).count() as u64;
        // Cloned first: once renamed, the log must move to the new file.
        let fd = new.try_clone()?;
        sys::renameat2(self.dir(), tmp, self.dir(), name, 0)?;
        *log = Some(fd);
        self.sealer.log_records.store(records, Ordering::Relaxed);
        log::debug!(
            "{}: {len0} bytes rewritten, {records} records kept",
            layout::CAPTURES
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reason;
    use crate::store::testing::{capture_file, store, wait_for};

    fn log_len(root: &std::path::Path) -> u64 {
        std::fs::metadata(root.join("store").join(layout::CAPTURES))
            .unwrap()
            .len()
    }

    /// A stream of captures that never lets `inflight` reach 0 (here one
    /// capture held in flight throughout) never empties the log: it is
    /// rewritten instead, and keeps only what is still to seal.
    #[test]
    fn a_log_that_is_never_emptied_is_rewritten_without_its_sealed_records() {
        let (root, s) = store("caplog-stream");
        s.count();
        let _h = s.hurry();
        const N: usize = 6000;
        for i in 0..N {
            capture_file(&root, &s, &format!("f{i}"), format!("state {i}").as_bytes());
        }
        let written = s.stats.captures_linked.load(Ordering::Relaxed) as usize;
        assert_eq!(written, N);
        // Each record is ~220 bytes: 1.3 MB of them, all sealed by the end.
        wait_for("every capture sealed and the log rewritten", || {
            *s.sealer.inflight.lock() == 1
                && !s.sealer.compacting.load(Ordering::SeqCst)
                && log_len(&root) <= COMPACT_MIN
        });
        assert_eq!(s.with_index(|i| i.total_versions()), N);
        // The stream ends: the log is emptied as before.
        s.uncount(1);
        assert_eq!(log_len(&root), 0);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A rewrite keeps exactly the records whose objects are still in
    /// `incoming/`, in the documented form, and what is read back at the next
    /// mount is theirs.
    #[test]
    fn a_rewrite_keeps_the_records_of_objects_still_in_incoming() {
        let (root, s) = store("caplog-keep");
        s.count();
        let cap = |t: i64| Capture {
            path_hex: crate::store::hex(b"a.bin"),
            reason: Reason::Close,
            sealed_ns: t,
            mtime_ns: t,
            size: 3,
            mode: 0o644,
            uid: 0,
            gid: 0,
            writer: None,
            copied: true,
        };
        let inc = root.join("store").join(layout::INCOMING);
        std::fs::write(inc.join("obj-live"), b"abc").unwrap();
        let log = s.sealer.log.read();
        for (name, t) in [("obj-gone-1", 1), ("obj-live", 2), ("obj-gone-2", 3)] {
            s.write_record(log.as_ref(), name, &cap(t)).unwrap();
        }
        drop(log);
        let before = log_len(&root);
        s.compact_log().unwrap();
        let after = log_len(&root);
        assert!(after > 0 && after < before / 2, "{before} -> {after}");
        let caps = s.read_capture_log();
        assert_eq!(caps.keys().collect::<Vec<_>>(), ["obj-live"]);
        assert_eq!(caps["obj-live"].sealed_ns, 2);
        // New records go to the new log.
        let log = s.sealer.log.read();
        s.write_record(log.as_ref(), "obj-next", &cap(4)).unwrap();
        drop(log);
        assert_eq!(s.read_capture_log().len(), 2);
        assert!(!root.join("store").join(layout::CAPTURES_TMP).exists());
        std::fs::remove_file(inc.join("obj-live")).unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
