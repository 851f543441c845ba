//! Ordinary programs on the mount: every operation class they use, in both
//! data-path modes, checked against what the backing directory holds.

mod common;
use common::*;

fn script_for(m: &Mount) -> String {
    format!(
        r#"
cd {mnt}
# create/write/read, O_APPEND, rename, hard and symbolic links, fifo, socket
echo hello > a; echo more >> a; test "$(cat a)" = "$(printf 'hello\nmore')"
cp a b; mv b c; ln c hard; ln -s c sym; test "$(readlink sym)" = c
test "$(stat -c %h c)" = 2; test "$(cat sym)" = "$(cat a)"
mkfifo fifo; test -p fifo
python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')"; test -S sock
# names with any bytes Linux allows, deep trees
python3 -c "
import os
for n in [b'sp ace', b'nl\nname', b'\xff\xfe-bin', b'uni\xc3\xa9', b'-dash', b'x'*255]:
    open(n, 'wb').write(n)
    assert open(n, 'rb').read() == n
    assert n in os.listdir(b'.')
"
mkdir -p deep; p=deep; for i in $(seq 60); do p=$p/d$i; done; mkdir -p $p; echo deep > $p/f; test "$(cat $p/f)" = deep
# setattr: mode, owner, size, times with UTIME_NOW/UTIME_OMIT
chmod 640 a; test "$(stat -c %a a)" = 640; chown 1234:4321 a; test "$(stat -c %u:%g a)" = 1234:4321
truncate -s 3 a; test "$(cat a)" = hel
touch -d '2001-02-03 04:05:06' a; test "$(stat -c %Y a)" = "$(date -d '2001-02-03 04:05:06' +%s)"
python3 -c "
import os
os.utime('a', ns=(5_000_000_000, 7_000_000_000)); st = os.stat('a')
assert (st.st_atime_ns, st.st_mtime_ns) == (5_000_000_000, 7_000_000_000)
"
# xattrs
setfattr -n user.k -v v a 2>/dev/null || python3 -c "import os; os.setxattr('a', 'user.k', b'v')"
python3 -c "import os; assert os.getxattr('a','user.k') == b'v'; assert 'user.k' in os.listxattr('a'); os.removexattr('a','user.k')"
# fallocate incl. punch hole, SEEK_DATA/SEEK_HOLE, sparse files over 4 GiB, copy_file_range
python3 - <<'PY'
import os
fd = os.open('sparse', os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b'X' * 4096, 5 << 30)
assert os.fstat(fd).st_size == (5 << 30) + 4096
assert os.lseek(fd, 0, os.SEEK_DATA) == 5 << 30
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
assert os.pread(fd, 4, 5 << 30) == b'XXXX'
os.posix_fallocate(fd, 0, 1 << 20)
import fcntl, ctypes
libc = ctypes.CDLL(None, use_errno=True)
assert libc.fallocate(fd, 3, ctypes.c_long(5 << 30), ctypes.c_long(4096)) == 0  # PUNCH_HOLE|KEEP_SIZE
assert os.pread(fd, 4, 5 << 30) == b'\0' * 4
src = os.open('c', os.O_RDONLY); dst = os.open('cfr', os.O_CREAT | os.O_WRONLY, 0o644)
n = os.copy_file_range(src, dst, 100)
assert n > 0 and open('cfr','rb').read() == open('c','rb').read()
# flock and POSIX locks
fcntl.flock(fd, fcntl.LOCK_EX); fcntl.flock(fd, fcntl.LOCK_UN)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0); fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
# O_DIRECT
import mmap
buf = mmap.mmap(-1, 4096); buf.write(b'D' * 4096)
dfd = os.open('direct', os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
assert os.pwritev(dfd, [buf], 0) == 4096
os.close(dfd)
assert open('direct','rb').read() == b'D' * 4096
# shared writable mmap
mfd = os.open('mm', os.O_CREAT | os.O_RDWR, 0o644); os.ftruncate(mfd, 8192)
mm = mmap.mmap(mfd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
mm[100:105] = b'hello'; mm.flush(); mm.close(); os.close(mfd)
assert open('mm','rb').read()[100:105] == b'hello'
os.fsync(fd); os.fdatasync(fd); os.close(fd)
PY
# rename flags: RENAME_NOREPLACE and RENAME_EXCHANGE
python3 - <<'PY'
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
AT = -100
open('x1','w').write('one'); open('x2','w').write('two')
r = libc.renameat2(AT, b'x1', AT, b'x2', 1)
assert r == -1 and ctypes.get_errno() == errno.EEXIST
assert libc.renameat2(AT, b'x1', AT, b'x2', 2) == 0
assert open('x1').read() == 'two' and open('x2').read() == 'one'
PY
# tar round trip, sqlite3, statfs
mkdir t; (cd deep && tar cf ../t.tar .); (cd t && tar xf ../t.tar); diff -r deep t
sqlite3 db.sqlite "create table t(x); insert into t values (1),(2); pragma journal_mode=wal; insert into t values (3);"
test "$(sqlite3 db.sqlite 'select sum(x) from t')" = 6
df -P . >/dev/null
rm -rf t deep
"#,
        mnt = m.mnt.display()
    )
}

#[test]
fn ordinary_programs_work_in_both_modes() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        for opts in modes() {
            let mut m = Mount::new("posix", opts);
            sh_ok(&script_for(&m));
            let backing = std::fs::read(m.dir.join("c")).unwrap();
            assert_eq!(backing, std::fs::read(m.p("c")).unwrap());
            m.unmount();
            // After unmount the backing directory holds exactly what was written.
            assert_eq!(std::fs::read(m.dir.join("x1")).unwrap(), b"two");
            assert_eq!(
                std::fs::metadata(m.dir.join("sparse")).unwrap().len(),
                (5 << 30) + 4096
            );
        }
    });
}

