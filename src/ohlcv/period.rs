//! Candle periods (every ccxt timeframe), their alignment, and partition keys.

use chrono::{DateTime, Datelike, NaiveDate};

use super::error::{OhlcvError, Result};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 1970-01-05, the first Monday after the epoch: exchanges open weekly candles on Mondays.
const MONDAY: i64 = 4 * DAY;

/// Every timeframe ccxt defines, in order.
pub const PERIODS: [&str; 16] = [
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
];

/// How many candles share one Parquet file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Month,
    Year,
    Decade,
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::Month => "month",
            Window::Year => "year",
            Window::Decade => "decade",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A fixed length in ms, aligned to `origin + k * ms`.
    Fixed { ms: i64, origin: i64 },
    /// Calendar months starting on the 1st, 00:00 UTC.
    Month,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    name: &'static str,
    step: Step,
    window: Window,
}

impl Period {
    pub fn parse(name: &str) -> Result<Period> {
        let fixed = |ms| Step::Fixed { ms, origin: 0 };
        // Windows follow the original tool's PARTITION_CONFIG (1m, 5m by month; 1d by decade;
        // everything else it accepted by year) so directories it wrote are extended in place.
        // Periods it refused get: 1s by month, 1w and 1M by decade.
        let (name, step, window) = match name {
            "1s" => ("1s", fixed(SECOND), Window::Month),
            "1m" => ("1m", fixed(MINUTE), Window::Month),
            "3m" => ("3m", fixed(3 * MINUTE), Window::Year),
            "5m" => ("5m", fixed(5 * MINUTE), Window::Month),
            "15m" => ("15m", fixed(15 * MINUTE), Window::Year),
            "30m" => ("30m", fixed(30 * MINUTE), Window::Year),
            "1h" => ("1h", fixed(HOUR), Window::Year),
            "2h" => ("2h", fixed(2 * HOUR), Window::Year),
            "4h" => ("4h", fixed(4 * HOUR), Window::Year),
            "6h" => ("6h", fixed(6 * HOUR), Window::Year),
            "8h" => ("8h", fixed(8 * HOUR), Window::Year),
            "12h" => ("12h", fixed(12 * HOUR), Window::Year),
            "1d" => ("1d", fixed(DAY), Window::Decade),
            "3d" => ("3d", fixed(3 * DAY), Window::Year),
            "1w" => (
                "1w",
                Step::Fixed {
                    ms: 7 * DAY,
                    origin: MONDAY,
                },
                Window::Decade,
            ),
            "1M" => ("1M", Step::Month, Window::Decade),
            other => return Err(OhlcvError::UnknownPeriod(other.to_owned())),
        };
        Ok(Period { name, step, window })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn window(&self) -> Window {
        self.window
    }

    /// Nominal length in ms (30 days for `1M`, as ccxt's `parse_timeframe`).
    pub fn nominal_ms(&self) -> i64 {
        match self.step {
            Step::Fixed { ms, .. } => ms,
            Step::Month => 30 * DAY,
        }
    }

    /// Open time of the candle containing `t`.
    pub fn floor(&self, t: i64) -> Result<i64> {
        match self.step {
            Step::Fixed { ms, origin } => Ok(origin + (t - origin).div_euclid(ms) * ms),
            Step::Month => {
                let (y, m) = year_month(t)?;
                month_start(y, m)
            }
        }
    }

    /// The first candle open time `>= t`.
    pub fn ceil(&self, t: i64) -> Result<i64> {
        let f = self.floor(t)?;
        if f == t { Ok(f) } else { self.add(f, 1) }
    }

    pub fn is_aligned(&self, t: i64) -> Result<bool> {
        Ok(self.floor(t)? == t)
    }

    /// `t + n` periods; for `1M` the offset inside the month is kept (clamped to its length).
    pub fn add(&self, t: i64, n: i64) -> Result<i64> {
        match self.step {
            Step::Fixed { ms, .. } => n
                .checked_mul(ms)
                .and_then(|d| t.checked_add(d))
                .ok_or(OhlcvError::TimeOutOfRange(t)),
            Step::Month => {
                let start = self.floor(t)?;
                let (y, m) = year_month(start)?;
                let index = (y as i64 * 12 + (m as i64 - 1))
                    .checked_add(n)
                    .ok_or(OhlcvError::TimeOutOfRange(t))?;
                let ny = i32::try_from(index.div_euclid(12))
                    .map_err(|_| OhlcvError::TimeOutOfRange(t))?;
                let nm = index.rem_euclid(12) as u32 + 1;
                let target = month_start(ny, nm)?;
                let next = month_start_after(ny, nm)?;
                Ok((target + (t - start)).min(next - 1))
            }
        }
    }

    /// Number of candles that open in `[a, b)`; `a` must be aligned.
    pub fn slots(&self, a: i64, b: i64) -> Result<i64> {
        if b <= a {
            return Ok(0);
        }
        match self.step {
            Step::Fixed { ms, .. } => Ok((b - a + ms - 1) / ms),
            Step::Month => {
                let (ya, ma) = year_month(a)?;
                let last = self.floor(b - 1)?;
                let (yb, mb) = year_month(last)?;
                Ok((yb as i64 - ya as i64) * 12 + (mb as i64 - ma as i64) + 1)
            }
        }
    }

    /// The partition file key of a candle, as the original tool names it.
    pub fn partition_key(&self, t: i64) -> Result<String> {
        let (y, m) = year_month(t)?;
        Ok(match self.window {
            Window::Month => format!("{y}-{m:02}"),
            Window::Year => format!("{y}"),
            Window::Decade => format!("{}s", y.div_euclid(10) * 10),
        })
    }

    /// The time span `[start, end)` a partition key names, if it is one of ours.
    pub fn partition_span(&self, key: &str) -> Option<(i64, i64)> {
        partition_span(key)
    }
}

/// Parse any partition key form (`2024-01`, `2024`, `2020s`) into its span.
pub fn partition_span(key: &str) -> Option<(i64, i64)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(decade) = key.strip_suffix('s') {
        if !digits(decade) {
            return None;
        }
        let y: i32 = decade.parse().ok()?;
        if y % 10 != 0 {
            return None;
        }
        return Some((month_start(y, 1).ok()?, month_start(y + 10, 1).ok()?));
    }
    if let Some((ys, ms)) = key.split_once('-') {
        if !digits(ys) || ms.len() != 2 || !digits(ms) {
            return None;
        }
        let (y, m): (i32, u32) = (ys.parse().ok()?, ms.parse().ok()?);
        if !(1..=12).contains(&m) {
            return None;
        }
        return Some((month_start(y, m).ok()?, month_start_after(y, m).ok()?));
    }
    if !digits(key) {
        return None;
    }
    let y: i32 = key.parse().ok()?;
    Some((month_start(y, 1).ok()?, month_start(y + 1, 1).ok()?))
}

