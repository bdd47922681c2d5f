//! The Parquet files of one symbol-period folder.
//!
//! Files are named as the original tool names them, `{partition}.parquet` (the partition's
//! *main* file), plus small *delta* files `{partition}.d{seq}.parquet` that hold appended rows,
//! so appending a few candles never rewrites a month. One invariant keeps every `*.parquet`
//! glob reader (the original tool, `polars.scan_parquet`, DuckDB) correct: **no time appears in
//! two live files**. New rows that replace stored ones rewrite the file holding them.
//!
//! Replacing files cannot be atomic across several files, so a crash can leave a superseded
//! file behind. Superseded files are named in the footer metadata of their replacement (a
//! main's `candlecache.compacted_through` = the highest delta seq folded into it; a delta's
//! `candlecache.supersedes` = the seqs it replaced); readers skip them and the next locked
//! write of the partition deletes them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::RecordBatch;

use parquet::basic::Compression;

use super::checksums;
use super::error::{OhlcvError, Result};
use super::frame;
use super::integrity::{self, Verify};
use super::parquet_file;
use super::period::{Period, partition_span};
use crate::fsio::{FileStamp, FsError};

const COMPACTED_THROUGH: &str = "candlecache.compacted_through";
const SUPERSEDES: &str = "candlecache.supersedes";
/// Fold deltas into the main file once a partition has more than this many.
const MAX_DELTAS: usize = 8;

#[derive(Clone, Debug)]
pub struct DataFile {
    pub path: PathBuf,
    /// The partition key from the name; None for a file named otherwise.
    pub key: Option<String>,
    /// 0 for a main file, the sequence number for a delta.
    pub seq: u64,
    pub span: Option<(i64, i64)>,
}

impl DataFile {
    pub fn parse(dir: &Path, name: &str) -> Option<DataFile> {
        let stem = name.strip_suffix(".parquet")?;
        if stem.starts_with('.') || stem.is_empty() {
            return None;
        }
        let path = dir.join(name);
        if let Some((key, seq)) = stem.rsplit_once(".d")
            && let Ok(seq) = seq.parse::<u64>()
            && let Some(span) = partition_span(key)
        {
            return Some(DataFile {
                path,
                key: Some(key.to_owned()),
                seq: seq.max(1),
                span: Some(span),
            });
        }
        let span = partition_span(stem);
        Some(DataFile {
            path,
            key: span.map(|_| stem.to_owned()),
            seq: 0,
            span,
        })
    }

    /// Merge priority: deltas over mains, newer deltas over older, foreign files last.
    pub fn priority(&self) -> u64 {
        if self.key.is_some() { self.seq + 1 } else { 0 }
    }
}

/// All `*.parquet` data files in `dir` (none if it does not exist).
pub fn list(dir: &Path) -> Result<Vec<DataFile>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::io(dir, e).into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && let Some(f) = DataFile::parse(dir, name)
        {
            out.push(f);
        }
    }
    out.sort_by(|a, b| (&a.key, a.seq, &a.path).cmp(&(&b.key, b.seq, &b.path)));
    Ok(out)
}

/// [`list`], reused while the directory is unchanged. A directory's mtime moves when an entry
/// is added, removed or renamed, but only at the resolution of the file system's clock (a few
/// ms on ext4). So a listing is kept only if it was taken well after the mtime it saw (the rule
/// git applies to its index): a change in the same tick as the listing would not move the
/// mtime, but a change after a later tick does. Readers use this; writers list afresh.
pub fn list_cached(dir: &Path) -> Result<Arc<Vec<DataFile>>> {
    /// Margin past the directory's mtime after which a listing is trusted.
    const RACY_NS: i128 = 50_000_000;
    type Listings = Mutex<HashMap<PathBuf, (FileStamp, Arc<Vec<DataFile>>)>>;
    static LISTINGS: OnceLock<Listings> = OnceLock::new();
    let listings = LISTINGS.get_or_init(Default::default);
    let stamp = match fs::metadata(dir) {
        Ok(m) => FileStamp::of(&m),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Arc::default()),
        Err(e) => return Err(io_err(dir, e)),
    };
    if let Ok(map) = listings.lock()
        && let Some((s, files)) = map.get(dir)
        && *s == stamp
    {
        return Ok(files.clone());
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let files = Arc::new(list(dir)?);
    if started - stamp.mtime_ns() > RACY_NS
        && let Ok(mut map) = listings.lock()
    {
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(dir.to_owned(), (stamp, files.clone()));
    }
    Ok(files)
}

