//! The parsers behind [`super::SIGNATURES`]: formats recognised by parsing a
//! header, by the name, or by the `file-format` crate (the common rest).

use super::{Class, Input, MAX_HEADER, class};

/// The length of a safetensors header (the u64 before its JSON), if `head`
/// looks like one.
pub(super) fn safetensors_header_len(head: &[u8]) -> Option<usize> {
    let n = u64le(head, 0)?;
    ((2..=MAX_HEADER as u64).contains(&n) && head.get(8) == Some(&b'{')).then_some(n as usize)
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

fn tail_contains(tail: &[u8], needle: &[u8]) -> bool {
    let start = tail.len().saturating_sub(1024);
    tail[start..].windows(needle.len()).any(|w| w == needle)
}

pub(super) fn safetensors(i: &Input) -> Option<Class> {
    let (head, size) = (i.head, i.size);
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

pub(super) fn gguf(i: &Input) -> Class {
    let (head, size) = (i.head, i.size);
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
pub(super) fn gguf_data_end(b: &[u8]) -> Option<u64> {
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

pub(super) fn npy(i: &Input) -> Class {
    let (head, size) = (i.head, i.size);
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

pub(super) fn hdf5(i: &Input) -> Option<Class> {
    let (head, size) = (i.head, i.size);
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

pub(super) fn zip_family(i: &Input) -> Class {
    let (head, tail, size, name) = (i.head, i.tail, i.size, i.name);
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
pub(super) fn sqlite(i: &Input) -> Class {
    let (head, size) = (i.head, i.size);
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

pub(super) fn pickle(i: &Input) -> Option<Class> {
    let (head, tail) = (i.head, i.tail);
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

pub(super) fn onnx(i: &Input) -> Option<Class> {
    let (head, ext) = (i.head, i.ext.as_str());
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

pub(super) fn compressed(i: &Input) -> Option<Class> {
    let head = i.head;
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

/// A TensorFlow table index: its footer magic, or the name of one without it.
pub(super) fn tensorflow_index(i: &Input) -> Option<Class> {
    let mime = "application/x-tensorflow-index";
    if i.tail.len() >= 48
        && i.tail
            .ends_with(&[0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb])
    {
        return Some(class("tensorflow", mime, Some(true), ""));
    }
    (i.ext == "index" && i.name.contains(".index"))
        .then(|| class("tensorflow", mime, Some(false), "no table footer magic"))
}

/// Formats without a magic number that their names give away.
pub(super) fn by_name(i: &Input) -> Option<Class> {
    if i.name.contains(".data-") && i.name.contains("-of-") {
        return Some(class(
            "tensorflow",
            "application/x-tensorflow-data",
            None,
            "",
        ));
    }
    (i.ext == "distcp").then(|| class("pytorch", "application/x-torch-distcp", None, ""))
}

/// Everything no signature matched: the `file-format` crate, with
/// completeness checks for PDF, PNG and JPEG.
pub(super) fn common(i: &Input) -> Class {
    let (head, tail) = (i.head, i.tail);
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
