//! Which archive files to download: monthly files for published months that are mostly
//! missing, daily files for the days still missing, nothing already covered, and nothing
//! before it is published (its period over plus the publication lag).

use chrono::DateTime;

use crate::ohlcv::{Period, Ranges};

use super::error::{Result, VisionError};
use super::market::{self, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Daily,
    Monthly,
}

/// One zip of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveFile {
    pub kind: Kind,
    /// The path under the base URL, e.g. `data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip`.
    pub path: String,
    /// The candle slots the file holds: `[first open time, end)`.
    pub start: i64,
    pub end: i64,
}

impl ArchiveFile {
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Months hold too many `1s` candles (2.6 million) to decode a file at a time in bounded
/// memory; such periods use daily files only.
const MONTHLY_MAX_SLOTS: i64 = 100_000;

fn day() -> Period {
    Period::parse("1d").expect("1d is a period")
}

fn month() -> Period {
    Period::parse("1M").expect("1M is a period")
}

pub struct Planner<'a> {
    pub period: &'a Period,
    pub target: &'a Target,
    pub now_ms: i64,
    pub lag_ms: i64,
}

impl Planner<'_> {
    fn file(&self, kind: Kind, t0: i64, t1: i64) -> Result<ArchiveFile> {
        let date = DateTime::from_timestamp_millis(t0)
            .ok_or(crate::ohlcv::OhlcvError::TimeOutOfRange(t0))?;
        let (folder, stamp) = match kind {
            Kind::Daily => ("daily", date.format("%Y-%m-%d").to_string()),
            Kind::Monthly => ("monthly", date.format("%Y-%m").to_string()),
        };
        let (id, iv) = (&self.target.id, market::interval(self.period));
        Ok(ArchiveFile {
            kind,
            path: format!(
                "data/{}/{folder}/klines/{id}/{iv}/{id}-{iv}-{stamp}.zip",
                self.target.market.path()
            ),
            start: self.period.ceil(t0)?,
            end: self.period.ceil(t1)?,
        })
    }

    fn uses_monthly(&self) -> bool {
        !market::has_daily(self.period)
            || self.period.nominal_ms() * MONTHLY_MAX_SLOTS >= 31 * 86_400_000
    }

    /// The end of what the archive may have published by now: files whose span ends at or
    /// before this are asked for.
    pub fn published_end(&self, kind: Kind) -> Result<i64> {
        let cut = self.now_ms.saturating_sub(self.lag_ms);
        Ok(match kind {
            Kind::Daily => day().floor(cut)?,
            Kind::Monthly => month().floor(cut)?,
        })
    }

    /// Where planning stops when no end is given: the last slot the archive may hold.
    pub fn horizon(&self) -> Result<i64> {
        let kind = if market::has_daily(self.period) {
            Kind::Daily
        } else {
            Kind::Monthly
        };
        Ok(self.period.ceil(self.published_end(kind)?)?)
    }

    /// Monthly files for `[lo, hi)` given what is `covered`. With daily files to fall back on,
    /// a month is taken whole only if it lies inside the range and more than half of it is
    /// missing; without them, any month with a missing slot.
    pub fn monthly(&self, covered: &Ranges, lo: i64, hi: i64) -> Result<Vec<ArchiveFile>> {
        let mut out = Vec::new();
        if !self.uses_monthly() || lo >= hi {
            return Ok(out);
        }
        let published = self.published_end(Kind::Monthly)?;
        let m = month();
        let mut t0 = m.floor(lo)?;
        while t0 < hi {
            let t1 = m.add(t0, 1)?;
            if t1 > published {
                break;
            }
            let f = self.file(Kind::Monthly, t0, t1)?;
            let (a, b) = (f.start.max(lo), f.end.min(hi));
            let missing: i64 = covered.missing(a, b).iter().map(|(x, y)| y - x).sum();
            let take = if market::has_daily(self.period) {
                f.start >= lo && f.end <= hi && missing * 2 > f.end - f.start
            } else {
                missing > 0
            };
            if take {
                out.push(f);
            }
            t0 = t1;
        }
        Ok(out)
    }

    /// Daily files for every published day of `[lo, hi)` with a missing slot.
    pub fn daily(&self, covered: &Ranges, lo: i64, hi: i64) -> Result<Vec<ArchiveFile>> {
        let mut out = Vec::new();
        if !market::has_daily(self.period) || lo >= hi {
            return Ok(out);
        }
        let published = self.published_end(Kind::Daily)?;
        let d = day();
        let mut t0 = d.floor(lo)?;
        while t0 < hi {
            let t1 = d.add(t0, 1)?;
            if t1 > published {
                break;
            }
            let f = self.file(Kind::Daily, t0, t1)?;
            if f.start < f.end && !covered.covers(f.start.max(lo), f.end.min(hi)) {
                out.push(f);
            }
            t0 = t1;
        }
        Ok(out)
    }

    /// The files a run over `[lo, hi)` with nothing covered would download.
    pub fn all(&self, lo: i64, hi: i64) -> Result<Vec<ArchiveFile>> {
        let none = Ranges::new();
        let mut files = self.monthly(&none, lo, hi)?;
        let mut after = Ranges::new();
        for f in &files {
            after.insert(f.start, f.end);
        }
        files.extend(self.daily(&after, lo, hi)?);
        Ok(files)
    }

    /// The file an archive path names (from the failure registry), if it is one of this
    /// symbol's and period's.
    pub fn from_path(&self, path: &str) -> Result<ArchiveFile> {
        let bad = || {
            VisionError::InvalidArgument(format!(
                "{path:?} is not an archive file of this symbol and period"
            ))
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        let prefix = format!("{}-{}-", self.target.id, market::interval(self.period));
        let stamp = name
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix(".zip"))
            .ok_or_else(bad)?;
        let parts: Vec<&str> = stamp.split('-').collect();
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let (kind, t0, t1) = match parts.as_slice() {
            [y, m] => {
                let t0 = month_start(num(y)? as i32, num(m)?).ok_or_else(bad)?;
                (Kind::Monthly, t0, month().add(t0, 1)?)
            }
            [y, m, d] => {
                let t0 = month_start(num(y)? as i32, num(m)?).ok_or_else(bad)?
                    + (i64::from(num(d)?) - 1) * 86_400_000;
                (Kind::Daily, t0, day().add(t0, 1)?)
            }
            _ => return Err(bad()),
        };
        let f = self.file(kind, t0, t1)?;
        if f.name() != name {
            return Err(bad());
        }
        Ok(f)
    }
}

