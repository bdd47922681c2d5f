//! The index snapshot, `cache.NNNNNNNN.idx`: the index of one generation's log as it stood
//! at an offset (`covered`), so that a new process reads only the log after that offset.
//!
//! File: `MAGIC | frame(head) | body`, the head framed as log records are (length, CRC-32).
//! * head: generation, `covered`, the CRC-32 of the log's last 4 KiB before `covered` (the
//!   snapshot is used only if the log still holds those bytes), counters, settings, and a
//!   table of buckets (end offset in the body, rows, largest rowid, earliest expiry, CRC-32).
//! * body: each bucket's rows: every field but the value, and where the value is in the log.
//!
//! A row's bucket is `Val::stable_hash(key, raw) & (buckets - 1)`. Opening reads the head
//! only; a lookup reads and parses one bucket (a few rows, one `pread`), and an operation
//! that needs every row reads the rest in one go. Each bucket's checksum is verified when it
//! is read. Values are not in the snapshot: they are read from the log, and their record's
//! checksum is verified on that read.
//!
//! The snapshot is derived data. It is written by atomic rename, under the writer's lock,
//! by compaction and whenever the log has grown enough past `covered`. A missing, damaged or
//! mismatched snapshot is ignored: the log is replayed from the start, as without one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::files::read_at;

use rustc_hash::{FxHashMap, FxHashSet};

use super::index::{Index, KeyId, Row};
use super::record::{self, Next, Reader, Short};
use super::value::Val;

const MAGIC: &[u8; 8] = b"CCKVIX02";
/// Rows per bucket aimed at: a lookup in a freshly opened cache parses about this many.
const ROWS_PER_BUCKET: usize = 16;
/// Bytes of a bucket's entry in the head's table.
const TABLE_ENTRY: usize = 40;
/// Bytes read at first when opening: in most snapshots, the whole head.
const FIRST_READ: usize = 64 << 10;
/// Bytes of log before `covered` whose checksum ties a snapshot to its log.
pub const TAIL_CHECK: u64 = 4096;

pub fn idx_name(generation: u64) -> String {
    format!("cache.{generation:08}.idx")
}

/// What the snapshot says of the whole index.
#[derive(Default)]
pub struct Totals {
    pub settings: BTreeMap<String, Val>,
    pub size: i64,
    pub hits: i64,
    pub misses: i64,
    pub live_bytes: u64,
}

/// Changes to a row of an unread bucket.
#[derive(Default)]
struct Patch {
    expire_time: Option<Option<f64>>,
    access: Option<(f64, i64)>,
}

/// Rows read from the snapshot: current ones, and stale ones (written or deleted since).
#[derive(Default)]
pub struct Taken {
    pub rows: Vec<Row>,
    pub stale: Vec<Row>,
}

/// A parsed snapshot: the log offset it covers, the checksum that ties it to the log, and
/// its rows, not parsed yet.
pub struct Snapshot {
    /// The file's size.
    pub len: u64,
    pub covered: u64,
    pub tail_crc: u32,
    pub totals: Totals,
    pub lazy: Lazy,
}

struct Bucket {
    /// Where the bucket's rows are in the file.
    start: u64,
    end: u64,
    rows: usize,
    max_rowid: u64,
    min_expire: Option<f64>,
    crc: u32,
    loaded: bool,
}

/// The rows of a snapshot not read yet, and the open file to read them from.
pub struct Lazy {
    file: File,
    buckets: Vec<Bucket>,
    /// Keys written or deleted since the snapshot while their bucket was not read, by bucket:
    /// the snapshot's rows for them are stale, dropped when their bucket is read.
    shadowed: FxHashMap<usize, FxHashSet<KeyId>>,
    /// Expiry and access changes since the snapshot to rows whose bucket is unread, by
    /// bucket: applied to the rows when their bucket is read.
    patches: FxHashMap<usize, FxHashMap<KeyId, Patch>>,
    /// The earliest expiry set by a patch.
    patched_min_expire: Option<f64>,
    unloaded_rows: usize,
    unloaded_buckets: usize,
    /// Over the unloaded buckets; `None` when it must be worked out again.
    max_rowid: Option<u64>,
    min_expire: Option<Option<f64>>,
}

fn bucket_of(key: &Val, raw: bool, buckets: usize) -> usize {
    bucket_of_hash(key.stable_hash(raw), buckets)
}

fn bucket_of_hash(hash: u64, buckets: usize) -> usize {
    (hash & (buckets as u64 - 1)) as usize
}

