//! The candle table layout and the Arrow operations on it: normalising what a callback or a
//! foreign file holds, unifying schemas, slicing by time, and merging sorted pieces.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, UInt32Array, new_null_array,
};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const TIME: &str = "time";
pub const PRICE_COLUMNS: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// `time` Int64 (epoch ms, never null), then open/high/low/close/volume Float64.
pub fn base_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![Field::new(TIME, DataType::Int64, false)];
            fields.extend(PRICE_COLUMNS.map(|c| Field::new(c, DataType::Float64, true)));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

pub fn empty_batch() -> RecordBatch {
    RecordBatch::new_empty(base_schema())
}

/// The first and last `time` of sorted batches, None without rows.
pub fn first_last(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    let mut rows = batches.iter().map(times).filter(|t| !t.is_empty());
    let first = rows.next()?;
    let last = rows.next_back().unwrap_or(first);
    Some((first.value(0), last.value(last.len() - 1)))
}

pub fn times(batch: &RecordBatch) -> &Int64Array {
    batch.column(0).as_primitive::<Int64Type>()
}

fn strict_cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &opts).map_err(|e| e.to_string())
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn is_float(t: &DataType) -> bool {
    t.is_floating()
        || matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
}

/// Epoch ms from whatever the time column holds.
fn time_to_ms(array: &ArrayRef) -> Result<ArrayRef, String> {
    let dt = array.data_type();
    let ms = match dt {
        DataType::Int64 => array.clone(),
        t if is_integer(t) => strict_cast(array, &DataType::Int64)?,
        DataType::Float32 | DataType::Float64 => {
            let f = strict_cast(array, &DataType::Float64)?;
            let f = f.as_primitive::<arrow_array::types::Float64Type>();
            if let Some(bad) = f
                .iter()
                .flatten()
                .find(|v| v.fract() != 0.0 || !v.is_finite())
            {
                return Err(format!(
                    "time value {bad} is not a whole number of milliseconds"
                ));
            }
            strict_cast(array, &DataType::Int64)?
        }
        DataType::Timestamp(unit, _) => {
            // The stored value is UTC whatever the zone; only the unit needs converting.
            let raw = strict_cast(array, &DataType::Int64)?;
            let raw = raw.as_primitive::<Int64Type>();
            let scaled: Int64Array = match unit {
                TimeUnit::Second => raw
                    .try_unary(|v| {
                        v.checked_mul(1000).ok_or_else(|| {
                            arrow_schema::ArrowError::ComputeError("time overflows".into())
                        })
                    })
                    .map_err(|e| e.to_string())?,
                TimeUnit::Millisecond => raw.clone(),
                TimeUnit::Microsecond => raw.unary(|v| v.div_euclid(1_000)),
                TimeUnit::Nanosecond => raw.unary(|v| v.div_euclid(1_000_000)),
            };
            Arc::new(scaled)
        }
        DataType::Date32 | DataType::Date64 => {
            let d = strict_cast(array, &DataType::Date64)?;
            strict_cast(&d, &DataType::Int64)?
        }
        other => {
            return Err(format!(
                "time column has type {other}, expected integer epoch milliseconds or a datetime"
            ));
        }
    };
    if ms.null_count() > 0 {
        return Err("time column contains nulls".to_owned());
    }
    Ok(ms)
}

