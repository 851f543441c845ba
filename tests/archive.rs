//! The archive tier against two independent S3 implementations started here
//! on 127.0.0.1: `moto_server` (PyPI moto, in memory) and `s3s-fs` (crates.io,
//! files on disk, checks signatures). Versions past `after` leave the local
//! store and read back byte for byte; `restore` and `verify` work on them; a
//! fresh store with the same bucket gets the history back; faults (the
//! server killed mid-upload, the daemon killed mid-upload, bad credentials,
//! a missing bucket) lose nothing and say what is wrong in one line; two
//! nodes share chunks.

mod common;
use common::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "ckptfstest";
const SECRET: &str = "ckptfstestsecret";
const BUCKET: &str = "ckpt-archive";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Moto,
    S3sFs,
}

struct Server {
    kind: Kind,
    port: u16,
    data: PathBuf,
    child: Option<Child>,
}

fn s3s_fs() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    [format!("{home}/.cargo/bin/s3s-fs"), "s3s-fs".to_string()]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

impl Server {
    /// Start `kind` on a free port (None, said as a skip, when it is not installed).
    fn start(kind: Kind, root: &Path) -> Option<Server> {
        let ok = match kind {
            Kind::Moto => sh("command -v moto_server").status.success(),
            Kind::S3sFs => s3s_fs().is_some(),
        };
        if !ok {
            skip(&format!(
                "{kind:?} S3 server (scripts/install-test-deps.sh installs moto and s3s-fs)"
            ));
            return None;
        }
        let data = root.join(format!("s3-{kind:?}"));
        std::fs::create_dir_all(&data).unwrap();
        let mut s = Server {
            kind,
            port: free_port(),
            data,
            child: None,
        };
        s.run();
        s.python(&format!("s3.create_bucket(Bucket='{BUCKET}')"));
        Some(s)
    }

