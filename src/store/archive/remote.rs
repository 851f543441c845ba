//! The object store behind the archive tier: an S3-compatible bucket through
//! rust-s3 in blocking mode (no async runtime for a background thread's
//! uploads). Every call is retried on network and server errors with
//! exponential backoff and jitter; 4xx answers other than 429 are final.

use std::io;
use std::time::Duration;

use s3::bucket::Bucket;
use s3::creds::Credentials;
use s3::region::Region;

use super::ArchiveOptions;

pub struct Remote {
    bucket: Box<Bucket>,
    /// Key prefix inside the bucket ("" or "some/prefix/").
    prefix: String,
    /// Attempts per call (1 = no retry).
    attempts: u32,
}

/// An S3 answer as an io::Error a person can read.
fn http_err(what: &str, key: &str, code: u16, body: &str) -> io::Error {
    let kind = match code {
        404 => io::ErrorKind::NotFound,
        401 | 403 => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    // S3 error bodies are XML with a <Code> and a <Message>.
    let tag = |t: &str| {
        body.split(&format!("<{t}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{t}>")).next())
            .map(str::to_string)
    };
    let detail = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => format!("HTTP {code}"),
    };
    io::Error::new(kind, format!("{what} {key}: {detail}"))
}

fn transient(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput
    ) && !e.to_string().contains("NoSuchBucket")
}

fn s3_err(what: &str, key: &str, e: s3::error::S3Error) -> io::Error {
    match e {
        s3::error::S3Error::HttpFailWithBody(code, body) => http_err(what, key, code, &body),
        other => io::Error::other(format!("{what} {key}: {other}")),
    }
}

