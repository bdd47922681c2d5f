//! The fetch log, `fetch_log.jsonl`: one JSON object a line with the original tool's fields
//! (`fetch_time`, `data_start`, `data_end`, `count`, `source`).
//!
//! A line says: the candles opening in `[data_start, data_end]` (inclusive, as the original
//! wrote them) were asked of the exchange at `fetch_time` and answered, `count` of them with
//! rows. candlecache writes `data_end` as the open time of the last covered slot, so the same
//! line means the half-open coverage `[data_start, data_end + period)` to us and the inclusive
//! candle range to the original tool. A line with `count: 0` is a range answered empty.
//!
//! Candles that had not closed at `fetch_time` are not covered by the line: that is how a
//! still-forming candle written by the original tool gets refetched.
//!
//! An empty answer is trusted for good only once confirmed. The first one for a range is
//! written with `source` [`UNCONFIRMED`]: it counts as covered for [`EMPTY_CONFIRM_MS`], then
//! the range is asked once more, and a second empty answer is written as an ordinary
//! `count: 0` line. A callback that returned `[]` during an outage therefore blanks the
//! range for an hour at most, and a real gap (after a delisting) costs one extra request,
//! once. (The original tool ignores `source`, so to it such a line is plain coverage.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::coverage::Ranges;
use super::error::Result;
use super::period::{Period, iso_utc, parse_iso_ms};
use crate::fsio::{self, ParsedFiles};

pub const LOG_NAME: &str = "fetch_log.jsonl";

/// A candle is final once this long has passed after its close: exchanges publish the final
/// values of a candle a moment after its end, and clocks drift.
pub const GRACE_MS: i64 = 2_000;

/// Rewrite the log once it holds this many more lines than merged ranges.
const COMPACT_SLACK: usize = 64;

/// The `source` of a line recording a range answered empty once, not yet confirmed.
pub const UNCONFIRMED: &str = "api:unconfirmed-empty";

/// How long a range answered empty once is trusted before it is asked again.
pub const EMPTY_CONFIRM_MS: i64 = 3_600_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub fetch_time: String,
    pub data_start: i64,
    pub data_end: i64,
    pub count: i64,
    pub source: String,
}

impl Entry {
    pub fn unconfirmed(&self) -> bool {
        self.source == UNCONFIRMED
    }

    /// The half-open span this line covers for `period`, or None if it covers nothing.
    pub fn coverage(&self, period: &Period) -> Option<(i64, i64)> {
        let start = period.ceil(self.data_start).ok()?;
        let mut end = period.add(period.floor(self.data_end).ok()?, 1).ok()?;
        if let Some(fetched) = parse_iso_ms(&self.fetch_time) {
            end = end.min(final_end(period, fetched).ok()?);
        }
        (start < end).then_some((start, end))
    }
}

/// The end of the last final slot at `now`: slots ending at or before it are final.
pub fn final_end(period: &Period, now_ms: i64) -> Result<i64> {
    period.floor(now_ms.saturating_sub(GRACE_MS))
}

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_NAME)
}

/// Parse one line; anything that is not a complete entry (a torn tail, garbage) is None.
fn parse_line(line: &str) -> Option<Entry> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    let int = |k: &str| -> Option<i64> {
        match v.get(k)? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            _ => None,
        }
    };
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (data_start, data_end) = (int("data_start")?, int("data_end")?);
    if data_end < data_start {
        return None;
    }
    Some(Entry {
        fetch_time: text("fetch_time"),
        data_start,
        data_end,
        count: int("count").unwrap_or(0),
        source: text("source"),
    })
}

type Parsed = Arc<Vec<Entry>>;

/// All complete entries of the log in `dir`, in file order. A missing log is empty.
pub fn read_entries(dir: &Path) -> Result<Parsed> {
    static PARSED: OnceLock<ParsedFiles<Vec<Entry>>> = OnceLock::new();
    let parse = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(parse_line)
            .collect()
    };
    Ok(PARSED
        .get_or_init(Default::default)
        .get(&log_path(dir), parse)?
        .map_or_else(Default::default, |(_, entries)| entries))
}

pub fn coverage(dir: &Path, period: &Period) -> Result<Ranges> {
    Ok(read_entries(dir)?
        .iter()
        .filter_map(|e| e.coverage(period))
        .collect())
}

/// What the log covers at `now_ms`, and what is due to be confirmed.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Trusted: answered with rows, confirmed empty, or answered empty less than
    /// [`EMPTY_CONFIRM_MS`] ago.
    pub covered: Ranges,
    /// Answered empty once, long enough ago to be asked again; a second empty answer there
    /// confirms it.
    pub confirm: Ranges,
}