#[test]
fn files_created_by_a_user_belong_to_that_user() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = Mount::new("owner", Opts::default());
        sh_ok(&format!(
            "chmod 777 {d}; setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'echo x > {d}/f; mkdir {d}/dir; mkfifo {d}/p; ln -s f {d}/l'",
            d = m.mnt.display()
        ));
        for n in ["f", "dir", "p"] {
            let o = sh_ok(&format!("stat -c %u:%g {}", m.dir.join(n).display()));
            assert_eq!(o.trim(), "65534:65534", "{n}");
        }
        // The kernel enforces permissions for other users (default_permissions).
        sh_ok(&format!(
            "chmod 600 {d}/f; ! setpriv --reuid=1000 --regid=1000 --clear-groups cat {d}/f 2>/dev/null",
            d = m.mnt.display()
        ));
    });
}

/// Files with setuid/setgid, changed by root and by another user: the mount
/// leaves the same permission bits as the plain directory does (the kernel's
/// rule), in every data path, and it asks for `security.capability` about
/// once per file, not once per write.
#[test]
fn setuid_and_setgid_are_cleared_as_on_the_backing_filesystem() {
    if !can_mount() {
        return;
    }
    if sh("id nobody && which setpriv fallocate").status.code() != Some(0) {
        skip("a user `nobody`, setpriv and fallocate (util-linux)");
        return;
    }
    // Files made by root (group root), then written, truncated, allocated
    // and only opened by `nobody` (`held` while root holds it open: on the
    // mount that open is passthrough already), and written by root. Prints
    // each file's mode.
    let script = |d: &std::path::Path| {
        format!(
            r#"cd {d}
for f in w sgx sgl t tr fa ro rw held; do printf x > $f; done
chmod 4777 w t tr fa ro rw held; chmod 6777 sgx; chmod 2767 sgl
chmod 777 .
exec 3< held
setpriv --reuid=65534 --regid=65534 --clear-groups sh -ec '
printf y >> w; printf y >> sgx; printf y >> sgl; : > t; truncate -s 0 tr
fallocate -l 8192 fa; python3 -c "import os; os.close(os.open(\"ro\", os.O_WRONLY))"
printf y >> held'
exec 3<&-
printf y >> rw
stat -c '%n %a' w sgx sgl t tr fa ro rw held"#,
            d = d.display()
        )
    };
    bounded(120, move || {
        let plain = tmpdir("sxid-plain");
        let native = sh_ok(&script(&plain));
        // What the kernel does, so the comparison below means something.
        assert!(
            native.contains("w 777\n") && native.contains("rw 4777\n"),
            "{native}"
        );
        assert!(
            native.contains("sgl 767\n") && native.contains("ro 4777\n"),
            "{native}"
        );
        assert!(native.contains("held 777\n"), "{native}");
        for opts in modes_and_writeback() {
            // Requests are counted when metrics are served.
            let cfg = format!(
                r#"{{"metrics": {{"listen": "127.0.0.1:{}"}}}}"#,
                free_port()
            );
            let opts = Opts {
                config: Some(cfg),
                ..opts
            };
            let m = Mount::new("sxid", opts.clone());
            let out = sh_ok(&script(&m.mnt));
            assert_eq!(out, native, "{opts:?}");
            // 2,000 writes of a file with no setuid: the kernel no longer asks
            // for security.capability before each (FUSE_HANDLE_KILLPRIV_V2).
            let before = getxattr_requests(&m);
            sh_ok(&format!(
                "cd {d}; python3 -c \"
import os
fd = os.open('many', os.O_CREAT|os.O_WRONLY, 0o644)
for i in range(2000): os.write(fd, b'x'*100)
os.close(fd)\"",
                d = m.mnt.display()
            ));
            let asked = getxattr_requests(&m) - before;
            assert!(asked < 10, "{opts:?}: {asked} GETXATTR for 2,000 writes");
        }
    });
}

