//! Tiered downsampling: candles older than a cutoff moved from a fine period's folder into a
//! coarser period's folder, aggregated exactly.
//!
//! Only candles of the coarse period whose every fine slot is covered move (a slot answered
//! empty counts: the exchange had nothing there). The coarse rows and their coverage are
//! written first, then the fine coverage is dropped, then the fine rows: a crash after the
//! first step leaves the candles in both folders (each whole, and the next run writes the same
//! aggregate again before removing the fine ones), a crash after the second leaves fine rows
//! without coverage (never read as covered, so never counted twice). Locks are taken finer
//! folder first, so chained tiers (1m into 5m, 5m into 1h) cannot deadlock.

use std::path::Path;
use std::time::Duration;

use arrow_array::RecordBatch;

use super::coverage::Ranges;
use super::error::{OhlcvError, Result};
use super::fetch;
use super::frame;
use super::log;
use super::period::Period;
use super::read;
use super::resample::{check_nested, resample};
use super::store;

/// What one tier step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Coarse candles written.
    pub written: usize,
    /// Fine candles removed.
    pub removed: usize,
}

/// The coarse candles wholly inside a covered range and before `end`.
fn complete(covered: &Ranges, coarse: &Period, end: i64) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for &(a, b) in covered.as_slice() {
        if a >= end {
            break;
        }
        let first = coarse.ceil(a)?;
        let last = coarse.floor(b.min(end))?;
        if first < last {
            out.push((first, last));
        }
    }
    Ok(out)
}

/// Rows of sorted batches inside any of the sorted, disjoint `spans`.
fn within(batches: Vec<RecordBatch>, spans: &[(i64, i64)]) -> Result<RecordBatch> {
    let mut pieces = Vec::new();
    for b in &batches {
        for &(a, z) in spans {
            let part = frame::slice_sorted(b, a, z);
            if part.num_rows() > 0 {
                pieces.push(part);
            }
        }
    }
    frame::concat(pieces).map_err(OhlcvError::InvalidArgument)
}

/// Move the `fine` candles of `fine_dir` that open before `cutoff` into `coarse_dir` as
/// `coarse` candles (see the module's comment).
#[allow(clippy::too_many_arguments)]
pub fn compact_tier(
    fine_dir: &Path,
    fine: &Period,
    coarse_dir: &Path,
    coarse: &Period,
    cutoff: i64,
    now_ms: i64,
    durable: bool,
    timeout: Option<Duration>,
) -> Result<Moved> {
    check_nested(fine, coarse)?;
    if !fine_dir.is_dir() {
        return Ok(Moved::default());
    }
    let _fine_lock = fetch::lock(fine_dir, timeout)?;
    let end = coarse.floor(cutoff)?.min(log::final_end(fine, now_ms)?);
    let spans = complete(&log::coverage(fine_dir, fine)?, coarse, end)?;
    let (Some(&(lo, _)), Some(&(_, hi))) = (spans.first(), spans.last()) else {
        return Ok(Moved::default());
    };
    let rows = within(read::read_range(fine_dir, lo, hi)?, &spans)?;
    let aggregated = resample(&rows, coarse, None)?;
    {
        std::fs::create_dir_all(coarse_dir).map_err(|e| store::io_err(coarse_dir, e))?;
        let _coarse_lock = fetch::lock(coarse_dir, timeout)?;
        if aggregated.num_rows() > 0 {
            store::write_rows(coarse_dir, coarse, &aggregated, durable)?;
        }
        let source = format!("tier:{}", fine.name());
        for &(a, b) in &spans {
            let entry = log::entry_for(coarse, a, b, 0, now_ms, &source)?;
            log::append(coarse_dir, &entry, durable)?;
        }
        log::compact(coarse_dir, coarse, durable, false)?;
    }
    log::uncover(fine_dir, fine, &spans, durable)?;
    let mut removed = 0;
    for &(a, b) in &spans {
        removed += store::drop_range(fine_dir, a, b, durable)?;
    }
    Ok(Moved {
        written: aggregated.num_rows(),
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn complete_buckets_move_the_rest_stays() {
        let root = tempfile::tempdir().unwrap();
        let (f, c) = (root.path().join("X_1m"), root.path().join("X_5m"));
        std::fs::create_dir_all(&f).unwrap();
        let p1 = Period::parse("1m").unwrap();
        let p5 = Period::parse("5m").unwrap();
        let rows: Vec<[f64; 6]> = (0..23)
            .map(|i| [(i * MIN) as f64, 1.0, 2.0, 0.5, 1.5, 1.0])
            .collect();
        store::write_rows(&f, &p1, &frame::from_rows(&rows), false).unwrap();
        // Covered: 0..12 and 14..23 minutes; 12-13 never answered.
        for (a, b) in [(0, 12), (14, 23)] {
            let e = log::entry_for(&p1, a * MIN, b * MIN, b - a, 100 * MIN, "api").unwrap();
            log::append(&f, &e, false).unwrap();
        }
        let now = 100 * MIN;
        let moved = compact_tier(&f, &p1, &c, &p5, 100 * MIN, now, false, None).unwrap();
        // 5m buckets 0, 5 (complete), 10 (12-13 missing: stays), 15 (complete), 20 (20-23 only
        // covered up to 23 of 25: stays).
        assert_eq!(
            moved,
            Moved {
                written: 3,
                removed: 15
            }
        );
        let coarse = read::read_range(&c, 0, i64::MAX).unwrap();
        assert_eq!(frame::times(&coarse[0]).values(), &[0, 5 * MIN, 15 * MIN]);
        assert_eq!(
            log::coverage(&c, &p5).unwrap().as_slice(),
            &[(0, 10 * MIN), (15 * MIN, 20 * MIN)]
        );
        let left: usize = read::read_range(&f, 0, i64::MAX)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(left, 23 - 15);
        // Idempotent.
        let again = compact_tier(&f, &p1, &c, &p5, 100 * MIN, now, false, None).unwrap();
        assert_eq!(again, Moved::default());
    }
}
