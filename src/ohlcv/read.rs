//! Reading a folder's candles: listing the live files, checking each against what
//! `checksums` recorded for it (as [`Verify`] asks), serving it from the hot tier or decoding
//! it, and merging. Reads take no lock: every file change is an atomic rename, and what looks
//! wrong here is settled under the lock by `integrity::repair`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;

use super::checksums::{self, Record, Records};
use super::error::{OhlcvError, Result};
use super::frame;
use super::hot::HotTier;
use super::integrity::{self, Verify};
use super::parquet_file;
use super::store::{DataFile, list_cached, overlaps, superseded};
use crate::fsio::{FileStamp, FsError};

/// Rows with `lo <= time < hi`, sorted and unique on time, across every live file.
pub fn read_range(dir: &Path, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
    read_range_hot(dir, lo, hi, None, Verify::Fast)
}

/// [`read_range`], serving files from (and keeping them in) `hot` when given, and checking
/// the files it decodes as `verify` says.
pub fn read_range_hot(
    dir: &Path,
    lo: i64,
    hi: i64,
    hot: Option<&HotTier>,
    verify: Verify,
) -> Result<Vec<RecordBatch>> {
    // A concurrent writer may replace or remove a file between listing and opening it;
    // every such change leaves a complete set of files, so listing again suffices.
    let mut attempts = 0;
    'retry: loop {
        attempts += 1;
        let records = match verify {
            Verify::Off => Arc::default(),
            _ => checksums::load(dir)?.1,
        };
        let files: Vec<DataFile> = list_cached(dir)?
            .iter()
            .filter(|f| overlaps(f, lo, hi))
            .cloned()
            .collect();
        if let Some(gone) = missing(dir, &records, &files, lo, hi) {
            // A writer records a new file just before renaming it into place: look again
            // before calling it gone.
            if attempts < 4 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue 'retry;
            }
            return Err(OhlcvError::corrupted(
                dir.join(gone),
                integrity::MISSING_REASON,
            ));
        }
        let stale = superseded(&files)?;
        let live: Vec<&DataFile> = files.iter().filter(|f| !stale.contains(&f.path)).collect();
        let check = Check {
            verify,
            records: &records,
        };
        let mut pieces = Vec::new();
        for (f, read) in live.iter().zip(read_files(&live, lo, hi, hot, &check)) {
            match read? {
                Some(batches) => pieces.extend(batches.into_iter().map(|b| (f.priority(), b))),
                None if attempts < 50 => continue 'retry,
                None => {
                    return Err(FsError::io(
                        &f.path,
                        std::io::Error::new(
                            ErrorKind::NotFound,
                            "file keeps vanishing while being read",
                        ),
                    )
                    .into());
                }
            }
        }
        return frame::merge(pieces).map_err(|e| OhlcvError::corrupted(dir, e));
    }
}

/// A file the checksum record says candlecache wrote, that may hold rows of `[lo, hi)`, and
/// that is not in the folder.
fn missing<'a>(
    dir: &Path,
    records: &'a Records,
    files: &[DataFile],
    lo: i64,
    hi: i64,
) -> Option<&'a str> {
    records.names().find(|name| {
        let recorded = records.versions(name).last();
        let held = recorded.and_then(|r| Some((r.first?, r.last?)));
        let relevant = match held {
            Some((first, last)) => first < hi && last >= lo,
            None => DataFile::parse(dir, name).is_some_and(|f| overlaps(&f, lo, hi)),
        };
        relevant
            && !files
                .iter()
                .any(|f| f.path.file_name() == Some(name.as_ref()))
    })
}

/// How to check the files a read decodes.
struct Check<'a> {
    verify: Verify,
    records: &'a Records,
}

impl Check<'_> {
    fn versions(&self, f: &DataFile) -> &[Record] {
        match (self.verify, f.path.file_name().and_then(|n| n.to_str())) {
            (Verify::Off, _) | (_, None) => &[],
            (_, Some(name)) => self.records.versions(name),
        }
    }
}

type FileRead = Result<Option<Vec<RecordBatch>>>;