pub fn coverage_at(dir: &Path, period: &Period, now_ms: i64) -> Result<Coverage> {
    Ok(coverage_of(&read_entries(dir)?, period, now_ms))
}

/// [`coverage_at`] of entries read from anywhere (a folder's log, the shared log).
pub fn coverage_of(entries: &[Entry], period: &Period, now_ms: i64) -> Coverage {
    let mut covered = Ranges::new();
    let mut due = Vec::new();
    for e in entries {
        let Some((a, b)) = e.coverage(period) else {
            continue;
        };
        let fetched = parse_iso_ms(&e.fetch_time).unwrap_or(i64::MIN);
        if e.unconfirmed() && now_ms.saturating_sub(fetched) >= EMPTY_CONFIRM_MS {
            due.push((a, b));
        } else {
            covered.insert(a, b);
        }
    }
    let confirm = due
        .into_iter()
        .flat_map(|(a, b)| covered.missing(a, b))
        .collect();
    Coverage { covered, confirm }
}

fn to_line(entry: &Entry) -> Vec<u8> {
    // Field order puts `source` last, so a torn line never parses as a complete object.
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Append one entry (caller holds the folder lock).
pub fn append(dir: &Path, entry: &Entry, durable: bool) -> Result<()> {
    Ok(fsio::append_line(&log_path(dir), &to_line(entry), durable)?)
}

/// An entry covering the half-open `[start, end)` of `period`, fetched at `now_ms`.
pub fn entry_for(
    period: &Period,
    start: i64,
    end: i64,
    count: i64,
    now_ms: i64,
    source: &str,
) -> Result<Entry> {
    Ok(Entry {
        fetch_time: iso_utc(now_ms),
        data_start: start,
        data_end: period.add(end, -1)?.max(start),
        count,
        source: source.to_owned(),
    })
}

/// Rewrite the log as one line per merged covered range, atomically (caller holds the lock).
/// Returns whether it rewrote. With `force`, rewrites even a small log.
pub fn compact(dir: &Path, period: &Period, durable: bool, force: bool) -> Result<bool> {
    rewrite(dir, period, &[], durable, force)
}

/// Rewrite the log without any coverage of `holes` (their data must be fetched again).
pub fn uncover(dir: &Path, period: &Period, holes: &[(i64, i64)], durable: bool) -> Result<()> {
    rewrite(dir, period, holes, durable, true).map(|_| ())
}

/// `(start, end, count, fetched_ms)` spans without the parts inside `holes`.
fn cut(spans: Vec<Span>, holes: &Ranges) -> Vec<Span> {
    if holes.is_empty() {
        return spans;
    }
    spans
        .into_iter()
        .flat_map(|(a, b, count, fetched)| {
            // Keep the parts of [a, b) that no hole touches.
            let inside: Ranges = holes
                .as_slice()
                .iter()
                .map(|&(h0, h1)| (h0.max(a), h1.min(b)))
                .collect();
            inside
                .missing(a, b)
                .into_iter()
                .map(move |(x, y)| (x, y, count, fetched))
                .collect::<Vec<_>>()
        })
        .collect()
}

type Span = (i64, i64, i64, i64);

fn rewrite(
    dir: &Path,
    period: &Period,
    holes: &[(i64, i64)],
    durable: bool,
    force: bool,
) -> Result<bool> {
    let entries = read_entries(dir)?;
    let merged = merged_entries(&entries, period, holes)?;
    if !force && entries.len() <= merged.len() + COMPACT_SLACK {
        return Ok(false);
    }
    let out: Vec<u8> = merged.iter().flat_map(to_line).collect();
    fsio::atomic_write(&log_path(dir), durable, |f| f.write_all(&out))?;
    Ok(true)
}

/// The same coverage as `entries`, less `holes`, in as few entries as it takes: one per
/// merged range answered, and unconfirmed empty answers on their own entries with their
/// times (their confirmation is due an hour after them), without the parts confirmed or
/// answered since.
pub fn merged_entries(
    entries: &[Entry],
    period: &Period,
    holes: &[(i64, i64)],
) -> Result<Vec<Entry>> {
    let span = |e: &Entry| {
        let (a, b) = e.coverage(period)?;
        Some((a, b, e.count, parse_iso_ms(&e.fetch_time).unwrap_or(0)))
    };
    let holes: Ranges = holes.iter().copied().collect();
    let mut spans = cut(
        entries
            .iter()
            .filter(|e| !e.unconfirmed())
            .filter_map(span)
            .collect(),
        &holes,
    );
    spans.sort_unstable();
    let mut merged: Vec<Span> = Vec::new();
    for (a, b, count, fetched) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => {
                last.1 = last.1.max(b);
                last.2 += count;
                last.3 = last.3.max(fetched);
            }
            _ => merged.push((a, b, count, fetched)),
        }
    }
    let settled: Ranges = merged.iter().map(|&(a, b, _, _)| (a, b)).collect();
    let mut pending = cut(
        entries
            .iter()
            .filter(|e| e.unconfirmed())
            .filter_map(span)
            .collect(),
        &holes,
    );
    pending = cut(pending, &settled);
    pending.sort_unstable();
    pending.dedup();
    let mut out = span_entries(period, merged, "compacted")?;
    out.extend(span_entries(period, pending, UNCONFIRMED)?);
    Ok(out)
}

