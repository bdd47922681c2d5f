//! The failure registry: `vision_failures.jsonl` in the cache directory, one JSON object a
//! line, appended under `.vision_failures.lock`. A `failed` line records an attempt at a file
//! that could not be stored as verified; a `resolved` line, that the file was verified and
//! stored since. What is failing now is the fold of the lines; a torn last line is ignored.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsio::{self, FolderLock, FsError};

use super::error::Result;

pub const REGISTRY_NAME: &str = "vision_failures.jsonl";
const LOCK_NAME: &str = ".vision_failures.lock";
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// One file that failed, as the registry reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub file: String,
    pub url: String,
    pub symbol: String,
    pub period: String,
    pub market: String,
    pub market_id: String,
    pub reason: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub when: String,
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Line {
    Failed(Failure),
    Resolved { file: String, when: String },
}

fn path(base: &Path) -> PathBuf {
    base.join(REGISTRY_NAME)
}

fn locked(base: &Path) -> Result<FolderLock> {
    std::fs::create_dir_all(base).map_err(|e| FsError::io(base, e))?;
    Ok(FolderLock::acquire(
        &base.join(LOCK_NAME),
        Some(LOCK_TIMEOUT),
    )?)
}

/// The files failing now, oldest first; `attempts` counts the failed attempts recorded.
pub fn read(base: &Path) -> Result<Vec<Failure>> {
    let text = match std::fs::read(path(base)) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::io(path(base), e).into()),
    };
    let mut open: BTreeMap<String, (usize, Failure)> = BTreeMap::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Failed(f)) => {
                let attempts = open.get(&f.file).map_or(0, |(_, g)| g.attempts) + 1;
                let first = open.get(&f.file).map_or(i, |(n, _)| *n);
                open.insert(f.file.clone(), (first, Failure { attempts, ..f }));
            }
            Ok(Line::Resolved { file, .. }) => {
                open.remove(&file);
            }
            Err(_) => {}
        }
    }
    let mut out: Vec<(usize, Failure)> = open.into_values().collect();
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, f)| f).collect())
}

fn append(base: &Path, lines: &[Line], durable: bool) -> Result<()> {
    let mut out = Vec::new();
    for line in lines {
        out.extend(serde_json::to_vec(line).unwrap_or_default());
        out.push(b'\n');
    }
    Ok(fsio::append_line(&path(base), &out, durable)?)
}

pub fn record_failed(base: &Path, failure: Failure, durable: bool) -> Result<()> {
    let _lock = locked(base)?;
    append(base, &[Line::Failed(failure)], durable)
}

/// Mark `files` resolved (those of them the registry holds).
pub fn record_resolved(base: &Path, files: &[String], when: &str, durable: bool) -> Result<()> {
    if !path(base).exists() {
        return Ok(());
    }
    let _lock = locked(base)?;
    let failing = read(base)?;
    let lines: Vec<Line> = files
        .iter()
        .filter(|f| failing.iter().any(|g| &g.file == *f))
        .map(|f| Line::Resolved {
            file: f.clone(),
            when: when.to_owned(),
        })
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    append(base, &lines, durable)
}

/// Move the registry aside to `vision_failures.<stamp>.jsonl.bak`; returns the backup.
pub fn clear(base: &Path, stamp: &str) -> Result<Option<PathBuf>> {
    let from = path(base);
    if !from.exists() {
        return Ok(None);
    }
    let _lock = locked(base)?;
    let to = base.join(format!("vision_failures.{stamp}.jsonl.bak"));
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(Some(to)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::io(from, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_then_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let f = |file: &str, reason: &str| Failure {
            file: file.into(),
            reason: reason.into(),
            ..Default::default()
        };
        record_failed(dir.path(), f("a.zip", "x"), false).unwrap();
        record_failed(dir.path(), f("b.zip", "y"), false).unwrap();
        record_failed(dir.path(), f("a.zip", "z"), false).unwrap();
        let now = read(dir.path()).unwrap();
        assert_eq!(now.len(), 2);
        assert_eq!(
            (
                now[0].file.as_str(),
                now[0].attempts,
                now[0].reason.as_str()
            ),
            ("a.zip", 2, "z")
        );
        record_resolved(dir.path(), &["a.zip".into(), "c.zip".into()], "t", false).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        // A torn last line is ignored.
        fsio::append_line(&path(dir.path()), b"{\"event\":\"failed\",\"fi", false).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        let backup = clear(dir.path(), "20240101T000000").unwrap().unwrap();
        assert!(backup.exists());
        assert!(read(dir.path()).unwrap().is_empty());
    }
}
