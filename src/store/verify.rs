//! `ckptfs verify`: every version's digest against its object, the index against
//! the metadata on disk, and the objects against the metadata (orphans, missing
//! objects, unreadable records). `verify --repair` quarantines what is damaged.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;

use serde::Serialize;

use super::layout::DAMAGED;
use super::{Store, index, layout};
use crate::sys;

/// An unreadable metadata record met by a scan: `objects/…/vN.json: error`.
/// Its object goes with it (nothing could name it any more).
fn record_problem(p: &str) -> Problem {
    let files = p
        .split_once(": ")
        .map(|(f, _)| {
            let data = f.replace(".json", ".data");
            vec![f.to_string(), format!("{data}.zst"), data]
        })
        .unwrap_or_default();
    Problem::new(format!("{p} (unreadable metadata record)"), files)
}

/// One thing `verify` found wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// What is wrong, naming the file's path (`<path> vN: …`) or, where no
    /// metadata names it, the store file (`objects/…: …`).
    pub message: String,
    /// Store-relative files `verify --repair` moves to `damaged/`: a damaged
    /// version's metadata and object, an unreadable record, an orphan object.
    /// Empty when rebuilding the index is the whole repair.
    pub quarantine: Vec<String>,
}

impl Problem {
    fn new(message: String, quarantine: Vec<String>) -> Self {
        Self {
            message,
            quarantine,
        }
    }
}

