//! The store's errors. `Display` is the CLI's one-line message; `to_errno` is the
//! one translation at the FUSE boundary.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum StoreError {
    /// The directory has no `FORMAT` file: not a ckptfs store.
    NotAStore { path: PathBuf },
    /// `FORMAT` does not hold a ckptfs store line.
    BadFormat { line: String },
    /// The store was written by a newer ckptfs (format `found` > `supported`).
    NewerFormat { found: u32, supported: u32 },
    /// The path has no version with this number.
    NoVersion { path: Vec<u8>, number: u64 },
    /// The version is pinned; nothing evicts it until it is unpinned.
    Pinned { path: Vec<u8>, number: u64 },
    /// The filesystem refused; `what` says what the store was doing ("" when
    /// the error speaks for itself).
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// The archive tier cannot be used (bucket, endpoint, credentials).
    Archive { message: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// What a FUSE caller sees.
    pub fn to_errno(&self) -> i32 {
        match self {
            StoreError::NotAStore { .. } | StoreError::NoVersion { .. } => libc::ENOENT,
            StoreError::BadFormat { .. } | StoreError::NewerFormat { .. } => libc::EINVAL,
            StoreError::Pinned { .. } => libc::EPERM,
            StoreError::Archive { .. } => libc::EIO,
            StoreError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// Name what the store was doing when `e` happened.
    pub fn during(what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| StoreError::Io { what, source }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            StoreError::NotAStore { path } => {
                write!(f, "{}: not a ckptfs store (no FORMAT file)", path.display())
            }
            StoreError::BadFormat { line } => write!(f, "FORMAT: not a ckptfs store ({line:?})"),
            StoreError::NewerFormat { found, supported } => write!(
                f,
                "store format {found} is newer than this ckptfs understands ({supported}); upgrade ckptfs"
            ),
            StoreError::NoVersion { path, number } => {
                write!(f, "no version {number} of {}", p(path))
            }
            StoreError::Pinned { path, number } => {
                write!(f, "{} v{number} is pinned (unpin it first)", p(path))
            }
            StoreError::Io { what: "", source } => write!(f, "{source}"),
            StoreError::Io { what, source } => write!(f, "{what}: {source}"),
            StoreError::Archive { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(source: io::Error) -> Self {
        StoreError::Io { what: "", source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_and_message_name_the_problem() {
        let e = StoreError::Pinned {
            path: b"run/m.pt".to_vec(),
            number: 3,
        };
        assert_eq!(e.to_errno(), libc::EPERM);
        assert_eq!(e.to_string(), "run/m.pt v3 is pinned (unpin it first)");
        let e = StoreError::during("repair")(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.to_errno(), libc::ENOSPC);
        assert!(e.to_string().starts_with("repair: "), "{e}");
        let e: StoreError = io::Error::other("odd").into();
        assert_eq!((e.to_errno(), e.to_string()), (libc::EIO, "odd".into()));
    }
}
