//! The JSON configuration file: parsing (with `//` comments), defaults, validation.
//!
//! The seed shape `{ "autosave": { "enabled", "interval_seconds", "save_path",
//! "max_keep" } }` loads unchanged. Unknown keys and bad values are errors that name
//! the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::Retention;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    Hidden,
    Visible,
    Disabled,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersionsDir {
    /// Name of the history view in the mount root.
    pub name: String,
    /// hidden: reachable but not listed; visible: listed; disabled: absent.
    pub visibility: Visibility,
}

impl Default for VersionsDir {
    fn default() -> Self {
        Self {
            name: ".versions".into(),
            visibility: Visibility::Hidden,
        }
    }
}

/// The seed's section, kept as users wrote it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Autosave {
    pub enabled: Option<bool>,
    pub interval_seconds: Option<u64>,
    pub save_path: Option<PathBuf>,
    pub max_keep: Option<u32>,
    pub settle_ms: Option<u64>,
    pub fsync_copy_limit: Option<u64>,
}

/// The file as written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct File {
    autosave: Autosave,
    versions_dir: VersionsDir,
    ignore: Option<Vec<String>>,
    retention: Option<Retention>,
    categories: BTreeMap<String, Retention>,
    compression: Option<Compression>,
}

/// Background compression of old versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Compression {
    /// Compress versions sealed longer ago than this ("1h"; "0s" = right away).
    pub compress_after: String,
    /// Categories worth compressing.
    pub categories: Vec<String>,
    /// zstd level.
    pub level: i32,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            compress_after: "1h".into(),
            categories: ["text", "json", "yaml", "log", "csv", "pickle"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            level: 3,
        }
    }
}

/// The effective configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Versioning on/off (off: a plain passthrough mount).
    pub enabled: bool,
    /// Seal a file that stays open and dirty this long.
    pub interval_seconds: u64,
    /// Quiet time after the last release before a version is sealed.
    pub settle_ms: u64,
    /// On fsync of a file still open for writing, copy it into the store when it
    /// is at most this big (reflinks are always used where available); bigger
    /// files get their version at the last close instead.
    pub fsync_copy_limit: u64,
    /// Store location (default `<DIR>/.ckptfs`).
    pub save_path: Option<PathBuf>,
    pub versions_dir: VersionsDir,
    /// Glob patterns (on the file name) that never get versions.
    pub ignore: Vec<String>,
    pub retention: Retention,
    /// Per-category retention overrides.
    pub categories: BTreeMap<String, Retention>,
    pub compression: Compression,
}

pub const DEFAULT_IGNORE: &[&str] = &[
    "*.tmp",
    "*.part",
    "*.swp",
    "*.swx",
    "*~",
    "*.orbax-checkpoint-tmp-*",
    "*.tempstate*",
    "*.__lock",
    ".#*",
    "*.crdownload",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 300,
            settle_ms: 1500,
            fsync_copy_limit: 64 << 20,
            save_path: None,
            versions_dir: VersionsDir::default(),
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
            retention: Retention::default(),
            categories: BTreeMap::new(),
            compression: Compression::default(),
        }
    }
}

/// Remove `//` and `/* */` comments outside strings.
pub fn strip_comments(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push(c);
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                // keep line numbers for error messages
                if b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII removed")
}

