//! Reading an archive zip: its CSV, with or without a header row, open times in ms or µs
//! (decided per value: spot files from 2025 on are in µs), duplicates removed.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch};

use crate::ohlcv::frame;

use super::error::Problem;

/// Values this large are not epoch ms (which reach 1e14 only in the year 5138).
const MICROS_FROM: i64 = 100_000_000_000_000;
const NANOS_FROM: i64 = 100_000_000_000_000_000;

/// The candles of a zip as a sorted, unique batch of `time` + OHLCV.
pub fn read_zip(bytes: &[u8]) -> Result<RecordBatch, Problem> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| Problem::BadZip(e.to_string()))?;
    let index = (0..zip.len())
        .find(|&i| {
            zip.name_for_index(i)
                .is_some_and(|n| n.is_ok_and(|n| n.to_ascii_lowercase().ends_with(".csv")))
        })
        .ok_or(Problem::NoCsv)?;
    let entry = zip
        .by_index(index)
        .map_err(|e| Problem::BadZip(e.to_string()))?;
    read_csv(BufReader::with_capacity(1 << 16, entry))
}

/// Epoch ms from an open time in ms, µs or ns.
fn to_ms(t: i64) -> i64 {
    if t >= NANOS_FROM {
        t / 1_000_000
    } else if t >= MICROS_FROM {
        t / 1_000
    } else {
        t
    }
}

fn field<'a>(
    fields: &mut impl Iterator<Item = &'a str>,
    line: usize,
    what: &str,
) -> Result<&'a str, Problem> {
    fields
        .next()
        .map(str::trim)
        .ok_or_else(|| Problem::BadCsv(format!("line {line} has no {what} column")))
}

pub fn read_csv(reader: impl Read) -> Result<RecordBatch, Problem> {
    let mut reader = BufReader::new(reader);
    let mut rows: Vec<(i64, [f64; 5])> = Vec::new();
    let mut buf = String::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_line(&mut buf)
            .map_err(|e| Problem::BadZip(e.to_string()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = buf.trim();
        if line.is_empty() {
            continue;
        }
        // A header row (`open_time,open,...`) is sniffed by its first byte, on any line, so
        // files concatenated with their headers still read.
        if !line.as_bytes()[0].is_ascii_digit() {
            if line_no == 1 || line.starts_with("open_time") {
                continue;
            }
            return Err(Problem::BadCsv(format!(
                "line {line_no} is not a candle: {line:.80}"
            )));
        }
        let mut fields = line.split(',');
        let t = field(&mut fields, line_no, "open_time")?;
        let t: i64 = t
            .parse::<i64>()
            .or_else(|_| t.parse::<f64>().map(|f| f as i64))
            .map_err(|_| {
                Problem::BadCsv(format!("line {line_no}: open_time {t:?} is not a number"))
            })?;
        let mut v = [0.0; 5];
        for (slot, name) in v.iter_mut().zip(frame::PRICE_COLUMNS) {
            let s = field(&mut fields, line_no, name)?;
            *slot = s.parse().map_err(|_| {
                Problem::BadCsv(format!("line {line_no}: {name} {s:?} is not a number"))
            })?;
        }
        rows.push((to_ms(t), v));
    }
    // Files have repeated rows (BPD#191): keep the first of each open time.
    rows.sort_by_key(|r| r.0);
    rows.dedup_by_key(|r| r.0);
    let times = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
    let mut columns: Vec<arrow_array::ArrayRef> = vec![Arc::new(times)];
    for i in 0..5 {
        columns.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.1[i]),
        )));
    }
    RecordBatch::try_new(frame::base_schema(), columns).map_err(|e| Problem::BadCsv(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(name: &str, body: &str) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(body.as_bytes()).unwrap();
        w.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn header_units_and_duplicates() {
        let csv = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n\
            1704067260000,2,3,1,2.5,10,1704067319999,0,1,0,0,0\n\
            1704067200000,1,2,0.5,1.5,9,1704067259999,0,1,0,0,0\n\
            1704067260000,2,3,1,2.5,10,1704067319999,0,1,0,0,0\n\
            1735689600000000,7,8,6,7.5,1,1735689659999999,0,1,0,0,0\n";
        let b = read_csv(csv.as_bytes()).unwrap();
        assert_eq!(
            frame::times(&b).values(),
            &[1704067200000, 1704067260000, 1735689600000]
        );
        let z = zip_of("BTCUSDT-1m-2024-01-01.csv", csv);
        assert_eq!(read_zip(&z).unwrap().num_rows(), 3);
    }

    #[test]
    fn bad_files() {
        assert!(matches!(read_zip(b"not a zip"), Err(Problem::BadZip(_))));
        assert_eq!(
            read_zip(&zip_of("readme.txt", "x")).unwrap_err(),
            Problem::NoCsv
        );
        assert!(matches!(
            read_csv("1,2,3\n".as_bytes()),
            Err(Problem::BadCsv(_))
        ));
        assert!(matches!(
            read_csv("1,2,3,4,5,6\n1,x,3,4,5,6\n".as_bytes()),
            Err(Problem::BadCsv(_))
        ));
    }
}
