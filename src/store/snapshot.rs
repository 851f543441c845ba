//! `index.snapshot`: the index written at a clean shutdown, so the next mount
//! need not scan every metadata file. Binary (bincode, varints) with a string
//! table: a path, a category, a MIME type or a writer's command is stored
//! once, and a digest as its 32 bytes, so a version costs ~60 bytes, not the
//! ~400 of a JSON line. Format 2 of the snapshot; format 1 (JSON lines) is
//! still read. Layout in docs/FORMAT.md.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::BorrowedFd;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Reason;
use super::index::Index;
use super::layout::{DIRTY, SNAPSHOT};
use super::meta::{self, Digest, VersionMeta, Writer};
use crate::sys;

/// First bytes of a format-2 snapshot (a JSON-lines one starts with `{`).
const MAGIC: &[u8] = b"CKPTIDX2\n";

/// Written as is; read by `Loaded`, field by field in this order.
#[derive(Serialize)]
struct Snapshot {
    /// Every string the records name, each once.
    strings: Vec<String>,
    /// Every (record format, mode, uid, gid) the records have, each once.
    attrs: Vec<(u32, u32, u32, u32)>,
    /// Every (pid, command) writer, each once.
    writers: Vec<(u32, u32)>,
    /// Digests that are not 64 hex digits (`strings` indexes), in record order.
    text_digests: Vec<u32>,
    /// Path bytes (not always UTF-8), the training step its versions record
    /// (the path names it), and the path's versions, ascending.
    paths: Vec<(Vec<u8>, Option<u64>, Vec<Rec>)>,
}

/// One version; `u32`s index `strings`. Numbers and times are deltas (from
/// the path's previous version; mtime from the sealed time): varints then
/// take a few bytes, not nine.
#[derive(Serialize, Deserialize)]
struct Rec {
    number_delta: u64,
    /// Seconds and nanoseconds apart: a varint of seconds is one byte where
    /// one of nanoseconds is nine.
    sealed_delta_s: i64,
    sealed_ns_part: u32,
    mtime_from_sealed: i64,
    size: u64,
    /// Index of `attrs`.
    attrs: u32,
    /// The BLAKE3 digest's bytes (zero with `DIGEST_TEXT`: see `text_digests`).
    digest: [u8; 32],
    category: u32,
    mime: u32,
    incomplete_reason: u32,
    reason: u32,
    /// Index of `writers`.
    writer: Option<u32>,
    /// `PINNED`, `COMPRESSED`, `complete` as `COMPLETE_*`, `DIGEST_TEXT`.
    flags: u8,
    object_ino: u64,
    /// Always none now (was: with `OWN_STEP`, a step unlike the path's).
    step: Option<u64>,
    archived: Option<u32>,
}

const PINNED: u8 = 1;
const COMPRESSED: u8 = 2;
const COMPLETE_FALSE: u8 = 4;
const COMPLETE_TRUE: u8 = 8;
const DIGEST_TEXT: u8 = 16;
/// Sealed without its digest; it comes later (`store::digest_later`).
const DIGEST_PENDING: u8 = 64;
// 32 was `OWN_STEP` (a version's step unlike its path's): no longer written,
// and ignored on read, as are both steps: the step is the path's.

#[derive(Default)]
struct Strings {
    list: Vec<String>,
    at: HashMap<String, u32>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.at.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.at.insert(s.to_string(), i);
        i
    }
}

