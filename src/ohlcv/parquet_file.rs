//! One Parquet file of candles: writing it atomically, and reading only the row groups that
//! overlap a time range, with the footer cached per file version.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::basic::{Compression, Encoding, GzipLevel, ZstdLevel};
use parquet::file::metadata::{KeyValue, PageIndexPolicy, SortingColumn};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;

use super::checksums;
use super::error::{OhlcvError, Result};
use super::frame::{self, TIME};
use crate::fsio::{self, FileStamp, FsError};

/// Rows per row group: large, so a full scan is not dominated by per-group overhead.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page: small, so a short read decodes little. The page index (per-page
/// min/max of `time` and page offsets) lets a read skip the other pages without decompressing.
const PAGE_ROWS: usize = 2048;

/// What a file's footer tells us, cached per (path, inode, length, mtime).
pub struct FileInfo {
    meta: ArrowReaderMetadata,
    /// Per row group, the min and max of `time` when the statistics have them.
    groups: Vec<Option<(i64, i64)>>,
    time_idx: Option<usize>,
    pub kv: HashMap<String, String>,
    /// The file version this was read from.
    pub stamp: FileStamp,
    /// CRC-32 of the footer bytes, as [`checksums::Record::footer`] records it.
    pub footer_crc: u32,
}

impl FileInfo {
    /// What a decoded footer says, for the file version `stamp`.
    pub fn new(meta: ArrowReaderMetadata, stamp: FileStamp, footer_crc: u32) -> FileInfo {
        let time_idx = meta
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts() == [TIME] || c.path().parts() == ["timestamp"]);
        let groups = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| {
                let stats = rg.column(time_idx?).statistics()?;
                match stats {
                    Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
                    _ => None,
                }
            })
            .collect();
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
                    .collect()
            })
            .unwrap_or_default();
        FileInfo {
            meta,
            groups,
            time_idx,
            kv,
            stamp,
            footer_crc,
        }
    }

    /// The reader metadata, for building a reader of the same file.
    pub fn reader_metadata(&self) -> &ArrowReaderMetadata {
        &self.meta
    }

    /// The row groups that may hold times in `[lo, hi)` and, where the page index allows,
    /// the rows of their pages that may: what a read of that range decodes. None if no row
    /// group can hold such a time.
    pub fn plan(&self, lo: i64, hi: i64) -> Option<(Vec<usize>, Option<RowSelection>)> {
        let groups: Vec<usize> = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.is_none_or(|(a, b)| b >= lo && a < hi))
            .map(|(i, _)| i)
            .collect();
        if groups.is_empty() {
            return None;
        }
        let selection = page_selection(self, &groups, lo, hi);
        Some((groups, selection))
    }

    pub fn min_max(&self) -> Option<(i64, i64)> {
        let mut out: Option<(i64, i64)> = None;
        for g in &self.groups {
            let (a, b) = (*g)?;
            out = Some(out.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        out
    }
}

type InfoCache = Mutex<HashMap<PathBuf, (FileStamp, Arc<FileInfo>)>>;

fn info_cache() -> &'static InfoCache {
    static CACHE: OnceLock<InfoCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// A file's footer, from the cache after one `stat` when the file is unchanged (no open).
/// `Ok(None)` if the file no longer exists.
pub fn info(path: &Path) -> Result<Option<Arc<FileInfo>>> {
    let st = match std::fs::metadata(path) {
        Ok(m) => FileStamp::of(&m),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::io(path, e).into()),
    };
    if let Ok(cache) = info_cache().lock()
        && let Some((s, info)) = cache.get(path)
        && *s == st
    {
        return Ok(Some(info.clone()));
    }
    Ok(open(path)?.map(|(_, info)| info))
}

/// An open file and its footer. `Ok(None)` if the file no longer exists (a concurrent
/// writer replaced or removed it; the caller re-lists).
pub fn open(path: &Path) -> Result<Option<(File, Arc<FileInfo>)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::io(path, e).into()),
    };
    let st = FileStamp::of(&file.metadata().map_err(|e| FsError::io(path, e))?);
    if let Ok(cache) = info_cache().lock()
        && let Some((s, info)) = cache.get(path)
        && *s == st
    {
        return Ok(Some((file, info.clone())));
    }
    let footer_crc = read_footer(&file, st.size())
        .map_err(|e| FsError::io(path, e))?
        .map_or(0, |f| checksums::footer_crc(&f));
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let meta =
        ArrowReaderMetadata::load(&file, options).map_err(|e| OhlcvError::corrupted(path, e))?;
    let info = Arc::new(FileInfo::new(meta, st, footer_crc));
    if let Ok(mut cache) = info_cache().lock() {
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(path.to_owned(), (st, info.clone()));
    }
    Ok(Some((file, info)))
}

