//! Magic-number classification and completeness checks: pure functions over the
//! head and tail of a file plus its size. No I/O.
//!
//! `SIGNATURES` is the table, tried in order: a magic number at an offset with
//! its category, MIME type and completeness check, or a probe for formats
//! recognised by parsing (`formats.rs` holds the parsers). It covers the ML
//! formats no crate knows (safetensors, PyTorch zip, pickle, npy/npz, HDF5,
//! GGUF, ONNX, TF index, zarr/OCDBT); `file-format` (no dependencies,
//! permissive license, 400+ formats) covers the common rest. The file name
//! only breaks ties.

mod formats;
mod steps;
mod text;

pub use steps::step_of;

use formats::{gguf_data_end, safetensors_header_len};

/// Every category, in the order `ckptfs du` prints them; also the store's
/// top-level object directories.
pub const CATEGORIES: &[&str] = &[
    "safetensors",
    "pytorch",
    "pickle",
    "numpy",
    "hdf5",
    "gguf",
    "onnx",
    "tensorflow",
    "zarr",
    "parquet",
    "arrow",
    "sqlite",
    "archive",
    "compressed",
    "document",
    "image",
    "json",
    "yaml",
    "csv",
    "log",
    "text",
    "binary",
];

/// How many bytes of head and tail the classifier wants.
pub const WINDOW: usize = 64 * 1024;
/// The most leading bytes read for a header that runs past [`WINDOW`] (a
/// safetensors header of a large model, a GGUF vocabulary).
pub const MAX_HEADER: usize = 100 << 20;

/// How many leading bytes the classifier wants, given the `head` read so far
/// (the file's first bytes, at least [`WINDOW`] of them or the whole file).
/// More than `head.len()` when a header runs past it: the exact length where
/// the format says (safetensors), else twice as much until it parses (GGUF).
/// Never more than the file or [`MAX_HEADER`]. Pure: the caller reads.
pub fn head_wanted(head: &[u8], size: u64) -> usize {
    let cap = size.min(MAX_HEADER as u64) as usize;
    let want = if let Some(n) = safetensors_header_len(head) {
        8 + n
    } else if head.starts_with(b"GGUF") && gguf_data_end(head).is_none() {
        head.len().max(WINDOW) * 2
    } else {
        WINDOW
    };
    want.min(cap)
}

/// Classify a file held whole in memory, with the head [`head_wanted`] asks
/// for (as the seal reads it).
pub fn classify_bytes(b: &[u8], name: &str) -> Class {
    let size = b.len() as u64;
    let mut n = b.len().min(WINDOW);
    loop {
        let w = head_wanted(&b[..n], size).min(b.len());
        if w <= n {
            break;
        }
        n = w;
    }
    classify(&b[..n], &b[b.len().saturating_sub(WINDOW)..], size, name)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub category: &'static str,
    pub mime: String,
    /// Some(true/false) where the format has a completeness check.
    pub complete: Option<bool>,
    /// Why it looks incomplete (empty when complete or unchecked).
    pub why: String,
}

pub(crate) fn class(
    category: &'static str,
    mime: &str,
    complete: Option<bool>,
    why: &str,
) -> Class {
    Class {
        category,
        mime: mime.to_string(),
        complete,
        why: if complete == Some(false) {
            why.to_string()
        } else {
            String::new()
        },
    }
}

/// Is the whole file in `head` (small files)?
fn whole(head: &[u8], size: u64) -> bool {
    head.len() as u64 == size
}

/// What a signature's check sees.
pub(crate) struct Input<'a> {
    /// The leading bytes (at least [`WINDOW`], more when [`head_wanted`] asked).
    pub head: &'a [u8],
    /// The last ≤ [`WINDOW`] bytes.
    pub tail: &'a [u8],
    pub size: u64,
    /// The file name, and its extension in lower case.
    pub name: &'a str,
    pub ext: String,
}

/// How a format says its file is whole.
enum Check {
    /// The format has no completeness check.
    None,
    /// Complete when the file ends with one of these byte strings.
    TailEndsWith(&'static [&'static [u8]], &'static str),
    /// Complete when the size is a multiple of this.
    SizeMultipleOf(u64, &'static str),
    /// A parser decides (it may refine the MIME type and category).
    Parse(fn(&Input) -> Class),
}

enum Signature {
    /// One of `magic` at `offset`.
    Magic {
        offset: usize,
        magic: &'static [&'static [u8]],
        category: &'static str,
        mime: &'static str,
        check: Check,
    },
    /// Recognised by parsing or by the name; None when it is not this format.
    Probe(fn(&Input) -> Option<Class>),
}

use Check::{Parse, SizeMultipleOf, TailEndsWith};

const fn magic(
    offset: usize,
    magic: &'static [&'static [u8]],
    category: &'static str,
    mime: &'static str,
    check: Check,
) -> Signature {
    Signature::Magic {
        offset,
        magic,
        category,
        mime,
        check,
    }
}

