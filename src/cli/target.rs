//! Find the store and relative path behind a user-given path: through the mount
//! table when mounted (the daemon is asked over its socket), else by looking for
//! `.ckptfs/` in the path's ancestors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::CliError;
use crate::control::{self, Request};
use crate::store::Store;

pub struct Target {
    pub store_path: PathBuf,
    /// Where it is mounted, when it is.
    pub mountpoint: Option<PathBuf>,
    /// Path relative to the mount root / backing directory.
    pub relpath: Vec<u8>,
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    let a = std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()))?;
    // Resolve symlinks in the parent, keep the last component (it may be deleted).
    match (a.parent(), a.file_name()) {
        (Some(par), Some(name)) => match std::fs::canonicalize(par) {
            Ok(c) => Ok(c.join(name)),
            Err(_) => Ok(a),
        },
        _ => Ok(a),
    }
}

pub fn locate(p: &Path) -> Result<Target, CliError> {
    let abs = absolute(p)?;
    let mut best: Option<(PathBuf, PathBuf)> = None;
    for (mp, src) in crate::daemon::ckptfs_mounts() {
        if abs.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some((mp, src));
        }
    }
    if let Some((mp, src)) = best {
        let rel = abs.strip_prefix(&mp).unwrap_or(Path::new(""));
        return Ok(Target {
            store_path: src,
            mountpoint: Some(mp),
            relpath: rel.as_os_str().as_encoded_bytes().to_vec(),
        });
    }
    for anc in abs.ancestors() {
        let s = anc.join(crate::store::layout::STORE_DIR);
        if s.join(crate::store::layout::FORMAT_FILE).exists() {
            let rel = abs.strip_prefix(anc).unwrap_or(Path::new(""));
            return Ok(Target {
                store_path: s,
                mountpoint: None,
                relpath: rel.as_os_str().as_encoded_bytes().to_vec(),
            });
        }
    }
    Err(CliError::Failed(format!(
        "{}: not inside a ckptfs mount or a directory with a ckptfs store",
        p.display()
    )))
}

impl Target {
    /// Ask the daemon, or run against the store directly when not mounted.
    pub fn ask(&self, r: Request, cfg: &crate::config::Config) -> Result<Value, CliError> {
        self.ask_with_progress(r, cfg, &mut |_, _| {})
    }

    /// [`Target::ask`], reporting a long request's progress (done, total) as
    /// the daemon (or the store, unmounted) works.
    pub fn ask_with_progress(
        &self,
        r: Request,
        cfg: &crate::config::Config,
        progress: control::Progress,
    ) -> Result<Value, CliError> {
        let v = if self.mountpoint.is_some() {
            control::request(&self.store_path, &r, progress).map_err(|e| {
                format!(
                    "{}: cannot reach the ckptfs daemon: {e}",
                    self.store_path.display()
                )
            })?
        } else {
            let s: Arc<Store> = Store::open_path(&self.store_path, cfg.store_options())?;
            let mutates = matches!(
                r,
                Request::Pin { .. }
                    | Request::Unpin { .. }
                    | Request::Gc { dry_run: false }
                    | Request::Verify { repair: true }
            );
            if mutates {
                s.mark_dirty().map_err(crate::store::StoreError::during(
                    "marking the store changed",
                ))?;
            }
            let ctx = control::Ctx {
                store: &s,
                versioner: None,
                versions_dir: &cfg.versions_dir.name,
                metrics: None,
                data_path: None,
                view_inodes: None,
                fuse_requests: None,
            };
            return control::execute(r, &ctx, progress)
                .map(control::Reply::into_value)
                .map_err(|e| CliError::Failed(e.to_string()));
        };
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            let m = v["error"].as_str().unwrap_or("request failed");
            Err(CliError::Daemon(m.to_string()))
        }
    }

    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.relpath).into_owned()
    }
}
