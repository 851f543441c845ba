//! Magic-number classification and completeness checks: pure functions over the
//! first and last 64 KiB of a file plus its size. No I/O.
//!
//! Our own table covers the ML formats no crate knows (safetensors, PyTorch zip,
//! pickle, npy/npz, HDF5, GGUF, ONNX, TF index, zarr/OCDBT); `file-format` (no
//! dependencies, permissive license, 400+ formats) covers the common rest. The
//! file name only breaks ties.

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

/// The length of a safetensors header (the u64 before its JSON), if `head`
/// looks like one.
fn safetensors_header_len(head: &[u8]) -> Option<usize> {
    let n = u64le(head, 0)?;
    ((2..=MAX_HEADER as u64).contains(&n) && head.get(8) == Some(&b'{')).then_some(n as usize)
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

fn class(category: &'static str, mime: &str, complete: Option<bool>, why: &str) -> Class {
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

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Is the whole file in `head` (small files)?
fn whole(head: &[u8], size: u64) -> bool {
    head.len() as u64 == size
}

/// Classify a file from its head (first ≤64 KiB), tail (last ≤64 KiB), size and name.
pub fn classify(head: &[u8], tail: &[u8], size: u64, name: &str) -> Class {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if size == 0 {
        return class("binary", "application/x-empty", None, "");
    }
    if let Some(c) = safetensors(head, size) {
        return c;
    }
    if head.starts_with(b"GGUF") {
        return gguf(head, size);
    }
    if [b"lmgg", b"fmgg", b"tjgg"]
        .iter()
        .any(|m| head.starts_with(*m))
    {
        return class("gguf", "application/x-ggml", None, "");
    }
    if head.starts_with(b"\x93NUMPY") {
        return npy(head, size);
    }
    if let Some(c) = hdf5(head, size) {
        return c;
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip_family(head, tail, size, name);
    }
    if let Some(c) = pickle(head, tail) {
        return c;
    }
    if head.starts_with(b"SQLite format 3\0") {
        return sqlite(head, size);
    }
    if head.starts_with(b"PAR1") || head.starts_with(b"PARE") {
        let ok = tail.ends_with(b"PAR1") || tail.ends_with(b"PARE");
        return class(
            "parquet",
            "application/vnd.apache.parquet",
            Some(ok),
            "no trailing PAR1 footer",
        );
    }
    if head.starts_with(b"ARROW1") {
        let ok = tail.ends_with(b"ARROW1");
        return class(
            "arrow",
            "application/vnd.apache.arrow.file",
            Some(ok),
            "no trailing ARROW1 magic",
        );
    }
    if head.starts_with(b"FEA1") {
        return class("arrow", "application/vnd.apache.arrow.file", None, "");
    }
    if head.starts_with(&[0x0c, 0xdb, 0x3a, 0x2a]) || head.starts_with(&[0x0c, 0xdb, 0x12, 0x34]) {
        return class("zarr", "application/x-ocdbt", None, "");
    }
    if tail.len() >= 48 && tail.ends_with(&[0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]) {
        return class(
            "tensorflow",
            "application/x-tensorflow-index",
            Some(true),
            "",
        );
    }
    if ext == "index" && name.contains(".index") {
        return class(
            "tensorflow",
            "application/x-tensorflow-index",
            Some(false),
            "no table footer magic",
        );
    }
    if head.get(4..8) == Some(b"TFL3") {
        return class("tensorflow", "application/x-tflite", None, "");
    }
    if name.contains(".data-") && name.contains("-of-") {
        return class("tensorflow", "application/x-tensorflow-data", None, "");
    }
    if ext == "distcp" {
        return class("pytorch", "application/x-torch-distcp", None, "");
    }
    if let Some(c) = onnx(head, &ext) {
        return c;
    }
    if let Some(c) = compressed(head, size) {
        return c;
    }
    if head.len() > 262 && (&head[257..263] == b"ustar\0" || &head[257..263] == b"ustar ") {
        return class(
            "archive",
            "application/x-tar",
            Some(size.is_multiple_of(512)),
            "size is not a multiple of 512",
        );
    }
    if let Some(c) = text_family(head, size, name, &ext) {
        return c;
    }
    let ff = file_format::FileFormat::from_bytes(head);
    use file_format::Kind;
    let mime = ff.media_type().to_string();
    let cat = match ff.kind() {
        Kind::Image => "image",
        Kind::Archive | Kind::Package => "archive",
        Kind::Compressed => "compressed",
        Kind::Document | Kind::Ebook | Kind::Presentation | Kind::Spreadsheet => "document",
        Kind::Database => "sqlite",
        _ => "binary",
    };
    if mime == "application/pdf" {
        let ok = tail_contains(tail, b"%%EOF");
        return class("document", &mime, Some(ok), "no %%EOF trailer");
    }
    if mime == "image/png" {
        let ok = tail.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
        return class("image", &mime, Some(ok), "no IEND chunk");
    }
    if mime == "image/jpeg" {
        let ok = tail.ends_with(&[0xff, 0xd9]);
        return class("image", &mime, Some(ok), "no end-of-image marker");
    }
    if head.windows(5).take(1024).any(|w| w == b"%PDF-") {
        let ok = tail_contains(tail, b"%%EOF");
        return class("document", "application/pdf", Some(ok), "no %%EOF trailer");
    }
    class(cat, &mime, None, "")
}

fn tail_contains(tail: &[u8], needle: &[u8]) -> bool {
    let start = tail.len().saturating_sub(1024);
    tail[start..].windows(needle.len()).any(|w| w == needle)
}

fn safetensors(head: &[u8], size: u64) -> Option<Class> {
    let n = safetensors_header_len(head)? as u64;
    let mime = "application/x-safetensors";
    let Some(hdr) = head.get(8..8 + n as usize) else {
        // With all `head_wanted` asked for, a head that holds the whole file
        // means the file ends inside its header; a shorter one (over
        // MAX_HEADER) cannot be judged.
        return Some(class(
            "safetensors",
            mime,
            (head.len() as u64 >= size).then_some(false),
            "shorter than its header",
        ));
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(hdr) else {
        return Some(class(
            "safetensors",
            mime,
            Some(false),
            "header is not valid JSON",
        ));
    };
    let end = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| *k != "__metadata__")
                .filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let want = 8 + n + end;
    Some(class(
        "safetensors",
        mime,
        Some(size == want),
        &format!("size {size} but header says {want}"),
    ))
}

fn gguf(head: &[u8], size: u64) -> Class {
    let mime = "application/x-gguf";
    let v = u32le(head, 4).unwrap_or(0);
    if !(1..=3).contains(&v) && v != 0x0300_0000 {
        return class("gguf", mime, None, "");
    }
    // A full tensor-info walk needs the whole header; check it when it fits.
    match gguf_data_end(head) {
        Some(end) => class(
            "gguf",
            mime,
            Some(size >= end),
            &format!("size {size} < data end {end}"),
        ),
        // The whole file read and still no end of header: torn inside it.
        None => class(
            "gguf",
            mime,
            (head.len() as u64 >= size).then_some(false),
            "shorter than the GGUF header",
        ),
    }
}

/// Parse GGUF v2/v3 metadata and tensor infos to find where tensor data ends.
fn gguf_data_end(b: &[u8]) -> Option<u64> {
    let mut p = 8usize;
    let n_tensors = u64le(b, p)?;
    let n_kv = u64le(b, p + 8)?;
    p += 16;
    let mut align = 32u64;
    fn skip_str(b: &[u8], p: &mut usize) -> Option<Vec<u8>> {
        let n = u64le(b, *p)? as usize;
        let s = b.get(*p + 8..*p + 8 + n)?.to_vec();
        *p += 8 + n;
        Some(s)
    }
    fn skip_val(b: &[u8], p: &mut usize, t: u32) -> Option<u64> {
        let fixed = [1usize, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
        match t {
            8 => {
                skip_str(b, p)?;
                Some(0)
            }
            9 => {
                let et = u32le(b, *p)?;
                let n = u64le(b, *p + 4)?;
                *p += 12;
                for _ in 0..n {
                    skip_val(b, p, et)?;
                }
                Some(0)
            }
            t if (t as usize) < fixed.len() => {
                let w = fixed[t as usize];
                let v = match w {
                    1 => *b.get(*p)? as u64,
                    2 => u16le(b, *p)? as u64,
                    4 => u32le(b, *p)? as u64,
                    _ => u64le(b, *p)?,
                };
                *p += w;
                Some(v)
            }
            _ => None,
        }
    }
    for _ in 0..n_kv {
        let k = skip_str(b, &mut p)?;
        let t = u32le(b, p)?;
        p += 4;
        let v = skip_val(b, &mut p, t)?;
        if k == b"general.alignment" && v > 0 {
            align = v;
        }
    }
    let mut end = 0u64;
    for _ in 0..n_tensors {
        skip_str(b, &mut p)?;
        let nd = u32le(b, p)? as usize;
        p += 4;
        let mut elems = 1u64;
        for i in 0..nd {
            elems = elems.saturating_mul(u64le(b, p + 8 * i)?);
        }
        p += 8 * nd;
        let ty = u32le(b, p)?;
        let off = u64le(b, p + 4)?;
        p += 12;
        // bytes per element for the plain types; quantized blocks are approximated
        // from below so the check never calls a complete file torn.
        let bytes = match ty {
            0 => elems * 4,
            1 => elems * 2,
            24 => elems,
            25 => elems * 2,
            26 => elems * 4,
            27 => elems * 8,
            28 => elems * 8,
            30 => elems * 2,
            _ => elems / 4,
        };
        end = end.max(off + bytes);
    }
    let data_start = (p as u64).div_ceil(align) * align;
    Some(data_start + end)
}

fn npy(head: &[u8], size: u64) -> Class {
    let mime = "application/x-npy";
    let major = head.get(6).copied().unwrap_or(0);
    let (hlen, start) = match major {
        1 => (u16le(head, 8).map(|v| v as usize), 10),
        2 | 3 => (u32le(head, 8).map(|v| v as usize), 12),
        _ => (None, 0),
    };
    let Some(hlen) = hlen else {
        return class("numpy", mime, Some(false), "truncated header");
    };
    let Some(h) = head.get(start..start + hlen) else {
        return class("numpy", mime, Some(false), "truncated header");
    };
    let h = String::from_utf8_lossy(h);
    let item = npy_itemsize(&h);
    let shape = h
        .split_once("'shape':")
        .and_then(|(_, r)| r.split_once('(').map(|(_, r)| r))
        .and_then(|r| r.split_once(')').map(|(s, _)| s.to_string()));
    match (item, shape) {
        (Some(item), Some(shape)) => {
            let n: u64 = shape
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().trim_end_matches('L').parse::<u64>().unwrap_or(0))
                .product();
            let want = (start + hlen) as u64 + n * item;
            class(
                "numpy",
                mime,
                Some(size == want),
                &format!("size {size} but header says {want}"),
            )
        }
        _ => class("numpy", mime, None, ""),
    }
}

fn npy_itemsize(h: &str) -> Option<u64> {
    let (_, r) = h.split_once("'descr':")?;
    let r = r.trim_start();
    let q = r.chars().next()?;
    if q != '\'' && q != '"' {
        return None; // structured dtype: no cheap check
    }
    let d: String = r[1..].chars().take_while(|c| *c != q).collect();
    let digits: String = d.chars().skip_while(|c| !c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    // Unicode strings count 4 bytes per character.
    Some(if d.contains('U') { n * 4 } else { n })
}

fn hdf5(head: &[u8], size: u64) -> Option<Class> {
    const SIG: &[u8] = b"\x89HDF\r\n\x1a\n";
    let mut off = 0usize;
    while off + 8 <= head.len() {
        if &head[off..off + 8] == SIG {
            let mime = "application/x-hdf5";
            let sb = &head[off..];
            // Superblock v2/3: eof address at 8+4+3*8 = 28 (with 8-byte offsets);
            // v0/1: at 8+16+3*8 = 48 (v0) or +4 (v1). Base address is the user block.
            let eof = match sb.get(8) {
                Some(0) => u64le(sb, 40),
                Some(1) => u64le(sb, 44),
                Some(2) | Some(3) => u64le(sb, 28),
                _ => None,
            };
            return Some(match eof {
                Some(e) if e != u64::MAX => {
                    let want = off as u64 + e;
                    class(
                        "hdf5",
                        mime,
                        Some(size >= want),
                        &format!("size {size} < end-of-file address {want}"),
                    )
                }
                _ => class("hdf5", mime, None, ""),
            });
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    if head.starts_with(&[0x0e, 0x03, 0x13, 0x01]) {
        return Some(class("hdf5", "application/x-hdf", None, ""));
    }
    None
}

/// An end-of-central-directory record that ends exactly at the end of the file
/// (22 bytes plus its comment).
fn has_eocd(tail: &[u8]) -> bool {
    let n = tail.len();
    (0..n.saturating_sub(21)).rev().take(65_557).any(|p| {
        &tail[p..p + 4] == b"PK\x05\x06"
            && u16le(tail, p + 20).is_some_and(|c| p + 22 + c as usize == n)
    })
}

fn zip_family(head: &[u8], tail: &[u8], size: u64, name: &str) -> Class {
    let ok = has_eocd(tail);
    let why = "no end-of-central-directory record";
    let first = {
        let n = u16le(head, 26).unwrap_or(0) as usize;
        head.get(30..30 + n)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default()
    };
    let extra_fb = {
        let n = u16le(head, 26).unwrap_or(0) as usize;
        head.get(30 + n..32 + n) == Some(b"FB")
    };
    if first.ends_with("/data.pkl") || first == "data.pkl" || extra_fb {
        return class("pytorch", "application/x-pytorch", Some(ok), why);
    }
    // Walk the local headers in the head for npz / keras / OOXML / ODF.
    let names = local_names(head);
    if !names.is_empty() && names.iter().all(|n| n.ends_with(".npy")) {
        return class("numpy", "application/x-npz", Some(ok), why);
    }
    if first == "mimetype" {
        let mt = head.get(38..38 + 64).map(|b| {
            String::from_utf8_lossy(b)
                .split(|c: char| c == 'P' || c.is_control())
                .next()
                .unwrap_or("")
                .to_string()
        });
        let mt = mt
            .filter(|m| m.contains('/'))
            .unwrap_or_else(|| "application/zip".into());
        return class("document", mt.trim(), Some(ok), why);
    }
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    if first == "[Content_Types].xml" || has("word/") || has("xl/") || has("ppt/") || has("_rels/")
    {
        let mime = if has("word/") {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        } else if has("xl/") {
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        } else if has("ppt/") {
            "application/vnd.openxmlformats-officedocument.presentationml.presentation"
        } else {
            "application/vnd.openxmlformats-officedocument"
        };
        return class("document", mime, Some(ok), why);
    }
    if name.ends_with(".keras") || (has("config.json") && has("model.weights.h5")) {
        return class("archive", "application/x-keras", Some(ok), why);
    }
    let _ = size;
    class("archive", "application/zip", Some(ok), why)
}

fn local_names(head: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while head.get(p..p + 4) == Some(b"PK\x03\x04") && out.len() < 64 {
        let (Some(csize), Some(n), Some(x), Some(flags)) = (
            u32le(head, p + 18),
            u16le(head, p + 26),
            u16le(head, p + 28),
            u16le(head, p + 6),
        ) else {
            break;
        };
        let Some(name) = head.get(p + 30..p + 30 + n as usize) else {
            break;
        };
        out.push(String::from_utf8_lossy(name).into_owned());
        if flags & 0x8 != 0 || csize == u32::MAX {
            break; // sizes follow the data (streamed) or zip64: stop walking
        }
        p += 30 + n as usize + x as usize + csize as usize;
    }
    out
}

/// SQLite: the header's page count times the page size is the file size, when the
/// header count is valid (its "version-valid-for" matches the change counter).
fn sqlite(head: &[u8], size: u64) -> Class {
    let mime = "application/vnd.sqlite3";
    let be32 = |o: usize| {
        head.get(o..o + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let page = match head
        .get(16..18)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as u64)
    {
        Some(1) => 65_536,
        Some(p) if p >= 512 => p,
        _ => return class("sqlite", mime, None, ""),
    };
    match (be32(24), be32(28), be32(92)) {
        (Some(change), Some(pages), Some(valid)) if change == valid && pages > 0 => {
            let want = page * pages as u64;
            class(
                "sqlite",
                mime,
                Some(size == want),
                &format!("size {size} but header says {want}"),
            )
        }
        _ => class("sqlite", mime, None, ""),
    }
}

fn pickle(head: &[u8], tail: &[u8]) -> Option<Class> {
    if head.len() < 2 || head[0] != 0x80 || !(2..=5).contains(&head[1]) {
        return None;
    }
    const LEGACY: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let window = &head[..head.len().min(64)];
    if window.windows(LEGACY.len()).any(|w| w == LEGACY) {
        return Some(class("pytorch", "application/x-pytorch-legacy", None, ""));
    }
    let ok = tail.last() == Some(&0x2e);
    Some(class(
        "pickle",
        "application/x-pickle",
        Some(ok),
        "does not end with STOP (0x2e)",
    ))
}

fn onnx(head: &[u8], ext: &str) -> Option<Class> {
    let v = *head.get(1)?;
    let plausible = head.first() == Some(&0x08)
        && (1..=0x1f).contains(&v)
        && matches!(
            head.get(2),
            Some(0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42)
        );
    (plausible && (ext == "onnx" || ext == "pb"))
        .then(|| class("onnx", "application/x-onnx", None, ""))
}

fn compressed(head: &[u8], _size: u64) -> Option<Class> {
    let (mime, _) = if head.starts_with(&[0x1f, 0x8b]) {
        ("application/gzip", 0)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
    {
        ("application/zstd", 0)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        ("application/x-xz", 0)
    } else if head.starts_with(b"BZh") && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
        ("application/x-bzip2", 0)
    } else {
        return None;
    };
    Some(class("compressed", mime, None, ""))
}

fn looks_text(head: &[u8]) -> bool {
    let b = head.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(head);
    if b.contains(&0) {
        return false;
    }
    let valid = match std::str::from_utf8(b) {
        Ok(_) => true,
        // tolerate a multibyte sequence cut by the window
        Err(e) => e.error_len().is_none() && b.len() - e.valid_up_to() < 4,
    };
    if !valid {
        return false;
    }
    let ctrl = b
        .iter()
        .filter(|&&c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    ctrl * 100 <= b.len()
}

fn text_family(head: &[u8], size: u64, name: &str, ext: &str) -> Option<Class> {
    if !looks_text(head) {
        return None;
    }
    let s = String::from_utf8_lossy(head.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(head));
    let t = s.trim_start();
    let complete_json = whole(head, size);
    if name == ".zarray" || name == ".zgroup" || name == "zarr.json" {
        return Some(class("zarr", "application/json", None, ""));
    }
    if t.starts_with('{') || t.starts_with('[') {
        if complete_json {
            if serde_json::from_str::<serde_json::Value>(&s).is_ok() {
                return Some(class("json", "application/json", Some(true), ""));
            }
            let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
            let parses = |l: &&str| serde_json::from_str::<serde_json::Value>(l).is_ok();
            if lines.len() > 1 && lines[..lines.len() - 1].iter().all(parses) {
                // JSON Lines; a cut last line means a torn append.
                let last_ok = lines.last().is_some_and(parses) && s.ends_with('\n');
                return Some(class(
                    "json",
                    "application/jsonl",
                    Some(last_ok),
                    "last line is cut",
                ));
            }
            if ext == "json" {
                return Some(class(
                    "json",
                    "application/json",
                    Some(false),
                    "JSON does not parse (cut short?)",
                ));
            }
        } else {
            let first = s.lines().next().unwrap_or("");
            if serde_json::from_str::<serde_json::Value>(first).is_ok() && s.lines().count() > 1 {
                return Some(class("json", "application/jsonl", None, ""));
            }
            return Some(class("json", "application/json", None, ""));
        }
    }
    if s.starts_with("model_checkpoint_path:") {
        return Some(class("tensorflow", "text/plain", None, ""));
    }
    let lines: Vec<&str> = s.lines().take(200).collect();
    let n = lines.iter().filter(|l| !l.trim().is_empty()).count().max(1);
    let stamped = lines.iter().filter(|l| log_line(l)).count();
    if stamped * 2 >= n && stamped > 0 {
        return Some(class("log", "text/x-log", None, ""));
    }
    if t.starts_with("%YAML") || t.starts_with("---") || ext == "yaml" || ext == "yml" {
        return Some(class("yaml", "application/yaml", None, ""));
    }
    let kv = lines
        .iter()
        .filter(|l| {
            let l = l.trim_start();
            !l.is_empty()
                && !l.starts_with('#')
                && l.split_once(": ").is_some_and(|(k, _)| !k.contains(' '))
        })
        .count();
    if kv * 10 >= n * 7 && kv >= 2 {
        return Some(class("yaml", "application/yaml", None, ""));
    }
    let commas: Vec<usize> = lines
        .iter()
        .take(20)
        .map(|l| l.matches(',').count())
        .collect();
    if commas.len() >= 2 && commas[0] > 0 && commas.iter().all(|&c| c == commas[0]) || ext == "csv"
    {
        return Some(class("csv", "text/csv", None, ""));
    }
    if ext == "log" {
        return Some(class("log", "text/x-log", None, ""));
    }
    Some(class("text", "text/plain", None, ""))
}

fn log_line(l: &str) -> bool {
    let b = l.as_bytes();
    let date = b.len() >= 16
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':';
    let level = [
        "[INFO", "[WARN", "[ERROR", "[DEBUG", "INFO ", "WARNING ", "ERROR ", "DEBUG ",
    ]
    .iter()
    .any(|p| l.trim_start().starts_with(p));
    date || level
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
