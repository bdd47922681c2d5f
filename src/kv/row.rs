//! The fields a row has wherever it is: in a put record, in a snapshot, in the index
//! (`index::Row`, which adds where its value is) and in what reads hand out and writes take
//! (`store::NewRow`, which adds the value). One type, with one encoder and one decoder,
//! because put records and snapshot rows store these fields the same way: writing them in
//! two places would let the two formats drift apart.

use super::record::{self, Reader, Short};
use super::value::Val;

/// A row's fields but its rowid and its value, as diskcache's `Cache` table has them.
#[derive(Clone, Debug)]
pub struct Fields {
    pub key: Val,
    pub raw: bool,
    pub store_time: f64,
    pub expire_time: Option<f64>,
    pub access_time: f64,
    pub access_count: i64,
    pub tag: Val,
    pub size: i64,
    pub mode: u8,
    pub filename: Option<String>,
}

impl Fields {
    /// The fields of a raw key's row as a write stores it `now`: accessed now, never before,
    /// its value in the log (no file, no size).
    pub fn stored_now(key: Val, now: f64, expire_time: Option<f64>, tag: Val, mode: u8) -> Fields {
        Fields {
            key,
            raw: true,
            store_time: now,
            expire_time,
            access_time: now,
            access_count: 0,
            tag,
            size: 0,
            mode,
            filename: None,
        }
    }

    /// The fields as put records (after the rowid, before the value) and snapshot rows (after
    /// the rowid, before where the value is) store them. This order is the on-disk format of
    /// both: caches already written must keep reading.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.key.encode(out);
        record::put_u8(out, self.raw as u8);
        record::put_f64(out, self.store_time);
        record::put_opt_f64(out, self.expire_time);
        record::put_f64(out, self.access_time);
        record::put_i64(out, self.access_count);
        self.tag.encode(out);
        record::put_i64(out, self.size);
        record::put_u8(out, self.mode);
        match &self.filename {
            Some(f) => Val::Text(f.clone()).encode(out),
            None => Val::Null.encode(out),
        }
    }

    /// The fields as `encode` writes them.
    pub fn decode(r: &mut Reader<'_>) -> Result<Fields, Short> {
        Ok(Fields {
            key: Val::decode(r)?,
            raw: r.u8()? != 0,
            store_time: r.f64()?,
            expire_time: r.opt_f64()?,
            access_time: r.f64()?,
            access_count: r.i64()?,
            tag: Val::decode(r)?,
            size: r.i64()?,
            mode: r.u8()?,
            filename: match Val::decode(r)? {
                Val::Text(s) => Some(s),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes put records and snapshots hold: a change here breaks every cache on disk.
    #[test]
    fn fields_keep_their_on_disk_bytes_and_read_back() {
        let some = Fields {
            key: Val::Text("k".into()),
            raw: true,
            store_time: 1.5,
            expire_time: Some(2.5),
            access_time: 3.5,
            access_count: 4,
            tag: Val::Int(5),
            size: 6,
            mode: 2,
            filename: Some("ab/cd/ef.val".into()),
        };
        let none = Fields {
            expire_time: None,
            filename: None,
            ..some.clone()
        };
        for (f, hex) in [
            (
                &some,
                "0301000000000000006b01000000000000f83f0000000000000440000000000000\
                 0c400400000000000000010500000000000000060000000000000002030c000000\
                 0000000061622f63642f65662e76616c",
            ),
            (
                &none,
                "0301000000000000006b01000000000000f83f000000000000f87f000000000000\
                 0c40040000000000000001050000000000000006000000000000000200",
            ),
        ] {
            let mut out = Vec::new();
            f.encode(&mut out);
            let got: String = out.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(got, hex);
            let back = Fields::decode(&mut Reader::new(&out)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{f:?}"));
        }
    }
}
