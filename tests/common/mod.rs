//! Shared mount helper for integration tests: mounts the real filesystem with the
//! real binary, waits for readiness (the `mount` command returns only once the
//! daemon reports the mount ready), bounds every test in time, and unmounts even
//! when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ckptfs");

/// A test's precondition is missing. Under `CI=true` that is a failure naming
/// what is missing (CI installs everything); elsewhere the test is skipped, said
/// on stderr and appended to `$CKPTFS_SKIP_LOG` so scripts/test.sh can count it.
#[track_caller]
pub fn skip(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and a precondition is missing: {what}");
    }
    eprintln!("SKIPPED: {what}");
    if let Ok(log) = std::env::var("CKPTFS_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{}: {what}", std::panic::Location::caller());
        }
    }
}

/// Can this machine mount FUSE filesystems as root? Tests say clearly when not.
#[track_caller]
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok = root && Path::new("/dev/fuse").exists();
    if !ok {
        skip("needs root and /dev/fuse");
    }
    ok
}

pub fn tmpdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "ckptfs-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn ckptfs(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ckptfs")
}

pub fn sh(script: &str) -> Output {
    Command::new("bash")
        .arg("-ec")
        .arg(script)
        .output()
        .expect("run bash")
}

#[track_caller]
pub fn sh_ok(script: &str) -> String {
    let o = sh(script);
    assert!(
        o.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn is_mounted(p: &Path) -> bool {
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = p.to_string_lossy();
    s.lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*p))
        .count()
        > 0
}

pub fn mount_count(p: &Path) -> usize {
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = p.to_string_lossy();
    s.lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*p))
        .count()
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub passthrough: bool,
    pub config: Option<String>,
    pub mountpoint: bool,
    /// More arguments for `ckptfs mount` (e.g. `--store PATH`).
    pub args: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            passthrough: true,
            config: None,
            mountpoint: false,
            args: Vec::new(),
        }
    }
}

/// A small ext4 on a loop device (RAM-backed under /dev/shm when it exists, so
/// the VM disk's speed does not bound the test), unmounted and removed on drop.
pub struct SmallDisk {
    pub img: PathBuf,
    pub mnt: PathBuf,
}

impl SmallDisk {
    /// `mb` MiB, no blocks reserved for root. None (with the reason on stderr)
    /// when this machine cannot loop-mount.
    pub fn new(root: &Path, mb: u64) -> Option<SmallDisk> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            root.to_path_buf()
        };
        let img = base.join(format!(
            "ckptfs-test-disk-{}-{}.img",
            std::process::id(),
            root.file_name().unwrap().to_string_lossy()
        ));
        let mnt = root.join("disk");
        std::fs::create_dir_all(&mnt).unwrap();
        let o = sh(&format!(
            "truncate -s {mb}M {i} && mkfs.ext4 -q -F -m 0 {i} && mount -o loop {i} {m}",
            i = img.display(),
            m = mnt.display()
        ));
        if !o.status.success() {
            let _ = std::fs::remove_file(&img);
            skip(&format!(
                "loop-mounting an ext4 image (e2fsprogs, loop devices): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            return None;
        }
        Some(SmallDisk { img, mnt })
    }
}

/// A mount over `ckpt/` on a fresh [`SmallDisk`]. Bind it as
/// `DiskMount { disk, mut m }`: `m` is dropped (unmounted) before `disk`.
pub struct DiskMount {
    pub disk: SmallDisk,
    pub m: Mount,
}

impl Mount {
    /// None when the machine cannot loop-mount (said by [`skip`]).
    pub fn on_small_disk(tag: &str, mb: u64, opts: Opts) -> Option<DiskMount> {
        let root = tmpdir(tag);
        let disk = SmallDisk::new(&root, mb)?;
        let dir = disk.mnt.join("ckpt");
        std::fs::create_dir_all(&dir).unwrap();
        let m = Mount::over(root, dir, opts);
        Some(DiskMount { disk, m })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
    }
}

/// A mounted ckptfs over a fresh directory; unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
    /// Where the filesystem is mounted (== dir when mounted in place).
    pub mnt: PathBuf,
    pub opts: Opts,
    pub root: PathBuf,
    done: Arc<AtomicBool>,
}

impl Mount {
    pub fn new(tag: &str, opts: Opts) -> Mount {
        let root = tmpdir(tag);
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        Self::over(root, dir, opts)
    }

    /// Mount over an existing directory (pre-populated by the test).
    pub fn over(root: PathBuf, dir: PathBuf, opts: Opts) -> Mount {
        let mnt = if opts.mountpoint {
            root.join("mnt")
        } else {
            dir.clone()
        };
        std::fs::create_dir_all(&mnt).unwrap();
        let mut m = Mount {
            dir,
            mnt,
            opts,
            root,
            done: Arc::new(AtomicBool::new(false)),
        };
        m.mount();
        m
    }