/// Bring a batch to the candle layout: `time` as Int64 ms, prices as Float64, other numeric
/// columns kept (integers as Int64, the rest as Float64), non-numeric columns dropped.
///
/// `strict` (data from a callback) requires every price column; otherwise (a file on disk)
/// a missing price column reads as nulls.
pub fn normalize(batch: &RecordBatch, strict: bool) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let find = |name: &str| schema.index_of(name).ok();
    let time_idx = find(TIME).or_else(|| find("timestamp")).ok_or_else(|| {
        format!(
            "no `time` column (columns: {:?})",
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        )
    })?;
    let rows = batch.num_rows();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    fields.push(Field::new(TIME, DataType::Int64, false));
    columns.push(time_to_ms(batch.column(time_idx))?);
    let mut used = vec![time_idx];
    for name in PRICE_COLUMNS {
        let col = match find(name) {
            Some(i) => {
                used.push(i);
                let c = batch.column(i);
                let t = c.data_type();
                if !(is_integer(t) || is_float(t) || *t == DataType::Null) {
                    return Err(format!("column `{name}` has type {t}, expected numbers"));
                }
                strict_cast(c, &DataType::Float64)?
            }
            None if strict => return Err(format!("no `{name}` column")),
            None => new_null_array(&DataType::Float64, rows),
        };
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(col);
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if used.contains(&i) || field.name() == TIME || field.name() == "timestamp" {
            continue;
        }
        let target = match field.data_type() {
            t if is_integer(t) => DataType::Int64,
            t if is_float(t) => DataType::Float64,
            _ => continue,
        };
        columns.push(strict_cast(batch.column(i), &target)?);
        fields.push(Field::new(field.name(), target, true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// Give every batch the same schema: the base columns, then every extra column seen, in
/// first-seen order; an extra that is Int64 in one batch and Float64 in another becomes Float64.
pub fn unify(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let base = base_schema();
    let mut extras: Vec<Field> = Vec::new();
    for b in &batches {
        for f in b.schema().fields().iter().skip(base.fields().len()) {
            match extras.iter_mut().find(|e| e.name() == f.name()) {
                Some(e) if e.data_type() != f.data_type() => {
                    *e = Field::new(f.name(), DataType::Float64, true);
                }
                Some(_) => {}
                None => extras.push(Field::new(f.name(), f.data_type().clone(), true)),
            }
        }
    }
    if extras.is_empty()
        && batches
            .iter()
            .all(|b| b.schema().fields().len() == base.fields().len())
    {
        return batches;
    }
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(extras.iter().cloned());
    let schema = Arc::new(Schema::new(fields));
    batches
        .into_iter()
        .map(|b| {
            let mut cols: Vec<ArrayRef> = b.columns()[..base.fields().len()].to_vec();
            for e in &extras {
                let col = match b.schema().index_of(e.name()) {
                    Ok(i) if b.column(i).data_type() == e.data_type() => b.column(i).clone(),
                    Ok(i) => strict_cast(b.column(i), e.data_type())
                        .unwrap_or_else(|_| new_null_array(e.data_type(), b.num_rows())),
                    Err(_) => new_null_array(e.data_type(), b.num_rows()),
                };
                cols.push(col);
            }
            RecordBatch::try_new(schema.clone(), cols)
                .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()))
        })
        .collect()
}

pub fn is_strictly_sorted(batch: &RecordBatch) -> bool {
    times(batch).values().windows(2).all(|w| w[0] < w[1])
}

/// Rows of a strictly sorted batch with `lo <= time < hi` (zero-copy).
pub fn slice_sorted(batch: &RecordBatch, lo: i64, hi: i64) -> RecordBatch {
    let t = times(batch).values();
    let a = t.partition_point(|&x| x < lo);
    let b = t.partition_point(|&x| x < hi).max(a);
    batch.slice(a, b - a)
}

/// Merge pieces into batches sorted by time with unique times. Where pieces share a time,
/// the piece with the higher priority wins, and among equal priorities the later row.
pub fn merge(mut pieces: Vec<(u64, RecordBatch)>) -> Result<Vec<RecordBatch>, String> {
    pieces.retain(|(_, b)| b.num_rows() > 0);
    if pieces.is_empty() {
        return Ok(Vec::new());
    }
    let sorted = pieces.iter().all(|(_, b)| is_strictly_sorted(b));
    if sorted {
        pieces.sort_by_key(|(_, b)| times(b).value(0));
        let disjoint = pieces.windows(2).all(|w| {
            let prev = times(&w[0].1);
            prev.value(prev.len() - 1) < times(&w[1].1).value(0)
        });
        if disjoint {
            return Ok(unify(pieces.into_iter().map(|(_, b)| b).collect()));
        }
    }
    let (prios, batches): (Vec<u64>, Vec<RecordBatch>) = pieces.into_iter().unzip();
    let batches = unify(batches);
    let schema = batches[0].schema();
    let all = arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    let t = times(&all).values();
    let mut keys: Vec<(i64, u64, u32)> = Vec::with_capacity(all.num_rows());
    let mut row = 0u32;
    for (p, b) in prios.iter().zip(&batches) {
        for _ in 0..b.num_rows() {
            keys.push((t[row as usize], *p, row));
            row += 1;
        }
    }
    // Sort by time, and within a time put the winner (highest priority, then latest row) last.
    keys.sort_unstable();
    let mut take: Vec<u32> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if i + 1 == keys.len() || keys[i + 1].0 != k.0 {
            take.push(k.2);
        }
    }
    let idx = UInt32Array::from(take);
    let out = arrow_select::take::take_record_batch(&all, &idx).map_err(|e| e.to_string())?;
    Ok(vec![out])
}