fn month_start(y: i32, m: u32) -> Option<i64> {
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::market::infer;

    const DAY: i64 = 86_400_000;
    const JAN: i64 = 1_704_067_200_000; // 2024-01-01
    const FEB: i64 = JAN + 31 * DAY;
    const MAR: i64 = FEB + 29 * DAY;

    fn planner<'a>(p: &'a Period, t: &'a Target, now: i64) -> Planner<'a> {
        Planner {
            period: p,
            target: t,
            now_ms: now,
            lag_ms: 2 * DAY,
        }
    }

    #[test]
    fn whole_months_monthly_rest_daily() {
        let p = Period::parse("1m").unwrap();
        let t = infer("BTC/USDT", None, None).unwrap();
        let pl = planner(&p, &t, MAR + 10 * DAY);
        // 2024-01-20 .. 2024-03-05
        let (lo, hi) = (JAN + 19 * DAY, MAR + 5 * DAY);
        let files = pl.all(lo, hi).unwrap();
        let monthly: Vec<_> = files.iter().filter(|f| f.kind == Kind::Monthly).collect();
        assert_eq!(monthly.len(), 1);
        assert_eq!(
            monthly[0].path,
            "data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02.zip"
        );
        assert_eq!(files.len(), 1 + 12 + 5);
        assert_eq!(
            files[1].path,
            "data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-20.zip"
        );
        assert_eq!(pl.from_path(&files[1].path).unwrap(), files[1]);
        assert_eq!(pl.from_path(&monthly[0].path).unwrap(), *monthly[0]);
    }

    #[test]
    fn unpublished_files_are_not_planned() {
        let p = Period::parse("1h").unwrap();
        let t = infer("BTC/USDT:USDT", None, None).unwrap();
        // now is 2024-03-02 12:00: Feb's monthly file is not due (ends Mar 1 + 2 days lag),
        // days up to Feb 28 are.
        let pl = planner(&p, &t, MAR + DAY + DAY / 2);
        let files = pl.all(FEB, MAR + 5 * DAY).unwrap();
        assert!(files.iter().all(|f| f.kind == Kind::Daily));
        assert_eq!(files.len(), 28);
        assert!(
            files[0]
                .path
                .starts_with("data/futures/um/daily/klines/BTCUSDT/1h/")
        );
        assert_eq!(pl.horizon().unwrap(), FEB + 28 * DAY);
    }

    #[test]
    fn covered_days_are_skipped_and_monthly_only_periods() {
        let p = Period::parse("1m").unwrap();
        let t = infer("BTC/USDT", None, None).unwrap();
        let pl = planner(&p, &t, MAR + 10 * DAY);
        let mut cov = Ranges::new();
        cov.insert(FEB, FEB + 20 * DAY);
        let m = pl.monthly(&cov, FEB, MAR).unwrap();
        assert!(m.is_empty(), "a month mostly covered is not taken whole");
        assert_eq!(pl.daily(&cov, FEB, MAR).unwrap().len(), 9);
        let w = Period::parse("1w").unwrap();
        let pw = planner(&w, &t, MAR + 10 * DAY);
        let files = pw.all(JAN + 5 * DAY, MAR).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].path.ends_with("BTCUSDT-1w-2024-01.zip"));
        let mo = Period::parse("1M").unwrap();
        let pm = planner(&mo, &t, MAR + 10 * DAY);
        assert!(
            pm.all(JAN, MAR).unwrap()[0]
                .path
                .contains("/1mo/BTCUSDT-1mo-2024-01.zip")
        );
        let s = Period::parse("1s").unwrap();
        let ps = planner(&s, &t, MAR + 10 * DAY);
        assert!(
            ps.all(FEB, MAR)
                .unwrap()
                .iter()
                .all(|f| f.kind == Kind::Daily)
        );
    }
}