/// Read `len` bytes at `offset` of a file shared with other readers (no seek position).
fn read_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, offset)?;
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut buf)?;
    }
    Ok(buf)
}

/// The footer (metadata, its length, `PAR1`) of a file `size` bytes long; None if the file
/// does not end like a Parquet file.
fn read_footer(file: &File, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    if size < 12 {
        return Ok(None);
    }
    let tail = read_at(file, size - 8, 8)?;
    if &tail[4..] != b"PAR1" {
        return Ok(None);
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 8 > size {
        return Ok(None);
    }
    read_at(file, size - 8 - len, (len + 8) as usize).map(Some)
}

/// All bytes of an open file, as long as its stamp says.
pub fn read_whole(file: &File, info: &FileInfo) -> std::io::Result<Vec<u8>> {
    read_at(file, 0, info.stamp.size() as usize)
}

/// Normalised rows of the file with `lo <= time < hi`, sorted and unique on time.
/// `Ok(None)` if the file vanished.
pub fn read(path: &Path, lo: i64, hi: i64) -> Result<Option<Vec<RecordBatch>>> {
    read_checked(path, lo, hi, |_, _| Ok(()))
}

/// [`read`], after `check` has accepted the open file (the version that is then decoded).
pub fn read_checked(
    path: &Path,
    lo: i64,
    hi: i64,
    check: impl FnOnce(&File, &FileInfo) -> Result<()>,
) -> Result<Option<Vec<RecordBatch>>> {
    let Some((file, info)) = open(path)? else {
        return Ok(None);
    };
    check(&file, &info)?;
    let Some((groups, selection)) = info.plan(lo, hi) else {
        return Ok(Some(Vec::new()));
    };
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, info.meta.clone())
        .with_row_groups(groups)
        .with_batch_size(64 * 1024);
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let reader = builder
        .build()
        .map_err(|e| OhlcvError::corrupted(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        out.push(batch.map_err(|e| OhlcvError::corrupted(path, e))?);
    }
    finish(out, path, lo, hi).map(Some)
}

/// Decoded batches of one file as rows with `lo <= time < hi`, normalised, sorted and
/// unique on time.
pub fn finish(
    batches: Vec<RecordBatch>,
    path: &Path,
    lo: i64,
    hi: i64,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let batch = frame::normalize(&batch, false).map_err(|e| OhlcvError::corrupted(path, e))?;
        out.push(batch);
    }
    let sorted = out.iter().all(frame::is_strictly_sorted)
        && out.windows(2).all(|w| {
            let a = frame::times(&w[0]);
            a.is_empty()
                || frame::times(&w[1]).is_empty()
                || a.value(a.len() - 1) < frame::times(&w[1]).value(0)
        });
    if !sorted {
        // A file we did not write may be unsorted or hold duplicates.
        out = frame::merge(out.into_iter().map(|b| (0, b)).collect())
            .map_err(|e| OhlcvError::corrupted(path, e))?;
    }
    Ok(out
        .iter()
        .map(|b| frame::slice_sorted(b, lo, hi))
        .filter(|b| b.num_rows() > 0)
        .collect())
}

/// The rows of the chosen row groups on pages whose `time` range overlaps `[lo, hi)`, when
/// the page index allows narrowing (None: read the row groups whole).
fn page_selection(info: &FileInfo, groups: &[usize], lo: i64, hi: i64) -> Option<RowSelection> {
    let time_idx = info.time_idx?;
    let meta = info.meta.metadata();
    let index = meta.page_index()?;
    let mut ranges = Vec::new();
    let mut offset = 0usize;
    let mut narrowed = false;
    for &rg in groups {
        let rows = usize::try_from(meta.row_group(rg).num_rows()).ok()?;
        let pages = match (
            index.column_index(rg, time_idx),
            index.offset_index(rg, time_idx),
        ) {
            (Some(ColumnIndexMetaData::INT64(ci)), Some(oi)) => Some((ci, oi.page_locations())),
            _ => None,
        };
        let Some((ci, locations)) = pages else {
            ranges.push(offset..offset + rows);
            offset += rows;
            continue;
        };
        for (p, loc) in locations.iter().enumerate() {
            let start = usize::try_from(loc.first_row_index).ok()?;
            let end = match locations.get(p + 1) {
                Some(next) => usize::try_from(next.first_row_index).ok()?,
                None => rows,
            };
            let keep = match (ci.min_value(p), ci.max_value(p)) {
                (Some(&min), Some(&max)) => max >= lo && min < hi,
                _ => true,
            };
            if keep {
                ranges.push(offset + start..offset + end);
            } else {
                narrowed = true;
            }
        }
        offset += rows;
    }
    narrowed.then(|| RowSelection::from_consecutive_ranges(ranges.into_iter(), offset))
}