fn encode(idx: &Index) -> io::Result<Vec<u8>> {
    let mut strings = Strings::default();
    let mut attrs: Vec<(u32, u32, u32, u32)> = Vec::new();
    let mut attr_at: HashMap<(u32, u32, u32, u32), u32> = HashMap::new();
    let mut writers: Vec<(u32, u32)> = Vec::new();
    let mut writer_at: HashMap<(u32, u32), u32> = HashMap::new();
    let mut text_digests = Vec::new();
    let mut paths = Vec::with_capacity(idx.paths.len());
    for (p, h) in &idx.paths {
        let (mut number, mut sealed) = (0u64, 0i64);
        // Still written, for older readers; a mount reads the step from the path.
        let step = crate::classify::step_of(p);
        let recs = h
            .versions
            .iter()
            .map(|m| {
                let digest = m.digest.blake3().copied();
                Rec {
                    number_delta: m.number - std::mem::replace(&mut number, m.number),
                    sealed_delta_s: m.sealed_ns.div_euclid(1_000_000_000)
                        - std::mem::replace(&mut sealed, m.sealed_ns).div_euclid(1_000_000_000),
                    sealed_ns_part: m.sealed_ns.rem_euclid(1_000_000_000) as u32,
                    mtime_from_sealed: m.mtime_ns.wrapping_sub(m.sealed_ns),
                    size: m.size,
                    attrs: *attr_at
                        .entry((m.format(), m.mode(), m.uid(), m.gid()))
                        .or_insert_with_key(|k| {
                            attrs.push(*k);
                            attrs.len() as u32 - 1
                        }),
                    digest: digest.unwrap_or_else(|| {
                        text_digests.push(strings.id(&m.digest.to_string()));
                        [0; 32]
                    }),
                    category: strings.id(m.category()),
                    mime: strings.id(m.mime()),
                    incomplete_reason: strings.id(m.incomplete_reason()),
                    reason: strings.id(m.reason().as_str()),
                    writer: m.writer().map(|w| {
                        let k = (w.pid, strings.id(&w.command));
                        *writer_at.entry(k).or_insert_with(|| {
                            writers.push(k);
                            writers.len() as u32 - 1
                        })
                    }),
                    flags: if m.pinned() { PINNED } else { 0 }
                        | if m.compressed() { COMPRESSED } else { 0 }
                        | match m.complete() {
                            None => 0,
                            Some(false) => COMPLETE_FALSE,
                            Some(true) => COMPLETE_TRUE,
                        }
                        | if digest.is_none() { DIGEST_TEXT } else { 0 }
                        | if m.digest_pending() {
                            DIGEST_PENDING
                        } else {
                            0
                        },
                    object_ino: m.object_ino,
                    step: None,
                    archived: m.archived().map(|a| strings.id(a)),
                }
            })
            .collect();
        paths.push((p.to_vec(), step, recs));
    }
    let snap = Snapshot {
        strings: strings.list,
        attrs,
        writers,
        text_digests,
        paths,
    };
    let mut out = MAGIC.to_vec();
    out.extend(
        bincode::serde::encode_to_vec(&snap, bincode::config::standard())
            .map_err(io::Error::other)?,
    );
    Ok(out)
}

fn decode(bytes: &[u8]) -> Option<Index> {
    let (Loaded(idx), _) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).ok()?;
    Some(idx)
}

/// The index a snapshot holds, built path by path as the bytes are read: a
/// million versions are never all decoded into records first (that doubled
/// a mount's peak memory and time).
struct Loaded(Index);

impl<'de> Deserialize<'de> for Loaded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["strings", "attrs", "writers", "text_digests", "paths"];
        d.deserialize_struct("Snapshot", FIELDS, LoadVisitor)
    }
}

struct LoadVisitor;

impl<'de> Visitor<'de> for LoadVisitor {
    type Value = Loaded;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an index snapshot")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loaded, A::Error> {
        let early = || A::Error::custom("the snapshot ends early");
        let strings: Vec<String> = seq.next_element()?.ok_or_else(early)?;
        let reasons = strings
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i as u32, serde_json::from_str(&format!("\"{t}\"")).ok()?)))
            .collect();
        let mut b = Builder {
            strings,
            reasons,
            attrs: seq.next_element()?.ok_or_else(early)?,
            writers: seq.next_element()?.ok_or_else(early)?,
            text_digests: seq.next_element()?.ok_or_else(early)?,
            next_text_digest: 0,
            kinds: HashMap::new(),
            writer_at: HashMap::new(),
            origins: HashMap::new(),
            idx: Index::default(),
        };
        seq.next_element_seed(Paths(&mut b))?.ok_or_else(early)?;
        Ok(Loaded(b.idx))
    }
}

/// The `paths` sequence, one path's records at a time.
struct Paths<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for Paths<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Paths<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the snapshot's paths")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // The path's step is not read: the path names it (`VersionMeta::step`).
        while let Some((path, _step, recs)) =
            seq.next_element::<(Vec<u8>, Option<u64>, Vec<Rec>)>()?
        {
            self.0.path(&path, &recs).ok_or_else(|| {
                A::Error::custom(format!(
                    "a record of {} names a missing string, attribute or writer",
                    String::from_utf8_lossy(&path)
                ))
            })?;
        }
        Ok(())
    }
}

