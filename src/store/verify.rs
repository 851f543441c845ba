//! `ckptfs verify`: every version's digest against its object, and the metadata
//! against the objects on disk (orphans, missing objects, leftovers).

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;

use super::{Store, index, layout};
use crate::sys;

impl Store {
    /// Check everything; returns the problems found (empty = consistent).
    /// `progress` is called with (done, total) versions.
    pub fn verify(&self, mut progress: impl FnMut(usize, usize)) -> Vec<String> {
        let mut problems: Vec<String> = self.with_index(|i| i.problems.clone());
        let all: Vec<super::VersionMeta> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter().cloned())
                .collect()
        });
        let total = all.len();
        for (n, m) in all.iter().enumerate() {
            progress(n, total);
            if let Err(e) = self.check_one(m) {
                // Retention or compression may have changed it meanwhile.
                let current = self.with_index(|i| {
                    i.get(&m.relpath())
                        .and_then(|h| h.get(m.number))
                        .map(|c| c.object_ino)
                });
                if current == Some(m.object_ino) {
                    problems.push(format!("{} v{}: {e}", m.path, m.number));
                }
            }
        }
        progress(total, total);
        // Index against disk, with every writer paused so both are one state.
        let _q = self.quiesce.write();
        let total = self.with_index(|i| i.total_versions());
        match index::scan(self.dir()) {
            Ok(fresh) => {
                if fresh.total_versions() != total {
                    problems.push(format!(
                        "index holds {total} versions but the store has {} metadata files",
                        fresh.total_versions()
                    ));
                }
            }
            Err(e) => problems.push(format!("scan: {e}")),
        }
        problems.extend(self.orphans());
        problems
    }

    fn check_one(&self, m: &super::VersionMeta) -> io::Result<()> {
        let fd = self.open_object(m)?;
        let content = self.read_all(&fd, m)?;
        if content.len() as u64 != m.size {
            return Err(io::Error::other(format!(
                "object holds {} bytes, metadata says {}",
                content.len(),
                m.size
            )));
        }
        let d = blake3::hash(&content).to_hex().to_string();
        if d != m.digest {
            return Err(io::Error::other(format!(
                "digest {d} != recorded {}",
                m.digest
            )));
        }
        Ok(())
    }

    /// The version's content (decompressed when needed), `size` bytes.
    pub fn read_all(
        &self,
        fd: &std::os::fd::OwnedFd,
        m: &super::VersionMeta,
    ) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        let mut f = std::fs::File::from(fd.try_clone()?);
        io::Read::read_to_end(&mut f, &mut raw)?;
        if m.compressed {
            raw = zstd::decode_all(&raw[..])?;
        }
        raw.truncate(m.size as usize);
        Ok(raw)
    }

    fn orphans(&self) -> Vec<String> {
        let mut out = Vec::new();
        let expected: std::collections::HashSet<String> = self.with_index(|i| {
            i.paths
                .values()
                .flat_map(|h| h.versions.iter().map(|v| self.object_path(v)))
                .collect()
        });
        let Ok(objs) = sys::openat(
            self.dir(),
            c"objects",
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
                            out.push(format!("{p}: object without metadata"));
                        }
                    }
                }
            }
        }
        out
    }
}
