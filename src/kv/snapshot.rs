//! The index snapshot, `cache.NNNNNNNN.idx`: the index of one generation's log as it stood
//! at an offset (`covered`), so that a new process reads only the log after that offset.
//!
//! File: `MAGIC | frame(head) | frame(body)`, frames as in the log (length, CRC-32).
//! * head: generation, `covered`, the CRC-32 of the log's last 4 KiB before `covered` (the
//!   snapshot is used only if the log still holds those bytes), counters, settings, and a
//!   table of buckets (end offset in the body, rows, largest rowid, earliest expiry).
//! * body: each bucket's rows: every field but the value, and where the value is in the log.
//!
//! A row's bucket is `Val::stable_hash(key, raw) & (buckets - 1)`, so a process opening the
//! snapshot parses one bucket (a few rows) to answer a lookup, and everything only when an
//! operation needs every row. Values are not in the snapshot: they are read from the log, and
//! their record's checksum is verified on that read.
//!
//! The snapshot is derived data. It is written by atomic rename, under the writer's lock,
//! by compaction and whenever the log has grown enough past `covered`. A missing, damaged or
//! mismatched snapshot is ignored: the log is replayed from the start, as without one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::index::{Index, Row};
use super::record::{self, Next, Reader, Short};
use super::value::Val;

const MAGIC: &[u8; 8] = b"CCKVIX01";
/// Rows per bucket aimed at: a lookup in a freshly opened cache parses about this many.
const ROWS_PER_BUCKET: usize = 8;
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

/// A parsed snapshot: the log offset it covers, the checksum that ties it to the log, and
/// its rows, not parsed yet.
pub struct Snapshot {
    pub covered: u64,
    pub tail_crc: u32,
    pub totals: Totals,
    pub lazy: Lazy,
}

struct Bucket {
    start: usize,
    end: usize,
    rows: usize,
    max_rowid: u64,
    min_expire: Option<f64>,
    loaded: bool,
}

/// The rows of a snapshot not parsed yet.
pub struct Lazy {
    bytes: Vec<u8>,
    buckets: Vec<Bucket>,
    unloaded_rows: usize,
    unloaded_buckets: usize,
    /// Over the unloaded buckets; `None` when it must be worked out again.
    max_rowid: Option<u64>,
    min_expire: Option<Option<f64>>,
}

fn bucket_of(key: &Val, raw: bool, buckets: usize) -> usize {
    (key.stable_hash(raw) & (buckets as u64 - 1)) as usize
}

impl Lazy {
    pub fn unloaded_rows(&self) -> usize {
        self.unloaded_rows
    }

    pub fn is_done(&self) -> bool {
        self.unloaded_buckets == 0
    }

    /// Parse the bucket that holds a key; empty if it was parsed before.
    pub fn take_bucket_of(&mut self, key: &Val, raw: bool) -> Result<Vec<Row>, Short> {
        let b = bucket_of(key, raw, self.buckets.len());
        self.take(b)
    }

    pub fn take_all(mut self) -> Result<Vec<Row>, Short> {
        let mut rows = Vec::with_capacity(self.unloaded_rows);
        for b in 0..self.buckets.len() {
            rows.extend(self.take(b)?);
        }
        Ok(rows)
    }

