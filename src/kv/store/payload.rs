//! The payloads of log records: the encoders the writes use, and `apply`, which replays a
//! record into the index. They sit together because the log format is the pair of them: a
//! field changed on one side must change on the other, and caches already on disk must keep
//! reading.

use super::{INLINE_BUDGET, INLINE_MAX, NewRow};
use crate::kv::index::{Index, Row};
use crate::kv::record::{self, Next, Reader};
use crate::kv::value::Val;

pub(super) fn put_payload(rowid: u64, r: &NewRow) -> Vec<u8> {
    let mut p = Vec::with_capacity(96 + r.value.heap_len() + r.f.key.heap_len());
    record::put_u8(&mut p, record::OP_PUT);
    record::put_u64(&mut p, rowid);
    r.f.encode(&mut p);
    r.value.encode(&mut p);
    p
}

pub(super) fn del_payload(key: &Val, raw: bool) -> Vec<u8> {
    let mut p = vec![record::OP_DEL];
    key.encode(&mut p);
    p.push(raw as u8);
    p
}

pub(super) fn touch_payload(key: &Val, raw: bool, expire_time: Option<f64>) -> Vec<u8> {
    let mut p = vec![record::OP_TOUCH];
    key.encode(&mut p);
    p.push(raw as u8);
    record::put_opt_f64(&mut p, expire_time);
    p
}

pub(super) fn access_payload(key: &Val, raw: bool, access_time: f64, access_count: i64) -> Vec<u8> {
    let mut p = vec![record::OP_ACCESS];
    key.encode(&mut p);
    p.push(raw as u8);
    record::put_f64(&mut p, access_time);
    record::put_i64(&mut p, access_count);
    p
}

pub(super) fn stats_payload(op: u8, hits: i64, misses: i64) -> Vec<u8> {
    let mut p = vec![op];
    record::put_i64(&mut p, hits);
    record::put_i64(&mut p, misses);
    p
}

pub(super) fn setting_payload(name: &str, value: &Val) -> Vec<u8> {
    let mut p = vec![record::OP_SETTING];
    Val::Text(name.to_owned()).encode(&mut p);
    value.encode(&mut p);
    p
}

pub(super) fn generation_payload(generation: u64) -> Vec<u8> {
    let mut p = vec![record::OP_GEN];
    record::put_u64(&mut p, generation);
    p
}

/// Apply one record to the index; returns the next generation for a GEN record.
pub(super) fn apply(
    index: &mut Index,
    payload: &[u8],
    at: u64,
    len: u64,
) -> std::result::Result<Option<u64>, record::Short> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        record::OP_PUT => {
            let mut row = Row::decode(&mut r)?;
            let start = r.pos;
            let n = Val::skip(&mut r)?;
            if n <= INLINE_MAX && index.inline_bytes + n <= INLINE_BUDGET {
                row.inline = Some(Val::decode(&mut Reader::new(&payload[start..start + n]))?);
            }
            row.record = at;
            row.record_len = len;
            row.value_at = (record::HEADER + start) as u32;
            row.value_len = n as u32;
            index.put(row);
        }
        record::OP_DEL => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            index.remove(&(key, raw));
        }
        record::OP_CLEAR => {
            index.clear_rows();
        }
        record::OP_TOUCH => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            let e = r.opt_f64()?;
            index.set_expire(&(key, raw), e);
        }
        record::OP_ACCESS => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            let t = r.f64()?;
            let c = r.i64()?;
            index.set_access(&(key, raw), t, c);
        }
        record::OP_STATS => {
            index.hits += r.i64()?;
            index.misses += r.i64()?;
        }
        record::OP_STATS_SET => {
            index.hits = r.i64()?;
            index.misses = r.i64()?;
        }
        record::OP_SETTING => {
            let Val::Text(name) = Val::decode(&mut r)? else {
                return Err(record::Short);
            };
            let value = Val::decode(&mut r)?;
            index.settings.insert(name, value);
        }
        record::OP_GEN => return Ok(Some(r.u64()?)),
        record::OP_BATCH => {
            // Inner records sit at `at + HEADER + 1 + offset within the batch`.
            let inner = &payload[1..];
            let mut off = 0usize;
            let mut next = None;
            while off < inner.len() {
                let Next::Record(p) = record::next(&inner[off..]) else {
                    return Err(record::Short);
                };
                let rec_at = at + record::HEADER as u64 + 1 + off as u64;
                let rec_len = (record::HEADER + p.len()) as u64;
                if let Some(g) = apply(index, p, rec_at, rec_len)? {
                    next = Some(g);
                }
                off += record::HEADER + p.len();
            }
            return Ok(next);
        }
        _ => return Err(record::Short),
    }
    Ok(None)
}