/// The codec files are written with unless told otherwise: zstd at level 1, small files that
/// are quick to write and decode.
pub fn default_codec() -> Compression {
    Compression::ZSTD(ZstdLevel::default())
}

/// A Parquet codec by name (`zstd`, `lz4`, `snappy`, `gzip`, `none`) and optional level
/// (zstd 1-22, gzip 0-10; the others take none).
pub fn codec(name: &str, level: Option<i32>) -> Result<Compression> {
    let bad = |what: String| OhlcvError::InvalidArgument(what);
    let no_level = |c: Compression| match level {
        None => Ok(c),
        Some(l) => Err(bad(format!("compression {name:?} takes no level, got {l}"))),
    };
    match name {
        "zstd" => match level {
            None => Ok(default_codec()),
            Some(l) => ZstdLevel::try_new(l)
                .map(Compression::ZSTD)
                .map_err(|_| bad(format!("zstd levels are 1 to 22, got {l}"))),
        },
        "gzip" => match level {
            None => Ok(Compression::GZIP(GzipLevel::default())),
            Some(l) => u32::try_from(l)
                .ok()
                .and_then(|l| GzipLevel::try_new(l).ok())
                .map(Compression::GZIP)
                .ok_or_else(|| bad(format!("gzip levels are 0 to 10, got {l}"))),
        },
        "lz4" => no_level(Compression::LZ4_RAW),
        "snappy" => no_level(Compression::SNAPPY),
        "none" => no_level(Compression::UNCOMPRESSED),
        other => Err(bad(format!(
            "compression must be one of zstd, lz4, snappy, gzip, none; got {other:?}"
        ))),
    }
}

fn properties(kv: Vec<(String, String)>, codec: Compression) -> WriterProperties {
    let time = ColumnPath::from(TIME);
    WriterProperties::builder()
        .set_compression(codec)
        .set_dictionary_enabled(false)
        .set_column_encoding(time.clone(), Encoding::DELTA_BINARY_PACKED)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_statistics_enabled(time.clone(), EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(
            kv.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect(),
        ))
        .build()
}

/// An I/O error from the Parquet writer, keeping the OS error (ENOSPC, EACCES) it wraps.
fn into_io(err: parquet::errors::ParquetError) -> std::io::Error {
    match err {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => *io,
                Err(other) => std::io::Error::other(other),
            }
        }
        other => std::io::Error::other(other),
    }
}

/// Write sorted, unique, unified batches as `path`, atomically. `before_rename` gets the
/// bytes written, before they replace the target.
pub fn write(
    path: &Path,
    batches: &[RecordBatch],
    kv: Vec<(String, String)>,
    durable: bool,
    codec: Compression,
    before_rename: impl FnOnce(&[u8]) -> Result<()>,
) -> Result<()> {
    let bytes = encode(batches, kv, codec).map_err(|e| FsError::io(path, e))?;
    fsio::atomic_write(path, durable, |file| {
        file.write_all(&bytes)?;
        before_rename(&bytes).map_err(|e| match e {
            OhlcvError::Fs(FsError::Io { source, .. }) => source,
            other => std::io::Error::other(other),
        })
    })?;
    Ok(())
}

/// Sorted, unique, unified batches as the bytes of a Parquet file.
pub fn encode(
    batches: &[RecordBatch],
    kv: Vec<(String, String)>,
    codec: Compression,
) -> std::io::Result<Vec<u8>> {
    let schema = batches
        .first()
        .map_or_else(frame::base_schema, |b| b.schema());
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, schema, Some(properties(kv, codec))).map_err(into_io)?;
    for b in batches {
        writer.write(b).map_err(into_io)?;
    }
    writer.close().map_err(into_io)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_a_range_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2024.parquet");
        let rows: Vec<[f64; 6]> = (0..10_000)
            .map(|i| [(i * 60_000) as f64, 1.0, 2.0, 0.5, 1.5, 10.0])
            .collect();
        write(
            &path,
            &[frame::from_rows(&rows)],
            vec![("k".into(), "v".into())],
            false,
            default_codec(),
            |_| Ok(()),
        )
        .unwrap();
        let got = read(&path, 60_000 * 5000, 60_000 * 5100).unwrap().unwrap();
        let n: usize = got.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 100);
        assert_eq!(frame::times(&got[0]).value(0), 60_000 * 5000);
        let (_, info) = open(&path).unwrap().unwrap();
        assert_eq!(info.kv.get("k").map(String::as_str), Some("v"));
        assert_eq!(info.min_max(), Some((0, 60_000 * 9999)));
        // Truncate: a clear corruption error, not a panic.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            read(&path, 0, i64::MAX),
            Err(OhlcvError::Corrupted { .. })
        ));
        assert!(
            read(&dir.path().join("gone.parquet"), 0, 1)
                .unwrap()
                .is_none()
        );
    }
}