/// The tables read before the paths, and the index the paths go into.
struct Builder {
    strings: Vec<String>,
    reasons: HashMap<u32, Reason>,
    attrs: Vec<(u32, u32, u32, u32)>,
    writers: Vec<(u32, u32)>,
    text_digests: Vec<u32>,
    next_text_digest: usize,
    // Interned once per distinct value, not once per record.
    kinds: HashMap<(u32, u32, u32), &'static meta::Kind>,
    writer_at: HashMap<u32, &'static Writer>,
    /// By (attrs, (category, mime, incompleteness reason), writer, (reason,
    /// the flags that are the origin's)) indexes.
    origins: HashMap<OriginKey, &'static meta::Origin>,
    idx: Index,
}

type OriginKey = (u32, (u32, u32, u32), Option<u32>, (u32, u8));

/// The flags an origin holds (the others are the record's).
const ORIGIN_FLAGS: u8 = PINNED | COMPRESSED | COMPLETE_FALSE | COMPLETE_TRUE | DIGEST_PENDING;

impl Builder {
    fn s(&self, i: u32) -> Option<&str> {
        self.strings.get(i as usize).map(String::as_str)
    }

    fn origin(&mut self, r: &Rec) -> Option<&'static meta::Origin> {
        let kk = (r.category, r.mime, r.incomplete_reason);
        let ok = (r.attrs, kk, r.writer, (r.reason, r.flags & ORIGIN_FLAGS));
        if let Some(&o) = self.origins.get(&ok) {
            return Some(o);
        }
        let &(format, mode, uid, gid) = self.attrs.get(r.attrs as usize)?;
        let kind = match self.kinds.get(&kk) {
            Some(&k) => k,
            None => {
                let k = meta::intern_kind(self.s(kk.0)?, self.s(kk.1)?, self.s(kk.2)?);
                self.kinds.insert(kk, k);
                k
            }
        };
        let writer = match r.writer {
            Some(i) => Some(match self.writer_at.get(&i) {
                Some(&w) => w,
                None => {
                    let &(pid, c) = self.writers.get(i as usize)?;
                    let w = meta::intern_writer(Writer {
                        pid,
                        command: self.s(c)?.to_string(),
                    });
                    self.writer_at.insert(i, w);
                    w
                }
            }),
            None => None,
        };
        let o = meta::intern_origin(meta::Origin {
            format,
            mode,
            uid,
            gid,
            kind,
            writer,
            reason: *self.reasons.get(&r.reason)?,
            complete: match r.flags & (COMPLETE_FALSE | COMPLETE_TRUE) {
                0 => None,
                COMPLETE_FALSE => Some(false),
                _ => Some(true),
            },
            pinned: r.flags & PINNED != 0,
            compressed: r.flags & COMPRESSED != 0,
            digest_pending: r.flags & DIGEST_PENDING != 0,
        });
        self.origins.insert(ok, o);
        Some(o)
    }

    fn path(&mut self, path: &[u8], recs: &[Rec]) -> Option<()> {
        let path = meta::PathKey::from(path);
        let mut versions = Vec::with_capacity(recs.len());
        let (mut number, mut secs) = (0u64, 0i64);
        for r in recs {
            number = number.checked_add(r.number_delta)?;
            secs = secs.checked_add(r.sealed_delta_s)?;
            let sealed = secs
                .checked_mul(1_000_000_000)?
                .checked_add(r.sealed_ns_part as i64)?;
            let origin = self.origin(r)?;
            let m = VersionMeta {
                path: path.clone(),
                number,
                sealed_ns: sealed,
                mtime_ns: sealed.wrapping_add(r.mtime_from_sealed),
                size: r.size,
                origin,
                digest: if r.flags & DIGEST_TEXT != 0 {
                    let i = *self.text_digests.get(self.next_text_digest)?;
                    self.next_text_digest += 1;
                    Digest::parse(self.s(i)?)
                } else {
                    Digest::from_bytes(r.digest)
                },
                object_ino: r.object_ino,
                archived: match r.archived {
                    Some(i) => Some(Box::new(self.s(i)?.to_string())),
                    None => None,
                },
            };
            versions.push(m);
        }
        self.idx.insert_path(versions);
        Some(())
    }
}

