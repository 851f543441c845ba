//! Per-operation counts and latency of the FUSE requests the daemon serves,
//! kept in plain atomics so recording costs a few uncontended adds and a
//! scrape (the metrics endpoint reads them) never takes a lock a request needs.

use std::time::Instant;

use crate::histogram::{Histogram, REQUEST_BUCKETS, Snapshot};

/// The operations counted, in `Op` order (the `op` label's values).
pub const OPS: &[&str] = &[
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
    "copy_file_range",
];

/// An operation; its discriminant indexes [`OPS`].
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Fallocate,
    Lseek,
    CopyFileRange,
}

/// One operation's numbers at a scrape.
pub struct OpSnapshot {
    pub op: &'static str,
    pub latency: Snapshot,
}

pub struct OpStats {
    ops: Vec<Histogram>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            ops: OPS
                .iter()
                .map(|_| Histogram::new(REQUEST_BUCKETS))
                .collect(),
        }
    }
}

impl OpStats {
    pub fn record(&self, op: Op, started: Instant) {
        self.ops[op as usize].observe(started.elapsed());
    }

    /// Operations served at least once.
    pub fn snapshot(&self) -> Vec<OpSnapshot> {
        self.ops
            .iter()
            .zip(OPS)
            .map(|(h, op)| OpSnapshot {
                op,
                latency: h.snapshot(),
            })
            .filter(|o| o.latency.count > 0)
            .collect()
    }
}

/// Records one request's latency when dropped (at the end of the callback).
pub struct Timed<'a>(Option<(&'a OpStats, Op, Instant)>);

impl<'a> Timed<'a> {
    pub fn start(stats: Option<&'a OpStats>, op: Op) -> Self {
        Self(stats.map(|s| (s, op, Instant::now())))
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        if let Some((s, op, t)) = self.0.take() {
            s.record(op, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ops_and_only_seen_ops_are_reported() {
        assert_eq!(OPS.len(), Op::CopyFileRange as usize + 1);
        assert_eq!(OPS[Op::Readdirplus as usize], "readdirplus");
        let s = OpStats::default();
        let now = Instant::now();
        s.record(Op::Lookup, now);
        s.record(Op::Lookup, now - std::time::Duration::from_millis(30));
        s.record(Op::Write, now);
        let snap = s.snapshot();
        let seen: Vec<(&str, u64)> = snap.iter().map(|o| (o.op, o.latency.count)).collect();
        assert_eq!(seen, vec![("lookup", 2), ("write", 1)]);
    }
}