/// POSIX ACLs through the mount behave as in the plain directory: a named
/// user's deny and grant are enforced, a default ACL replaces the umask of
/// what is created under it, the umask applies elsewhere, setting an ACL
/// drops setgid for a caller outside the group, and only the owner may set
/// one. A save keeps the file's ACL, and the file's history in `.versions`
/// is shut to whom the ACL shuts the file to, also once the file is deleted.
#[test]
fn posix_acls_are_enforced_as_on_the_backing_filesystem() {
    if !can_mount() {
        return;
    }
    if sh("id nobody && which setpriv setfacl getfacl")
        .status
        .code()
        != Some(0)
    {
        skip("a user `nobody`, setpriv and setfacl/getfacl (package acl)");
        return;
    }
    let script = |d: &std::path::Path| {
        format!(
            r#"cd {d}
umask 022
as_nobody() {{ setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "umask 027; $1" 2>/dev/null && echo ok || echo refused; }}
echo secret > deny; chmod 644 deny; setfacl -m u:nobody:--- deny
echo open > grant; chmod 600 grant; setfacl -m u:nobody:r grant
mkdir inh; setfacl -m u:nobody:rwx inh; setfacl -d -m g::rwx,o::r-x,u:nobody:rwx inh
touch inh/f; mkdir inh/sub; touch plain-f; mkdir plain-d; mknod inh/p p
touch sg; chown 65534:0 sg; chmod 2775 sg
chmod 777 .
echo secret2 > deny; echo open2 > grant
echo "read deny: $(as_nobody 'cat deny')"
echo "read grant: $(as_nobody 'cat grant')"
echo "write grant: $(as_nobody 'echo x >> grant')"
echo "nobody creates under the default ACL: $(as_nobody 'touch inh/n; mkdir inh/nd')"
echo "nobody creates elsewhere: $(as_nobody 'touch n; mkdir nd')"
echo "acl on another's file: $(as_nobody 'setfacl -m u:nobody:rw deny')"
echo "acl on own setgid file: $(as_nobody 'setfacl -m u:nobody:rwx sg')"
for f in deny grant inh inh/f inh/sub inh/p inh/n inh/nd plain-f plain-d n nd sg; do
  echo "== $f $(stat -c '%a %U' $f)"; getfacl -cp $f 2>&1
done"#,
            d = d.display()
        )
    };
    bounded(180, move || {
        let plain = tmpdir("acl-plain");
        let native = sh_ok(&script(&plain));
        // What the kernel does, so the comparison below means something.
        for want in [
            "read deny: refused",
            "read grant: open2",
            "write grant: refused",
            "acl on another's file: refused",
            "acl on own setgid file: ok",
            "== sg 775 nobody",
            "== plain-f 644 root",
            "== inh/f 664 root",
            "== inh/n 664 nobody",
            "== nd 750 nobody",
        ] {
            assert!(native.contains(want), "{want:?} not in:\n{native}");
        }
        for opts in modes_and_writeback() {
            let m = Mount::new("acl", opts.clone());
            let out = sh_ok(&script(&m.mnt));
            assert_eq!(out, native, "{opts:?}");
            // The saves above made versions of `deny` (0644 then) and `grant`:
            // the history of each is as closed or open as the file.
            m.wait_sealed();
            let v = m.mnt.join(".versions");
            let nobody_reads = |f: &str| {
                let pick = format!("{}/{f}/latest", v.display());
                assert!(std::path::Path::new(&pick).exists(), "{pick} missing");
                sh(&format!(
                    "setpriv --reuid=65534 --regid=65534 --clear-groups cat {pick}"
                ))
                .status
                .success()
            };
            assert!(!nobody_reads("deny"), "{opts:?}: .versions/deny readable");
            assert!(nobody_reads("grant"), "{opts:?}: .versions/grant refused");
            // Deleted, the files' history keeps their ACLs: those of their
            // last states, kept on the versions' objects.
            std::fs::remove_file(m.mnt.join("deny")).unwrap();
            std::fs::remove_file(m.mnt.join("grant")).unwrap();
            m.wait_sealed();
            assert!(
                !nobody_reads("deny"),
                "{opts:?}: .versions/deny readable once deny is deleted"
            );
            assert!(
                nobody_reads("grant"),
                "{opts:?}: .versions/grant refused once grant is deleted"
            );
        }
    });
}

