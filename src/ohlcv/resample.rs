//! Exact resampling: candles of one period aggregated into a coarser period whose candles are
//! made of whole finer ones (1m into 5m or 1h, 1h into 1d, 1d into 1w or 1M): open the first,
//! high the max, low the min, close the last, volume and every other column summed.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::DataType;

use super::coverage::Ranges;
use super::error::{OhlcvError, Result};
use super::frame::{self, TIME};
use super::period::Period;

/// Whether every candle of `coarse` is made of whole candles of `fine`: its boundaries fall on
/// `fine`'s, and it is at least as long. Checked on the boundaries of a few years, months and
/// weeks (1w starts on Monday, which a 3d grid misses; a month is no whole number of weeks).
pub fn check_nested(fine: &Period, coarse: &Period) -> Result<()> {
    let refuse = || {
        OhlcvError::InvalidArgument(format!(
            "cannot resample {} candles into {}: a {} candle is not made of whole {} candles; \
             resample from a finer period whose candles nest in it (1m, 1h or 1d)",
            fine.name(),
            coarse.name(),
            coarse.name(),
            fine.name()
        ))
    };
    if coarse.nominal_ms() < fine.nominal_ms() {
        return Err(refuse());
    }
    // 2019-12-30 (a Monday) onward: 60 candles of the coarse period, whatever its length.
    let mut t = coarse.floor(1_577_664_000_000)?;
    for _ in 0..60 {
        if !fine.is_aligned(t)? {
            return Err(refuse());
        }
        t = coarse.add(t, 1)?;
    }
    Ok(())
}

/// Contiguous row ranges of sorted times that share a candle of `to`, with its open time.
fn buckets(times: &[i64], to: &Period) -> Result<Vec<(usize, usize, i64)>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < times.len() {
        let open = to.floor(times[start])?;
        let close = to.add(open, 1)?;
        // A linear scan: a candle holds few rows, and a binary search over the rest of a
        // large input missed the cache at every step.
        let mut end = start + 1;
        while end < times.len() && times[end] < close {
            end += 1;
        }
        out.push((start, end, open));
        start = end;
    }
    Ok(out)
}

type Groups = [(usize, usize, i64)];

/// One value per candle from the column's rows `a..b`: `dense` when the column has no nulls
/// (a plain slice, which the compiler vectorises), `sparse` with the valid values otherwise.
fn per_group<T, R>(
    col: &dyn Array,
    values: &[T],
    groups: &Groups,
    dense: impl Fn(&[T]) -> R,
    sparse: impl Fn(&mut dyn Iterator<Item = T>) -> R,
) -> Vec<R>
where
    T: Copy,
{
    if col.null_count() == 0 {
        return groups
            .iter()
            .map(|&(a, b, _)| dense(&values[a..b]))
            .collect();
    }
    groups
        .iter()
        .map(|&(a, b, _)| sparse(&mut (a..b).filter(|&i| col.is_valid(i)).map(|i| values[i])))
        .collect()
}

fn first_last(col: &Float64Array, groups: &Groups, last: bool) -> ArrayRef {
    let pick = |(a, b): (usize, usize)| if last { b - 1 } else { a };
    Arc::new(
        groups
            .iter()
            .map(|&(a, b, _)| {
                let i = pick((a, b));
                col.is_valid(i).then(|| col.value(i))
            })
            .collect::<Float64Array>(),
    )
}

fn extreme(col: &Float64Array, groups: &Groups, max: bool) -> ArrayRef {
    let pick = |x: f64, y: f64| if max { x.max(y) } else { x.min(y) };
    let out = per_group(
        col,
        col.values(),
        groups,
        |s| s.iter().copied().reduce(pick),
        |it| it.reduce(pick),
    );
    Arc::new(Float64Array::from(out))
}

fn sum(col: &ArrayRef, groups: &Groups) -> Result<ArrayRef> {
    Ok(match col.data_type() {
        DataType::Float64 => {
            let c = col.as_primitive::<Float64Type>();
            let out = per_group(
                c,
                c.values(),
                groups,
                |s| s.iter().sum::<f64>(),
                |it| it.sum::<f64>(),
            );
            Arc::new(Float64Array::from(out))
        }
        DataType::Int64 => {
            let c = col.as_primitive::<Int64Type>();
            let add = |s: i64, x: i64| s.saturating_add(x);
            let out = per_group(
                c,
                c.values(),
                groups,
                |s| s.iter().copied().fold(0, add),
                |it| it.fold(0, add),
            );
            Arc::new(Int64Array::from(out))
        }
        other => {
            return Err(OhlcvError::InvalidArgument(format!(
                "cannot sum a column of type {other} when resampling"
            )));
        }
    })
}