    fn run(&mut self) {
        let mut c = match self.kind {
            Kind::Moto => {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
                c
            }
            Kind::S3sFs => {
                let mut c = Command::new(s3s_fs().unwrap());
                c.args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.port.to_string(),
                    "--access-key",
                    KEY,
                    "--secret-key",
                    SECRET,
                ])
                .arg(&self.data);
                c
            }
        };
        self.child = Some(
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("the S3 server to listen", 30, || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run boto3 statements with `s3` bound to a client of this server.
    fn python(&self, code: &str) -> String {
        sh_ok(&format!(
            "python3 - <<'PY'\nimport boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{KEY}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n{code}\nPY",
            self.endpoint()
        ))
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let o = self.python(&format!(
            "p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='{BUCKET}', Prefix='{prefix}'):\n    for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        o.lines().map(str::to_string).collect()
    }
}

/// Removes a test's own directory (servers' data, configs) when it passes.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config archiving after 1 s to `prefix` on `srv` as `node`.
fn config(root: &Path, srv: &Server, prefix: &str, node: &str) -> String {
    let creds = root.join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    format!(
        r#"{{ "autosave": {{ "settle_ms": 0, "generation_quiet_ms": 200 }},
             "retention": {{ "keep_within": "1y" }},
             "archive": {{ "url": "s3://{BUCKET}/{prefix}", "endpoint": "{}", "after": "1s",
                           "expire_after": "1d", "node": "{node}",
                           "credentials_file": "{}" }} }}"#,
        srv.endpoint(),
        creds.display()
    )
}

fn archived(m: &Mount) -> u64 {
    stats(m)["archive"]["stats"]["versions_archived"]
        .as_u64()
        .unwrap_or(0)
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Local objects of version `n` of any path.
fn local_objects(m: &Mount, n: u64) -> usize {
    assert!(m.store().join("objects").is_dir(), "the store is visible");
    let o = sh_ok(&format!(
        "find {} -name 'v{n:06}.data*' | wc -l",
        m.store().join("objects").display()
    ));
    o.trim().parse().unwrap()
}

fn mount(root: &Path, tag: &str, cfg: String) -> Mount {
    let dir = root.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    Mount::over(
        tmpdir(tag),
        dir,
        Opts {
            config: Some(cfg),
            // On a mount point of its own, so the store under `dir` stays
            // visible to the test (in place, the mount hides it).
            mountpoint: true,
            ..Opts::default()
        },
    )
}

#[test]
fn versions_move_to_the_archive_and_come_back_on_both_servers() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        for kind in [Kind::Moto, Kind::S3sFs] {
            let root = tmpdir("archive");
            let _clean = Cleanup(root.clone());
            let Some(srv) = Server::start(kind, &root) else {
                continue;
            };
            let mut m = mount(&root, "node", config(&root, &srv, "t1", "n1"));
            let v1 = random(3 << 20, 1);
            std::fs::write(m.p("model.bin"), &v1).unwrap();
            m.wait_sealed();
            // A rewrite: the first state's inode now belongs to the store alone.
            std::fs::write(m.p("model.bin"), random(3 << 20, 2)).unwrap();
            m.wait_sealed();
            wait_for("version 1 to reach the archive", 60, || archived(&m) >= 1);
            assert_eq!(local_objects(&m, 1), 0, "{kind:?}: the local copy is gone");
            let log = String::from_utf8_lossy(
                &ckptfs(&["log", m.p("model.bin").to_str().unwrap()]).stdout,
            )
            .into_owned();
            assert!(log.contains("archive") && log.contains("local"), "{log}");
            let v = versions_of(&m, "model.bin");
            // A read fetches only the chunks it touches.
            let entry = m.p(".versions/model.bin").join(&v[0]);
            let mut head = [0u8; 4096];
            std::io::Read::read_exact(&mut std::fs::File::open(&entry).unwrap(), &mut head)
                .unwrap();
            assert_eq!(&head[..], &v1[..4096]);
            let s = stats(&m)["archive"]["stats"].clone();
            assert_eq!(s["chunks_fetched"], 1, "{kind:?}: {s}");
            let back = std::fs::read(&entry).unwrap();
            assert!(back == v1, "{kind:?}: read back through .versions differs");
            let out = m.root.join("restored.bin");
            let o = ckptfs(&[
                "restore",
                m.p("model.bin").to_str().unwrap(),
                "1",
                "--to",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(std::fs::read(&out).unwrap() == v1);
            let o = ckptfs(&["verify", m.mnt.to_str().unwrap()]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
            // verify asks the bucket: a chunk gone is a problem named.
            let chunk = srv.keys("t1/chunks/").into_iter().next().unwrap();
            srv.python(&format!(
                "s3.delete_object(Bucket='{BUCKET}', Key='{chunk}')"
            ));
            let o = ckptfs(&["verify", m.mnt.to_str().unwrap()]);
            let said = String::from_utf8_lossy(&o.stdout);
            assert_eq!(o.status.code(), Some(3), "{said}");
            assert!(said.contains("missing from the bucket"), "{said}");
            m.unmount();
        }
    });
}

#[test]
fn a_fresh_store_gets_its_history_and_steps_back_from_the_bucket() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let root = tmpdir("archive-fresh");
        let _clean = Cleanup(root.clone());
        let Some(srv) = Server::start(Kind::Moto, &root) else {
            return;
        };
        let cfg = config(&root, &srv, "t2", "trainer-1");
        let mut m = mount(&root, "first", cfg.clone());
        let w7 = random(2 << 20, 7);
        std::fs::create_dir(m.p("checkpoint-7")).unwrap();
        std::fs::write(m.p("checkpoint-7/model.bin"), &w7).unwrap();
        std::fs::write(m.p("checkpoint-7/state.json"), "{\"step\":7}").unwrap();
        m.wait_sealed();
        wait_for("the generation with step 7", 30, || {
            m.p(".versions/@step-7").exists()
        });
        // The trainer rotates it away: the delete moves the inodes to the store.
        std::fs::remove_dir_all(m.p("checkpoint-7")).unwrap();
        m.wait_sealed();
        wait_for("both files archived", 60, || archived(&m) >= 2);
        m.unmount(); // the last generations go to the bucket on the way out
        // A new machine: an empty directory, the same bucket and node.
        let mut fresh = mount(&root, "second", cfg);
        let dest = fresh.root.join("ckpt-7");
        let o = ckptfs(&[
            "restore",
            "--at",
            "step-7",
            fresh.p("checkpoint-7").to_str().unwrap(),
            "--to",
            dest.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(dest.join("model.bin")).unwrap() == w7);
        assert_eq!(
            std::fs::read_to_string(dest.join("state.json")).unwrap(),
            "{\"step\":7}"
        );
        fresh.unmount();
    });
}

