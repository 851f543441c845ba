//! What the daemon tells the store, parsed once: typed durations and sizes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::policy::Rules;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Rules for every category without its own.
    pub retention: Rules,
    /// Per-category rules (replace `retention` for that category).
    pub categories: BTreeMap<String, Rules>,
    pub compression: CompressOptions,
    /// The versioning engine's settle time: seals of one save arrive within a
    /// few of these of each other (the save-size estimator groups by it).
    pub settle: Duration,
    /// The archive tier, when configured.
    pub archive: Option<super::archive::ArchiveOptions>,
}

/// Background zstd compression of old versions.
#[derive(Clone, Debug)]
pub struct CompressOptions {
    /// Compress versions sealed longer ago than this.
    pub after: Duration,
    /// Categories worth compressing.
    pub categories: Vec<String>,
    /// zstd level, 1..=19.
    pub level: i32,
}
