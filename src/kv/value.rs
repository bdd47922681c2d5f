//! Column values as SQLite types them (python-diskcache's keys and values are stored in
//! SQLite columns, and its semantics follow SQLite's comparisons): NULL, INTEGER, REAL, TEXT
//! and BLOB. An INTEGER and a REAL are equal when their numbers are (`1 == 1.0` is one key).

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::record::{Reader, Short};

/// Values above this many bytes are LZ4-compressed in the log when that saves space.
const COMPRESS_MIN: usize = 512;
/// Bytes of a value LZ4 tries first: if it cannot shrink them by a sixteenth, the value is
/// taken for incompressible (random, encrypted, already compressed) and stored as it is,
/// which spares compressing the rest in vain (a third of a microsecond per KiB).
const PROBE: usize = 256;

const NULL: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;
const TEXT_LZ4: u8 = 5;
const BLOB_LZ4: u8 = 6;

#[derive(Clone, Debug)]
pub enum Val {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    pub fn float(f: f64) -> Val {
        // SQLite stores NaN as NULL.
        if f.is_nan() { Val::Null } else { Val::Float(f) }
    }

    /// Bytes this value takes in memory beyond the enum.
    pub fn heap_len(&self) -> usize {
        match self {
            Val::Text(s) => s.len(),
            Val::Blob(b) => b.len(),
            _ => 0,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Val::Null => out.push(NULL),
            Val::Int(i) => {
                out.push(INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Val::Float(f) => {
                out.push(FLOAT);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Val::Text(s) => encode_bytes(out, s.as_bytes(), TEXT, TEXT_LZ4),
            Val::Blob(b) => encode_bytes(out, b, BLOB, BLOB_LZ4),
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Val, Short> {
        Ok(match r.u8()? {
            NULL => Val::Null,
            INT => Val::Int(r.i64()?),
            FLOAT => Val::Float(r.f64()?),
            TEXT => Val::Text(String::from_utf8(bytes(r)?.to_vec()).map_err(|_| Short)?),
            BLOB => Val::Blob(bytes(r)?.to_vec()),
            TEXT_LZ4 => Val::Text(String::from_utf8(unlz4(r)?).map_err(|_| Short)?),
            BLOB_LZ4 => Val::Blob(unlz4(r)?),
            _ => return Err(Short),
        })
    }

    /// Skip an encoded value, returning how many bytes it took.
    pub fn skip(r: &mut Reader<'_>) -> Result<usize, Short> {
        let start = r.pos;
        match r.u8()? {
            NULL => {}
            INT | FLOAT => {
                r.take(8)?;
            }
            TEXT | BLOB => {
                bytes(r)?;
            }
            TEXT_LZ4 | BLOB_LZ4 => {
                r.take(8)?;
                let n = r.u64()? as usize;
                r.take(n)?;
            }
            _ => return Err(Short),
        }
        Ok(r.pos - start)
    }

    /// A hash of the key that is the same in every process, build and platform (snapshot
    /// buckets are chosen by it), equal for equal values (`1` and `1.0` alike).
    pub fn stable_hash(&self, raw: bool) -> u64 {
        // FNV-1a over an explicit little-endian encoding.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            Val::Null => eat(&[0]),
            Val::Int(_) | Val::Float(_) => match (self.as_exact_int(), self) {
                (Some(i), _) => {
                    eat(&[1]);
                    eat(&i.to_le_bytes());
                }
                (None, Val::Float(f)) => {
                    eat(&[2]);
                    eat(&f.to_bits().to_le_bytes());
                }
                (None, _) => eat(&[2]),
            },
            Val::Text(s) => {
                eat(&[3]);
                eat(s.as_bytes());
            }
            Val::Blob(b) => {
                eat(&[4]);
                eat(b);
            }
        }
        eat(&[raw as u8]);
        h
    }

    fn rank(&self) -> u8 {
        match self {
            Val::Null => 0,
            Val::Int(_) | Val::Float(_) => 1,
            Val::Text(_) => 2,
            Val::Blob(_) => 3,
        }
    }

    /// The integer this number equals, if any (for hashing INTEGER and REAL alike).
    fn as_exact_int(&self) -> Option<i64> {
        match *self {
            Val::Int(i) => Some(i),
            Val::Float(f)
                if f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
            {
                Some(f as i64)
            }
            _ => None,
        }
    }
}

fn bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Short> {
    let n = r.u64()? as usize;
    r.take(n)
}

fn unlz4(r: &mut Reader<'_>) -> Result<Vec<u8>, Short> {
    let raw_len = r.u64()? as usize;
    let n = r.u64()? as usize;
    let comp = r.take(n)?;
    if raw_len > super::record::MAX_RECORD * 4 {
        return Err(Short);
    }
    lz4_flex::block::decompress(comp, raw_len).map_err(|_| Short)
}

fn encode_bytes(out: &mut Vec<u8>, b: &[u8], plain: u8, lz4: u8) {
    if b.len() >= COMPRESS_MIN && lz4_flex::block::compress(&b[..PROBE]).len() <= PROBE - PROBE / 16
    {
        let comp = lz4_flex::block::compress(b);
        if comp.len() + 8 < b.len() {
            out.push(lz4);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(&(comp.len() as u64).to_le_bytes());
            out.extend_from_slice(&comp);
            return;
        }
    }
    out.push(plain);
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn cmp_num(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Float(x), Val::Float(y)) => x.total_cmp(y),
        (Val::Int(x), Val::Float(y)) => cmp_int_float(*x, *y),
        (Val::Float(x), Val::Int(y)) => cmp_int_float(*y, *x).reverse(),
        _ => Ordering::Equal,
    }
}

fn cmp_int_float(i: i64, f: f64) -> Ordering {
    let fi = i as f64;
    match fi.partial_cmp(&f) {
        Some(Ordering::Equal) => {
            // Equal as doubles; compare exactly when f is integral and in range.
            match Val::Float(f).as_exact_int() {
                Some(j) => i.cmp(&j),
                None => Ordering::Equal,
            }
        }
        Some(o) => o,
        None => Ordering::Less,
    }
}

impl Ord for Val {
    /// SQLite's order: NULL < numbers < TEXT < BLOB; text and blobs by bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        match self.rank().cmp(&other.rank()) {
            Ordering::Equal => {}
            o => return o,
        }
        match (self, other) {
            (Val::Text(a), Val::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Val::Blob(a), Val::Blob(b)) => a.cmp(b),
            (Val::Null, Val::Null) => Ordering::Equal,
            (a, b) => cmp_num(a, b),
        }
    }
}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Val {}

impl Hash for Val {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Val::Null => 0u8.hash(state),
            Val::Int(_) | Val::Float(_) => match self.as_exact_int() {
                Some(i) => {
                    1u8.hash(state);
                    i.hash(state);
                }
                None => {
                    2u8.hash(state);
                    if let Val::Float(f) = self {
                        f.to_bits().hash(state);
                    }
                }
            },
            Val::Text(s) => {
                3u8.hash(state);
                s.hash(state);
            }
            Val::Blob(b) => {
                4u8.hash(state);
                b.hash(state);
            }
        }
    }
}