#[test]
fn faults_lose_nothing_and_bad_settings_are_one_line() {
    if !can_mount() {
        return;
    }
    bounded(400, || {
        let root = tmpdir("archive-faults");
        let _clean = Cleanup(root.clone());
        let Some(mut srv) = Server::start(Kind::S3sFs, &root) else {
            return;
        };
        // Bad credentials (s3s-fs checks signatures) and a missing bucket
        // (moto; s3s-fs makes buckets on demand): one line, nothing mounted.
        let moto = Server::start(Kind::Moto, &root);
        let mut cases = vec![(
            config(&root, &srv, "t3", "n1"),
            "wrong",
            "refused our credentials",
        )];
        if let Some(moto) = &moto {
            let c = config(&root, moto, "t3", "n1")
                .replace(&format!("\"s3://{BUCKET}/"), "\"s3://no-such-bucket/");
            cases.push((c, SECRET, "does not exist"));
        }
        for (bad, secret, says) in cases {
            std::fs::write(
                root.join("credentials"),
                format!("[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {secret}\n"),
            )
            .unwrap();
            let dir = root.join("badmount");
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = root.join("bad.json");
            std::fs::write(&cfg, &bad).unwrap();
            let o = ckptfs(&["mount", dir.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
            if is_mounted(&dir) {
                let _ = ckptfs(&["umount", dir.to_str().unwrap()]);
                panic!("{says}: mounted anyway");
            }
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && err.contains(says), "{says}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            let o = ckptfs(&["config", "check", cfg.to_str().unwrap()]);
            assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains(says));
        }
        drop(moto);
        let mut m = mount(&root, "node", config(&root, &srv, "t3", "n1"));
        // The server dies while a big version is due: it stays local.
        let big = random(48 << 20, 3);
        std::fs::write(m.p("big.bin"), &big).unwrap();
        m.wait_sealed();
        srv.kill();
        std::fs::write(m.p("big.bin"), b"next").unwrap();
        m.wait_sealed();
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(archived(&m), 0);
        assert_eq!(
            local_objects(&m, 1),
            1,
            "kept locally while the server is down"
        );
        // After its retries (backoff with jitter), the failure is counted.
        wait_for("the archive error counted", 60, || {
            stats(&m)["archive"]["stats"]["errors"].as_u64().unwrap() >= 1
        });
        assert_eq!(local_objects(&m, 1), 1, "still local after the failure");
        let v = versions_of(&m, "big.bin");
        assert!(std::fs::read(m.p(".versions/big.bin").join(&v[0])).unwrap() == big);
        // Back up: the upload completes.
        srv.run();
        wait_for("big.bin v1 archived after the restart", 120, || {
            archived(&m) >= 1
        });
        assert_eq!(local_objects(&m, 1), 0);
        // The daemon killed mid-upload: the remount resumes and does not send
        // the chunks it had confirmed.
        let uploaded = |m: &Mount| {
            stats(m)["archive"]["stats"]["chunks_uploaded"]
                .as_u64()
                .unwrap_or(0)
        };
        let before = uploaded(&m);
        std::fs::write(m.p("huge.bin"), random(96 << 20, 4)).unwrap();
        m.wait_sealed();
        std::fs::write(m.p("huge.bin"), b"next").unwrap();
        m.wait_sealed();
        let mut first = 0;
        wait_for("some chunks of huge.bin uploaded", 60, || {
            first = uploaded(&m) - before;
            first >= 8
        });
        m.crash();
        m.mount();
        // (It may have finished before the kill: then nothing is left to send.)
        wait_for("huge.bin v1 archived after the remount", 120, || {
            local_objects(&m, 1) == 0
        });
        let s = &stats(&m)["archive"]["stats"];
        let again = s["chunks_uploaded"].as_u64().unwrap();
        let sent = s["bytes_uploaded"].as_u64().unwrap();
        assert!(sent < 96 << 20, "re-sent everything: {s}");
        // The manifest says how many chunks huge.bin has: the two runs
        // together sent each at most once (plus the one in flight at the kill).
        let n: usize = srv
            .python(&format!(
                "import json\nfor k in {:?}:\n    m = json.loads(s3.get_object(Bucket='{BUCKET}', Key=k)['Body'].read())\n    if m['meta']['path'] == 'huge.bin':\n        print(len(m['chunks']))",
                srv.keys("t3/nodes/n1/manifests/")
            ))
            .trim()
            .parse()
            .unwrap();
        assert!(
            (first + again) as usize <= n + 1 && again as usize <= n - 8 + 1,
            "confirmed chunks sent twice? {n} chunks; first run {first}, after the remount {again}: {s}"
        );
        let v = versions_of(&m, "huge.bin");
        assert!(
            std::fs::read(m.p(".versions/huge.bin").join(&v[0])).unwrap() == random(96 << 20, 4)
        );
        m.unmount();
    });
}

#[test]
fn two_nodes_upload_shared_chunks_once_and_restore_their_own_files() {
    if !can_mount() {
        return;
    }
    bounded(300, || {
        let root = tmpdir("archive-nodes");
        let _clean = Cleanup(root.clone());
        let Some(srv) = Server::start(Kind::Moto, &root) else {
            return;
        };
        let model = random(6 << 20, 9);
        let mut mounts = Vec::new();
        for node in ["node-a", "node-b"] {
            let m = mount(&root, node, config(&root, &srv, "t4", node));
            std::fs::write(m.p("model.bin"), &model).unwrap();
            std::fs::write(m.p("own.txt"), format!("{node} says hello\n").repeat(1000)).unwrap();
            m.wait_sealed();
            std::fs::write(m.p("model.bin"), b"next").unwrap();
            std::fs::write(m.p("own.txt"), b"next").unwrap();
            m.wait_sealed();
            wait_for(&format!("{node}'s versions archived"), 60, || {
                archived(&m) >= 2
            });
            let s = stats(&m)["archive"]["stats"].clone();
            mounts.push((node, m, s));
        }
        let (a, b) = (&mounts[0].2, &mounts[1].2);
        assert!(a["chunks_uploaded"].as_u64().unwrap() >= 6, "{a}");
        // node-b's model chunks were all in the bucket already: only its own
        // file's chunk went up.
        assert!(b["chunks_reused"].as_u64().unwrap() >= 6, "{b}");
        assert!(b["chunks_uploaded"].as_u64().unwrap() <= 1, "{b}");
        assert!(b["bytes_uploaded"].as_u64().unwrap() < 1 << 20, "{b}");
        for (node, m, _) in &mut mounts {
            let v = versions_of(m, "own.txt");
            let t = std::fs::read_to_string(m.p(".versions/own.txt").join(&v[0])).unwrap();
            assert_eq!(t, format!("{node} says hello\n").repeat(1000));
            assert_eq!(srv.keys(&format!("t4/nodes/{node}/manifests/")).len(), 2);
            m.unmount();
        }
    });
}

#[test]
fn expired_versions_leave_the_bucket_and_their_chunks_are_swept() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let root = tmpdir("archive-sweep");
        let _clean = Cleanup(root.clone());
        let Some(srv) = Server::start(Kind::Moto, &root) else {
            return;
        };
        let cfg = config(&root, &srv, "t5", "n1").replace(
            "\"expire_after\": \"1d\"",
            "\"expire_after\": \"8s\", \"sweep_grace\": \"1s\"",
        );
        let mut m = mount(&root, "node", cfg);
        let x = random(3 << 20, 11);
        let save_and_replace = |m: &Mount, name: &str| {
            std::fs::write(m.p(name), &x).unwrap();
            m.wait_sealed();
            std::fs::write(m.p(name), b"next").unwrap();
            m.wait_sealed();
        };
        save_and_replace(&m, "old.bin");
        wait_for("old.bin v1 archived", 60, || archived(&m) >= 1);
        let chunks = srv.keys("t5/chunks/");
        assert!(chunks.len() >= 3, "{chunks:?}");
        // Four seconds later the same bytes under another name: the chunks
        // are reused, and a second manifest names them.
        std::thread::sleep(Duration::from_secs(4));
        save_and_replace(&m, "late.bin");
        wait_for("late.bin v1 archived", 60, || archived(&m) >= 2);
        // old.bin v1 expires: its manifest goes, but late.bin's still names
        // every chunk, so sweeps (every second) keep them.
        wait_for("old.bin v1 expired", 60, || {
            srv.keys("t5/nodes/n1/manifests/").len() == 1
        });
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            srv.keys("t5/chunks/"),
            chunks,
            "a chunk still named was swept"
        );
        let v = versions_of(&m, "late.bin");
        assert!(std::fs::read(m.p(".versions/late.bin").join(&v[0])).unwrap() == x);
        // late.bin v1 expires too: nothing names the chunks, the sweep takes them.
        wait_for("the chunks swept", 60, || srv.keys("t5/chunks/").is_empty());
        assert!(srv.keys("t5/nodes/n1/manifests/").is_empty());
        let s = stats(&m)["archive"]["stats"].clone();
        assert!(
            s["chunks_swept"].as_u64().unwrap() >= chunks.len() as u64,
            "{s}"
        );
        m.unmount();
    });
}