/// One entry per `(start, end, count, fetched_ms)` span, tagged `source`.
fn span_entries(period: &Period, spans: Vec<Span>, source: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::with_capacity(spans.len());
    for (a, b, count, fetched) in spans {
        let mut entry = entry_for(period, a, b, count, fetched, source)?;
        if fetched == 0 {
            entry.fetch_time = String::new();
        }
        out.push(entry);
    }
    Ok(out)
}

/// Replace the log with one line per `(start, end, count, fetched_ms)` span, tagged `source`.
pub fn write_spans(
    dir: &Path,
    period: &Period,
    merged: Vec<Span>,
    source: &str,
    durable: bool,
) -> Result<()> {
    let out: Vec<u8> = span_entries(period, merged, source)?
        .iter()
        .flat_map(to_line)
        .collect();
    fsio::atomic_write(&log_path(dir), durable, |f| f.write_all(&out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p1m() -> Period {
        Period::parse("1m").unwrap()
    }

    #[test]
    fn our_lines_and_the_originals_mean_the_same_span() {
        let p = p1m();
        let e = entry_for(&p, 0, 600_000, 10, 10_000_000, "api").unwrap();
        assert_eq!((e.data_start, e.data_end), (0, 540_000));
        assert_eq!(e.coverage(&p), Some((0, 600_000)));
        // The original's line: min and max time of the rows it fetched.
        let orig = parse_line(r#"{"fetch_time": "2024-01-01T00:00:00+00:00", "data_start": 0, "data_end": 540000, "count": 10, "source": "api"}"#).unwrap();
        assert_eq!(orig.coverage(&p), Some((0, 600_000)));
    }

    #[test]
    fn an_open_candle_at_fetch_time_is_not_covered() {
        let p = p1m();
        // Fetched 30 s into the candle opening at 540000: that candle was still forming.
        let line = format!(
            r#"{{"fetch_time": "{}", "data_start": 0, "data_end": 540000, "count": 10, "source": "api"}}"#,
            iso_utc(570_000)
        );
        assert_eq!(parse_line(&line).unwrap().coverage(&p), Some((0, 540_000)));
    }

    #[test]
    fn torn_and_garbage_lines_are_ignored() {
        assert!(parse_line(r#"{"fetch_time": "x", "data_start": 0, "data_end": 5"#).is_none());
        assert!(parse_line("garbage").is_none());
        assert!(parse_line(r#"{"data_start": 10, "data_end": 5}"#).is_none());
        assert!(parse_line(r#"{"data_start": 10.0, "data_end": 50, "count": 2}"#).is_some());
    }

    #[test]
    fn append_read_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let p = p1m();
        let now = 1_000_000_000;
        for i in 0..100 {
            let e = entry_for(&p, i * 60_000, (i + 1) * 60_000, 1, now, "api").unwrap();
            append(dir.path(), &e, false).unwrap();
        }
        append(
            dir.path(),
            &entry_for(&p, 9_960_000, 10_020_000, 0, now, "api").unwrap(),
            false,
        )
        .unwrap();
        let before = coverage(dir.path(), &p).unwrap();
        assert_eq!(
            before.as_slice(),
            &[(0, 6_000_000), (9_960_000, 10_020_000)]
        );
        assert!(compact(dir.path(), &p, false, false).unwrap());
        assert_eq!(read_entries(dir.path()).unwrap().len(), 2);
        assert_eq!(coverage(dir.path(), &p).unwrap(), before);
        assert!(!compact(dir.path(), &p, false, false).unwrap());
    }
}
