//! `ckptfs restore --at <T|step-N> PATH [--to DEST] [--force]`: a file or a
//! whole directory as it was at an instant, or at the first generation in
//! which a step was complete. It reads the mount's `.versions/@<T>/` view (the
//! daemon resolves every path), builds the tree next to DEST and renames it
//! into place, so DEST is either untouched or whole. A file held by an
//! uncompressed store object is reflinked from it where the filesystem can.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CliResult, ConfigArg, generations, log_cmd};
use crate::store::layout;
use crate::sys;

/// The name under `.versions` that `--at` stands for: `@step-N` or `@<stamp>`.
pub fn view_name(at: &str) -> Result<String, String> {
    let a = at.strip_prefix('@').unwrap_or(at);
    let ok = match a.strip_prefix("step-") {
        Some(n) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.len() <= 19,
        None => layout::parse_stamp(a).is_some(),
    };
    if ok {
        Ok(format!("@{a}"))
    } else {
        Err(format!(
            "--at {at:?}: not an instant (YYYYMMDDTHHMMSS[.ffffff]Z, UTC) or a step (step-N)"
        ))
    }
}

/// What one restore did.
#[derive(Default)]
struct Done {
    files: u64,
    dirs: u64,
    links: u64,
    bytes: u64,
    reflinked: u64,
}

/// One entry of the source tree, relative to its root ("" is the root).
struct Item {
    rel: PathBuf,
    meta: fs::Metadata,
}