impl Lazy {
    pub fn unloaded_rows(&self) -> usize {
        self.unloaded_rows
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub fn buckets_read(&self) -> usize {
        self.buckets.len() - self.unloaded_buckets
    }

    pub fn is_done(&self) -> bool {
        self.unloaded_buckets == 0
    }

    /// Whether the snapshot's row for a key, if any, is still unread.
    pub fn holds(&self, key: &Val, raw: bool) -> bool {
        !self.buckets[bucket_of(key, raw, self.buckets.len())].loaded
    }

    /// Note that a key whose bucket is unread was written or deleted after the snapshot.
    pub fn shadow(&mut self, id: &KeyId) {
        let b = bucket_of(&id.0, id.1, self.buckets.len());
        if !self.buckets[b].loaded {
            if let Some(p) = self.patches.get_mut(&b) {
                p.remove(id);
            }
            self.shadowed.entry(b).or_default().insert(id.clone());
        }
    }

    /// Change the expiry of the snapshot's row for a key whose bucket is unread.
    pub fn patch_expire(&mut self, id: &KeyId, expire_time: Option<f64>) {
        if let Some(e) = expire_time
            && self.patched_min_expire.is_none_or(|m| e < m)
        {
            self.patched_min_expire = Some(e);
        }
        self.patch(id).expire_time = Some(expire_time);
    }

    /// Change the access fields of the snapshot's row for a key whose bucket is unread.
    pub fn patch_access(&mut self, id: &KeyId, access_time: f64, access_count: i64) {
        self.patch(id).access = Some((access_time, access_count));
    }

    fn patch(&mut self, id: &KeyId) -> &mut Patch {
        let b = bucket_of(&id.0, id.1, self.buckets.len());
        self.patches
            .entry(b)
            .or_default()
            .entry(id.clone())
            .or_default()
    }

    /// Whether rows were written or deleted after the snapshot whose buckets are unread.
    pub fn has_shadows(&self) -> bool {
        !self.shadowed.is_empty()
    }

    /// Read the bucket that holds a key; nothing if it was read before.
    pub fn take_bucket_of(&mut self, key: &Val, raw: bool) -> Result<Taken, Short> {
        let b = bucket_of(key, raw, self.buckets.len());
        let mut taken = Taken::default();
        self.take(b, None, &mut taken)?;
        Ok(taken)
    }

    /// Read the buckets of every key written or deleted since the snapshot.
    pub fn take_shadowed(&mut self) -> Result<Taken, Short> {
        let mut taken = Taken::default();
        let buckets: Vec<usize> = self.shadowed.keys().copied().collect();
        for b in buckets {
            self.take(b, None, &mut taken)?;
        }
        Ok(taken)
    }

    /// Every row not read yet (the body is read in one go).
    pub fn take_all(mut self) -> Result<Taken, Short> {
        let mut taken = Taken::default();
        let (Some(first), Some(last)) = (self.buckets.first(), self.buckets.last()) else {
            return Ok(taken);
        };
        let base = first.start;
        let mut body = vec![0u8; (last.end - base) as usize];
        read_at(&self.file, &mut body, base).map_err(|_| Short)?;
        taken.rows.reserve(self.unloaded_rows);
        for b in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            let bytes = &body[(bucket.start - base) as usize..(bucket.end - base) as usize];
            self.take(b, Some(bytes), &mut taken)?;
        }
        Ok(taken)
    }

