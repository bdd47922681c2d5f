//! Repairs a user runs by hand: rebuilding a lost log, forgetting a range.

use std::path::Path;

use super::error::Result;
use super::frame;
use super::log;
use super::period::Period;
use super::read;
use super::store;

/// Replace the fetch log with one line per run of consecutive stored candles (the original
/// tool's `rebuild_log_from_data`). Gaps between runs are not covered, so they are asked again.
/// The caller holds the folder lock.
pub fn rebuild_log(dir: &Path, period: &Period, now_ms: i64, durable: bool) -> Result<usize> {
    let batches = read::read_range(dir, i64::MIN, i64::MAX)?;
    let mut spans: Vec<(i64, i64, i64, i64)> = Vec::new();
    for b in &batches {
        for &t in frame::times(b).values() {
            let next = period.add(t, 1)?;
            match spans.last_mut() {
                Some(last) if last.1 == t => {
                    last.1 = next;
                    last.2 += 1;
                }
                _ => spans.push((t, next, 1, now_ms)),
            }
        }
    }
    let n = spans.len();
    log::write_spans(dir, period, spans, "rebuilt", durable)?;
    Ok(n)
}

/// Forget `[lo, hi)`: drop its coverage, so it is fetched again when asked for, and with
/// `drop_rows` its stored rows. Coverage goes first: a crash in between leaves rows that the
/// next fetch replaces, never coverage without its rows. Returns the rows dropped. The caller
/// holds the folder lock.
pub fn forget(
    dir: &Path,
    period: &Period,
    lo: i64,
    hi: i64,
    drop_rows: bool,
    durable: bool,
) -> Result<usize> {
    log::uncover(dir, period, &[(lo, hi)], durable)?;
    if drop_rows {
        return store::drop_range(dir, lo, hi, durable);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_covers_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = Period::parse("1m").unwrap();
        let rows = frame::from_rows(
            &[0, 1, 2, 5, 6].map(|i| [(i * 60_000) as f64, 1.0, 1.0, 1.0, 1.0, 1.0]),
        );
        store::write_rows(dir.path(), &p, &rows, false).unwrap();
        assert_eq!(
            rebuild_log(dir.path(), &p, 1_000_000_000, false).unwrap(),
            2
        );
        assert_eq!(
            log::coverage(dir.path(), &p).unwrap().as_slice(),
            &[(0, 180_000), (300_000, 420_000)]
        );
    }
}