/// GETXATTR requests the daemon has answered (`ckptfs stats`).
fn getxattr_requests(m: &Mount) -> u64 {
    let s = stats(m);
    let n = &s["fuse_requests"];
    assert!(n.is_object(), "{s}");
    n["getxattr"].as_u64().unwrap_or(0)
}

#[test]
fn security_capability_is_answered_from_memory() {
    if !can_mount() {
        return;
    }
    bounded(60, || {
        let m = Mount::new(
            "caps",
            Opts {
                passthrough: false,
                ..Opts::default()
            },
        );
        // Many writes: the kernel asks for security.capability before each; a
        // cached answer keeps working after setcap-like changes too.
        sh_ok(&format!(
            "cd {d}; python3 -c \"
import os
fd = os.open('w', os.O_CREAT|os.O_WRONLY, 0o755)
for i in range(2000): os.write(fd, b'x'*100)
os.close(fd)
os.setxattr('w', 'security.capability', bytes.fromhex('0100000200200000000000000000000000000000'))
assert os.getxattr('w', 'security.capability')[:4] == bytes.fromhex('01000002')
os.removexattr('w', 'security.capability')
try:
    os.getxattr('w', 'security.capability'); raise SystemExit('still there')
except OSError: pass
\"",
            d = m.mnt.display()
        ));
    });
}

#[test]
fn inode_numbers_are_the_backing_ones_and_stable() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        let mut m = Mount::new(
            "inos",
            Opts {
                mountpoint: true,
                ..Opts::default()
            },
        );
        // st_ino through the mount, readdir's d_ino and the backing st_ino agree,
        // before and after the kernel forgets the inodes and after a remount.
        let check = format!(
            r#"python3 - {mnt} {dir} <<'PY'
import os, sys
mnt, back = sys.argv[1], sys.argv[2]
os.makedirs(f"{{mnt}}/d", exist_ok=True)
for n in ["a", "d/b"]:
    if not os.path.exists(f"{{mnt}}/{{n}}"):
        open(f"{{mnt}}/{{n}}", "w").write(n)
if not os.path.exists(f"{{mnt}}/d/hard"):
    os.link(f"{{mnt}}/a", f"{{mnt}}/d/hard")
out = []
for n in ["a", "d", "d/b", "d/hard"]:
    live, real = os.lstat(f"{{mnt}}/{{n}}").st_ino, os.lstat(f"{{back}}/{{n}}").st_ino
    assert live == real, (n, live, real)
    out.append(live)
for top in [mnt, f"{{mnt}}/d"]:
    for e in os.scandir(top):
        assert e.inode() == os.lstat(e.path).st_ino, (e.path, e.inode())
assert out[0] == out[3], "hard links share one inode number"
print(*out)
PY"#,
            mnt = m.mnt.display(),
            dir = m.dir.display()
        );
        let first = sh_ok(&check);
        sh_ok("sync; echo 2 > /proc/sys/vm/drop_caches");
        assert_eq!(
            sh_ok(&check),
            first,
            "same numbers after the kernel forgot them"
        );
        m.unmount();
        m.mount();
        assert_eq!(sh_ok(&check), first, "same numbers after a remount");
    });
}

#[test]
fn truncating_open_of_a_running_program_fails_and_keeps_it() {
    if !can_mount() {
        return;
    }
    bounded(120, || {
        for opts in modes() {
            let m = Mount::new("etxtbsy", opts);
            // The kernel checks ETXTBSY for O_RDONLY|O_TRUNC only after the
            // filesystem's open, which (atomic O_TRUNC) is where truncation happens.
            sh_ok(&format!(
                r#"python3 - {d} <<'PY'
import errno, os, shutil, subprocess, sys, time
p = sys.argv[1] + "/prog"
shutil.copyfile("/usr/bin/sleep", p)
os.chmod(p, 0o755)
want = open("/usr/bin/sleep", "rb").read()
c = subprocess.Popen([p, "30"])
time.sleep(0.3)
for fl in (os.O_RDONLY | os.O_TRUNC, os.O_WRONLY, os.O_RDWR | os.O_TRUNC):
    try:
        os.close(os.open(p, fl))
        raise SystemExit(f"open {{fl:#x}} of a running program succeeded")
    except OSError as e:
        assert e.errno == errno.ETXTBSY, e
assert c.poll() is None, "the program was killed"
c.kill(); c.wait()
assert open(p, "rb").read() == want, "the program's file was changed"
PY"#,
                d = m.mnt.display()
            ));
        }
    });
}