fn year_month(t: i64) -> Result<(i32, u32)> {
    let dt = DateTime::from_timestamp_millis(t).ok_or(OhlcvError::TimeOutOfRange(t))?;
    Ok((dt.year(), dt.month()))
}

fn month_start(y: i32, m: u32) -> Result<i64> {
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
        .ok_or(OhlcvError::YearOutOfRange(y))
}

fn month_start_after(y: i32, m: u32) -> Result<i64> {
    if m == 12 {
        month_start(y + 1, 1)
    } else {
        month_start(y, m + 1)
    }
}

/// Render epoch ms as the original log's `fetch_time` (Python's `isoformat()` of an aware UTC datetime).
pub fn iso_utc(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
        None => String::new(),
    }
}

/// Parse an ISO-8601 timestamp as written by Python's `isoformat()`; naive times are UTC.
pub fn parse_iso_ms(s: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp_millis());
        }
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        parse_iso_ms(s).unwrap()
    }

    #[test]
    fn every_ccxt_timeframe_parses_and_unknown_fails() {
        for p in PERIODS {
            assert_eq!(Period::parse(p).unwrap().name(), p);
        }
        assert!(matches!(
            Period::parse("7m"),
            Err(OhlcvError::UnknownPeriod(_))
        ));
        assert!(Period::parse("1H").is_err());
    }

    #[test]
    fn weeks_open_on_monday_and_months_on_the_first() {
        let w = Period::parse("1w").unwrap();
        // 2024-01-03 is a Wednesday; its week opened Monday 2024-01-01.
        assert_eq!(
            w.floor(ms("2024-01-03T12:00:00Z")).unwrap(),
            ms("2024-01-01T00:00:00Z")
        );
        let m = Period::parse("1M").unwrap();
        assert_eq!(
            m.floor(ms("2024-02-29T23:59:59Z")).unwrap(),
            ms("2024-02-01T00:00:00Z")
        );
        assert_eq!(
            m.add(ms("2024-01-01T00:00:00Z"), 13).unwrap(),
            ms("2025-02-01T00:00:00Z")
        );
        assert_eq!(
            m.add(ms("2024-03-01T00:00:00Z"), -3).unwrap(),
            ms("2023-12-01T00:00:00Z")
        );
        assert_eq!(
            m.slots(ms("2024-01-01T00:00:00Z"), ms("2024-03-01T00:00:00Z"))
                .unwrap(),
            2
        );
        assert_eq!(
            m.ceil(ms("2024-01-15T00:00:00Z")).unwrap(),
            ms("2024-02-01T00:00:00Z")
        );
    }

    #[test]
    fn three_days_are_epoch_aligned() {
        let p = Period::parse("3d").unwrap();
        assert_eq!(p.floor(3 * DAY + 5).unwrap(), 3 * DAY);
        assert_eq!(p.floor(-1).unwrap(), -3 * DAY);
    }

    #[test]
    fn partition_keys_match_the_original_tool() {
        let t = ms("2024-03-15T10:00:00Z");
        let key = |p: &str| Period::parse(p).unwrap().partition_key(t).unwrap();
        assert_eq!(key("1m"), "2024-03");
        assert_eq!(key("5m"), "2024-03");
        assert_eq!(key("15m"), "2024");
        assert_eq!(key("4h"), "2024");
        assert_eq!(key("1d"), "2020s");
        assert_eq!(key("3m"), "2024");
        assert_eq!(key("1s"), "2024-03");
        assert_eq!(key("1M"), "2020s");
    }

    #[test]
    fn partition_spans_round_trip() {
        let p = Period::parse("1m").unwrap();
        for t in [
            ms("2024-01-01T00:00:00Z"),
            ms("2024-12-31T23:59:00Z"),
            ms("1999-07-04T01:02:00Z"),
        ] {
            let (a, b) = partition_span(&p.partition_key(t).unwrap()).unwrap();
            assert!(a <= t && t < b);
        }
        assert_eq!(
            partition_span("2020s").unwrap().0,
            ms("2020-01-01T00:00:00Z")
        );
        assert!(partition_span("2024-13").is_none());
        assert!(partition_span("data").is_none());
        assert!(partition_span("2025s").is_none());
    }

    #[test]
    fn iso_round_trip() {
        let t = 1_700_000_000_123;
        assert_eq!(parse_iso_ms(&iso_utc(t)), Some(t));
        assert_eq!(
            parse_iso_ms("2024-01-01T00:00:00.5+00:00"),
            Some(ms("2024-01-01T00:00:00Z") + 500)
        );
        assert!(parse_iso_ms("garbage").is_none());
    }
}