fn parse_seqs(s: &str) -> impl Iterator<Item = u64> + '_ {
    s.split(',').filter_map(|x| x.trim().parse().ok())
}

/// Paths of files that a live replacement has superseded. Vanished files are skipped.
pub(crate) fn superseded(files: &[DataFile]) -> Result<HashSet<PathBuf>> {
    let mut by_key: BTreeMap<&str, Vec<&DataFile>> = BTreeMap::new();
    for f in files {
        if let Some(k) = &f.key {
            by_key.entry(k).or_default().push(f);
        }
    }
    let mut stale = HashSet::new();
    for group in by_key.values() {
        if !group.iter().any(|f| f.seq > 0) {
            continue;
        }
        let mut dead: HashSet<u64> = HashSet::new();
        let mut through = 0u64;
        for f in group {
            let Some(info) = parquet_file::info(&f.path)? else {
                continue;
            };
            if f.seq == 0 {
                if let Some(v) = info.kv.get(COMPACTED_THROUGH) {
                    through = through.max(v.parse().unwrap_or(0));
                }
            } else if let Some(v) = info.kv.get(SUPERSEDES) {
                dead.extend(parse_seqs(v));
            }
        }
        for f in group {
            if f.seq > 0 && (f.seq <= through || dead.contains(&f.seq)) {
                stale.insert(f.path.clone());
            }
        }
    }
    Ok(stale)
}

pub(crate) fn overlaps(f: &DataFile, lo: i64, hi: i64) -> bool {
    f.span.is_none_or(|(a, b)| a < hi && lo < b)
}

fn read_all(f: &DataFile, verify: Verify) -> Result<Vec<RecordBatch>> {
    Ok(read_trusted(f, i64::MIN, i64::MAX, verify)?.unwrap_or_default())
}

/// Rows of `f` with `lo <= time < hi`, once `f` matches its checksum record as `verify` asks.
/// Rows read here are merged into a new file that is recorded anew: damage let through would
/// become a file that matches its record.
fn read_trusted(
    f: &DataFile,
    lo: i64,
    hi: i64,
    verify: Verify,
) -> Result<Option<Vec<RecordBatch>>> {
    let dir = f.path.parent().unwrap_or(Path::new("."));
    let records = match verify {
        Verify::Off => None,
        _ => Some(checksums::load(dir)?.1),
    };
    let versions = records
        .as_deref()
        .map_or(&[][..], |r| r.versions(name_of(&f.path)));
    parquet_file::read_checked(&f.path, lo, hi, |file, info| {
        integrity::check_open(verify, versions, &f.path, file, info)
    })
}

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> OhlcvError {
    FsError::io(path, e).into()
}

pub(crate) fn name_of(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// How files are written: fsynced or not, and with which Parquet codec.
#[derive(Clone, Copy, Debug)]
pub struct WriteOpts {
    pub durable: bool,
    pub codec: Compression,
    /// How files whose rows a write merges are checked first.
    pub verify: Verify,
}

impl From<bool> for WriteOpts {
    /// `durable`, with the default codec.
    fn from(durable: bool) -> Self {
        WriteOpts {
            durable,
            codec: parquet_file::default_codec(),
            verify: Verify::Fast,
        }
    }
}

/// Write `batches` as `path` and record its checksums (before the rename: see `checksums`).
fn put(
    path: &Path,
    batches: &[RecordBatch],
    kv: Vec<(String, String)>,
    opts: WriteOpts,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let times = frame::first_last(batches);
    let durable = opts.durable;
    parquet_file::write(path, batches, kv, durable, opts.codec, |bytes| {
        checksums::add(
            dir,
            name_of(path),
            checksums::record_of(bytes, times),
            durable,
        )
    })?;
    checksums::compact(dir, durable)
}

/// Remove files of `dir`, saying so in the checksum record first.
fn remove(dir: &Path, paths: impl IntoIterator<Item = PathBuf>, durable: bool) -> Result<()> {
    let paths: Vec<PathBuf> = paths.into_iter().collect();
    if paths.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = paths.iter().map(|p| name_of(p)).collect();
    checksums::remove(dir, &names, durable)?;
    for p in &paths {
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(p, e)),
        }
    }
    Ok(())
}