/// Read several files: hot ones from memory, the rest decoded, spread over the available
/// cores when there is more than one to decode.
fn read_files(
    files: &[&DataFile],
    lo: i64,
    hi: i64,
    hot: Option<&HotTier>,
    check: &Check<'_>,
) -> Vec<FileRead> {
    let mut out: Vec<Option<FileRead>> = Vec::with_capacity(files.len());
    let mut cold: Vec<(usize, &DataFile, Option<FileStamp>)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match hot.map(|h| hot_lookup(h, f, lo, hi)).transpose() {
            Ok(Some(Lookup::Hit(rows))) => out.push(Some(Ok(Some(rows)))),
            Ok(Some(Lookup::Vanished)) => out.push(Some(Ok(None))),
            Ok(Some(Lookup::Miss(stamp))) => {
                out.push(None);
                cold.push((i, f, Some(stamp)));
            }
            Ok(None) => {
                out.push(None);
                cold.push((i, f, None));
            }
            Err(e) => out.push(Some(Err(e))),
        }
    }
    let threads = cores().min(cold.len());
    if threads <= 1 {
        for (i, f, stamp) in cold {
            out[i] = Some(decode(f, lo, hi, hot.zip(stamp), check));
        }
    } else {
        let chunk = cold.len().div_ceil(threads);
        let decoded: Vec<Vec<(usize, FileRead)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cold
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|&(i, f, stamp)| (i, decode(f, lo, hi, hot.zip(stamp), check)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, read) in decoded.into_iter().flatten() {
            out[i] = Some(read);
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(OhlcvError::corrupted(
                    PathBuf::new(),
                    "reader thread panicked",
                ))
            })
        })
        .collect()
}

/// The number of cores, asked once (it reads cgroup files on Linux).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn stamp(path: &Path) -> Result<Option<FileStamp>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileStamp::of(&m))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::io(path, e).into()),
    }
}

enum Lookup {
    Hit(Vec<RecordBatch>),
    Miss(FileStamp),
    Vanished,
}

/// The part of `[lo, hi)` a file can hold, the whole file as `(MIN, MAX)`: the hot tier
/// keys what it keeps by that, so a request reaching past the file still hits.
fn within(f: &DataFile, lo: i64, hi: i64) -> (i64, i64) {
    match f.span {
        Some((a, b)) if lo <= a && hi >= b => (i64::MIN, i64::MAX),
        Some((a, b)) => (lo.max(a), hi.min(b)),
        None => (lo, hi),
    }
}

/// What to decode of a file for the hot tier: all of it when the request takes half or more
/// of its span or every row it holds (a window ending on the newest candle then hits next
/// time, however its end moves), else only the part asked for (a small cold read stays as
/// cheap as without the hot tier).
fn to_decode(f: &DataFile, lo: i64, hi: i64) -> (i64, i64) {
    const WHOLE: (i64, i64) = (i64::MIN, i64::MAX);
    let (x, y) = within(f, lo, hi);
    if (x, y) == WHOLE {
        return WHOLE;
    }
    if let Some((a, b)) = f.span
        && y.saturating_sub(x) >= (b - a) / 2
    {
        return WHOLE;
    }
    let held = parquet_file::info(&f.path)
        .ok()
        .flatten()
        .and_then(|info| info.min_max());
    match held {
        Some((first, last)) if lo <= first && last < hi => WHOLE,
        _ => (x, y),
    }
}

fn slices(rows: &[RecordBatch], lo: i64, hi: i64) -> Vec<RecordBatch> {
    rows.iter()
        .map(|r| frame::slice_sorted(r, lo, hi))
        .filter(|r| r.num_rows() > 0)
        .collect()
}

fn hot_lookup(hot: &HotTier, f: &DataFile, lo: i64, hi: i64) -> Result<Lookup> {
    let Some(now) = stamp(&f.path)? else {
        return Ok(Lookup::Vanished);
    };
    let (a, b) = within(f, lo, hi);
    Ok(match hot.get(&f.path, now, a, b) {
        Some(rows) => Lookup::Hit(slices(&rows, lo, hi)),
        None => Lookup::Miss(now),
    })
}

/// Decode a file's rows of `[lo, hi)`; with a hot tier, keep them if the file did not change
/// while it was read.
fn decode(
    f: &DataFile,
    lo: i64,
    hi: i64,
    hot: Option<(&HotTier, FileStamp)>,
    check: &Check<'_>,
) -> FileRead {
    let versions = check.versions(f);
    let accept = |file: &fs::File, info: &parquet_file::FileInfo| {
        integrity::check_open(check.verify, versions, &f.path, file, info)
    };
    let Some((hot, before)) = hot else {
        return parquet_file::read_checked(&f.path, lo, hi, accept);
    };
    let (a, b) = to_decode(f, lo, hi);
    let Some(rows) = parquet_file::read_checked(&f.path, a, b, accept)? else {
        return Ok(None);
    };
    if stamp(&f.path)? == Some(before) {
        hot.put(&f.path, before, a, b, &rows);
    }
    Ok(Some(slices(&rows, lo, hi)))
}
