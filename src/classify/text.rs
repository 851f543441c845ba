//! Text formats: JSON (and JSON lines), YAML, CSV, logs, plain text. Recognised
//! by parsing the head; JSON's completeness by parsing the whole file when it is
//! small enough to be in the head.

use super::{Class, Input, class, whole};

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

pub(super) fn text_family(i: &Input) -> Option<Class> {
    let (head, size, name, ext) = (i.head, i.size, i.name, i.ext.as_str());
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