impl Config {
    pub fn parse(text: &str, origin: &Path) -> Result<Self, String> {
        let clean = strip_comments(text);
        let f: File =
            serde_json::from_str(&clean).map_err(|e| format!("{}: {e}", origin.display()))?;
        let mut c = Config::default();
        if let Some(e) = f.autosave.enabled {
            c.enabled = e;
        }
        if let Some(i) = f.autosave.interval_seconds {
            if i == 0 {
                return Err(format!(
                    "{}: autosave.interval_seconds must be at least 1",
                    origin.display()
                ));
            }
            c.interval_seconds = i;
        }
        if let Some(s) = f.autosave.settle_ms {
            c.settle_ms = s;
        }
        if let Some(s) = f.autosave.fsync_copy_limit {
            c.fsync_copy_limit = s;
        }
        c.save_path = f.autosave.save_path;
        // Whether the file itself names keep_within (serde fills in the default).
        let explicit_within = serde_json::from_str::<serde_json::Value>(&clean)
            .ok()
            .and_then(|v| v.get("retention")?.get("keep_within").cloned())
            .is_some();
        if let Some(r) = f.retention {
            c.retention = r;
        }
        if let Some(k) = f.autosave.max_keep {
            if k == 0 {
                return Err(format!(
                    "{}: autosave.max_keep must be at least 1",
                    origin.display()
                ));
            }
            // The seed means "at most N versions, rotate the oldest": a cap. The
            // default keep_within would keep a day of saves beyond it.
            c.retention.max_versions = Some(k);
            if !explicit_within {
                c.retention.keep_within = None;
            }
        }
        c.versions_dir = f.versions_dir;
        if c.versions_dir.name.is_empty()
            || c.versions_dir.name.contains('/')
            || c.versions_dir.name == "."
            || c.versions_dir.name == ".."
        {
            return Err(format!(
                "{}: versions_dir.name {:?} is not a single file name",
                origin.display(),
                c.versions_dir.name
            ));
        }
        if let Some(i) = f.ignore {
            c.ignore = i;
        }
        c.retention
            .validate()
            .map_err(|e| format!("{}: retention.{e}", origin.display()))?;
        for (cat, r) in &f.categories {
            if !crate::classify::CATEGORIES.contains(&cat.as_str()) {
                return Err(format!(
                    "{}: categories.{cat}: unknown category (known: {})",
                    origin.display(),
                    crate::classify::CATEGORIES.join(", ")
                ));
            }
            r.validate()
                .map_err(|e| format!("{}: categories.{cat}.{e}", origin.display()))?;
            if r.reserve_bytes != Retention::default().reserve_bytes {
                return Err(format!(
                    "{}: categories.{cat}.reserve_bytes: the reserve is for the whole filesystem; set retention.reserve_bytes",
                    origin.display()
                ));
            }
        }
        c.categories = f.categories;
        if let Some(z) = f.compression {
            crate::policy::parse_duration(&z.compress_after)
                .map_err(|e| format!("{}: compression.compress_after: {e}", origin.display()))?;
            for cat in &z.categories {
                if !crate::classify::CATEGORIES.contains(&cat.as_str()) {
                    return Err(format!(
                        "{}: compression.categories: unknown category {cat:?}",
                        origin.display()
                    ));
                }
            }
            if !(1..=19).contains(&z.level) {
                return Err(format!(
                    "{}: compression.level must be 1..=19",
                    origin.display()
                ));
            }
            c.compression = z;
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Is `name` (a file name, not a path) excluded from versioning?
    pub fn ignored(&self, name: &[u8]) -> bool {
        self.ignore.iter().any(|p| glob(p.as_bytes(), name))
    }
}

/// Shell-style `*` and `?` matching (enough for name patterns).
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_sample_loads_with_comments() {
        let seed = r#"
        // ckptfs seed configuration
        { "autosave": { "enabled": true, "interval_seconds": 300, // seconds
                        "save_path": "/checkpoints/latest", "max_keep": 3 } }"#;
        let c = Config::parse(seed, Path::new("seed.json")).unwrap();
        assert!(c.enabled);
        assert_eq!(c.interval_seconds, 300);
        assert_eq!(
            c.save_path.as_deref(),
            Some(Path::new("/checkpoints/latest"))
        );
        // max_keep is a cap, and the default keep_within no longer keeps a day.
        assert_eq!(c.retention.max_versions, Some(3));
        assert_eq!(c.retention.keep_within, None);
        let c = Config::parse(
            r#"{"autosave": {"max_keep": 3}, "retention": {"keep_within": "1h"}}"#,
            Path::new("c.json"),
        )
        .unwrap();
        assert_eq!(c.retention.keep_within.as_deref(), Some("1h"));
    }

    #[test]
    fn reserve_is_auto_a_size_or_an_error() {
        let c = Config::default();
        assert_eq!(
            c.retention.reserve_bytes,
            Some(crate::policy::Bytes::Text("auto".into()))
        );
        assert!(
            Config::parse(
                r#"{"retention": {"reserve_bytes": "2G"}}"#,
                Path::new("c.json")
            )
            .is_ok()
        );
        let e = Config::parse(
            r#"{"retention": {"reserve_bytes": "lots"}}"#,
            Path::new("c.json"),
        )
        .unwrap_err();
        assert!(e.contains("reserve_bytes") && e.contains("c.json"), "{e}");
        let e = Config::parse(
            r#"{"categories": {"log": {"reserve_bytes": "1G"}}}"#,
            Path::new("c.json"),
        )
        .unwrap_err();
        assert!(e.contains("categories.log.reserve_bytes"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e =
            Config::parse(r#"{"autosave": {"max_kep": 3}}"#, Path::new("/etc/c.json")).unwrap_err();
        assert!(e.contains("max_kep") && e.contains("/etc/c.json"), "{e}");
    }

    #[test]
    fn bad_value_is_an_error() {
        let e = Config::parse(r#"{"autosave": {"max_keep": 0}}"#, Path::new("c.json")).unwrap_err();
        assert!(e.contains("max_keep"), "{e}");
        let e = Config::parse(
            r#"{"autosave": {"interval_seconds": "x"}}"#,
            Path::new("c.json"),
        )
        .unwrap_err();
        assert!(e.contains("c.json"), "{e}");
    }

    #[test]
    fn comments_inside_strings_survive() {
        let c = Config::parse(
            r#"{"autosave": {"save_path": "/a//b"}} // tail"#,
            Path::new("c.json"),
        )
        .unwrap();
        assert_eq!(c.save_path.as_deref(), Some(Path::new("/a//b")));
    }

    #[test]
    fn glob_matches_writer_temp_names() {
        let c = Config::default();
        for n in [
            "a.tmp",
            "model.safetensors.part",
            ".x.swp",
            "f~",
            "ck.orbax-checkpoint-tmp-12",
        ] {
            assert!(c.ignored(n.as_bytes()), "{n}");
        }
        for n in ["model.safetensors", "tmp", "a.tmpx"] {
            assert!(!c.ignored(n.as_bytes()), "{n}");
        }
    }
}
