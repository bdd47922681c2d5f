//! Telling damaged files apart, and healing a folder: files that do not decode, files whose
//! bytes differ from what `checksums` recorded, files recorded but gone.
//!
//! A file the original tool rewrote after we recorded it differs from its record too, and is
//! legitimate: the original tool rewrites a partition whole (a new size) and appends a log
//! line for the candles it fetched, all under the folder lock. A flipped byte keeps the size
//! and writes no log line. So a file whose size is new, that decodes, and that a log line
//! fetched since its record overlaps, is recorded anew; anything else that differs is damage.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::checksums::{self, Record};
use super::error::{OhlcvError, Result};
use super::frame;
use super::log;
use super::parquet_file::{self, FileInfo};
use super::period::{Period, parse_iso_ms};
use super::store::{self, name_of};

/// How much checking a read does before it trusts a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Trust the disk: only what fails to decode is noticed.
    Off,
    /// Size and footer against the record, once per file version and process, and recorded
    /// files that are gone.
    #[default]
    Fast,
    /// Also the SHA-256 of every file a read decodes.
    Full,
}

impl Verify {
    pub fn parse(name: &str) -> Result<Verify> {
        match name {
            "off" => Ok(Verify::Off),
            "fast" => Ok(Verify::Fast),
            "full" => Ok(Verify::Full),
            other => Err(OhlcvError::InvalidArgument(format!(
                "verify must be 'fast', 'full' or 'off', got {other:?}"
            ))),
        }
    }
}

pub const MISSING_REASON: &str =
    "is gone: candlecache wrote it (see .checksums.jsonl) and its candles are still covered";

/// Clock difference tolerated between our record and the original tool's log line.
const SLACK_MS: i64 = 5_000;

