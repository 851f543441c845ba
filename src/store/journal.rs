//! The journal of namespace changes (format 2): each delete and rename of a
//! versioned path, with its time, one JSON line each, appended as it happens.
//! A version says what a file held; the journal says when a name stopped
//! holding it, which the point-in-time view needs (`timeline.rs`).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::layout::JOURNAL;
use super::timeline::{Mark, MarkKind};
use super::{hex, unhex};
use crate::sys;

/// A change to the namespace, as the fs layer reports it.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// The file at this path was unlinked.
    Deleted(&'a [u8]),
    /// A file or directory was renamed from the first path to the second.
    Renamed(&'a [u8], &'a [u8]),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Delete,
    Rename,
}

/// One journal line. Paths are hex: any byte string, one form.
#[derive(Serialize, Deserialize)]
struct Line {
    t: i64,
    op: Op,
    path_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_hex: Option<String>,
}

/// Marks by path; a rename is recorded at both ends.
pub type Marks = HashMap<Vec<u8>, Vec<Mark>>;

/// Add `c`'s marks, keeping each path's marks in time order (the timeline
/// searches them) whatever order the lines come in.
fn add(marks: &mut Marks, t: i64, c: Change<'_>) {
    let mut put = |p: &[u8], kind| {
        let v = marks.entry(p.to_vec()).or_default();
        // Most paths have one mark: room for one, not the four a first push
        // makes (160 bytes where 40 do, ~11 MB for 100,000 deleted paths).
        if v.is_empty() {
            v.reserve_exact(1);
        }
        let i = v.partition_point(|m| m.t <= t);
        v.insert(i, Mark { t, kind });
    };
    match c {
        Change::Deleted(p) => put(p, MarkKind::Deleted),
        Change::Renamed(from, to) => {
            put(from, MarkKind::LeftTo(to.to_vec()));
            put(to, MarkKind::ArrivedFrom(from.to_vec()));
        }
    }
}

fn line(t: i64, c: Change<'_>) -> Vec<u8> {
    let l = match c {
        Change::Deleted(p) => Line {
            t,
            op: Op::Delete,
            path_hex: hex(p),
            to_hex: None,
        },
        Change::Renamed(from, to) => Line {
            t,
            op: Op::Rename,
            path_hex: hex(from),
            to_hex: Some(hex(to)),
        },
    };
    let mut b = serde_json::to_vec(&l).expect("a journal line always serializes");
    b.push(b'\n');
    b
}

/// The journal, open for appending, and the marks it holds.
#[derive(Default)]
pub struct Journal {
    fd: Option<OwnedFd>,
    pub marks: Marks,
}

impl Journal {
    /// Read the journal (a missing one is empty: a format-1 store), keep the
    /// lines of which a path still matters (`keep`), rewrite it compacted when `write` (the
    /// daemon's open) and keep it open for appending. Unreadable lines (a line
    /// torn by a power loss) are skipped and reported in `problems`.
    pub fn open(
        store: BorrowedFd<'_>,
        write: bool,
        keep: impl Fn(&[u8]) -> bool,
        problems: &mut Vec<String>,
    ) -> io::Result<Self> {
        let bytes = match super::meta::read_at(store, JOURNAL) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut kept = Vec::new();
        let mut marks = Marks::new();
        for (n, raw, l) in super::meta::json_lines::<Line>(&bytes) {
            let Ok(l) = l else {
                problems.push(format!("{JOURNAL}: line {n} unreadable, skipped"));
                continue;
            };
            let (p, to) = (unhex(&l.path_hex), l.to_hex.as_deref().map(unhex));
            let c = match (&l.op, &to) {
                (Op::Delete, _) => Change::Deleted(&p),
                (Op::Rename, Some(to)) => Change::Renamed(&p, to),
                (Op::Rename, None) => {
                    problems.push(format!("{JOURNAL}: line {n}: rename without to_hex"));
                    continue;
                }
            };
            let wanted = match c {
                Change::Deleted(p) => keep(p),
                Change::Renamed(from, to) => keep(from) || keep(to),
            };
            if wanted {
                add(&mut marks, l.t, c);
                kept.extend_from_slice(raw);
                kept.push(b'\n');
            }
        }
        if !write {
            return Ok(Self { fd: None, marks });
        }
        if kept.len() != bytes.len() {
            super::meta::write_atomic(store, JOURNAL, &kept)?;
        }
        let c = CString::new(JOURNAL).expect("no NUL");
        let fd = sys::openat(
            store,
            &c,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
        )?;
        Ok(Self {
            fd: Some(fd),
            marks,
        })
    }

    /// Record `c` at time `t`: one append (no fsync: a daemon crash keeps it,
    /// a power loss may lose the last seconds; see docs/FORMAT.md).
    pub fn record(&mut self, t: i64, c: Change<'_>) -> io::Result<()> {
        if let Some(fd) = &self.fd {
            sys::write_all(fd.as_fd(), &line(t, c))?;
        }
        add(&mut self.marks, t, c);
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        match &self.fd {
            Some(fd) => sys::fsync(fd.as_fd(), false),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn dir(tag: &str) -> (std::path::PathBuf, OwnedFd) {
        let p = std::env::temp_dir().join(format!("ckptfs-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        let fd = std::fs::File::open(&p).unwrap().into();
        (p, fd)
    }

    #[test]
    fn lines_come_back_as_marks_in_time_order_and_a_torn_line_is_dropped() {
        let (p, fd) = dir("rt");
        let mut problems = Vec::new();
        let mut j = Journal::open(fd.as_fd(), true, |_| true, &mut problems).unwrap();
        j.record(30, Change::Deleted(b"a")).unwrap();
        j.record(10, Change::Renamed(b"b", b"a")).unwrap();
        drop(j);
        // A power loss tore the last line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(p.join(JOURNAL))
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"t\":40,\"op\":\"del").unwrap();
        let j = Journal::open(fd.as_fd(), true, |q| q != b"gone", &mut problems).unwrap();
        let kinds: Vec<(i64, MarkKind)> = j.marks[&b"a"[..]]
            .iter()
            .map(|m| (m.t, m.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (10, MarkKind::ArrivedFrom(b"b".to_vec())),
                (30, MarkKind::Deleted)
            ]
        );
        assert_eq!(
            j.marks[&b"b"[..]],
            vec![Mark {
                t: 10,
                kind: MarkKind::LeftTo(b"a".to_vec())
            }]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        // Compacted: the torn line is gone, so the next append starts a line.
        let text = std::fs::read_to_string(p.join(JOURNAL)).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 2, "{text}");
        // A path with no history left loses its lines at the next open.
        let j = Journal::open(fd.as_fd(), true, |q| q == b"zzz", &mut Vec::new()).unwrap();
        assert!(j.marks.is_empty());
        assert_eq!(std::fs::read(p.join(JOURNAL)).unwrap(), b"");
        let _ = std::fs::remove_dir_all(&p);
    }
}