    pub fn mount(&mut self) {
        let mut args: Vec<String> = vec!["mount".into(), self.dir.display().to_string()];
        if self.opts.mountpoint {
            args.push(self.mnt.display().to_string());
        }
        if !self.opts.passthrough {
            args.push("--no-passthrough".into());
        }
        args.extend(self.opts.args.iter().cloned());
        if let Some(c) = &self.opts.config {
            let p = self.root.join("config.json");
            std::fs::write(&p, c).unwrap();
            args.push("--config".into());
            args.push(p.display().to_string());
        }
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = ckptfs(&a);
        assert!(
            o.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(mount_count(&self.mnt), 1, "exactly one mount expected");
        // "Both modes" must not silently be the daemon path twice.
        let line = String::from_utf8_lossy(&o.stdout);
        let daemon = line.contains("data path: daemon");
        assert!(
            daemon || line.contains("data path: kernel passthrough"),
            "the mount reports its data path: {line}"
        );
        if !self.opts.passthrough {
            assert!(daemon, "--no-passthrough gave: {line}");
        } else if daemon {
            skip(
                "kernel passthrough (Linux >= 6.9, root): this mount fell back to the daemon path",
            );
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.dir.join(".ckptfs")
    }

    /// PID of the daemon (from the store lock file).
    /// Block until every file closed so far is sealed (`ckptfs wait`).
    pub fn wait_sealed(&self) {
        let o = ckptfs(&["wait", &self.mnt.display().to_string(), "--timeout", "60"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        // The lock file is hidden under the mount when mounted in place; find the
        // daemon through /proc instead.
        let want = format!("ckptfs:{}", self.store().display());
        let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mi.lines().find(|l| l.contains(&want))?;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with(BIN)
                && cmd.contains(" mount ")
                && cmd.contains(&*self.dir.to_string_lossy())
            {
                return Some(pid);
            }
        }
        None
    }

    pub fn unmount(&mut self) {
        if !is_mounted(&self.mnt) {
            return;
        }
        let o = ckptfs(&["umount", &self.mnt.display().to_string()]);
        if !o.status.success() {
            eprintln!("umount: {}", String::from_utf8_lossy(&o.stderr));
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        assert_eq!(
            mount_count(&self.mnt),
            0,
            "mount still present after unmount"
        );
    }

    /// Kill the daemon with SIGKILL and detach the dead mount. Fails the test
    /// when the daemon cannot be found (a crash test that kills nothing proves
    /// nothing).
    #[track_caller]
    pub fn crash(&mut self) {
        let pid = self
            .daemon_pid()
            .unwrap_or_else(|| panic!("no ckptfs daemon found for {}", self.mnt.display()));
        // SAFETY: sending a signal to a pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        let t = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "daemon {pid} survived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

/// Take down whatever ckptfs mount is still at `mnt` (a test that failed
/// half way): `ckptfs umount`, then a lazy umount if that did not do it.
pub fn unmount_if_mounted(mnt: &Path) {
    if is_mounted(mnt) {
        let _ = ckptfs(&["umount", &mnt.display().to_string(), "--timeout", "20"]);
        if is_mounted(mnt) {
            let _ = Command::new("umount").arg("-l").arg(mnt).status();
        }
    }
}

/// Unmounts its path on drop: for a mount a test makes itself (not through
/// [`Mount`]), so a failed assertion does not leave it behind.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        unmount_if_mounted(&self.0);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        unmount_if_mounted(&self.mnt);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Run `f` with a time bound: if it overruns, every ckptfs test mount is detached
/// (so blocked syscalls fail) and the test panics instead of hanging CI.
pub fn bounded<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => {
            h.join().unwrap();
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(_) => {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for l in mi
                .lines()
                .filter(|l| l.contains("ckptfs:") && l.contains("ckptfs-test-"))
            {
                if let Some(mp) = l.split(' ').nth(4) {
                    let _ = Command::new("umount").arg("-l").arg(mp).status();
                }
            }
            panic!("test exceeded its {secs}s time bound");
        }
    }
}

/// Both data paths.
pub fn modes() -> [Opts; 2] {
    [
        Opts::default(),
        Opts {
            passthrough: false,
            ..Opts::default()
        },
    ]
}

/// Both data paths, and the daemon path with the kernel's writeback cache
/// (writes reach the daemon at close, fsync or writeback, not at write()).
pub fn modes_and_writeback() -> [Opts; 3] {
    let [pt, daemon] = modes();
    let wb = Opts {
        passthrough: false,
        args: vec!["--writeback-cache".into()],
        ..Opts::default()
    };
    [pt, daemon, wb]
}

/// Wait until `cond` holds (bounded), e.g. for a settle-time seal.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Entries of `.versions/<rel>/` that are versions (not links or the index).
pub fn versions_of(m: &Mount, rel: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(m.p(".versions").join(rel))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() > 24 && n.as_bytes()[8] == b'T')
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fast seal for tests.
pub const FAST: &str = r#"{ "autosave": { "settle_ms": 100 } }"#;

/// BLAKE2b of `b` as Python's hashlib writes it (the writers in tests record
/// their saves that way).
pub fn blake2b(b: &[u8]) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, hashlib; print(hashlib.blake2b(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A port nobody listens on now (for servers a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ckptfs stats` of the mount, as JSON.
pub fn stats(m: &Mount) -> serde_json::Value {
    let o = ckptfs(&["stats", &m.mnt.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `ckptfs verify` of the mount finds the store consistent.
#[track_caller]
pub fn verify_clean(m: &Mount) {
    let o = ckptfs(&["verify", &m.mnt.display().to_string()]);
    assert!(
        o.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