fn delta_path(dir: &Path, key: &str, seq: u64) -> PathBuf {
    dir.join(format!("{key}.d{seq:06}.parquet"))
}

/// Whether two strictly sorted time sequences share a value.
fn intersects(a: &[i64], b: &[i64]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// The `time` range a file's footer statistics give, if they do.
fn span_of(f: &DataFile) -> Result<Option<(i64, i64)>> {
    Ok(parquet_file::info(&f.path)?.and_then(|info| info.min_max()))
}

fn file_intersects(f: &DataFile, new_times: &[i64], verify: Verify) -> Result<bool> {
    let (Some(&first), Some(&last)) = (new_times.first(), new_times.last()) else {
        return Ok(false);
    };
    if let Some((a, b)) = span_of(f)?
        && (b < first || a > last)
    {
        return Ok(false);
    }
    for batch in read_trusted(f, first, last + 1, verify)?.unwrap_or_default() {
        if intersects(frame::times(&batch).values(), new_times) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Store rows (normalised, sorted, unique on time), replacing stored rows of the same time.
/// The caller holds the folder lock.
pub fn write_rows(
    dir: &Path,
    period: &Period,
    batch: &RecordBatch,
    opts: impl Into<WriteOpts>,
) -> Result<()> {
    let opts = opts.into();
    for (key, rows) in by_partition(period, batch)? {
        write_partition(dir, &key, &rows, opts)?;
    }
    Ok(())
}

/// Sorted rows split by the partition each belongs to, as `(key, rows)` in time order.
pub(crate) fn by_partition(
    period: &Period,
    batch: &RecordBatch,
) -> Result<Vec<(String, RecordBatch)>> {
    let t = frame::times(batch).values();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < t.len() {
        let key = period.partition_key(t[start])?;
        let (_, span_end) =
            partition_span(&key).ok_or_else(|| OhlcvError::TimeOutOfRange(t[start]))?;
        let end = start + t[start..].partition_point(|&x| x < span_end);
        parts.push((key, batch.slice(start, end - start)));
        start = end;
    }
    Ok(parts)
}

fn write_partition(dir: &Path, key: &str, rows: &RecordBatch, opts: WriteOpts) -> Result<()> {
    let durable = opts.durable;
    let all = list(dir)?;
    let group: Vec<DataFile> = all
        .into_iter()
        .filter(|f| f.key.as_deref() == Some(key))
        .collect();
    let stale = superseded(&group)?;
    remove(dir, stale.iter().cloned(), durable)?;
    let group: Vec<DataFile> = group
        .into_iter()
        .filter(|f| !stale.contains(&f.path))
        .collect();
    let main = group.iter().find(|f| f.seq == 0).cloned();
    let deltas: Vec<DataFile> = group.iter().filter(|f| f.seq > 0).cloned().collect();
    let through = compacted_through(main.as_ref())?;
    let next_seq = deltas.iter().map(|d| d.seq).max().unwrap_or(0).max(through) + 1;
    let main_path = dir.join(format!("{key}.parquet"));

    if main.is_none() && deltas.is_empty() {
        return put(&main_path, std::slice::from_ref(rows), Vec::new(), opts);
    }
    let new_times = frame::times(rows).values();
    let main_hit = match &main {
        Some(m) => file_intersects(m, new_times, opts.verify)?,
        None => false,
    };
    let mut hit_deltas = Vec::new();
    for d in &deltas {
        if file_intersects(d, new_times, opts.verify)? {
            hit_deltas.push(d.clone());
        }
    }
    // Another writer (the original tool writes main files only) may have put a delta's times
    // into the main file; folding everything restores one file per time.
    let mut tangled = false;
    if let Some(m) = &main {
        let main_span = span_of(m)?;
        for d in &deltas {
            // Footer statistics rule out almost every delta without reading it: appends lie
            // after the main file's last time.
            if let (Some((a, b)), Some((c, e))) = (main_span, span_of(d)?)
                && (e < a || c > b)
            {
                continue;
            }
            let times: Vec<i64> = read_all(d, opts.verify)?
                .iter()
                .flat_map(|b| frame::times(b).values().to_vec())
                .collect();
            if file_intersects(m, &times, opts.verify)? {
                tangled = true;
                break;
            }
        }
    }
    if main_hit || tangled || deltas.len() - hit_deltas.len() + 1 > MAX_DELTAS {
        return compact(dir, key, main.as_ref(), &deltas, Some(rows), through, opts);
    }
    let path = delta_path(dir, key, next_seq);
    if hit_deltas.is_empty() {
        return put(&path, std::slice::from_ref(rows), Vec::new(), opts);
    }
    let mut pieces = Vec::new();
    for d in &hit_deltas {
        pieces.extend(read_all(d, opts.verify)?.into_iter().map(|b| (d.seq, b)));
    }
    pieces.push((u64::MAX, rows.clone()));
    let merged = frame::merge(pieces).map_err(|e| OhlcvError::corrupted(dir, e))?;
    let seqs: Vec<String> = hit_deltas.iter().map(|d| d.seq.to_string()).collect();
    put(
        &path,
        &merged,
        vec![(SUPERSEDES.to_owned(), seqs.join(","))],
        opts,
    )?;
    remove(dir, hit_deltas.into_iter().map(|d| d.path), durable)
}

/// The highest delta sequence number a main file says it has folded in (0 without one).
fn compacted_through(main: Option<&DataFile>) -> Result<u64> {
    let Some(m) = main else {
        return Ok(0);
    };
    Ok(parquet_file::info(&m.path)?
        .and_then(|i| {
            i.kv.get(COMPACTED_THROUGH)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0))
}

/// Remove the stored rows with `lo <= time < hi`; returns how many. Each partition touched is
/// folded into a new main file (atomically, marked as superseding its deltas) without them.
/// The caller holds the folder lock.
pub fn drop_range(dir: &Path, lo: i64, hi: i64, durable: bool) -> Result<usize> {
    let all = list(dir)?;
    let stale = superseded(&all)?;
    let mut keys: Vec<String> = all
        .iter()
        .filter(|f| !stale.contains(&f.path) && overlaps(f, lo, hi))
        .filter_map(|f| f.key.clone())
        .collect();
    keys.dedup();
    let mut dropped = 0;
    for key in keys {
        let group: Vec<&DataFile> = all
            .iter()
            .filter(|f| f.key.as_deref() == Some(key.as_str()) && !stale.contains(&f.path))
            .collect();
        let main = group.iter().find(|f| f.seq == 0).copied();
        let deltas: Vec<DataFile> = group
            .iter()
            .filter(|f| f.seq > 0)
            .map(|f| (*f).clone())
            .collect();
        let mut pieces = Vec::new();
        if let Some(m) = main {
            pieces.extend(read_all(m, Verify::Fast)?.into_iter().map(|b| (0, b)));
        }
        for d in &deltas {
            pieces.extend(read_all(d, Verify::Fast)?.into_iter().map(|b| (d.seq, b)));
        }
        let merged = frame::merge(pieces).map_err(|e| OhlcvError::corrupted(dir, e))?;
        let mut kept = Vec::new();
        for b in &merged {
            let before = frame::slice_sorted(b, i64::MIN, lo);
            let after = frame::slice_sorted(b, hi, i64::MAX);
            dropped += b.num_rows() - before.num_rows() - after.num_rows();
            kept.extend([before, after].into_iter().filter(|x| x.num_rows() > 0));
        }
        let through = deltas
            .iter()
            .map(|d| d.seq)
            .max()
            .unwrap_or(0)
            .max(compacted_through(main)?);
        let kv = if through > 0 {
            vec![(COMPACTED_THROUGH.to_owned(), through.to_string())]
        } else {
            Vec::new()
        };
        if kept.is_empty() {
            // Nothing left: remove the partition's files, superseded leftovers too (without
            // the main file naming them stale they would count again). Deltas go first, so
            // the main file's marker outlives them.
            let files = all
                .iter()
                .filter(|f| f.key.as_deref() == Some(key.as_str()));
            let (mains, deltas): (Vec<&DataFile>, Vec<&DataFile>) = files.partition(|f| f.seq == 0);
            remove(dir, deltas.iter().map(|f| f.path.clone()), durable)?;
            remove(dir, mains.iter().map(|f| f.path.clone()), durable)?;
            continue;
        }
        let main_path = dir.join(format!("{key}.parquet"));
        put(&main_path, &kept, kv, durable.into())?;
        remove(dir, deltas.iter().map(|d| d.path.clone()), durable)?;
    }
    Ok(dropped)
}

/// Fold every delta (and `rows`, if any) into the partition's main file.
fn compact(
    dir: &Path,
    key: &str,
    main: Option<&DataFile>,
    deltas: &[DataFile],
    rows: Option<&RecordBatch>,
    through: u64,
    opts: WriteOpts,
) -> Result<()> {
    let mut pieces = Vec::new();
    if let Some(m) = main {
        pieces.extend(read_all(m, opts.verify)?.into_iter().map(|b| (0, b)));
    }
    for d in deltas {
        pieces.extend(read_all(d, opts.verify)?.into_iter().map(|b| (d.seq, b)));
    }
    if let Some(r) = rows {
        pieces.push((u64::MAX, r.clone()));
    }
    let merged = frame::merge(pieces).map_err(|e| OhlcvError::corrupted(dir, e))?;
    let through = deltas.iter().map(|d| d.seq).max().unwrap_or(0).max(through);
    let kv = if through > 0 {
        vec![(COMPACTED_THROUGH.to_owned(), through.to_string())]
    } else {
        Vec::new()
    };
    put(&dir.join(format!("{key}.parquet")), &merged, kv, opts)?;
    remove(dir, deltas.iter().map(|d| d.path.clone()), opts.durable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;

    fn rows(ts: std::ops::Range<i64>, v: f64) -> RecordBatch {
        let r: Vec<[f64; 6]> = ts.map(|i| [(i * 60_000) as f64, v, v, v, v, v]).collect();
        frame::from_rows(&r)
    }

    fn all(dir: &Path) -> Vec<(i64, f64)> {
        crate::ohlcv::read::read_range(dir, i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .flat_map(|b| {
                let t = frame::times(b).values().to_vec();
                let o = b.column(1).as_primitive::<Float64Type>().values().to_vec();
                t.into_iter().zip(o)
            })
            .collect()
    }

    /// Every time in at most one live file, as glob readers need.
    fn no_duplicates_across_files(dir: &Path) {
        let mut seen = HashSet::new();
        for f in list(dir).unwrap() {
            for b in read_all(&f, Verify::Off).unwrap() {
                for &t in frame::times(&b).values() {
                    assert!(seen.insert(t), "time {t} in two files");
                }
            }
        }
    }

    #[test]
    fn a_cached_listing_never_hides_a_change() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            fs::write(
                dir.path().join(format!("1970-{:02}.parquet", i % 12 + 1)),
                b"x",
            )
            .unwrap();
            if i % 3 == 0 {
                fs::remove_file(dir.path().join(format!("1970-{:02}.parquet", i % 12 + 1)))
                    .unwrap();
            }
            let fresh = list(dir.path()).unwrap().len();
            assert_eq!(list_cached(dir.path()).unwrap().len(), fresh, "round {i}");
        }
        // Once the directory has been quiet past the margin, the listing is reused.
        std::thread::sleep(std::time::Duration::from_millis(120));
        let a = list_cached(dir.path()).unwrap();
        let b = list_cached(dir.path()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        fs::write(dir.path().join("1971-01.parquet"), b"x").unwrap();
        assert_eq!(list_cached(dir.path()).unwrap().len(), a.len() + 1);
    }

    #[test]
    fn appends_go_to_deltas_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        write_rows(dir.path(), &p, &rows(0..1000, 1.0), false).unwrap();
        for i in 0..20 {
            write_rows(
                dir.path(),
                &p,
                &rows(1000 + i * 10..1010 + i * 10, 1.0),
                false,
            )
            .unwrap();
            no_duplicates_across_files(dir.path());
            assert!(list(dir.path()).unwrap().len() <= MAX_DELTAS + 1);
        }
        let got = all(dir.path());
        assert_eq!(got.len(), 1200);
        assert!(got.windows(2).all(|w| w[0].0 + 60_000 == w[1].0));
    }

    #[test]
    fn newer_rows_replace_older_in_main_and_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        write_rows(dir.path(), &p, &rows(0..100, 1.0), false).unwrap();
        write_rows(dir.path(), &p, &rows(100..110, 1.0), false).unwrap();
        write_rows(dir.path(), &p, &rows(109..111, 2.0), false).unwrap(); // hits a delta
        write_rows(dir.path(), &p, &rows(50..51, 3.0), false).unwrap(); // hits main
        no_duplicates_across_files(dir.path());
        let got = all(dir.path());
        assert_eq!(got.len(), 111);
        assert_eq!(got[50].1, 3.0);
        assert_eq!(got[109].1, 2.0);
        assert_eq!(got[110].1, 2.0);
        assert_eq!(got[108].1, 1.0);
    }

    #[test]
    fn rows_spanning_partitions_split_by_month() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        // 1970-01-31 23:00 .. 1970-02-01 01:00
        let jan31 = 30 * 24 * 60;
        write_rows(
            dir.path(),
            &p,
            &rows(jan31 + 23 * 60..jan31 + 25 * 60, 1.0),
            false,
        )
        .unwrap();
        let names: Vec<_> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.key.unwrap())
            .collect();
        assert_eq!(names, vec!["1970-01", "1970-02"]);
        assert_eq!(
            crate::ohlcv::read::read_range(dir.path(), 0, i64::MAX)
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            120
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_compaction_are_ignored_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        write_rows(dir.path(), &p, &rows(0..10, 1.0), false).unwrap();
        write_rows(dir.path(), &p, &rows(10..20, 1.0), false).unwrap();
        let delta = list(dir.path())
            .unwrap()
            .into_iter()
            .find(|f| f.seq > 0)
            .unwrap();
        let saved = fs::read(&delta.path).unwrap();
        // Fold into main, then put the old delta back as if the crash hit before its removal.
        write_rows(dir.path(), &p, &rows(5..6, 9.0), false).unwrap();
        fs::write(&delta.path, saved).unwrap();
        let got = all(dir.path());
        assert_eq!(got.len(), 20);
        assert_eq!(got[5].1, 9.0);
        write_rows(dir.path(), &p, &rows(20..21, 1.0), false).unwrap();
        assert!(!delta.path.exists());
        no_duplicates_across_files(dir.path());
    }

    #[test]
    fn a_main_file_rewritten_by_another_tool_is_untangled() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        write_rows(dir.path(), &p, &rows(0..10, 1.0), false).unwrap();
        write_rows(dir.path(), &p, &rows(10..20, 1.0), false).unwrap();
        // The original tool rewrites the main file with everything it read (deltas included).
        let main = dir.path().join("1970-01.parquet");
        parquet_file::write(
            &main,
            &[rows(0..20, 1.0)],
            Vec::new(),
            false,
            parquet_file::default_codec(),
            |_| Ok(()),
        )
        .unwrap();
        // Checked against its record, the rewritten file is refused (callers heal: the
        // original tool's log line tells `integrity::repair` to record it anew) ...
        let fast = WriteOpts::from(false);
        let err = write_rows(dir.path(), &p, &rows(30..31, 1.0), fast).unwrap_err();
        assert!(matches!(err, OhlcvError::Corrupted { .. }), "{err}");
        // ... and once trusted, its rows and the delta's are folded into one file per time.
        let trusted = WriteOpts {
            verify: Verify::Off,
            ..fast
        };
        write_rows(dir.path(), &p, &rows(30..31, 1.0), trusted).unwrap();
        no_duplicates_across_files(dir.path());
        assert_eq!(all(dir.path()).len(), 21);
    }

    #[test]
    fn foreign_file_names_are_read_with_lowest_priority() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        parquet_file::write(
            &dir.path().join("extra.parquet"),
            &[rows(0..5, 7.0)],
            Vec::new(),
            false,
            parquet_file::default_codec(),
            |_| Ok(()),
        )
        .unwrap();
        write_rows(dir.path(), &p, &rows(3..8, 1.0), false).unwrap();
        let got = all(dir.path());
        assert_eq!(got.len(), 8);
        assert_eq!((got[2].1, got[3].1), (7.0, 1.0));
    }
}
