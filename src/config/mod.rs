//! The JSON configuration file: parsing (with `//` comments), defaults, validation.
//!
//! The seed shape `{ "autosave": { "enabled", "interval_seconds", "save_path",
//! "max_keep" } }` loads unchanged. Unknown keys and bad values are errors that name
//! the key and the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod values;

pub use values::{BadValue, Bytes, Retention, parse_duration, parse_listen, parse_size};

/// Why a configuration was refused. `Display` is the one-line message the CLI
/// prints: it names the file and the key.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// Not JSON, an unknown key, or a value of the wrong type (serde's message
    /// names the key and the line).
    Syntax { file: PathBuf, message: String },
    /// A key's value is malformed or out of range.
    Value {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { file, source } => write!(f, "{}: {source}", file.display()),
            ConfigError::Syntax { file, message } => write!(f, "{}: {message}", file.display()),
            ConfigError::Value { file, key, problem } => {
                write!(f, "{}: {key}: {problem}", file.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

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
    pub fsync_min_interval: Option<String>,
    pub generation_quiet_ms: Option<u64>,
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
    metrics: Option<Metrics>,
    archive: Option<Archive>,
}

/// The archive tier (S3-compatible object storage). Credentials come from the
/// `AWS_*` environment or `credentials_file`, never from this file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Archive {
    /// `s3://bucket[/prefix]`.
    pub url: String,
    /// Endpoint of a non-AWS store (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: String,
    /// Versions older than this move to the archive.
    pub after: String,
    /// Archived versions older than this are deleted.
    pub expire_after: String,
    /// This machine's name in the bucket (default: the hostname).
    pub node: Option<String>,
    /// An AWS credentials file (INI) and the profile to use in it.
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
    /// Local cache for reading archived versions.
    pub cache_bytes: Bytes,
    /// Chunks no manifest names are deleted once this old (the sweep runs
    /// as often).
    pub sweep_grace: String,
    /// Encrypt what goes to the bucket with this key (32 bytes or 64 hex).
    pub key_file: Option<PathBuf>,
}

impl Default for Archive {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            after: "7d".into(),
            expire_after: "90d".into(),
            node: None,
            credentials_file: None,
            profile: None,
            cache_bytes: Bytes::Text("10G".into()),
            sweep_grace: "1d".into(),
            key_file: None,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// A port (on 127.0.0.1) or `ADDR:PORT`; absent: no endpoint.
    pub listen: Option<String>,
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
    /// Quiet time after the last seal before a burst of saves becomes a
    /// generation (when nothing is open for writing).
    pub generation_quiet_ms: u64,
    /// On fsync of a file still open for writing, copy it into the store when it
    /// is at most this big (reflinks are always used where available); bigger
    /// files get their version at the last close instead.
    pub fsync_copy_limit: u64,
    /// At most one fsync-triggered version per file per this span (a file
    /// fsynced all the time: SQLite, loggers, msync loops). The last close,
    /// O_TRUNC, rename-over and unlink still make versions.
    pub fsync_min_interval: String,
    /// Store location (default `<DIR>/.ckptfs`).
    pub save_path: Option<PathBuf>,
    pub versions_dir: VersionsDir,
    /// Glob patterns (on the file name) that never get versions.
    pub ignore: Vec<String>,
    pub retention: Retention,
    /// Per-category retention overrides.
    pub categories: BTreeMap<String, Retention>,
    pub compression: Compression,
    pub metrics: Metrics,
    pub archive: Option<Archive>,
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
    // SQLite's rollback journal (made and deleted at every commit) and its
    // WAL index (rebuilt from the WAL): the database file holds the states.
    "*-journal",
    "*-shm",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 300,
            settle_ms: 1500,
            generation_quiet_ms: 3000,
            fsync_copy_limit: 0,
            fsync_min_interval: "5s".into(),
            save_path: None,
            versions_dir: VersionsDir::default(),
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
            retention: Retention::default(),
            categories: BTreeMap::new(),
            compression: Compression::default(),
            metrics: Metrics::default(),
            archive: None,
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
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Value {
            file: origin.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        let clean = strip_comments(text);
        let f: File = serde_json::from_str(&clean).map_err(|e| ConfigError::Syntax {
            file: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut c = Config::default();
        if let Some(e) = f.autosave.enabled {
            c.enabled = e;
        }
        if let Some(i) = f.autosave.interval_seconds {
            if i == 0 {
                return Err(bad(
                    "autosave.interval_seconds",
                    "must be at least 1".into(),
                ));
            }
            c.interval_seconds = i;
        }
        if let Some(a) = f.archive {
            if !a.url.starts_with("s3://") || a.url.len() < "s3://abc".len() {
                return Err(bad(
                    "archive.url",
                    format!("{:?} is not s3://BUCKET[/PREFIX]", a.url),
                ));
            }
            for (k, v) in [
                ("archive.after", &a.after),
                ("archive.expire_after", &a.expire_after),
                ("archive.sweep_grace", &a.sweep_grace),
            ] {
                parse_duration(v).map_err(|e| bad(k, e.0))?;
            }
            if parse_duration(&a.expire_after).ok() <= parse_duration(&a.after).ok() {
                return Err(bad(
                    "archive.expire_after",
                    format!(
                        "{:?} must be longer than archive.after ({:?})",
                        a.expire_after, a.after
                    ),
                ));
            }
            a.cache_bytes
                .size()
                .map_err(|e| bad("archive.cache_bytes", e.0))?;
            if let Some(e) = &a.endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(bad(
                    "archive.endpoint",
                    format!("{e:?} is not an http(s):// URL"),
                ));
            }
            c.archive = Some(a);
        }
        if let Some(m) = f.metrics {
            if let Some(l) = &m.listen {
                parse_listen(l).map_err(|e| bad("metrics.listen", e))?;
            }
            c.metrics = m;
        }
        if let Some(q) = f.autosave.generation_quiet_ms {
            c.generation_quiet_ms = q;
        }
        if let Some(s) = f.autosave.settle_ms {
            c.settle_ms = s;
        }
        if let Some(i) = f.autosave.fsync_min_interval {
            parse_duration(&i).map_err(|e| bad("autosave.fsync_min_interval", e.0))?;
            c.fsync_min_interval = i;
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
                return Err(bad("autosave.max_keep", "must be at least 1".into()));
            }
            // The seed means "at most N versions, rotate the oldest": a cap. The
            // default keep_within would keep a day of saves beyond it.
            c.retention.max_versions = Some(k);
            if !explicit_within {
                c.retention.keep_within = None;
            }
        }
        c.versions_dir = f.versions_dir;
        let n = &c.versions_dir.name;
        if n.is_empty() || n.contains('/') || n == "." || n == ".." {
            return Err(bad(
                "versions_dir.name",
                format!("{n:?} is not a single file name"),
            ));
        }
        if let Some(i) = f.ignore {
            c.ignore = i;
        }
        c.retention
            .rules()
            .map_err(|(k, e)| bad(&format!("retention.{k}"), e.0))?;
        for (cat, r) in &f.categories {
            let key = format!("categories.{cat}");
            if !crate::classify::CATEGORIES.contains(&cat.as_str()) {
                return Err(bad(
                    &key,
                    format!(
                        "unknown category (known: {})",
                        crate::classify::CATEGORIES.join(", ")
                    ),
                ));
            }
            r.rules()
                .map_err(|(k, e)| bad(&format!("{key}.{k}"), e.0))?;
            if r.reserve_bytes != Retention::default().reserve_bytes {
                return Err(bad(
                    &format!("{key}.reserve_bytes"),
                    "the reserve is for the whole filesystem; set retention.reserve_bytes".into(),
                ));
            }
        }
        c.categories = f.categories;
        if let Some(z) = f.compression {
            parse_duration(&z.compress_after)
                .map_err(|e| bad("compression.compress_after", e.0))?;
            for cat in &z.categories {
                if !crate::classify::CATEGORIES.contains(&cat.as_str()) {
                    return Err(bad(
                        "compression.categories",
                        format!("unknown category {cat:?}"),
                    ));
                }
            }
            if !(1..=19).contains(&z.level) {
                return Err(bad("compression.level", "must be 1..=19".into()));
            }
            c.compression = z;
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// What the store is told: parsed rules, compression, the save gap.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        // `parse` checked every value; a default or hand-built Config is valid
        // too, so a failure here is a bug, not bad input.
        let rules = |r: &Retention| r.rules().unwrap_or_else(|(k, e)| panic!("{k}: {e}"));
        crate::store::StoreOptions {
            retention: rules(&self.retention),
            categories: self
                .categories
                .iter()
                .map(|(c, r)| (c.clone(), rules(r)))
                .collect(),
            compression: crate::store::CompressOptions {
                after: parse_duration(&self.compression.compress_after)
                    .unwrap_or(Duration::from_secs(3600)),
                categories: self.compression.categories.clone(),
                level: self.compression.level,
            },
            settle: Duration::from_millis(self.settle_ms),
            archive: self.archive.as_ref().map(|a| crate::store::ArchiveOptions {
                url: a.url.clone(),
                endpoint: a.endpoint.clone(),
                region: a.region.clone(),
                after: parse_duration(&a.after).unwrap_or(Duration::from_secs(7 * 86400)),
                expire_after: parse_duration(&a.expire_after)
                    .unwrap_or(Duration::from_secs(90 * 86400)),
                node: a.node.clone().unwrap_or_else(hostname),
                credentials_file: a.credentials_file.clone(),
                profile: a.profile.clone(),
                cache_bytes: match a.cache_bytes.size() {
                    Ok(crate::policy::Size::Bytes(b)) => b,
                    _ => 10 << 30,
                },
                compress: self.compression.categories.clone(),
                sweep_grace: parse_duration(&a.sweep_grace).unwrap_or(Duration::from_secs(86400)),
                key_file: a.key_file.clone(),
            }),
        }
    }

    /// What the versioning engine is told.
    pub fn versioning_options(&self) -> crate::fs::VersioningOptions {
        crate::fs::VersioningOptions {
            enabled: self.enabled,
            settle: Duration::from_millis(self.settle_ms),
            interval: Duration::from_secs(self.interval_seconds),
            generation_quiet: Duration::from_millis(self.generation_quiet_ms),
            ignore: self.ignore.clone(),
            fsync_copy_limit: self.fsync_copy_limit,
            fsync_min_interval: parse_duration(&self.fsync_min_interval)
                .unwrap_or(Duration::from_secs(5)),
        }
    }
}

/// This machine's name (the archive's default `node`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
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
        assert_eq!(c.retention.reserve_bytes, Some(Bytes::Text("auto".into())));
        assert_eq!(
            c.store_options().retention.reserve,
            crate::policy::Reserve::Auto
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
        .unwrap_err()
        .to_string();
        assert!(e.contains("reserve_bytes") && e.contains("c.json"), "{e}");
        let e = Config::parse(
            r#"{"categories": {"log": {"reserve_bytes": "1G"}}}"#,
            Path::new("c.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("categories.log.reserve_bytes"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::parse(r#"{"autosave": {"max_kep": 3}}"#, Path::new("/etc/c.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_kep") && e.contains("/etc/c.json"), "{e}");
    }

    #[test]
    fn bad_value_is_an_error() {
        let e = Config::parse(r#"{"autosave": {"max_keep": 0}}"#, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_keep"), "{e}");
        let e = Config::parse(
            r#"{"autosave": {"interval_seconds": "x"}}"#,
            Path::new("c.json"),
        )
        .unwrap_err()
        .to_string();
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
        let o = Config::default().versioning_options();
        for n in [
            "a.tmp",
            "model.safetensors.part",
            ".x.swp",
            "f~",
            "ck.orbax-checkpoint-tmp-12",
        ] {
            assert!(o.ignored(n.as_bytes()), "{n}");
        }
        for n in ["model.safetensors", "tmp", "a.tmpx"] {
            assert!(!o.ignored(n.as_bytes()), "{n}");
        }
    }
}