#[test]
fn an_encrypted_archive_shows_no_plaintext_and_no_equal_addresses_across_keys() {
    if !can_mount() {
        return;
    }
    bounded(240, || {
        let root = tmpdir("archive-crypt");
        let _clean = Cleanup(root.clone());
        let Some(srv) = Server::start(Kind::Moto, &root) else {
            return;
        };
        let secret = "TOP SECRET WEIGHTS 0xC0FFEE\n".repeat(40_000);
        let key_a = root.join("a.key");
        std::fs::write(&key_a, random(32, 21)).unwrap();
        let key_b = root.join("b.key");
        // The hex form works too.
        let hex: String = random(32, 22).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key_b, format!("{hex}\n")).unwrap();
        let with_key = |node: &str, key: &Path| {
            config(&root, &srv, "t6", node).replace(
                "\"node\":",
                &format!("\"key_file\": \"{}\", \"node\":", key.display()),
            )
        };
        for (node, key) in [("node-a", &key_a), ("node-b", &key_b)] {
            let mut m = mount(&root, node, with_key(node, key));
            std::fs::write(m.p("secret.txt"), &secret).unwrap();
            m.wait_sealed();
            std::fs::write(m.p("secret.txt"), b"next").unwrap();
            m.wait_sealed();
            wait_for(&format!("{node}: secret.txt v1 archived"), 60, || {
                archived(&m) >= 1
            });
            let s = stats(&m)["archive"]["stats"].clone();
            // Different keys: node-b finds none of node-a's chunks.
            assert_eq!(s["chunks_reused"], 0, "{node}: {s}");
            let v = versions_of(&m, "secret.txt");
            assert_eq!(
                std::fs::read_to_string(m.p(".versions/secret.txt").join(&v[0])).unwrap(),
                secret
            );
            m.unmount();
        }
        // Nothing in the bucket shows the data or the file's name.
        let leaks = srv.python(&format!(
            "p = s3.get_paginator('list_objects_v2')\nn = 0\nfor page in p.paginate(Bucket='{BUCKET}', Prefix='t6/'):\n    for o in page.get('Contents', []):\n        b = s3.get_object(Bucket='{BUCKET}', Key=o['Key'])['Body'].read()\n        n += 1\n        if b'TOP SECRET' in b or b'secret.txt' in b:\n            print('LEAK', o['Key'])\nprint('objects', n)"
        ));
        assert!(
            !leaks.contains("LEAK") && leaks.contains("objects"),
            "{leaks}"
        );
        // A fresh store with the wrong key cannot read node-a's history: one line.
        let dir = root.join("wrong");
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = root.join("wrong.json");
        std::fs::write(&cfg, with_key("node-a", &key_b)).unwrap();
        let o = ckptfs(&["mount", dir.to_str().unwrap(), "-c", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        if is_mounted(&dir) {
            let _ = ckptfs(&["umount", dir.to_str().unwrap()]);
        }
        assert!(
            !o.status.success() && err.contains("does not decrypt"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    });
}