fn walk(root: &Path) -> io::Result<Vec<Item>> {
    let mut out = vec![Item {
        rel: PathBuf::new(),
        meta: fs::symlink_metadata(root)?,
    }];
    let mut i = 0;
    while i < out.len() {
        if out[i].meta.is_dir() {
            let rel = out[i].rel.clone();
            let mut names: Vec<_> = fs::read_dir(root.join(&rel))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.sort();
            for n in names {
                let r = rel.join(n);
                let meta = fs::symlink_metadata(root.join(&r))?;
                out.push(Item { rel: r, meta });
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Reject DEST inside the mount's own history view (read-only, and a restore
/// into it would be a loop).
fn refuse_view(dest: &Path, view_root: &Path) -> Result<(), String> {
    let abs = std::path::absolute(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    // Resolve the deepest ancestor that exists, keep the rest as written.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                rest.push(n.to_owned());
                existing = p;
            }
            _ => break,
        }
    }
    let mut real = fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    real.extend(rest.iter().rev());
    if real.starts_with(view_root) || abs.starts_with(view_root) {
        return Err(format!(
            "--to {}: inside the mount's history view {}, which is read-only; restore somewhere else",
            dest.display(),
            view_root.display()
        ));
    }
    Ok(())
}

/// Copy one regular file's `size` bytes: a reflink of its store object when
/// the daemon names one (`user.ckptfs.object`, a path through the daemon's
/// /proc fd of the store: readable by root or the daemon's user) and the
/// filesystem can, else a copy (from the object when it is readable, through
/// the view otherwise).
fn copy_file(
    src: &Path,
    dst: &Path,
    size: u64,
    bar: &Option<indicatif::ProgressBar>,
) -> io::Result<bool> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let object = CString::new(src.as_os_str().as_bytes())
        .ok()
        .and_then(|c| sys::getxattr(&c, c"user.ckptfs.object", 4096).ok())
        .and_then(|p| fs::File::open(std::ffi::OsStr::from_bytes(&p)).ok())
        .filter(|f| f.metadata().is_ok_and(|m| m.len() >= size));
    if let Some(obj) = &object
        && sys::ficlone(out.as_fd(), obj.as_fd()).is_ok()
    {
        // The object may be longer (it shares an inode that was appended to).
        sys::ftruncate(out.as_fd(), size)?;
        if let Some(b) = bar {
            b.inc(size);
        }
        return Ok(true);
    }
    let mut input: Box<dyn Read> = match object {
        Some(o) => Box::new(o.take(size)),
        None => Box::new(fs::File::open(src)?),
    };
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        done += n as u64;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
    if done != size {
        return Err(io::Error::other(format!(
            "{}: read {done} bytes, the view says {size}",
            src.display()
        )));
    }
    out.sync_data()?;
    Ok(false)
}

/// Mode, owner (when root) and times of `m` onto `dst` (not following a symlink).
fn set_meta(dst: &Path, m: &fs::Metadata) -> io::Result<()> {
    let c = CString::new(dst.as_os_str().as_bytes()).map_err(io::Error::other)?;
    if nix_is_root() {
        std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
    }
    if !m.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let ts = |s: i64, ns: i64| libc::timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    let times = [ts(m.atime(), m.atime_nsec()), ts(m.mtime(), m.mtime_nsec())];
    sys::utimensat(None, &c, &times, libc::AT_SYMLINK_NOFOLLOW)
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

fn build(src: &Path, items: &[Item], tmp: &Path) -> Result<Done, String> {
    let total: u64 = items
        .iter()
        .filter(|i| i.meta.is_file())
        .map(|i| i.meta.len())
        .sum();
    let bar = super::bar(total, "restore");
    let mut d = Done::default();
    let at = |i: &Item| {
        if i.rel.as_os_str().is_empty() {
            (src.to_path_buf(), tmp.to_path_buf())
        } else {
            (src.join(&i.rel), tmp.join(&i.rel))
        }
    };
    for i in items {
        let (s, t) = at(i);
        let ft = i.meta.file_type();
        let r = if ft.is_dir() {
            d.dirs += 1;
            fs::create_dir(&t)
        } else if ft.is_symlink() {
            d.links += 1;
            fs::read_link(&s).and_then(|target| std::os::unix::fs::symlink(target, &t))
        } else if ft.is_file() {
            d.files += 1;
            d.bytes += i.meta.len();
            copy_file(&s, &t, i.meta.len(), &bar).map(|r| d.reflinked += u64::from(r))
        } else {
            // Devices, fifos and sockets hold no data: `cp -a` would recreate
            // them, but a checkpoint has none; say so rather than guess.
            Err(io::Error::other(
                "not a file, directory or symlink; skipped",
            ))
        };
        r.map_err(|e| format!("{}: {e}", s.display()))?;
    }
    // Directories last and deepest first, so filling them does not move their mtimes.
    for i in items.iter().rev() {
        let (s, t) = at(i);
        set_meta(&t, &i.meta).map_err(|e| format!("{}: {e}", s.display()))?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(d)
}

fn remove_any(p: &Path) -> io::Result<()> {
    if fs::symlink_metadata(p)?.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}

pub fn run(path: &Path, at: &str, to: Option<&Path>, force: bool, cfg: &ConfigArg) -> CliResult {
    let name = view_name(at)?;
    let (t, _, vdir) = log_cmd::versions(path, cfg)?;
    let Some(mp) = &t.mountpoint else {
        return Err(format!(
            "{}: restore --at reads the mount's {vdir}/{name} view; mount the directory first",
            path.display()
        )
        .into());
    };
    let view_root = mp.join(&vdir);
    let at_root = view_root.join(&name);
    let src = if t.relpath.is_empty() {
        at_root.clone()
    } else {
        at_root.join(std::ffi::OsStr::from_bytes(&t.relpath))
    };
    if let Err(e) = fs::symlink_metadata(&at_root) {
        let why = match name.strip_prefix("@step-") {
            Some(n) => {
                let gens = generations::list(path, None, cfg)?;
                let mut done: Vec<u64> = gens.iter().flat_map(|g| g.complete.clone()).collect();
                done.sort_unstable();
                done.dedup();
                let done: Vec<String> = done.iter().map(u64::to_string).collect();
                format!(
                    "no generation has step {n} complete (complete steps: {})",
                    if done.is_empty() {
                        "none".into()
                    } else {
                        done.join(", ")
                    }
                )
            }
            None => e.to_string(),
        };
        return Err(format!("{}: {why}", at_root.display()).into());
    }
    let items = match walk(&src) {
        Ok(items) => items,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("{}: did not exist at {name}", t.display()).into());
        }
        Err(e) => return Err(format!("{}: {e}", src.display()).into()),
    };
    let dest = to.unwrap_or(path).to_path_buf();
    refuse_view(&dest, &view_root)?;
    let exists = fs::symlink_metadata(&dest).is_ok();
    if exists && !force {
        return Err(format!(
            "{}: exists; --force replaces it (inside the mount, what it holds now stays in history)",
            dest.display()
        )
        .into());
    }
    let (parent, base) = match (dest.parent(), dest.file_name()) {
        (Some(p), Some(b)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            b,
        ),
        _ => return Err(format!("{}: not a path to restore to", dest.display()).into()),
    };
    let aside = |what: &str| {
        let mut n = std::ffi::OsString::from(".");
        n.push(base);
        n.push(format!(".ckptfs-{what}-{}", std::process::id()));
        parent.join(n)
    };
    let tmp = aside("restore");
    let done = match build(&src, &items, &tmp) {
        Ok(d) => d,
        Err(e) => {
            let _ = remove_any(&tmp);
            return Err(e.into());
        }
    };
    let swap = || -> io::Result<()> {
        if exists {
            let old = aside("replaced");
            fs::rename(&dest, &old)?;
            if let Err(e) = fs::rename(&tmp, &dest) {
                let _ = fs::rename(&old, &dest);
                return Err(e);
            }
            remove_any(&old)?;
        } else {
            fs::rename(&tmp, &dest)?;
        }
        fs::File::open(parent)?.sync_all()
    };
    if let Err(e) = swap() {
        let _ = remove_any(&tmp);
        return Err(format!("{}: {e}", dest.display()).into());
    }
    eprintln!(
        "restored {} as of {name}: {} files ({} bytes, {} reflinked), {} directories, {} symlinks to {}",
        if t.relpath.is_empty() {
            "the mount".to_string()
        } else {
            t.display()
        },
        done.files,
        done.bytes,
        done.reflinked,
        done.dirs,
        done.links,
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::view_name;

    #[test]
    fn at_names() {
        assert_eq!(view_name("step-500").unwrap(), "@step-500");
        assert_eq!(view_name("@step-7").unwrap(), "@step-7");
        assert_eq!(view_name("20261130T120000Z").unwrap(), "@20261130T120000Z");
        for bad in [
            "step-",
            "step-x",
            "yesterday",
            "20261331T000000Z",
            "2026-11-30",
        ] {
            let e = view_name(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
