//! Where a version is cut into chunks for the archive. A safetensors file is
//! cut at its tensors (read from its header), so a tensor that did not change
//! between saves is the same chunk, whatever moved around it; anything else is
//! cut by content (FastCDC), so an insertion shifts few chunks. No chunk is
//! bigger than [`MAX_CHUNK`]: a big tensor is cut in fixed pieces from its
//! start, which are unchanged when the tensor is.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use crate::sys;

pub const MAX_CHUNK: u64 = 4 << 20;
const CDC_MIN: u32 = 256 << 10;
const CDC_AVG: u32 = 1 << 20;
const CDC_MAX: u32 = MAX_CHUNK as u32;

/// The (offset, length) pieces of the first `size` bytes of `fd`, in order,
/// covering every byte once.
pub fn boundaries(fd: BorrowedFd<'_>, size: u64, category: &str) -> io::Result<Vec<(u64, u64)>> {
    if category == "safetensors"
        && let Some(b) = tensor_boundaries(fd, size)?
    {
        return Ok(b);
    }
    let mut out = Vec::new();
    let src = ReadAt {
        fd,
        off: 0,
        end: size,
    };
    for c in fastcdc::v2020::StreamCDC::new(src, CDC_MIN, CDC_AVG, CDC_MAX) {
        let c = c.map_err(|e| io::Error::other(format!("chunking: {e}")))?;
        out.push((c.offset, c.length as u64));
    }
    Ok(out)
}

/// Header, then each tensor (cut in MAX_CHUNK pieces), then any gap or tail;
/// None when the header does not describe the file (then FastCDC cuts it).
fn tensor_boundaries(fd: BorrowedFd<'_>, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut len = [0u8; 8];
    if size < 8 || sys::pread_full(fd, &mut len, 0)? < 8 {
        return Ok(None);
    }
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || 8 + n > size {
        return Ok(None);
    }
    let mut hdr = vec![0u8; n as usize];
    if sys::pread_full(fd, &mut hdr, 8)? < n as usize {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&hdr) else {
        return Ok(None);
    };
    let base = 8 + n;
    let mut ranges: Vec<(u64, u64)> = o
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, t)| {
            let off = t.get("data_offsets")?;
            Some((off.get(0)?.as_u64()? + base, off.get(1)?.as_u64()? + base))
        })
        .collect();
    ranges.sort_unstable();
    let mut out = vec![(0, base)];
    let mut at = base;
    for (s, e) in ranges {
        if s < at || e < s || e > size {
            return Ok(None); // overlapping or out of the file: not trusted
        }
        if s > at {
            out.push((at, s - at));
        }
        let mut p = s;
        while p < e {
            let l = (e - p).min(MAX_CHUNK);
            out.push((p, l));
            p += l;
        }
        at = e;
    }
    let mut p = at;
    while p < size {
        let l = (size - p).min(MAX_CHUNK);
        out.push((p, l));
        p += l;
    }
    Ok(Some(out.into_iter().filter(|c| c.1 > 0).collect()))
}

/// `Read` over a byte range of an fd (pread: the fd's offset is untouched).
struct ReadAt<'a> {
    fd: BorrowedFd<'a>,
    off: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.off).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = sys::pread_full(self.fd, &mut buf[..want], self.off)?;
        self.off += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn file(bytes: &[u8]) -> std::fs::File {
        let p = std::env::temp_dir().join(format!(
            "ckptfs-chunk-{}-{}",
            std::process::id(),
            crate::store::now_ns()
        ));
        std::fs::write(&p, bytes).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }

    fn safetensors(tensors: &[(&str, usize, u8)]) -> Vec<u8> {
        let mut off = 0;
        let mut hdr = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, len, fill) in tensors {
            hdr.insert(
                name.to_string(),
                serde_json::json!({"dtype": "U8", "shape": [len], "data_offsets": [off, off + len]}),
            );
            data.extend(std::iter::repeat_n(*fill, *len));
            off += len;
        }
        let h = serde_json::to_vec(&hdr).unwrap();
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h);
        b.extend(data);
        b
    }

    #[test]
    fn tensors_are_chunks_and_big_ones_are_cut_in_fixed_pieces() {
        let big = (MAX_CHUNK as usize) * 2 + 10;
        let b = safetensors(&[("a", 1000, 1), ("b", big, 2), ("c", 5, 3)]);
        let f = file(&b);
        let c = boundaries(f.as_fd(), b.len() as u64, "safetensors").unwrap();
        let hdr = c[0].1;
        assert_eq!(
            c.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![hdr, 1000, MAX_CHUNK, MAX_CHUNK, 10, 5]
        );
        // Every byte once, in order.
        let mut at = 0;
        for (o, l) in &c {
            assert_eq!(*o, at);
            at += l;
        }
        assert_eq!(at, b.len() as u64);
    }

    #[test]
    fn an_unchanged_tensor_is_the_same_chunk_after_a_neighbour_changes() {
        let v1 = safetensors(&[("frozen", 300_000, 7), ("head", 1000, 1)]);
        let v2 = safetensors(&[("frozen", 300_000, 7), ("head", 1000, 9)]);
        let pieces = |b: &[u8]| {
            let f = file(b);
            boundaries(f.as_fd(), b.len() as u64, "safetensors")
                .unwrap()
                .into_iter()
                .map(|(o, l)| b[o as usize..(o + l) as usize].to_vec())
                .collect::<Vec<_>>()
        };
        let (a, b) = (pieces(&v1), pieces(&v2));
        assert_eq!(a[1], b[1], "the frozen tensor");
        assert_ne!(a[2], b[2], "the head changed");
    }

    #[test]
    fn other_files_are_cut_by_content_and_a_bad_header_falls_back() {
        let mut b = vec![0u8; 10 << 20];
        let mut r = 0x9E37_79B9_7F4A_7C15u64;
        for x in b.iter_mut() {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            *x = r as u8;
        }
        let f = file(&b);
        let c = boundaries(f.as_fd(), b.len() as u64, "binary").unwrap();
        // Cut by content: sizes vary, none above the maximum.
        assert!(c.len() >= 4 && c.iter().all(|x| x.1 <= MAX_CHUNK), "{c:?}");
        assert!(c.iter().any(|x| x.1 != c[0].1), "{c:?}");
        assert_eq!(c.iter().map(|x| x.1).sum::<u64>(), b.len() as u64);
        // "safetensors" by name, garbage inside: still every byte once.
        let c2 = boundaries(f.as_fd(), b.len() as u64, "safetensors").unwrap();
        assert_eq!(c2, c);
    }
}
