//! Every name the store uses on disk, and all path logic, in one place
//! (docs/FORMAT.md describes the same layout for people).
//!
//! ```text
//! <store>/FORMAT                      format version (a single line: "ckptfs-store 4")
//! <store>/lock                        daemon lock (flock) with its pid
//! <store>/daemon.log                  log of a background daemon
//! <store>/dirty                       present while a daemon runs or after an offline change
//! <store>/index.snapshot              the index at the last clean shutdown
//! <store>/journal                     deletes and renames with their times (JSON lines)
//! <store>/captures                   capture records of what is in incoming/ (JSON lines, format 4)
//! <store>/incoming/<name>             captured content not yet sealed
//! <store>/incoming/<name>.cap         its capture record when not in `captures` (JSON)
//! <store>/objects/<category>/<xx>/<md5>/v<NNNNNN>.data   version content
//! <store>/objects/<category>/<xx>/<md5>/v<NNNNNN>.json   version metadata
//! <store>/damaged/<stamp>/...         what `verify --repair` took out
//! ```
//! `<md5>` is the hex MD5 of the file's path relative to the mount root and `<xx>`
//! its first two hex digits. The control socket is abstract (no file here).

use md5::{Digest, Md5};

/// The store's directory name inside the backing directory by default.
pub const STORE_DIR: &str = ".ckptfs";
pub const FORMAT_FILE: &str = "FORMAT";
pub const FORMAT_VERSION: u32 = 4;
pub const FORMAT_LINE: &str = "ckptfs-store 4";
pub const LOCK_FILE: &str = "lock";
pub const DAEMON_LOG: &str = "daemon.log";
pub const DIRTY: &str = "dirty";
pub const SNAPSHOT: &str = "index.snapshot";
/// Deletes and renames with their times (format 2).
pub const JOURNAL: &str = "journal";
/// Capture records, one JSON line each, appended before the content is linked
/// into `incoming/` (format 4).
pub const CAPTURES: &str = "captures";
/// A rewrite of `captures` in progress (renamed over it when whole).
pub const CAPTURES_TMP: &str = "captures.tmp";
/// Generations, one JSON line each (format 2, optional).
pub const GENERATIONS: &str = "generations";
pub const OBJECTS: &str = "objects";
pub const INCOMING: &str = "incoming";
/// Where `verify --repair` puts what it takes out of the store (never read again).
pub const DAMAGED: &str = "damaged";
/// Suffix of a capture record beside its object in `incoming/` (format 3, and
/// a record kept after its seal failed).
pub const CAP_SUFFIX: &str = ".cap";

/// `incoming/<name>.cap`'s name for the capture `name`.
pub fn cap_name(name: &str) -> String {
    format!("{name}{CAP_SUFFIX}")
}

/// A temp name an unshare left in `incoming/` (`unshare-…`, `….unshare`):
/// no capture, deleted at mount.
pub fn is_unshare_temp(name: &str) -> bool {
    name.starts_with("unshare-") || name.ends_with(".unshare")
}

pub fn path_hash(relpath: &[u8]) -> String {
    let d = Md5::digest(relpath);
    hex::encode(d)
}

/// Directory (relative to the store) holding one path's versions of one category.
pub fn version_dir(category: &str, relpath: &[u8]) -> String {
    let h = path_hash(relpath);
    format!("{OBJECTS}/{category}/{}/{h}", &h[..2])
}

pub fn data_name(number: u64) -> String {
    format!("v{number:06}.data")
}

pub fn meta_name(number: u64) -> String {
    format!("v{number:06}.json")
}

/// Parse `v000042.json` → 42.
pub fn parse_meta_name(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
}

/// UTC timestamp in entry form: `20261126T211503.123456Z`.
pub fn stamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = crate::policy::civil(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Parse a UTC instant `YYYYMMDDTHHMMSS[.f…]Z` (up to 9 fraction digits, the
/// form of entry names and of `.versions/@<T>`) → ns since the epoch.
pub fn parse_stamp(s: &str) -> Option<i64> {
    let body = s.strip_suffix('Z')?;
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, f),
        None => (body, ""),
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if main.len() != 15 || main.as_bytes()[8] != b'T' || frac.len() > 9 {
        return None;
    }
    if !digits(&main[..8]) || !digits(&main[9..]) || !(frac.is_empty() || digits(frac)) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, se) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = crate::policy::days_from_civil(y, mo as u32, d as u32);
    if crate::policy::civil(days) != (y, mo as u32, d as u32) {
        return None; // 20260231
    }
    let ns_frac = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
    };
    let secs = days * 86400 + h * 3600 + mi * 60 + se;
    secs.checked_mul(1_000_000_000)?.checked_add(ns_frac)
}

/// The file extension kept on entry names (".safetensors"), or empty.
pub fn extension(relpath: &[u8]) -> &[u8] {
    let name = relpath.rsplit(|&b| b == b'/').next().unwrap_or(relpath);
    match name.iter().rposition(|&b| b == b'.') {
        Some(0) | None => b"",
        Some(i) => &name[i..],
    }
}

/// `20261126T211503.123456Z-000042-overwrite.safetensors`
pub fn entry_name(sealed_ns: i64, number: u64, reason: &str, relpath: &[u8]) -> Vec<u8> {
    let mut n = format!("{}-{number:06}-{reason}", stamp(sealed_ns)).into_bytes();
    n.extend_from_slice(extension(relpath));
    n
}

/// Entry name → version number (the field after the timestamp).
pub fn parse_entry_number(name: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(name).ok()?;
    let mut it = s.splitn(3, '-');
    let ts = it.next()?;
    if ts.len() != 23 || !ts.ends_with('Z') {
        return None;
    }
    it.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_in_the_entry_form_and_round_trip() {
        let t = 1_795_000_000_123_456_000;
        assert_eq!(parse_stamp(&stamp(t)), Some(t));
        assert_eq!(
            parse_stamp("20261130T120000Z"),
            Some(1_796_040_000_000_000_000)
        );
        assert_eq!(
            parse_stamp("20261130T120000.5Z"),
            Some(1_796_040_000_500_000_000)
        );
        for bad in [
            "20261130T120000",
            "20261131T120000Z",
            "2026113T120000Z",
            "x",
            "20261130T126000Z",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn entry_names_sort_and_parse() {
        let t = 1_795_727_703_123_456_789; // 2026-11-26T21:15:03.123456789Z
        let n = entry_name(t, 42, "overwrite", b"run/model.safetensors");
        assert_eq!(n, b"20261126T211503.123456Z-000042-overwrite.safetensors");
        assert_eq!(parse_entry_number(&n), Some(42));
        assert!(!n.contains(&b':'));
        let later = entry_name(t + 1_000_000_000, 43, "close", b"run/model.safetensors");
        assert!(later > n);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(b"a/b.tar.gz"), b".gz");
        assert_eq!(extension(b".bashrc"), b"");
        assert_eq!(extension(b"dir.d/file"), b"");
    }

    #[test]
    fn shard_layout() {
        let d = version_dir("safetensors", b"ckpt/model.safetensors");
        let h = path_hash(b"ckpt/model.safetensors");
        assert_eq!(d, format!("objects/safetensors/{}/{h}", &h[..2]));
        assert_eq!(h.len(), 32);
        assert_eq!(parse_meta_name(&meta_name(7)), Some(7));
    }
}