/// Accept an open file for decoding if it matches one of the versions recorded for it (any
/// file without a record is accepted: decoding checks it).
pub fn check_open(
    verify: Verify,
    versions: &[Record],
    path: &Path,
    file: &fs::File,
    info: &FileInfo,
) -> Result<()> {
    let Some(newest) = versions.last() else {
        return Ok(());
    };
    if verify == Verify::Off {
        return Ok(());
    }
    let size = info.stamp.size();
    if !versions
        .iter()
        .any(|v| v.size == size && v.footer == info.footer_crc)
    {
        return Err(OhlcvError::corrupted(
            path,
            format!(
                "does not match its recorded checksum: {size} bytes with footer CRC {:08x}, recorded {} bytes with footer CRC {:08x}",
                info.footer_crc, newest.size, newest.footer
            ),
        ));
    }
    if verify == Verify::Full {
        let bytes = parquet_file::read_whole(file, info).map_err(|e| store::io_err(path, e))?;
        let sha = checksums::sha256_hex(&bytes);
        if !versions.iter().any(|v| v.sha256 == sha) {
            return Err(OhlcvError::corrupted(
                path,
                "its SHA-256 differs from the recorded one (same size and footer: bytes inside were changed)",
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Parquet cannot decode it.
    Undecodable,
    /// It decodes, but its bytes are not what was recorded.
    Mismatch,
    /// Recorded, and not in the folder.
    Missing,
}

#[derive(Clone, Debug)]
pub struct Problem {
    pub path: PathBuf,
    pub fault: Fault,
    pub reason: String,
    /// The candles it held (or may have held), whose coverage goes with it.
    pub span: (i64, i64),
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<Problem>,
    /// Files that differ from their record because another tool rewrote them, with the
    /// record of what they hold now.
    pub rewritten: Vec<(PathBuf, Record)>,
    /// Records of files that are not there and held nothing covered: a writer recorded them
    /// and died before its rename. Dropping the record is all they need.
    pub stale: Vec<String>,
}

/// The candles a file holds by its record, else by its name's partition, else any.
fn span_of(period: &Period, record: Option<&Record>, file_span: Option<(i64, i64)>) -> (i64, i64) {
    if let Some(r) = record
        && let (Some(first), Some(last)) = (r.first, r.last)
        && let Ok(end) = period.add(last, 1)
    {
        return (first, end);
    }
    file_span.unwrap_or((i64::MIN, i64::MAX))
}

/// Whether the fetch log shows a fetch since `record` of candles inside `span`.
fn fetched_since(dir: &Path, record: &Record, span: (i64, i64)) -> Result<bool> {
    Ok(log::read_entries(dir)?.iter().any(|e| {
        parse_iso_ms(&e.fetch_time).is_some_and(|t| t >= record.at - SLACK_MS)
            && e.data_start < span.1
            && e.data_end >= span.0
    }))
}

/// Every file of `dir` decoded whole and, if recorded, hashed; and every recorded file looked
/// for. Holding the folder lock makes the answer exact; without it, a concurrent write may
/// show as a problem.
pub fn check(dir: &Path, period: &Period) -> Result<Findings> {
    let (_, records) = checksums::load(dir)?;
    let files = store::list(dir)?;
    let mut out = Findings::default();
    for f in &files {
        let name = name_of(&f.path);
        let versions = records.versions(name);
        let bytes = match fs::read(&f.path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(store::io_err(&f.path, e)),
        };
        let span = span_of(period, versions.last(), f.span);
        let rows = match parquet_file::read(&f.path, i64::MIN, i64::MAX) {
            Ok(rows) => rows.unwrap_or_default(),
            Err(OhlcvError::Corrupted { reason, .. }) => {
                out.problems.push(Problem {
                    path: f.path.clone(),
                    fault: Fault::Undecodable,
                    reason,
                    span,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(newest) = versions.last() else {
            continue;
        };
        let sha = checksums::sha256_hex(&bytes);
        if versions.iter().any(|v| v.sha256 == sha) {
            continue;
        }
        let size = bytes.len() as u64;
        let partition = f.span.unwrap_or((i64::MIN, i64::MAX));
        if versions.iter().all(|v| v.size != size) && fetched_since(dir, newest, partition)? {
            let times = frame::first_last(&rows);
            out.rewritten
                .push((f.path.clone(), checksums::record_of(&bytes, times)));
            continue;
        }
        out.problems.push(Problem {
            path: f.path.clone(),
            fault: Fault::Mismatch,
            reason: format!(
                "its bytes differ from the recorded ones ({size} bytes, recorded {}) and no fetch since explains it",
                newest.size
            ),
            span,
        });
    }
    let mut gone: Vec<&str> = records
        .names()
        .filter(|n| !files.iter().any(|f| name_of(&f.path) == *n))
        .collect();
    gone.sort_unstable();
    let covered = log::coverage(dir, period)?;
    for name in gone {
        let parsed = store::DataFile::parse(dir, name);
        let span = span_of(
            period,
            records.versions(name).last(),
            parsed.and_then(|f| f.span),
        );
        if covered.missing(span.0, span.1) == [span] {
            out.stale.push(name.to_owned());
            continue;
        }
        out.problems.push(Problem {
            path: dir.join(name),
            fault: Fault::Missing,
            reason: MISSING_REASON.to_owned(),
            span,
        });
    }
    Ok(out)
}

/// What [`repair`] did.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Damaged files, now `*.corrupt` beside where they were.
    pub moved: Vec<PathBuf>,
    /// Recorded files that were gone.
    pub missing: Vec<PathBuf>,
    /// Files another tool rewrote, recorded anew.
    pub rerecorded: Vec<PathBuf>,
}

/// Heal `dir`: record anew what another tool rewrote; drop the coverage of what damaged or
/// missing files held, so it is fetched again; move damaged files aside (nothing is deleted).
/// Coverage goes first: a crash after it leaves a damaged file that is fetched over, never
/// coverage without rows. The caller holds the folder lock.
pub fn repair(dir: &Path, period: &Period, durable: bool) -> Result<Repaired> {
    let found = check(dir, period)?;
    let mut done = Repaired::default();
    for (path, record) in found.rewritten {
        checksums::add(dir, name_of(&path), record, durable)?;
        done.rerecorded.push(path);
    }
    let stale: Vec<&str> = found.stale.iter().map(String::as_str).collect();
    checksums::remove(dir, &stale, durable)?;
    if found.problems.is_empty() {
        return Ok(done);
    }
    let spans: Vec<(i64, i64)> = found.problems.iter().map(|p| p.span).collect();
    log::uncover(dir, period, &spans, durable)?;
    // Records go after the files: a damaged file left in place by a crash keeps the record
    // that exposes it (a file without one is trusted), and a record whose file is gone and
    // uncovered is dropped as stale by the next repair.
    let names: Vec<String> = found
        .problems
        .iter()
        .map(|p| name_of(&p.path).to_owned())
        .collect();
    for p in found.problems {
        if p.fault == Fault::Missing {
            done.missing.push(p.path);
            continue;
        }
        let target = aside(&p.path);
        match fs::rename(&p.path, &target) {
            Ok(()) => done.moved.push(target),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(store::io_err(&p.path, e)),
        }
    }
    if durable {
        crate::fsio::fsync_dir(dir)?;
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    checksums::remove(dir, &names, durable)?;
    checksums::compact(dir, durable)?;
    Ok(done)
}

/// Where a damaged file goes: `*.corrupt`, or a name not taken yet by an earlier one.
fn aside(path: &Path) -> PathBuf {
    let mut target = path.as_os_str().to_owned();
    target.push(".corrupt");
    let target = PathBuf::from(target);
    if !target.exists() {
        return target;
    }
    let mut other = path.as_os_str().to_owned();
    other.push(format!(".{}.corrupt", checksums::now_ms()));
    PathBuf::from(other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ohlcv::read::read_range;

    fn rows(a: i64, n: i64, v: f64) -> arrow_array::RecordBatch {
        frame::from_rows(
            &(0..n)
                .map(|i| [(a + i * 60_000) as f64, v, v, v, v, v])
                .collect::<Vec<_>>(),
        )
    }

    fn setup() -> (tempfile::TempDir, Period, i64) {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        let feb = 31 * 24 * 60 * 60_000i64;
        store::write_rows(dir.path(), &p, &rows(0, 10, 1.0), false).unwrap();
        store::write_rows(dir.path(), &p, &rows(feb, 10, 1.0), false).unwrap();
        log::append(
            dir.path(),
            &log::entry_for(&p, 0, feb + 600_000, 20, 10 * feb, "api").unwrap(),
            false,
        )
        .unwrap();
        (dir, p, feb)
    }

    #[test]
    fn garbage_is_moved_aside_and_uncovered() {
        let (dir, p, feb) = setup();
        fs::write(dir.path().join("1970-01.parquet"), b"PAR1garbage").unwrap();
        assert!(read_range(dir.path(), 0, i64::MAX).is_err());
        let done = repair(dir.path(), &p, false).unwrap();
        assert_eq!(done.moved.len(), 1);
        assert!(
            done.moved[0]
                .to_string_lossy()
                .ends_with("1970-01.parquet.corrupt")
        );
        // Only the ten candles the file held lose their coverage.
        assert_eq!(
            log::coverage(dir.path(), &p).unwrap().as_slice(),
            &[(600_000, feb + 600_000)]
        );
        assert_eq!(
            read_range(dir.path(), 0, i64::MAX).unwrap()[0].num_rows(),
            10
        );
    }

    #[test]
    fn a_flipped_byte_is_found_by_full_and_by_check() {
        let (dir, p, _) = setup();
        let path = dir.path().join("1970-01.parquet");
        let mut bytes = fs::read(&path).unwrap();
        // A byte in the first data page, past the magic: same size, same footer.
        bytes[40] ^= 0x5a;
        fs::write(&path, &bytes).unwrap();
        let full = crate::ohlcv::read::read_range_hot(dir.path(), 0, i64::MAX, None, Verify::Full);
        assert!(
            matches!(full, Err(OhlcvError::Corrupted { .. })),
            "{full:?}"
        );
        let found = check(dir.path(), &p).unwrap();
        assert_eq!(found.problems.len(), 1);
        assert_ne!(found.problems[0].fault, Fault::Missing);
    }

    #[test]
    fn a_deleted_file_is_missing_until_repaired() {
        let (dir, p, feb) = setup();
        fs::remove_file(dir.path().join("1970-02.parquet")).unwrap();
        let err = read_range(dir.path(), feb, i64::MAX).unwrap_err();
        assert!(err.to_string().contains("is gone"), "{err}");
        // A read that does not reach the lost file is unaffected.
        assert_eq!(
            read_range(dir.path(), 0, 600_000).unwrap()[0].num_rows(),
            10
        );
        let done = repair(dir.path(), &p, false).unwrap();
        assert_eq!(done.missing.len(), 1);
        assert_eq!(
            log::coverage(dir.path(), &p).unwrap().as_slice(),
            &[(0, feb)]
        );
        assert_eq!(
            read_range(dir.path(), 0, i64::MAX).unwrap()[0].num_rows(),
            10
        );
    }

    #[test]
    fn a_rewrite_explained_by_the_log_is_recorded_anew() {
        let (dir, p, _) = setup();
        // Another tool rewrites January with more rows, then logs its fetch.
        let path = dir.path().join("1970-01.parquet");
        parquet_file::write(
            &path,
            &[rows(0, 30, 1.0)],
            Vec::new(),
            false,
            parquet_file::default_codec(),
            |_| Ok(()),
        )
        .unwrap();
        assert!(read_range(dir.path(), 0, i64::MAX).is_err());
        log::append(
            dir.path(),
            &log::entry_for(&p, 600_000, 1_800_000, 20, checksums::now_ms(), "api").unwrap(),
            false,
        )
        .unwrap();
        let done = repair(dir.path(), &p, false).unwrap();
        assert_eq!((done.rerecorded.len(), done.moved.len()), (1, 0));
        assert_eq!(
            read_range(dir.path(), 0, 1_800_000).unwrap()[0].num_rows(),
            30
        );
    }

    #[test]
    fn a_record_whose_rename_never_happened_is_dropped_quietly() {
        let (dir, p, feb) = setup();
        // Recorded, never renamed into place, holding nothing covered.
        let rec = checksums::record_of(b"PAR1", Some((2 * feb, 2 * feb + 60_000)));
        checksums::add(dir.path(), "1970-03.d000001.parquet", rec, false).unwrap();
        let found = check(dir.path(), &p).unwrap();
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        assert_eq!(found.stale, ["1970-03.d000001.parquet"]);
        repair(dir.path(), &p, false).unwrap();
        assert!(check(dir.path(), &p).unwrap().stale.is_empty());
        assert_eq!(read_range(dir.path(), 0, i64::MAX).unwrap().len(), 2);
    }

    #[test]
    fn verify_off_trusts_the_disk() {
        let (dir, _, feb) = setup();
        fs::remove_file(dir.path().join("1970-02.parquet")).unwrap();
        let rows =
            crate::ohlcv::read::read_range_hot(dir.path(), 0, i64::MAX, None, Verify::Off).unwrap();
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
        assert!(feb > 0);
    }
}