/// Write the snapshot (temp → fsync → rename). Call only at a clean shutdown,
/// before removing `dirty`.
pub fn save(store: BorrowedFd<'_>, idx: &Index) -> io::Result<()> {
    super::meta::write_atomic(store, SNAPSHOT, &encode(idx)?)
}

/// The snapshot, if the last shutdown was clean and it reads whole; `None`
/// means: scan.
pub fn load(store: BorrowedFd<'_>) -> Option<Index> {
    if sys::fstatat(store, &CString::new(DIRTY).ok()?).is_ok() {
        return None;
    }
    let bytes = super::meta::read_at(store, SNAPSHOT).ok()?;
    if let Some(bin) = bytes.strip_prefix(MAGIC) {
        return decode(bin);
    }
    // Format 1, written by ckptfs before 0.6: one JSON record per line.
    let mut idx = Index::default();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        idx.insert(VersionMeta::parse(line).ok()?);
    }
    Some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &[u8], number: u64, digest: &str, writer: Option<&str>) -> VersionMeta {
        VersionMeta {
            path: path.into(),
            number,
            // A save a minute, its mtime a few ms before the seal.
            sealed_ns: 1_700_000_000_000_000_000 + number as i64 * 60_000_000_000,
            mtime_ns: 1_700_000_000_000_000_000 + number as i64 * 60_000_000_000 - 3_456_789,
            size: 4096 * number,
            origin: meta::intern_origin(meta::Origin {
                format: super::super::layout::FORMAT_VERSION,
                mode: 0o644,
                uid: 1000,
                gid: 1000,
                kind: meta::intern_kind(
                    "pytorch",
                    "application/zip",
                    if number.is_multiple_of(2) {
                        ""
                    } else {
                        "no end of central directory"
                    },
                ),
                writer: writer.map(|c| {
                    meta::intern_writer(Writer {
                        pid: 42,
                        command: c.into(),
                    })
                }),
                reason: if number == 1 {
                    Reason::Close
                } else {
                    Reason::Fsync
                },
                complete: Some(number.is_multiple_of(2)),
                pinned: number == 2,
                compressed: number == 3,
                digest_pending: number == 2,
            }),
            digest: Digest::parse(digest),
            object_ino: 99 + number,
            archived: (number == 3).then(|| Box::new("nodes/a/manifests/x/v000003.json".into())),
        }
    }

    #[test]
    fn every_field_round_trips_and_a_version_costs_little() {
        let hex = super::super::hex(&[0xab; 32]);
        let mut idx = Index::default();
        for n in 1..=3 {
            idx.insert(meta(
                b"run/checkpoint-500/model.pt",
                n,
                &hex,
                Some("python train.py"),
            ));
        }
        // A path that is not UTF-8, a digest that is not 64 hex digits.
        idx.insert(meta(b"odd/\xff\xfe.bin", 1, "", None));
        let bytes = encode(&idx).unwrap();
        let back = decode(bytes.strip_prefix(MAGIC).unwrap()).unwrap();
        for (p, h) in &idx.paths {
            assert_eq!(back.get(p).unwrap().versions, h.versions);
        }
        assert_eq!(back.total_versions(), 4);
        let mut many = Index::default();
        for n in 1..=1000u64 {
            let digest = super::super::hex(blake3::hash(&n.to_le_bytes()).as_bytes());
            many.insert(meta(
                format!("run/file{}.bin", n % 100).as_bytes(),
                n,
                &digest,
                Some("python train.py --with a long command line"),
            ));
        }
        let per = encode(&many).unwrap().len() / 1000;
        assert!(per <= 64, "{per} bytes per version");
    }

    #[test]
    fn a_damaged_snapshot_is_not_used() {
        let mut idx = Index::default();
        idx.insert(meta(b"a.bin", 1, "", None));
        let bytes = encode(&idx).unwrap();
        let body = bytes.strip_prefix(MAGIC).unwrap();
        assert!(decode(&body[..body.len() - 3]).is_none());
    }
}
