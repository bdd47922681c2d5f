//! The record of what candlecache wrote in a folder, `.checksums.jsonl`: for each data file
//! its size, a CRC-32 of its Parquet footer, a SHA-256 of its bytes and the times it holds.
//! Damage that still decodes (a flipped byte in a value, a file deleted while its candles stay
//! covered) is caught by comparing against it; files without a record (written by the
//! original tool, or before records existed) are checked by decoding only.
//!
//! One JSON object a line, appended under the folder lock. A replaced file's new record is
//! appended *before* the rename, and a removed file's `removed` line before the removal, so a
//! reader (or a crash) between the two sees a file that matches one of its name's records, or
//! a file without a record: never a file the record disowns. That is why a name keeps its
//! recent records, not only the newest. A torn last line does not parse and is ignored.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::Result;
use crate::fsio::{self, FileStamp, ParsedFiles};

pub const NAME: &str = ".checksums.jsonl";

/// Records kept per name when the file is compacted: the newest, and the one before it in
/// case the newest was appended by a writer that died before its rename.
const KEEP: usize = 2;
/// Rewrite the file once it holds this many more lines than it would after compaction.
const COMPACT_SLACK: usize = 64;

/// One version of a data file, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub size: u64,
    /// CRC-32 of the footer: the Parquet metadata, its length and the closing magic.
    pub footer: u32,
    pub sha256: String,
    /// The first and last `time` in the file (absent for a file without rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
    /// When it was recorded (epoch ms).
    pub at: i64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    file: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    record: Option<Record>,
}

/// The records of one folder: per file name, its versions since it was last removed, oldest
/// first. A name without versions has no record.
#[derive(Debug, Default)]
pub struct Records {
    files: HashMap<String, Vec<Record>>,
    lines: usize,
}

impl Records {
    fn parse(bytes: &[u8]) -> Records {
        let mut out = Records::default();
        for line in bytes.split(|&b| b == b'\n') {
            let Ok(line) = serde_json::from_slice::<Line>(line) else {
                continue;
            };
            out.lines += 1;
            match (line.removed, line.record) {
                (true, _) => {
                    out.files.remove(&line.file);
                }
                (false, Some(r)) => out.files.entry(line.file).or_default().push(r),
                (false, None) => {}
            }
        }
        out
    }

    /// The recorded versions of `name`, oldest first; empty if it has no record.
    pub fn versions(&self, name: &str) -> &[Record] {
        self.files.get(name).map_or(&[], Vec::as_slice)
    }

    /// Names with a record (files candlecache wrote and has not removed).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn path(dir: &Path) -> std::path::PathBuf {
    dir.join(NAME)
}

/// The records of `dir` and the stamp of the file they came from (None without one).
pub fn load(dir: &Path) -> Result<(Option<FileStamp>, Arc<Records>)> {
    static PARSED: OnceLock<ParsedFiles<Records>> = OnceLock::new();
    Ok(
        match PARSED
            .get_or_init(Default::default)
            .get(&path(dir), Records::parse)?
        {
            Some((stamp, records)) => (Some(stamp), records),
            None => (None, Arc::default()),
        },
    )
}

/// The footer of a Parquet file's bytes, None if they do not end like one.
fn footer(bytes: &[u8]) -> Option<&[u8]> {
    let n = bytes.len();
    if n < 12 || &bytes[n - 4..] != b"PAR1" {
        return None;
    }
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().ok()?) as usize;
    bytes.get(n.checked_sub(len + 8)?..)
}

pub fn footer_crc(footer_bytes: &[u8]) -> u32 {
    crc32fast::hash(footer_bytes)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The record of a file's bytes; `times` are its first and last `time`.
pub fn record_of(bytes: &[u8], times: Option<(i64, i64)>) -> Record {
    Record {
        size: bytes.len() as u64,
        footer: footer(bytes).map_or(0, footer_crc),
        sha256: sha256_hex(bytes),
        first: times.map(|t| t.0),
        last: times.map(|t| t.1),
        at: now_ms(),
    }
}

fn to_line(file: &str, removed: bool, record: Option<Record>) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Line {
        file: file.to_owned(),
        removed,
        record,
    })
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// Append `record` as the newest version of `name`. The caller holds the folder lock.
pub fn add(dir: &Path, name: &str, record: Record, durable: bool) -> Result<()> {
    fsio::append_line(&path(dir), &to_line(name, false, Some(record)), durable)?;
    Ok(())
}

/// Say that `names` are about to be removed (those that have a record). The caller holds the
/// folder lock, and removes the files after this returns.
pub fn remove(dir: &Path, names: &[&str], durable: bool) -> Result<()> {
    let (_, records) = load(dir)?;
    let mut out = Vec::new();
    for name in names {
        if !records.versions(name).is_empty() {
            out.extend(to_line(name, true, None));
        }
    }
    if !out.is_empty() {
        fsio::append_line(&path(dir), &out, durable)?;
    }
    Ok(())
}

/// Rewrite the file with the recent versions of each name once it has grown well past them.
/// The caller holds the folder lock.
pub fn compact(dir: &Path, durable: bool) -> Result<()> {
    let (_, records) = load(dir)?;
    let kept: usize = records.files.values().map(|v| v.len().min(KEEP)).sum();
    if records.lines <= kept + COMPACT_SLACK {
        return Ok(());
    }
    let mut names: Vec<&String> = records.files.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let versions = &records.files[name];
        for r in &versions[versions.len().saturating_sub(KEEP)..] {
            out.extend(to_line(name, false, Some(r.clone())));
        }
    }
    fsio::atomic_write(&path(dir), durable, |f| f.write_all(&out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64) -> Record {
        Record {
            size,
            footer: 1,
            sha256: "ab".into(),
            first: Some(0),
            last: Some(60_000),
            at: 5,
        }
    }

    #[test]
    fn versions_removals_torn_tail_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        add(d, "a.parquet", rec(1), false).unwrap();
        add(d, "a.parquet", rec(2), false).unwrap();
        add(d, "b.parquet", rec(3), false).unwrap();
        remove(d, &["b.parquet", "never.parquet"], false).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(path(d))
            .unwrap()
            .write_all(b"{\"file\":\"c.parq")
            .unwrap();
        let (_, r) = load(d).unwrap();
        assert_eq!(r.versions("a.parquet"), &[rec(1), rec(2)]);
        assert!(r.versions("b.parquet").is_empty());
        assert!(r.versions("c.parquet").is_empty());
        for i in 0..100 {
            add(d, "a.parquet", rec(10 + i), false).unwrap();
        }
        compact(d, false).unwrap();
        let (_, r) = load(d).unwrap();
        assert_eq!(r.versions("a.parquet"), &[rec(108), rec(109)]);
        assert_eq!(r.lines, 2);
    }

    #[test]
    fn footer_of_parquet_bytes() {
        let mut bytes = b"PAR1data".to_vec();
        bytes.extend_from_slice(b"meta");
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(b"PAR1");
        assert_eq!(footer(&bytes), Some(&bytes[8..]));
        assert_eq!(footer(b"PAR1garbage"), None);
        let r = record_of(&bytes, None);
        assert_eq!(r.size, 20);
        assert_eq!(r.footer, footer_crc(&bytes[8..]));
        assert_eq!(r.sha256.len(), 64);
    }
}