impl Store {
    /// Check everything; returns the problems found (empty = consistent).
    /// `progress` is called with (done, total) versions.
    pub fn verify(&self, mut progress: impl FnMut(usize, usize)) -> Vec<Problem> {
        let mut problems: Vec<Problem> =
            self.with_index(|i| i.problems.iter().map(|p| record_problem(p)).collect());
        let all: Vec<super::VersionMeta> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter().cloned())
                .collect()
        });
        let total = all.len();
        for (n, m) in all.iter().enumerate() {
            progress(n, total);
            if self.check_one(m).is_err() {
                // Retention, eviction or compression may be changing it right
                // now (an eviction deletes the object before the index entry).
                // They all hold `quiesce` shared: with it held alone, check the
                // version the index holds now, once more.
                let _q = self.quiesce.write();
                let current = self.with_index(|i| {
                    i.get(m.relpath())
                        .and_then(|h| h.get(m.number))
                        .filter(|c| c.object_ino == m.object_ino)
                        .cloned()
                });
                if let Some(e) = current.and_then(|c| self.check_one(&c).err()) {
                    let obj = self.object_path(m);
                    let what = if e.kind() == io::ErrorKind::NotFound {
                        format!("object {obj} is missing")
                    } else {
                        format!("damaged: {e} ({obj})")
                    };
                    let meta = format!(
                        "{}/{}",
                        layout::version_dir(m.category(), m.relpath()),
                        layout::meta_name(m.number)
                    );
                    problems.push(Problem::new(
                        format!("{} v{}: {what}", m.display_path(), m.number),
                        vec![meta, obj],
                    ));
                }
            }
        }
        progress(total, total);
        // Index against disk, with every writer paused so both are one state.
        let _q = self.quiesce.write();
        match index::scan(self.dir()) {
            Ok(fresh) => {
                // Unreadable records the index never had are reported once.
                for p in &fresh.problems {
                    if !problems.iter().any(|q| q.message.starts_with(p.as_str())) {
                        problems.push(record_problem(p));
                    }
                }
                problems.extend(self.index_against(&fresh));
            }
            Err(e) => problems.push(Problem::new(format!("scan: {e}"), Vec::new())),
        }
        problems.extend(self.orphans());
        problems.extend(self.unrecorded());
        problems
    }

    /// Objects in `incoming/` with no capture record: nothing can seal them
    /// (a record lost to a bug or by hand), and they hold their blocks. A
    /// capture writes its record before its object appears, so an object
    /// listed here whose record is not in `captures` read afterwards, nor in
    /// a `.cap` file, has none, unless it was sealed meanwhile (looked at
    /// again last).
    fn unrecorded(&self) -> Vec<Problem> {
        let Ok(names) = self.sealer.incoming.try_clone().and_then(sys::read_dir_fd) else {
            return Vec::new();
        };
        let logged = self.read_capture_log();
        let fd = self.sealer.incoming.as_fd();
        let mut out = Vec::new();
        for (n, _, _) in names {
            let name = String::from_utf8_lossy(&n).into_owned();
            if name.starts_with('.')
                || name.ends_with(layout::CAP_SUFFIX)
                || layout::is_unshare_temp(&name)
                || logged.contains_key(&name)
            {
                continue;
            }
            // A `.cap` file counts when it parses: recovery ignores one that
            // does not (torn by a full disk) for the log's record.
            let cap_file = super::meta::read_at(fd, &layout::cap_name(&name))
                .is_ok_and(|b| serde_json::from_slice::<super::Capture>(&b).is_ok());
            let exists = CString::new(name.as_str()).is_ok_and(|c| sys::fstatat(fd, &c).is_ok());
            if !cap_file && exists {
                let p = format!("{}/{name}", layout::INCOMING);
                out.push(Problem::new(
                    format!("{p}: captured content without a capture record"),
                    vec![p],
                ));
            }
        }
        out
    }

    /// Versions the index holds that the store's metadata does not, and back.
    fn index_against(&self, fresh: &index::Index) -> Vec<Problem> {
        let mut out = Vec::new();
        let key = |m: &super::VersionMeta| (m.path.clone(), m.number, m.digest);
        self.with_index(|i| {
            let mine: std::collections::HashSet<_> = i
                .paths
                .values()
                .flat_map(|h| h.versions.iter().map(key))
                .collect();
            let disk: std::collections::HashSet<_> = fresh
                .paths
                .values()
                .flat_map(|h| h.versions.iter().map(key))
                .collect();
            for (p, n, _) in mine.difference(&disk) {
                out.push(Problem::new(
                    format!(
                        "{} v{n}: in the index, but the store holds no such metadata",
                        String::from_utf8_lossy(p)
                    ),
                    Vec::new(),
                ));
            }
            for (p, n, _) in disk.difference(&mine) {
                out.push(Problem::new(
                    format!(
                        "{} v{n}: metadata in the store that the index does not hold",
                        String::from_utf8_lossy(p)
                    ),
                    Vec::new(),
                ));
            }
        });
        out.sort_by(|a, b| a.message.cmp(&b.message));
        out
    }

    /// `verify --repair`: move every damaged version, unreadable record and
    /// orphan object to `damaged/<time>/` (nothing is deleted), rebuild the index
    /// from the metadata left, and verify again. Healthy versions are untouched.
    /// Returns (problems found, problems left after the repair).
    pub fn repair(&self) -> super::StoreResult<(Vec<Problem>, Vec<Problem>)> {
        let mut all = Vec::new();
        let mut found = self.verify(|_, _| {});
        // A rebuilt index can reveal more (a record gone from the disk leaves
        // its object an orphan once the index forgets it): a few rounds.
        for _ in 0..3 {
            if found.is_empty() {
                break;
            }
            self.repair_once(&found)
                .map_err(super::StoreError::during("repair"))?;
            all.append(&mut found);
            found = self.verify(|_, _| {});
        }
        Ok((all, found))
    }

    fn repair_once(&self, found: &[Problem]) -> io::Result<()> {
        {
            let _q = self.quiesce.write();
            let _g = self.shares.lock.lock();
            let dest = format!("{DAMAGED}/{}", layout::stamp(super::now_ns()));
            let dfd = self.mkdirs(&dest)?;
            for f in found.iter().flat_map(|p| &p.quarantine) {
                let from = CString::new(f.as_str()).map_err(io::Error::other)?;
                let to = CString::new(f.replace('/', "_")).map_err(io::Error::other)?;
                match sys::renameat2(self.dir(), &from, dfd.as_fd(), &to, 0) {
                    Ok(()) => log::warn!("repair: moved {f} to {dest}/"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            sys::fsync_dir_at(dfd.as_fd())?;
            let fresh = index::scan(self.dir())?;
            self.index.write().replace_with(fresh);
        }
        Ok(())
    }

    fn check_one(&self, m: &super::VersionMeta) -> io::Result<()> {
        if let Some(key) = &m.archived {
            return self.check_archived(key);
        }
        let fd = self.open_object(m)?;
        let content = self.read_all(&fd, m)?;
        if content.len() as u64 != m.size {
            return Err(io::Error::other(format!(
                "object holds {} bytes, metadata says {}",
                content.len(),
                m.size
            )));
        }
        let d = super::Digest::of(blake3::hash(&content));
        // A digest still to come (`digest_later`) has nothing to compare yet.
        if d != m.digest && !m.digest_pending() {
            return Err(io::Error::other(format!(
                "digest {d} != recorded {}",
                m.digest
            )));
        }
        Ok(())
    }

    /// The version's content (decompressed when needed), `size` bytes.
    pub(super) fn read_all(
        &self,
        fd: &std::os::fd::OwnedFd,
        m: &super::VersionMeta,
    ) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        let mut f = std::fs::File::from(fd.try_clone()?);
        io::Read::read_to_end(&mut f, &mut raw)?;
        if m.compressed() {
            raw = zstd::decode_all(&raw[..])?;
        }
        raw.truncate(m.size as usize);
        Ok(raw)
    }

    fn orphans(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let expected: std::collections::HashSet<String> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter().map(|v| self.object_path(v)))
                .collect()
        });
        let Ok(objs) = sys::openat(
            self.dir(),
            &CString::new(layout::OBJECTS).expect("no NUL"),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) else {
            return out;
        };
        let walk = |fd: &std::os::fd::OwnedFd| -> Vec<String> {
            fd.try_clone()
                .ok()
                .and_then(|d| sys::read_dir_fd(d).ok())
                .unwrap_or_default()
                .into_iter()
                .map(|(n, _, _)| String::from_utf8_lossy(&n).into_owned())
                .collect()
        };
        let sub = |fd: &std::os::fd::OwnedFd, n: &str| {
            sys::openat(
                fd.as_fd(),
                &CString::new(n).unwrap(),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
        };
        for cat in walk(&objs) {
            let Ok(c) = sub(&objs, &cat) else { continue };
            for shard in walk(&c) {
                let Ok(s) = sub(&c, &shard) else { continue };
                for h in walk(&s) {
                    let Ok(hd) = sub(&s, &h) else { continue };
                    for f in walk(&hd) {
                        if f.ends_with(".json") || f.starts_with('.') {
                            continue;
                        }
                        let p = format!("{}/{cat}/{shard}/{h}/{f}", layout::OBJECTS);
                        if !expected.contains(&p) {
                            out.push(Problem::new(
                                format!("{p}: object without metadata"),
                                vec![p],
                            ));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{capture_file, store, wait_for};

    /// An eviction deletes the object a moment before the index entry;
    /// `verify` running in that moment must not call the version missing.
    #[test]
    fn verify_during_an_eviction_reports_nothing() {
        let (root, s) = store("verify-evict");
        capture_file(&root, &s, "a.bin", b"first");
        capture_file(&root, &s, "a.bin", b"second");
        wait_for("both captures sealed", || {
            s.with_index(|i| i.total_versions()) == 2
        });
        s.evict_gap.arm();
        let evictor = {
            let s = s.clone();
            std::thread::spawn(move || s.evict_counted(b"a.bin", 1).unwrap())
        };
        // The object is gone and the index still lists it.
        s.evict_gap.wait_inside();
        let verifier = {
            let s = s.clone();
            std::thread::spawn(move || s.verify(|_, _| {}))
        };
        // Long enough for a verify that does not wait to read both versions.
        std::thread::sleep(std::time::Duration::from_millis(300));
        s.evict_gap.open();
        evictor.join().unwrap();
        let problems = verifier.join().unwrap();
        let msgs: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(msgs.is_empty(), "{msgs:?}");
        assert_eq!(s.with_index(|i| i.total_versions()), 1);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Content in `incoming/` that no record names (lost to a bug, as the
    /// full-disk one fixed on 2026-12-07, or put there by hand) is reported
    /// and quarantined by `--repair`; captures with a record, in `captures`
    /// or in a `.cap` file, are not.
    #[test]
    fn content_in_incoming_without_a_record_is_reported_and_repaired() {
        let (root, s) = store("verify-unrecorded");
        capture_file(&root, &s, "a.bin", b"sealed");
        wait_for("the capture sealed", || {
            s.with_index(|i| i.total_versions()) == 1
        });
        let inc = root.join("store").join(crate::store::layout::INCOMING);
        std::fs::write(inc.join("18ef0339d4f09b1a-1-7"), b"lost").unwrap();
        // A failed seal's state, kept with its `.cap` record: not a problem.
        std::fs::write(inc.join("18ef0339d4f09b1a-1-8"), b"kept").unwrap();
        let cap = crate::store::Capture {
            path_hex: crate::store::hex(b"b.bin"),
            reason: crate::store::Reason::Close,
            sealed_ns: 1,
            mtime_ns: 1,
            size: 4,
            mode: 0o644,
            uid: 0,
            gid: 0,
            writer: None,
            copied: true,
        };
        let rec = serde_json::to_vec(&cap).unwrap();
        std::fs::write(inc.join("18ef0339d4f09b1a-1-8.cap"), rec).unwrap();
        // A record torn by a full disk names nothing.
        std::fs::write(inc.join("18ef0339d4f09b1a-1-9"), b"torn").unwrap();
        std::fs::write(inc.join("18ef0339d4f09b1a-1-9.cap"), b"{\"path_h").unwrap();
        let mut msgs: Vec<String> = s.verify(|_, _| {}).into_iter().map(|p| p.message).collect();
        msgs.sort();
        assert_eq!(
            msgs,
            [
                "incoming/18ef0339d4f09b1a-1-7: captured content without a capture record",
                "incoming/18ef0339d4f09b1a-1-9: captured content without a capture record"
            ]
        );
        let (found, left) = s.repair().unwrap();
        assert_eq!(found.len(), 2);
        assert!(
            left.is_empty(),
            "{:?}",
            left.iter().map(|p| &p.message).collect::<Vec<_>>()
        );
        assert!(!inc.join("18ef0339d4f09b1a-1-7").exists());
        let mut damaged = std::fs::read_dir(root.join("store").join("damaged"))
            .unwrap()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>();
        damaged.sort();
        assert_eq!(
            damaged,
            [
                "incoming_18ef0339d4f09b1a-1-7",
                "incoming_18ef0339d4f09b1a-1-9"
            ]
        );
        assert!(inc.join("18ef0339d4f09b1a-1-8").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
