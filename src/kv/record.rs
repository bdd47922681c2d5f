//! The segment log's record format.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload`. A reader stops at the first
//! record that is incomplete (a writer is mid-append, or died mid-append) or whose checksum
//! does not match; everything before it is valid.

use super::value::Val;

pub const OP_PUT: u8 = 1;
pub const OP_DEL: u8 = 2;
pub const OP_CLEAR: u8 = 3;
pub const OP_ACCESS: u8 = 4;
pub const OP_STATS: u8 = 5;
pub const OP_SETTING: u8 = 6;
/// The log continues in generation N (written last to a log that compaction replaced).
pub const OP_GEN: u8 = 7;
pub const OP_STATS_SET: u8 = 8;
pub const OP_TOUCH: u8 = 9;
/// Several records applied together or not at all: `OP_BATCH` then framed records.
pub const OP_BATCH: u8 = 10;

pub const HEADER: usize = 8;
/// Larger records are refused when reading: a corrupted length must not allocate gigabytes.
pub const MAX_RECORD: usize = 1 << 30;

/// Frame a payload.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the next bytes of a log hold.
pub enum Next<'a> {
    Record(&'a [u8]),
    /// Not enough bytes yet: a writer may be appending.
    Incomplete,
    /// Checksum or length is wrong: the log is damaged from here on.
    Corrupt,
}

pub fn next(buf: &[u8]) -> Next<'_> {
    if buf.len() < HEADER {
        return Next::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_RECORD {
        return Next::Corrupt;
    }
    if buf.len() < HEADER + len {
        return Next::Incomplete;
    }
    let payload = &buf[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Next::Corrupt;
    }
    Next::Record(payload)
}

/// A cursor over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

#[derive(Debug)]
pub struct Short;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let s = self.buf.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn i64(&mut self) -> Result<i64, Short> {
        Ok(self.u64()? as i64)
    }

    pub fn f64(&mut self) -> Result<f64, Short> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// An optional time, written by `put_opt_f64`.
    pub fn opt_f64(&mut self) -> Result<Option<f64>, Short> {
        let f = self.f64()?;
        Ok((!f.is_nan()).then_some(f))
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// An optional time (an expiry): `None` is written as NaN, which no time is.
pub fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    put_f64(out, v.unwrap_or(f64::NAN));
}

pub fn put_val(out: &mut Vec<u8>, v: &Val) {
    v.encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut buf = Vec::new();
        frame(b"hello", &mut buf);
        frame(b"world", &mut buf);
        let Next::Record(p) = next(&buf) else {
            panic!()
        };
        assert_eq!(p, b"hello");
        assert!(matches!(
            next(&buf[..buf.len() - 1][13..]),
            Next::Incomplete
        ));
        let mut bad = buf.clone();
        bad[10] ^= 1;
        assert!(matches!(next(&bad), Next::Corrupt));
    }
}