/// One batch from many (same schema after `unify`).
pub fn concat(batches: Vec<RecordBatch>) -> Result<RecordBatch, String> {
    let batches = unify(batches);
    match batches.len() {
        0 => Ok(empty_batch()),
        1 => Ok(batches.into_iter().next().unwrap_or_else(empty_batch)),
        _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
            .map_err(|e| e.to_string()),
    }
}

/// Build a base-layout batch from rows (used by tests and benches).
pub fn from_rows(rows: &[[f64; 6]]) -> RecordBatch {
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r[0] as i64),
    ))];
    for c in 1..6 {
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r[c]),
        )));
    }
    RecordBatch::try_new(base_schema(), cols).unwrap_or_else(|_| empty_batch())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ts: &[i64], v: f64) -> RecordBatch {
        let r: Vec<[f64; 6]> = ts.iter().map(|&t| [t as f64, v, v, v, v, v]).collect();
        from_rows(&r)
    }

    fn flat(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
        batches
            .iter()
            .flat_map(|b| {
                let t = times(b).values().to_vec();
                let o = b
                    .column(1)
                    .as_primitive::<arrow_array::types::Float64Type>()
                    .values()
                    .to_vec();
                t.into_iter().zip(o)
            })
            .collect()
    }

    #[test]
    fn merge_disjoint_is_concatenation() {
        let out = merge(vec![(0, rows(&[3, 4], 1.0)), (0, rows(&[1, 2], 1.0))]).unwrap();
        assert_eq!(flat(&out), vec![(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)]);
    }

    #[test]
    fn merge_overlap_prefers_higher_priority() {
        let out = merge(vec![(2, rows(&[2, 3], 9.0)), (1, rows(&[1, 2, 3, 4], 1.0))]).unwrap();
        assert_eq!(flat(&out), vec![(1, 1.0), (2, 9.0), (3, 9.0), (4, 1.0)]);
    }

    #[test]
    fn normalize_casts_and_rejects() {
        let b = rows(&[1, 2], 1.0);
        assert_eq!(normalize(&b, true).unwrap().num_rows(), 2);
        let only_time = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "time",
                DataType::Int64,
                false,
            )])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        assert!(normalize(&only_time, true).unwrap_err().contains("open"));
        let lenient = normalize(&only_time, false).unwrap();
        assert_eq!(lenient.num_columns(), 6);
    }

    #[test]
    fn slice_sorted_bounds() {
        let b = rows(&[10, 20, 30, 40], 1.0);
        assert_eq!(flat(&[slice_sorted(&b, 15, 40)]).len(), 2);
        assert_eq!(slice_sorted(&b, 50, 60).num_rows(), 0);
        assert_eq!(slice_sorted(&b, 40, 10).num_rows(), 0);
    }
}
