//! Helpers for the store's unit tests: a real store in a temp directory with
//! its workers running, as the daemon opens it.

use parking_lot::{Condvar, Mutex};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{CompressOptions, Store, StoreOptions};
use crate::sys;

/// `<tmp>/ckptfs-<tag>-<pid>/{store,live}`, the store opened with default
/// retention (keep_within 24h keeps everything a test writes), nothing
/// compressed and no settle delay.
pub(crate) fn store(tag: &str) -> (PathBuf, Arc<Store>) {
    let root = std::env::temp_dir().join(format!("ckptfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("store")).unwrap();
    std::fs::create_dir_all(root.join("live")).unwrap();
    let s = reopen(&root);
    (root, s)
}

/// Open the store of a `store()` root again (a next mount), workers started.
pub(crate) fn reopen(root: &Path) -> Arc<Store> {
    let c = CString::new(root.join("store").as_os_str().as_encoded_bytes()).unwrap();
    let fd = sys::open_path(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    let opts = StoreOptions {
        retention: crate::config::Retention::default().rules().unwrap(),
        categories: Default::default(),
        compression: CompressOptions {
            after: Duration::from_secs(1 << 30),
            categories: Vec::new(),
            level: 3,
        },
        settle: Duration::ZERO,
        archive: None,
    };
    let s = Store::open(fd, opts, true).unwrap();
    s.start_workers();
    s
}

/// Write `content` to a new `live/<name>` and capture it (linked) as `name`.
/// A new inode each time, as the daemon gives a save: a linked capture
/// shares its inode, so rewriting it in place would change the version.
pub(crate) fn capture_file(root: &Path, s: &Store, name: &str, content: &[u8]) {
    use std::os::fd::AsFd;
    let p = root.join("live").join(name);
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, content).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    s.capture(
        f.as_fd(),
        name.as_bytes(),
        super::Reason::Close,
        None,
        super::How::Link,
    )
    .unwrap();
}

/// Poll `cond` every 10 ms; panic naming `what` after 120 s.
pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(120), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A point in the store's code a test can stop a thread at: once armed, the
/// next thread to `pass` waits there until the test opens it.
#[derive(Default)]
pub(crate) struct Gate {
    /// (armed, a thread is waiting inside, open)
    state: Mutex<(bool, bool, bool)>,
    cv: Condvar,
}

impl Gate {
    pub(crate) fn arm(&self) {
        *self.state.lock() = (true, false, false);
    }

    /// Called by the store's code: waits while armed and not opened.
    pub(crate) fn pass(&self) {
        let mut st = self.state.lock();
        if !st.0 {
            return;
        }
        st.1 = true;
        self.cv.notify_all();
        while !st.2 {
            self.cv.wait(&mut st);
        }
        *st = (false, false, false);
    }

    /// Wait until a thread is stopped at the gate.
    pub(crate) fn wait_inside(&self) {
        let mut st = self.state.lock();
        while !st.1 {
            assert!(
                !self
                    .cv
                    .wait_for(&mut st, Duration::from_secs(60))
                    .timed_out(),
                "nothing reached the gate"
            );
        }
    }

    pub(crate) fn open(&self) {
        self.state.lock().2 = true;
        self.cv.notify_all();
    }
}