/// Tried in order; the first that matches decides.
static SIGNATURES: &[Signature] = &[
    Signature::Probe(formats::safetensors),
    magic(
        0,
        &[b"GGUF"],
        "gguf",
        "application/x-gguf",
        Parse(formats::gguf),
    ),
    magic(
        0,
        &[b"lmgg", b"fmgg", b"tjgg"],
        "gguf",
        "application/x-ggml",
        Check::None,
    ),
    magic(
        0,
        &[b"\x93NUMPY"],
        "numpy",
        "application/x-npy",
        Parse(formats::npy),
    ),
    Signature::Probe(formats::hdf5),
    magic(
        0,
        &[b"PK\x03\x04", b"PK\x05\x06"],
        "archive",
        "application/zip",
        Parse(formats::zip_family),
    ),
    Signature::Probe(formats::pickle),
    magic(
        0,
        &[b"SQLite format 3\0"],
        "sqlite",
        "application/vnd.sqlite3",
        Parse(formats::sqlite),
    ),
    magic(
        0,
        &[b"PAR1", b"PARE"],
        "parquet",
        "application/vnd.apache.parquet",
        TailEndsWith(&[b"PAR1", b"PARE"], "no trailing PAR1 footer"),
    ),
    magic(
        0,
        &[b"ARROW1"],
        "arrow",
        "application/vnd.apache.arrow.file",
        TailEndsWith(&[b"ARROW1"], "no trailing ARROW1 magic"),
    ),
    magic(
        0,
        &[b"FEA1"],
        "arrow",
        "application/vnd.apache.arrow.file",
        Check::None,
    ),
    magic(
        0,
        &[&[0x0c, 0xdb, 0x3a, 0x2a], &[0x0c, 0xdb, 0x12, 0x34]],
        "zarr",
        "application/x-ocdbt",
        Check::None,
    ),
    Signature::Probe(formats::tensorflow_index),
    magic(
        4,
        &[b"TFL3"],
        "tensorflow",
        "application/x-tflite",
        Check::None,
    ),
    Signature::Probe(formats::by_name),
    Signature::Probe(formats::onnx),
    Signature::Probe(formats::compressed),
    magic(
        257,
        &[b"ustar\0", b"ustar "],
        "archive",
        "application/x-tar",
        SizeMultipleOf(512, "size is not a multiple of 512"),
    ),
    Signature::Probe(text::text_family),
];

impl Signature {
    fn try_on(&self, i: &Input) -> Option<Class> {
        match self {
            Signature::Probe(f) => f(i),
            Signature::Magic {
                offset,
                magic,
                category,
                mime,
                check,
            } => {
                let at = i.head.get(*offset..)?;
                if !magic.iter().any(|m| at.starts_with(m)) {
                    return None;
                }
                Some(match check {
                    Check::None => class(category, mime, None, ""),
                    TailEndsWith(ends, why) => {
                        let ok = ends.iter().any(|e| i.tail.ends_with(e));
                        class(category, mime, Some(ok), why)
                    }
                    SizeMultipleOf(n, why) => {
                        class(category, mime, Some(i.size.is_multiple_of(*n)), why)
                    }
                    Parse(f) => f(i),
                })
            }
        }
    }
}

/// Classify a file from its head (first ≤64 KiB, more where [`head_wanted`]
/// asked), tail (last ≤64 KiB), size and name.
pub fn classify(head: &[u8], tail: &[u8], size: u64, name: &str) -> Class {
    if size == 0 {
        return class("binary", "application/x-empty", None, "");
    }
    let input = Input {
        head,
        tail,
        size,
        name,
        ext: name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default(),
    };
    SIGNATURES
        .iter()
        .find_map(|s| s.try_on(&input))
        .unwrap_or_else(|| formats::common(&input))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(b: &[u8], name: &str) -> Class {
        classify_bytes(b, name)
    }

    fn st(tensors_end: u64, body: usize) -> Vec<u8> {
        let h =
            format!(r#"{{"w":{{"dtype":"F32","shape":[2],"data_offsets":[0,{tensors_end}]}}}}  "#);
        let mut v = (h.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(h.as_bytes());
        v.extend(std::iter::repeat_n(0u8, body));
        v
    }

    #[test]
    fn safetensors_completeness() {
        let ok = c(&st(8, 8), "m.safetensors");
        assert_eq!((ok.category, ok.complete), ("safetensors", Some(true)));
        let torn = c(&st(8, 3), "m.safetensors");
        assert_eq!(torn.complete, Some(false));
        assert!(torn.why.contains("header says"));
    }

    #[test]
    fn text_kinds() {
        assert_eq!(c(b"{\"a\": 1}", "x.json").category, "json");
        assert_eq!(c(b"{\"a\": 1", "x.json").complete, Some(false));
        assert_eq!(c(b"{\"a\":1}\n{\"a\":2}\n", "x").mime, "application/jsonl");
        assert_eq!(
            c(
                b"2026-11-26 10:00:01 INFO start\n2026-11-26 10:00:02 INFO step\n",
                "t"
            )
            .category,
            "log"
        );
        assert_eq!(c(b"lr: 0.1\nbatch: 32\nepochs: 3\n", "c").category, "yaml");
        assert_eq!(c(b"a,b,c\n1,2,3\n4,5,6\n", "d").category, "csv");
        assert_eq!(c(b"hello world\n", "r").category, "text");
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(
            c(b"\x1f\x8b\x08\0\0\0\0\0", "a.gz").mime,
            "application/gzip"
        );
        assert_eq!(c(b"\x28\xb5\x2f\xfd\0\0", "a.zst").mime, "application/zstd");
        assert_eq!(c(b"SQLite format 3\0rest", "db").category, "sqlite");
        assert_eq!(c(b"PAR1xxxxPAR1", "t.parquet").complete, Some(true));
        assert_eq!(c(b"PAR1xxxx", "t.parquet").complete, Some(false));
        assert_eq!(
            c(b"\x80\x04\x95\0\0\0\0\0\0\0\0.", "p.pkl").category,
            "pickle"
        );
        let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e\x80\x02";
        assert_eq!(c(legacy, "m.pt").category, "pytorch");
        assert_eq!(c(b"", "e").mime, "application/x-empty");
    }
}
