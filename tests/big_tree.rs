//! A tree of 200,000 files (untar, find, du, rm -rf) with RLIMIT_NOFILE 20,000:
//! the inode store keeps file handles, not an fd per inode, so the daemon's
//! descriptor count stays bounded.

mod common;
use common::*;

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_hundred_thousand_files() {
    if !can_mount() {
        return;
    }
    bounded(900, || {
        let m = Mount::new("bigtree", Opts::default());
        let tar = m.root.join("tree.tar");
        let src = m.root.join("src");
        sh_ok(&format!(
            "mkdir -p {s} && cd {s} && python3 -c \"
import os
for d in range(200):
    os.mkdir(f'd{{d}}')
    for f in range(1000):
        with open(f'd{{d}}/f{{f}}', 'w') as fh: fh.write(str(f))
\" && tar cf {t} -C {s} . && rm -rf {s}",
            s = src.display(),
            t = tar.display()
        ));
        let pid = m.daemon_pid().expect("daemon pid");
        let limit = sh_ok(&format!(
            "awk '/Max open files/ {{print $4}}' /proc/{pid}/limits"
        ));
        eprintln!("daemon RLIMIT_NOFILE: {}", limit.trim());
        // Watch the daemon's descriptors while the tree is built and walked.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s2, p2) = (stop.clone(), peak.clone());
        let watcher = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                p2.fetch_max(fd_count(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
        sh_ok(&format!("tar xf {} -C {}", tar.display(), m.mnt.display()));
        let n = sh_ok(&format!("find {} -type f | wc -l", m.mnt.display()));
        assert_eq!(n.trim(), "200000");
        let du = sh_ok(&format!(
            "du -s --apparent-size -B1 {} | cut -f1",
            m.mnt.display()
        ));
        assert!(du.trim().parse::<u64>().unwrap() > 200_000);
        assert_eq!(std::fs::read_to_string(m.p("d199/f999")).unwrap(), "999");
        sh_ok(&format!("rm -rf {}/d*", m.mnt.display()));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("peak daemon fds: {peak}");
        assert!(peak < 10_000, "daemon held {peak} fds for 200,000 files");
        assert_eq!(std::fs::read_dir(&m.mnt).unwrap().count(), 0);
    });
}