/// `2026-11-30T16:00:00.000Z` → seconds since the epoch.
fn rfc3339_secs(t: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let days = crate::policy::days_from_civil(n(0..4)?, n(5..7)? as u32, n(8..10)? as u32);
    Some(days * 86400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

impl Remote {
    /// A client for `o.url` (`s3://bucket/prefix`); credentials from
    /// `o.credentials_file` when given, else the `AWS_*` environment.
    pub fn new(o: &ArchiveOptions) -> Result<Self, String> {
        let rest = o
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("archive.url {:?}: expected s3://BUCKET[/PREFIX]", o.url))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.len() < 3 {
            return Err(format!(
                "archive.url {:?}: bucket names have at least 3 characters",
                o.url
            ));
        }
        let creds = match &o.credentials_file {
            Some(f) => Credentials::from_credentials_file(f, o.profile.as_deref()).map_err(|e| {
                format!("archive.credentials_file {}: {e}", f.display())
            })?,
            None => Credentials::from_env().map_err(|_| {
                "archive: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or archive.credentials_file)".to_string()
            })?,
        };
        let region = match &o.endpoint {
            Some(ep) => Region::Custom {
                region: o.region.clone(),
                endpoint: ep.trim_end_matches('/').to_string(),
            },
            None => o
                .region
                .parse()
                .map_err(|e| format!("archive.region {:?}: {e}", o.region))?,
        };
        let mut b = Bucket::new(bucket, region, creds)
            .map_err(|e| format!("archive.url {:?}: {e}", o.url))?;
        if o.endpoint.is_some() {
            // Self-hosted stores (MinIO, Ceph, moto…) rarely have bucket DNS names.
            b = b.with_path_style();
        }
        // We retry ourselves (with backoff, off the request threads).
        s3::set_retries(0);
        let b = b
            .with_request_timeout(Duration::from_secs(60))
            .map_err(|e| format!("archive: {e}"))?;
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            bucket: b,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            attempts: 6,
        })
    }

    /// Fewer retries: for a person waiting on a read.
    pub fn impatient(mut self) -> Self {
        self.attempts = 2;
        self
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    /// Run `op` until it succeeds, fails for good, or attempts run out:
    /// 0.2 s, 0.4 s, … up to 10 s apart, each with up to 50 % jitter.
    fn retry<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut wait = Duration::from_millis(200);
        let mut n = 0;
        loop {
            match op() {
                Err(e) if transient(&e) && n + 1 < self.attempts => {
                    n += 1;
                    let jitter = (crate::store::now_ns() as u64 % 1000) as f64 / 2000.0;
                    std::thread::sleep(wait.mul_f64(1.0 + jitter));
                    wait = (wait * 2).min(Duration::from_secs(10));
                    log::debug!("archive: retry {n}: {e}");
                }
                r => return r,
            }
        }
    }

    pub fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let k = self.key(key);
        self.retry(|| {
            let r = self
                .bucket
                .put_object(&k, bytes)
                .map_err(|e| s3_err("PUT", &k, e))?;
            match r.status_code() {
                200..=299 => Ok(()),
                c => Err(http_err(
                    "PUT",
                    &k,
                    c,
                    &String::from_utf8_lossy(r.as_slice()),
                )),
            }
        })
    }

    pub fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        let k = self.key(key);
        self.retry(|| {
            let r = self
                .bucket
                .get_object(&k)
                .map_err(|e| s3_err("GET", &k, e))?;
            match r.status_code() {
                200..=299 => Ok(r.to_vec()),
                c => Err(http_err(
                    "GET",
                    &k,
                    c,
                    &String::from_utf8_lossy(r.as_slice()),
                )),
            }
        })
    }

    pub fn exists(&self, key: &str) -> io::Result<bool> {
        let k = self.key(key);
        self.retry(|| match self.bucket.head_object(&k) {
            Ok((_, 200..=299)) => Ok(true),
            Ok((_, 404)) => Ok(false),
            Ok((_, c)) => Err(http_err("HEAD", &k, c, "")),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => Ok(false),
            Err(e) => Err(s3_err("HEAD", &k, e)),
        })
    }

    pub fn delete(&self, key: &str) -> io::Result<()> {
        let k = self.key(key);
        self.retry(|| {
            let r = self
                .bucket
                .delete_object(&k)
                .map_err(|e| s3_err("DELETE", &k, e))?;
            match r.status_code() {
                200..=299 | 404 => Ok(()),
                c => Err(http_err(
                    "DELETE",
                    &k,
                    c,
                    &String::from_utf8_lossy(r.as_slice()),
                )),
            }
        })
    }

    /// Keys under `prefix` (relative to the archive's prefix).
    pub fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(self
            .list_dated(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Keys under `prefix` with their last-modified time (s since the epoch;
    /// 0 when the server's date does not parse).
    pub fn list_dated(&self, prefix: &str) -> io::Result<Vec<(String, i64)>> {
        let k = self.key(prefix);
        self.retry(|| {
            let pages = self
                .bucket
                .list(k.clone(), None)
                .map_err(|e| s3_err("LIST", &k, e))?;
            Ok(pages
                .into_iter()
                .flat_map(|p| p.contents)
                .filter_map(|o| {
                    let key = o.key.strip_prefix(&self.prefix)?.to_string();
                    Some((key, rfc3339_secs(&o.last_modified).unwrap_or(0)))
                })
                .collect())
        })
    }

    /// Can we write to the bucket with these credentials? A small PUT under
    /// this node's prefix, tried once: its error names what is wrong (no
    /// such bucket, a bad key or signature, a refused connection) in one line.
    pub fn probe(&self, node: &str) -> Result<(), String> {
        let k = self.key(&format!("nodes/{node}/.probe"));
        let r = self
            .bucket
            .put_object(&k, b"ckptfs")
            .map_err(|e| s3_err("PUT", &k, e));
        let r = r.and_then(|r| match r.status_code() {
            200..=299 => Ok(()),
            c => Err(http_err(
                "PUT",
                &k,
                c,
                &String::from_utf8_lossy(r.as_slice()),
            )),
        });
        r.map_err(|e| match e.kind() {
            // A PUT creates its key: a 404 can only mean the bucket.
            io::ErrorKind::NotFound => format!(
                "archive: bucket {:?} does not exist at {} (create it, or fix archive.url)",
                self.bucket.name,
                self.bucket.region.endpoint()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "archive: bucket {:?} refused our credentials: {e}",
                self.bucket.name
            ),
            _ => format!("archive: bucket {:?}: {e}", self.bucket.name),
        })
    }
}