    /// Read bucket `b` (from `bytes`, if already read) into `taken`, unless read before.
    fn take(&mut self, b: usize, bytes: Option<&[u8]>, taken: &mut Taken) -> Result<(), Short> {
        let bucket = &mut self.buckets[b];
        if bucket.loaded {
            return Ok(());
        }
        let read;
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                let mut buf = vec![0u8; (bucket.end - bucket.start) as usize];
                read_at(&self.file, &mut buf, bucket.start).map_err(|_| Short)?;
                read = buf;
                &read
            }
        };
        let shadowed = self.shadowed.remove(&b).unwrap_or_default();
        let mut patches = self.patches.remove(&b).unwrap_or_default();
        for mut row in decode_bucket(bucket, bytes)? {
            if !patches.is_empty()
                && let Some(p) = patches.remove(&(row.f.key.clone(), row.f.raw))
            {
                if let Some(e) = p.expire_time {
                    row.f.expire_time = e;
                }
                if let Some((t, c)) = p.access {
                    row.f.access_time = t;
                    row.f.access_count = c;
                }
            }
            if !shadowed.is_empty() && shadowed.contains(&(row.f.key.clone(), row.f.raw)) {
                taken.stale.push(row);
            } else {
                taken.rows.push(row);
            }
        }
        bucket.loaded = true;
        self.unloaded_rows -= bucket.rows;
        self.unloaded_buckets -= 1;
        if self.max_rowid == Some(bucket.max_rowid) {
            self.max_rowid = None;
        }
        if self
            .min_expire
            .is_some_and(|m| m.is_some() && m == bucket.min_expire)
        {
            self.min_expire = None;
        }
        Ok(())
    }

    /// The largest rowid among rows not parsed yet (0 if none).
    pub fn max_rowid(&mut self) -> u64 {
        *self.max_rowid.get_or_insert_with(|| {
            self.buckets
                .iter()
                .filter(|b| !b.loaded)
                .map(|b| b.max_rowid)
                .max()
                .unwrap_or(0)
        })
    }

    /// The earliest expiry among rows not read yet (or earlier).
    pub fn min_expire(&mut self) -> Option<f64> {
        let in_buckets = *self.min_expire.get_or_insert_with(|| {
            self.buckets
                .iter()
                .filter(|b| !b.loaded)
                .filter_map(|b| b.min_expire)
                .min_by(f64::total_cmp)
        });
        match (in_buckets, self.patched_min_expire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Encode the snapshot of an index (every row read first), covering the log up to `covered`:
/// returns the file's first part and leaves the rest in `body` (a buffer kept from one
/// snapshot to the next: freeing and faulting in megabytes each time costs more than the
/// encoding).
pub fn encode(
    index: &mut Index,
    generation: u64,
    covered: u64,
    tail_crc: u32,
    body: &mut Vec<u8>,
) -> Vec<u8> {
    let index = index.complete();
    let buckets = (index.rows.len() / ROWS_PER_BUCKET)
        .max(1)
        .next_power_of_two();
    // Rows grouped by bucket with a counting sort: no comparisons, one pass each way.
    let mut first = vec![0usize; buckets + 1];
    for row in index.rows.values() {
        first[bucket_of_hash(row.hash, buckets) + 1] += 1;
    }
    for b in 0..buckets {
        first[b + 1] += first[b];
    }
    let mut next = first.clone();
    let mut order: Vec<Option<&Row>> = vec![None; index.rows.len()];
    for row in index.rows.values() {
        let b = bucket_of_hash(row.hash, buckets);
        order[next[b]] = Some(row);
        next[b] += 1;
    }

    body.clear();
    let mut table = Vec::with_capacity(buckets * TABLE_ENTRY);
    for b in 0..buckets {
        let (mut n, mut max_rowid, mut min_expire) = (0u64, 0u64, f64::NAN);
        let start = body.len();
        for row in order[first[b]..first[b + 1]].iter().flatten() {
            encode_row(row, body);
            n += 1;
            max_rowid = max_rowid.max(row.rowid);
            if let Some(e) = row.f.expire_time
                && (min_expire.is_nan() || e < min_expire)
            {
                min_expire = e;
            }
        }
        record::put_u64(&mut table, body.len() as u64);
        record::put_u64(&mut table, n);
        record::put_u64(&mut table, max_rowid);
        record::put_f64(&mut table, min_expire);
        record::put_u64(&mut table, u64::from(crc32fast::hash(&body[start..])));
    }

    let mut head = Vec::with_capacity(128 + table.len());
    record::put_u64(&mut head, generation);
    record::put_u64(&mut head, covered);
    record::put_u64(&mut head, u64::from(tail_crc));
    record::put_i64(&mut head, index.size());
    record::put_i64(&mut head, index.hits);
    record::put_i64(&mut head, index.misses);
    record::put_u64(&mut head, index.live_bytes());
    record::put_u64(&mut head, index.settings.len() as u64);
    for (name, value) in &index.settings {
        Val::Text(name.clone()).encode(&mut head);
        value.encode(&mut head);
    }
    record::put_u64(&mut head, buckets as u64);
    head.extend_from_slice(&table);

    let mut start = Vec::with_capacity(MAGIC.len() + record::HEADER + head.len());
    start.extend_from_slice(MAGIC);
    record::frame(&head, &mut start);
    start
}

/// Open a snapshot and read its head; `None` unless the head is whole, intact and of
/// `generation` (buckets are checked as they are read).
pub fn open(path: &Path, generation: u64) -> Option<Snapshot> {
    let mut file = File::open(path).ok()?;
    let mut first = Vec::with_capacity(FIRST_READ);
    (&mut file)
        .take(FIRST_READ as u64)
        .read_to_end(&mut first)
        .ok()?;
    let rest = first.strip_prefix(MAGIC)?;
    let head_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if head_len > record::MAX_RECORD {
        return None;
    }
    let body_start = MAGIC.len() + record::HEADER + head_len;
    if first.len() < body_start {
        let mut more = vec![0u8; body_start - first.len()];
        read_at(&file, &mut more, first.len() as u64).ok()?;
        first.extend_from_slice(&more);
    }
    let Next::Record(head) = record::next(&first[MAGIC.len()..]) else {
        return None;
    };
    let file_len = file.metadata().ok()?.len();
    let (covered, tail_crc, totals, buckets) =
        parse_head(head, generation, body_start as u64, file_len).ok()?;
    let unloaded_rows = buckets.iter().map(|b| b.rows).sum();
    let unloaded_buckets = buckets.len();
    Some(Snapshot {
        len: file_len,
        covered,
        tail_crc,
        totals,
        lazy: Lazy {
            file,
            buckets,
            shadowed: FxHashMap::default(),
            patches: FxHashMap::default(),
            patched_min_expire: None,
            unloaded_rows,
            unloaded_buckets,
            max_rowid: None,
            min_expire: None,
        },
    })
}

type Head = (u64, u32, Totals, Vec<Bucket>);

/// The head's fields, with bucket bounds checked against the file (the body starts at
/// `body_start`).
fn parse_head(head: &[u8], generation: u64, body_start: u64, file_len: u64) -> Result<Head, Short> {
    let mut r = Reader::new(head);
    if r.u64()? != generation {
        return Err(Short);
    }
    let covered = r.u64()?;
    let tail_crc = r.u64()? as u32;
    let mut totals = Totals {
        size: r.i64()?,
        hits: r.i64()?,
        misses: r.i64()?,
        live_bytes: r.u64()?,
        ..Totals::default()
    };
    for _ in 0..r.u64()? {
        let Val::Text(name) = Val::decode(&mut r)? else {
            return Err(Short);
        };
        totals.settings.insert(name, Val::decode(&mut r)?);
    }
    let n = r.u64()? as usize;
    if n == 0 || !n.is_power_of_two() || n > head.len() / TABLE_ENTRY {
        return Err(Short);
    }
    let mut buckets = Vec::with_capacity(n);
    let mut start = body_start;
    for _ in 0..n {
        let end = body_start.checked_add(r.u64()?).ok_or(Short)?;
        let rows = r.u64()? as usize;
        let max_rowid = r.u64()?;
        let min_expire = r.opt_f64()?;
        let crc = r.u64()? as u32;
        if end < start || end > file_len || rows as u64 > end - start {
            return Err(Short);
        }
        buckets.push(Bucket {
            start,
            end,
            rows,
            max_rowid,
            min_expire,
            crc,
            loaded: false,
        });
        start = end;
    }
    Ok((covered, tail_crc, totals, buckets))
}

/// The offset a snapshot file says it covers, from its first bytes, unverified: enough to
/// tell whether another process has written a newer one.
pub fn peek_covered(path: &Path, generation: u64) -> Option<u64> {
    let mut buf = [0u8; MAGIC.len() + record::HEADER + 16];
    File::open(path).ok()?.read_exact(&mut buf).ok()?;
    let mut r = Reader::new(buf.strip_prefix(MAGIC)?);
    r.take(record::HEADER).ok()?;
    (r.u64().ok()? == generation).then(|| r.u64().ok())?
}

/// A bucket's rows from its bytes, which must match its checksum.
fn decode_bucket(bucket: &Bucket, bytes: &[u8]) -> Result<Vec<Row>, Short> {
    if crc32fast::hash(bytes) != bucket.crc {
        return Err(Short);
    }
    let mut r = Reader::new(bytes);
    (0..bucket.rows).map(|_| decode_row(&mut r)).collect()
}

/// A row's rowid and fields as a put record begins (read back by `Row::decode`), then where
/// its value is in the log.
fn encode_row(row: &Row, out: &mut Vec<u8>) {
    record::put_u64(out, row.rowid);
    row.f.encode(out);
    record::put_u64(out, row.record);
    record::put_u64(out, row.record_len);
    record::put_u64(out, u64::from(row.value_at));
    record::put_u64(out, u64::from(row.value_len));
}

fn decode_row(r: &mut Reader<'_>) -> Result<Row, Short> {
    let mut row = Row::decode(r)?;
    row.record = r.u64()?;
    row.record_len = r.u64()?;
    row.value_at = u32::try_from(r.u64()?).map_err(|_| Short)?;
    row.value_len = u32::try_from(r.u64()?).map_err(|_| Short)?;
    Ok(row)
}
