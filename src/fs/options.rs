//! What the daemon tells the FUSE layer and the versioning engine, parsed once.

use std::time::Duration;

/// Options of the FUSE layer, filled from the command line and configuration.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Use kernel passthrough for file data when the kernel offers it.
    pub passthrough: bool,
    /// The store when it lies inside the backing tree, as (backing key of its
    /// parent directory, its name): it must stay invisible (`.ckptfs` by default).
    pub hidden_store: Option<(super::inode::BackingKey, Vec<u8>)>,
    /// Name of the `.versions` view in the root; None disables it.
    pub versions_name: Option<Vec<u8>>,
    /// Show `.versions` in the root's readdir.
    pub versions_visible: bool,
    /// How many `O_PATH` fds the inode store keeps open at most.
    pub fd_cache: usize,
    /// Count requests and their latency per operation (for `--metrics`).
    pub count_requests: bool,
    /// Ask for the kernel's writeback cache on the daemon data path (never with
    /// passthrough: the kernel would turn passthrough off).
    pub writeback_cache: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            passthrough: true,
            hidden_store: None,
            versions_name: Some(b".versions".to_vec()),
            versions_visible: false,
            fd_cache: 4096,
            count_requests: false,
            writeback_cache: false,
        }
    }
}

/// How the versioning engine decides when to seal.
#[derive(Clone, Debug)]
pub struct VersioningOptions {
    /// Off: a plain passthrough mount, no versions.
    pub enabled: bool,
    /// Quiet time after the last release before a version is sealed.
    pub settle: Duration,
    /// Seal a file that stays open and dirty this long.
    pub interval: Duration,
    /// A burst of saves ends as a generation after this long without a seal,
    /// once nothing is open for writing (see `Handles::saving`).
    pub generation_quiet: Duration,
    /// Glob patterns (on the file name) that never get versions.
    pub ignore: Vec<String>,
    /// On fsync of a file still open for writing, copy it into the store when it
    /// is at most this big; bigger files get their version at the last close.
    pub fsync_copy_limit: u64,
    /// At most one fsync version per file per this span.
    pub fsync_min_interval: Duration,
}

impl VersioningOptions {
    /// Is `name` (a file name, not a path) excluded from versioning?
    pub fn ignored(&self, name: &[u8]) -> bool {
        self.ignore.iter().any(|p| glob(p.as_bytes(), name))
    }
}

/// Shell-style `*` and `?` matching (enough for name patterns).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}