    fn take(&mut self, b: usize) -> Result<Vec<Row>, Short> {
        let bucket = &mut self.buckets[b];
        if bucket.loaded {
            return Ok(Vec::new());
        }
        let mut r = Reader::new(&self.bytes[bucket.start..bucket.end]);
        let mut rows = Vec::with_capacity(bucket.rows);
        for _ in 0..bucket.rows {
            rows.push(decode_row(&mut r)?);
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
        Ok(rows)
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

    /// The earliest expiry among rows not parsed yet.
    pub fn min_expire(&mut self) -> Option<f64> {
        *self.min_expire.get_or_insert_with(|| {
            self.buckets
                .iter()
                .filter(|b| !b.loaded)
                .filter_map(|b| b.min_expire)
                .min_by(f64::total_cmp)
        })
    }
}

/// Encode the snapshot of a complete index, covering the log up to `covered`.
pub fn encode(index: &Index, generation: u64, covered: u64, tail_crc: u32) -> Vec<u8> {
    let buckets = (index.rows.len() / ROWS_PER_BUCKET)
        .max(1)
        .next_power_of_two();
    let mut order: Vec<(usize, &Row)> = index
        .rows
        .iter()
        .map(|((key, raw), row)| (bucket_of(key, *raw, buckets), row))
        .collect();
    order.sort_unstable_by_key(|(b, row)| (*b, row.rowid));

    let mut body = Vec::with_capacity(order.len() * 96);
    let mut table = Vec::with_capacity(buckets * 32);
    let mut rows = order.into_iter().peekable();
    for b in 0..buckets {
        let (mut n, mut max_rowid, mut min_expire) = (0u64, 0u64, f64::NAN);
        while let Some((_, row)) = rows.next_if(|(rb, _)| *rb == b) {
            encode_row(row, &mut body);
            n += 1;
            max_rowid = max_rowid.max(row.rowid);
            if let Some(e) = row.expire_time
                && (min_expire.is_nan() || e < min_expire)
            {
                min_expire = e;
            }
        }
        record::put_u64(&mut table, body.len() as u64);
        record::put_u64(&mut table, n);
        record::put_u64(&mut table, max_rowid);
        record::put_f64(&mut table, min_expire);
    }

    let mut head = Vec::with_capacity(128 + table.len());
    record::put_u64(&mut head, generation);
    record::put_u64(&mut head, covered);
    record::put_u64(&mut head, u64::from(tail_crc));
    record::put_i64(&mut head, index.size);
    record::put_i64(&mut head, index.hits);
    record::put_i64(&mut head, index.misses);
    record::put_u64(&mut head, index.live_bytes);
    record::put_u64(&mut head, index.settings.len() as u64);
    for (name, value) in &index.settings {
        Val::Text(name.clone()).encode(&mut head);
        value.encode(&mut head);
    }
    record::put_u64(&mut head, buckets as u64);
    head.extend_from_slice(&table);

    let mut out = Vec::with_capacity(MAGIC.len() + 2 * record::HEADER + head.len() + body.len());
    out.extend_from_slice(MAGIC);
    record::frame(&head, &mut out);
    record::frame(&body, &mut out);
    out
}

/// Parse a snapshot file's bytes; `None` unless it is whole, intact and of `generation`.
pub fn parse(bytes: Vec<u8>, generation: u64) -> Option<Snapshot> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let Next::Record(head) = record::next(rest) else {
        return None;
    };
    let body_frame = MAGIC.len() + record::HEADER + head.len();
    let Next::Record(body) = record::next(&bytes[body_frame..]) else {
        return None;
    };
    let (covered, tail_crc, totals, buckets) =
        parse_head(head, generation, body_frame + record::HEADER, body.len()).ok()?;
    let unloaded_rows = buckets.iter().map(|b| b.rows).sum();
    let unloaded_buckets = buckets.len();
    Some(Snapshot {
        covered,
        tail_crc,
        totals,
        lazy: Lazy {
            bytes,
            buckets,
            unloaded_rows,
            unloaded_buckets,
            max_rowid: None,
            min_expire: None,
        },
    })
}

type Head = (u64, u32, Totals, Vec<Bucket>);

/// The head's fields, with bucket bounds checked against the body (at `body_start` in the
/// file, `body_len` long).
fn parse_head(
    head: &[u8],
    generation: u64,
    body_start: usize,
    body_len: usize,
) -> Result<Head, Short> {
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
    if n == 0 || !n.is_power_of_two() || n > head.len() / 32 {
        return Err(Short);
    }
    let mut buckets = Vec::with_capacity(n);
    let mut start = 0usize;
    for _ in 0..n {
        let end = r.u64()? as usize;
        let rows = r.u64()? as usize;
        let max_rowid = r.u64()?;
        let min_expire = r.f64()?;
        if end < start || end > body_len || rows > end - start {
            return Err(Short);
        }
        buckets.push(Bucket {
            start: body_start + start,
            end: body_start + end,
            rows,
            max_rowid,
            min_expire: (!min_expire.is_nan()).then_some(min_expire),
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

fn encode_row(row: &Row, out: &mut Vec<u8>) {
    record::put_u64(out, row.rowid);
    row.key.encode(out);
    record::put_u8(out, row.raw as u8);
    record::put_f64(out, row.store_time);
    record::put_f64(out, row.expire_time.unwrap_or(f64::NAN));
    record::put_f64(out, row.access_time);
    record::put_i64(out, row.access_count);
    row.tag.encode(out);
    record::put_i64(out, row.size);
    record::put_u8(out, row.mode);
    match &row.filename {
        Some(f) => Val::Text(f.clone()).encode(out),
        None => Val::Null.encode(out),
    }
    record::put_u64(out, row.record);
    record::put_u64(out, row.record_len);
    record::put_u64(out, u64::from(row.value_at));
    record::put_u64(out, u64::from(row.value_len));
}

fn decode_row(r: &mut Reader<'_>) -> Result<Row, Short> {
    Ok(Row {
        rowid: r.u64()?,
        key: Val::decode(r)?,
        raw: r.u8()? != 0,
        store_time: r.f64()?,
        expire_time: {
            let e = r.f64()?;
            (!e.is_nan()).then_some(e)
        },
        access_time: r.f64()?,
        access_count: r.i64()?,
        tag: Val::decode(r)?,
        size: r.i64()?,
        mode: r.u8()?,
        filename: match Val::decode(r)? {
            Val::Text(s) => Some(s),
            _ => None,
        },
        record: r.u64()?,
        record_len: r.u64()?,
        value_at: u32::try_from(r.u64()?).map_err(|_| Short)?,
        value_len: u32::try_from(r.u64()?).map_err(|_| Short)?,
        inline: None,
    })
}