/// Aggregate normalised rows (sorted, unique on `time`) into candles of `to`. With
/// `complete`, only candles whose `[open, min(close, until))` it covers are kept: a candle
/// with a finer slot never fetched is dropped rather than returned wrong.
pub fn resample(
    batch: &RecordBatch,
    to: &Period,
    complete: Option<(&Ranges, i64)>,
) -> Result<RecordBatch> {
    let times = frame::times(batch).values();
    let mut groups = buckets(times, to)?;
    if let Some((covered, until)) = complete {
        let mut kept = Vec::with_capacity(groups.len());
        for g in groups {
            let close = to.add(g.2, 1)?.min(until);
            if close <= g.2 || covered.covers(g.2, close) {
                kept.push(g);
            }
        }
        groups = kept;
    }
    let schema = batch.schema();
    let column = |name: &str, col: &ArrayRef| -> Result<ArrayRef> {
        let as_f64 = || col.as_primitive::<Float64Type>();
        Ok(match name {
            TIME => Arc::new(groups.iter().map(|g| g.2).collect::<Int64Array>()),
            "open" => first_last(as_f64(), &groups, false),
            "close" => first_last(as_f64(), &groups, true),
            "high" => extreme(as_f64(), &groups, true),
            "low" => extreme(as_f64(), &groups, false),
            _ => sum(col, &groups)?,
        })
    };
    let work: Vec<(&str, &ArrayRef)> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .zip(batch.columns())
        .collect();
    // Columns are independent: large inputs spread them over two threads.
    let columns: Vec<ArrayRef> = if batch.num_rows() >= 100_000 {
        let (left, right) = work.split_at(work.len() / 2);
        let (a, b) = std::thread::scope(|scope| {
            let other = scope.spawn(|| right.iter().map(|(n, c)| column(n, c)).collect::<Vec<_>>());
            let mine: Vec<_> = left.iter().map(|(n, c)| column(n, c)).collect();
            (mine, other.join())
        });
        let b = b.map_err(|_| OhlcvError::InvalidArgument("resampling thread panicked".into()))?;
        a.into_iter().chain(b).collect::<Result<_>>()?
    } else {
        work.iter()
            .map(|(n, c)| column(n, c))
            .collect::<Result<_>>()?
    };
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| OhlcvError::InvalidArgument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn minutes_into_five() {
        // 10:00..10:09 with a gap at 10:07.
        let t0 = 1_704_103_200_000; // 2024-01-01T10:00Z
        let rows: Vec<[f64; 6]> = (0..10)
            .filter(|&i| i != 7)
            .map(|i| {
                let v = i as f64;
                [(t0 + i * MIN) as f64, v, v + 10.0, v - 10.0, v + 0.5, 1.0]
            })
            .collect();
        let out = resample(
            &frame::from_rows(&rows),
            &Period::parse("5m").unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(frame::times(&out).values(), &[t0, t0 + 5 * MIN]);
        let f = |name: &str| {
            out.column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        };
        assert_eq!(f("open"), [0.0, 5.0]);
        assert_eq!(f("high"), [14.0, 19.0]);
        assert_eq!(f("low"), [-10.0, -5.0]);
        assert_eq!(f("close"), [4.5, 9.5]);
        assert_eq!(f("volume"), [5.0, 4.0]);
        // The second bucket misses 10:07: dropped when completeness is asked for.
        let mut covered = Ranges::new();
        covered.insert(t0, t0 + 7 * MIN);
        covered.insert(t0 + 8 * MIN, t0 + 10 * MIN);
        let p5 = Period::parse("5m").unwrap();
        let out = resample(&frame::from_rows(&rows), &p5, Some((&covered, i64::MAX))).unwrap();
        assert_eq!(frame::times(&out).values(), &[t0]);
        // ... unless the missing slot lies past `until` (it has not closed yet).
        let out = resample(
            &frame::from_rows(&rows),
            &p5,
            Some((&covered, t0 + 7 * MIN)),
        )
        .unwrap();
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn nesting() {
        let p = |s| Period::parse(s).unwrap();
        for (fine, coarse) in [
            ("1m", "5m"),
            ("1m", "1h"),
            ("1h", "1d"),
            ("1d", "1w"),
            ("1d", "1M"),
            ("1h", "3d"),
            ("1m", "1m"),
        ] {
            check_nested(&p(fine), &p(coarse)).unwrap();
        }
        for (fine, coarse) in [("1w", "1M"), ("3d", "1w"), ("2h", "3h"), ("1h", "1m")] {
            if let (Ok(f), Ok(c)) = (Period::parse(fine), Period::parse(coarse)) {
                assert!(check_nested(&f, &c).is_err(), "{fine} -> {coarse}");
            }
        }
    }
}
