//! Reading an archive zip: its CSV, with or without a header row, open times in ms or µs
//! (decided per value: spot files from 2025 on are in µs), duplicates removed.

use std::io::{Cursor, Read};
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
    let mut entry = zip
        .by_index(index)
        .map_err(|e| Problem::BadZip(e.to_string()))?;
    // The stated size only sizes the buffer: a lying header cannot make it huge.
    let mut text = Vec::with_capacity(entry.size().min(1 << 28) as usize);
    entry
        .read_to_end(&mut text)
        .map_err(|e| Problem::BadZip(e.to_string()))?;
    read_csv(&text)
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

fn parse_int(field: &[u8]) -> Option<i64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(n)
}

fn parse_float(field: &[u8]) -> Option<f64> {
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

/// The archive's CSV: `open_time, open, high, low, close, volume, close_time, …`, numbers
/// only, no quoting; a header row is recognised by its first byte.
pub fn read_csv(text: &[u8]) -> Result<RecordBatch, Problem> {
    let guess = text.len() / 96 + 1;
    let mut times: Vec<i64> = Vec::with_capacity(guess);
    let mut values: [Vec<f64>; 5] = std::array::from_fn(|_| Vec::with_capacity(guess));
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(&first) = line.first() else { continue };
        let line_no = i + 1;
        if !first.is_ascii_digit() {
            // Files concatenated with their headers still read.
            if i == 0 || line.starts_with(b"open_time") {
                continue;
            }
            let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
            return Err(Problem::BadCsv(format!(
                "line {line_no} is not a candle: {shown}"
            )));
        }
        let mut fields = line.split(|&b| b == b',');
        let t = fields.next().unwrap_or_default();
        let t = parse_int(t.trim_ascii())
            .or_else(|| parse_float(t).map(|f| f as i64))
            .ok_or_else(|| {
                Problem::BadCsv(format!(
                    "line {line_no}: open_time {:?} is not a number",
                    String::from_utf8_lossy(t)
                ))
            })?;
        for (column, name) in values.iter_mut().zip(frame::PRICE_COLUMNS) {
            let f = fields
                .next()
                .ok_or_else(|| Problem::BadCsv(format!("line {line_no} has no {name} column")))?;
            column.push(parse_float(f).ok_or_else(|| {
                Problem::BadCsv(format!(
                    "line {line_no}: {name} {:?} is not a number",
                    String::from_utf8_lossy(f)
                ))
            })?);
        }
        times.push(to_ms(t));
    }
    let batch = RecordBatch::try_new(
        frame::base_schema(),
        std::iter::once(Arc::new(Int64Array::from(times)) as arrow_array::ArrayRef)
            .chain(
                values
                    .into_iter()
                    .map(|v| Arc::new(Float64Array::from(v)) as arrow_array::ArrayRef),
            )
            .collect(),
    )
    .map_err(|e| Problem::BadCsv(e.to_string()))?;
    if frame::is_strictly_sorted(&batch) {
        return Ok(batch);
    }
    // Out of order or repeated rows (BPD#191): sort, and keep one row per open time.
    frame::merge(vec![(0, batch)])
        .and_then(frame::concat)
        .map_err(Problem::BadCsv)
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