/// Incompressible test bytes (xorshift), the same for the same seed.
#[cfg(test)]
pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn integer_and_real_are_one_key_and_sort_together() {
        let mut s = HashSet::new();
        s.insert(Val::Int(1));
        assert!(s.contains(&Val::Float(1.0)));
        assert!(!s.contains(&Val::Float(1.5)));
        let mut v = [
            Val::Blob(vec![0]),
            Val::Text("a".into()),
            Val::Float(1.5),
            Val::Int(1),
            Val::Null,
            Val::Int(2),
        ];
        v.sort();
        assert!(matches!(v[0], Val::Null));
        assert!(matches!(v[1], Val::Int(1)));
        assert!(matches!(v[2], Val::Float(_)));
        assert!(matches!(v[5], Val::Blob(_)));
    }

    #[test]
    fn encode_round_trip_with_compression() {
        for v in [
            Val::Null,
            Val::Int(-5),
            Val::Float(2.5),
            Val::Text("x".repeat(5000)),
            Val::Blob(vec![7; 10_000]),
            Val::Blob(vec![1, 2]),
        ] {
            let mut buf = Vec::new();
            v.encode(&mut buf);
            let mut r = Reader::new(&buf);
            assert_eq!(Val::decode(&mut r).unwrap(), v);
            let mut r = Reader::new(&buf);
            assert_eq!(Val::skip(&mut r).unwrap(), buf.len());
        }
        let mut buf = Vec::new();
        Val::Blob(vec![7; 10_000]).encode(&mut buf);
        assert!(buf.len() < 1000);
        // Text compresses; noise is stored as it is.
        let text = "the open, high, low and close of a candle; ".repeat(40);
        let mut buf = Vec::new();
        Val::Text(text.clone()).encode(&mut buf);
        assert!(buf.len() < text.len() / 2);
        let noise = noise(1, 2000);
        let mut buf = Vec::new();
        Val::Blob(noise.clone()).encode(&mut buf);
        assert_eq!(buf.len(), 1 + 8 + noise.len());
    }
}
