//! Conversions from backing `stat` results to FUSE attributes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

pub fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

/// `d_type` from readdir to a FUSE file type.
pub fn kind_of_dtype(d: u8) -> FileType {
    match d {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

pub fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new((-sec) as u64, 0) + Duration::from_nanos(nsec as u64)
    }
}

/// ns since the epoch → `SystemTime` (negative times too).
pub fn time_ns(ns: i64) -> SystemTime {
    time(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

pub fn to_attr(ino: u64, st: &libc::stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: time(st.st_ctime, st.st_ctime_nsec),
        kind: kind_of(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// `SystemTime` to a `timespec` for utimensat.
pub fn to_timespec(t: SystemTime) -> libc::timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => libc::timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        },
        Err(e) => {
            let d = e.duration();
            let mut sec = -(d.as_secs() as i64);
            let mut nsec = -(d.subsec_nanos() as i64);
            if nsec < 0 {
                sec -= 1;
                nsec += 1_000_000_000;
            }
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespec_round_trips_before_and_after_epoch() {
        for (s, n) in [(0i64, 0i64), (1_700_000_000, 123), (-5, 250_000_000)] {
            let t = time(s, n);
            let ts = to_timespec(t);
            assert_eq!((ts.tv_sec, ts.tv_nsec), (s, n));
        }
    }

    #[test]
    fn kinds_map() {
        assert_eq!(kind_of(libc::S_IFDIR | 0o755), FileType::Directory);
        assert_eq!(kind_of(libc::S_IFIFO), FileType::NamedPipe);
        assert_eq!(kind_of_dtype(libc::DT_LNK), FileType::Symlink);
    }
}
