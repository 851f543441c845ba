//! Values as the file spells them, and their parsing into `policy`'s typed
//! rules: retention sections, sizes ("5%", "2G"), durations ("24h").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::policy::{Reserve, Rules, Size};

/// A malformed value (a duration or a size); the caller adds which key.
#[derive(Debug, PartialEq)]
pub struct BadValue(pub String);

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Retention rules as the file spells them; each key means what the field of
/// the same name in [`policy::Rules`](crate::policy::Rules) means (README,
/// "Configuration"). [`Retention::rules`] parses them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    pub keep_last: Option<u32>,
    /// A duration: "90m", "24h", "7d".
    pub keep_within: Option<String>,
    pub keep_minutely: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_every_n: Option<u32>,
    pub max_versions: Option<u32>,
    pub max_store_bytes: Option<u64>,
    /// Bytes, or a percentage of the filesystem ("5%"); `Rules::min_free`.
    pub min_free_bytes: Option<Bytes>,
    /// `"auto"` or a size; `Rules::reserve`. Global only.
    pub reserve_bytes: Option<Bytes>,
}

/// A size as written: a number of bytes, or text ("2G", "5%", "auto").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    Abs(u64),
    Text(String),
}

impl Bytes {
    pub fn size(&self) -> Result<Size, BadValue> {
        match self {
            Bytes::Abs(n) => Ok(Size::Bytes(*n)),
            Bytes::Text(t) => parse_size(t),
        }
    }
}

impl Default for Retention {
    /// Without a config: keep_last 10, keep_within 24h, min_free_bytes 5%.
    fn default() -> Self {
        Self {
            keep_last: Some(10),
            keep_within: Some("24h".into()),
            keep_minutely: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_every_n: None,
            max_versions: None,
            max_store_bytes: None,
            min_free_bytes: Some(Bytes::Text("5%".into())),
            reserve_bytes: Some(Bytes::Text("auto".into())),
        }
    }
}

impl Retention {
    /// Parse every value; the error names the key (relative to this section).
    pub fn rules(&self) -> Result<Rules, (&'static str, BadValue)> {
        let keep_within = match &self.keep_within {
            Some(w) => Some(parse_duration(w).map_err(|e| ("keep_within", e))?),
            None => None,
        };
        let at_least_1 = |key, v: Option<u32>| match v {
            Some(0) => Err((key, BadValue("must be at least 1".into()))),
            _ => Ok(v),
        };
        let min_free = match &self.min_free_bytes {
            Some(b) => Some(b.size().map_err(|e| ("min_free_bytes", e))?),
            None => None,
        };
        let reserve = match &self.reserve_bytes {
            Some(Bytes::Text(t)) if t.trim() == "auto" => Reserve::Auto,
            Some(b) => Reserve::Fixed(b.size().map_err(|e| {
                (
                    "reserve_bytes",
                    BadValue(format!("{e} (a size or \"auto\")")),
                )
            })?),
            None => Reserve::None,
        };
        Ok(Rules {
            keep_last: self.keep_last,
            keep_within,
            keep_minutely: self.keep_minutely,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_every_n: at_least_1("keep_every_n", self.keep_every_n)?,
            max_versions: at_least_1("max_versions", self.max_versions)?,
            max_store_bytes: self.max_store_bytes,
            min_free,
            reserve,
        })
    }
}

/// "5%", "512M", "2GiB", "1024" → a size.
pub fn parse_size(t: &str) -> Result<Size, BadValue> {
    let t = t.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| BadValue(format!("{t:?} is not a percentage")))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(BadValue(format!("{t:?} is not between 0% and 100%")));
        }
        return Ok(Size::Percent(v));
    }
    let (num, mul) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match t[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1u64 << 40,
                _ => return Err(BadValue(format!("{t:?}: unknown unit"))),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| BadValue(format!("{t:?} is not a size")))?;
    Ok(Size::Bytes((v * mul as f64) as u64))
}

/// "90s", "30m", "24h", "7d", "2w", "1y" → a duration.
pub fn parse_duration(s: &str) -> Result<Duration, BadValue> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| BadValue(format!("{s:?} is not a duration like 24h")))?;
    let mul = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "y" => 365 * 86400,
        _ => {
            return Err(BadValue(format!(
                "{s:?}: unknown unit {unit:?} (use s, m, h, d, w, y)"
            )));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(mul)))
}

/// Parse `--metrics` / `metrics.listen`: a port (loopback) or `ADDR:PORT`.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<std::net::SocketAddr>().map_err(|_| {
        format!(
            "metrics address {s:?}: not a port or ADDR:PORT (e.g. 9464, 127.0.0.1:9464, [::1]:9464)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("3 parsecs").is_err());
        assert_eq!(parse_size("5%").unwrap().resolve(1000), 50);
        assert_eq!(parse_size("2G").unwrap(), Size::Bytes(2 << 30));
        assert_eq!(Bytes::Abs(7).size().unwrap(), Size::Bytes(7));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("120%").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("9464").unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(
            parse_listen("[::1]:9464").unwrap().to_string(),
            "[::1]:9464"
        );
        for bad in ["", "localhost", "1.2.3.4", "99999", "host:x"] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
