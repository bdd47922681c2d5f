//! The read-through entry point: read what the cache covers, fetch only what it does not.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;

use super::coverage::Ranges;
use super::error::{OhlcvError, Result};
use super::frame;
use super::hot::HotTier;
use super::integrity::Verify;
use super::log;
use super::period::Period;
use super::read;
use super::store;
use crate::fsio::{self, FolderLock, FsError};

/// An answer of "nothing after this" is trusted only for slots that ended this long ago:
/// some exchanges publish a closed candle seconds after its end, and a slot claimed empty
/// would never be asked again.
const EMPTY_TAIL_SETTLE_MS: i64 = 60_000;

/// Pending rows are written once this many accumulate (and always at the end or on error),
/// so a long backfill keeps what it fetched if the callback fails halfway.
const FLUSH_ROWS: usize = 200_000;

/// Where candles come from: a ccxt-style `fetch_ohlcv(since, limit)`.
pub trait Fetcher {
    /// Candles opening at or after `since`, at most about `limit` of them.
    fn fetch(&mut self, since: i64, limit: i64) -> Result<RecordBatch>;
    /// Told after each page how many of the slots to fetch are done.
    fn progress(&mut self, _done: i64, _total: i64) {}
}

/// One call of `get_ohlcv_with_cache`.
#[derive(Clone, Debug)]
pub struct Request {
    pub dir: PathBuf,
    pub period: Period,
    pub start_time: i64,
    pub count: i64,
    pub enable_cache: bool,
    /// The caller's clock (epoch ms): decides which candles are final.
    pub now_ms: i64,
    pub durable: bool,
    pub lock_timeout: Option<Duration>,
    /// Decoded files kept in memory across calls (a `MarketCache`'s hot tier).
    pub hot: Option<Arc<HotTier>>,
    /// How much a read checks the files it decodes.
    pub verify: Verify,
    /// The codec of the files a fetch writes.
    pub codec: parquet::basic::Compression,
}

impl Request {
    /// The inclusive end time: `start_time + (count - 1) * period`.
    pub fn end_time(&self) -> Result<i64> {
        self.period.add(self.start_time, self.count - 1)
    }

    /// What the request spans: `None` for `count == 0`, else the candle slots
    /// `[first, end)` and the times `[lo, hi)` of the rows to return.
    pub(crate) fn bounds(&self) -> Result<Option<Bounds>> {
        if self.count < 0 {
            return Err(OhlcvError::InvalidArgument(format!(
                "count must be >= 0, got {}",
                self.count
            )));
        }
        if self.count == 0 {
            return Ok(None);
        }
        let end_time = self.end_time()?;
        let (first, end) = self.slots()?;
        Ok(Some(Bounds {
            first,
            end,
            lo: self.start_time,
            hi: end_time.saturating_add(1),
        }))
    }

    /// Candle slots `[first, end)` the request spans.
    fn slots(&self) -> Result<(i64, i64)> {
        let first = self.period.ceil(self.start_time)?;
        let last = self.period.floor(self.end_time()?)?;
        if last < first {
            return Ok((first, first));
        }
        Ok((first, self.period.add(last, 1)?))
    }
}

/// The span of a request with `count > 0`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub first: i64,
    pub end: i64,
    pub lo: i64,
    pub hi: i64,
}

/// The folder of a symbol and period, as the original tool names it.
pub fn data_dir(base: &Path, symbol: &str, period: &str) -> PathBuf {
    base.join(format!("{}_{period}", symbol.replace(['/', ':'], "_")))
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// Take the folder's lock, creating the folder if needed.
pub fn lock(dir: &Path, timeout: Option<Duration>) -> Result<FolderLock> {
    let path = lock_path(dir);
    let mut tries = 0;
    loop {
        tries += 1;
        std::fs::create_dir_all(dir).map_err(|e| FsError::io(dir, e))?;
        match FolderLock::acquire(&path, timeout) {
            // The folder was removed between creating it and opening the lock (see `discard`).
            Err(e) if tries < 8 && e.kind() == Some(std::io::ErrorKind::NotFound) => continue,
            Err(e) => return Err(e.into()),
            Ok(held) if held.is_at(&path) => return Ok(held),
            Ok(_) if tries < 8 => continue,
            Ok(held) => return Ok(held),
        }
    }
}

/// Remove a folder this call created if it still holds nothing but the lock file (a first
/// call for an unknown symbol must not leave an empty folder behind). The lock file goes
/// while still held: a process waiting on it sees it was removed and starts over.
fn discard(dir: &Path, held: FolderLock) {
    let only_lock = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .all(|e| e.file_name() == *".lock")
    });
    if cfg!(unix) && only_lock && std::fs::remove_file(lock_path(dir)).is_ok() {
        drop(held);
        let _ = std::fs::remove_dir(dir);
    }
}

/// Read the cache, fetching what is missing; returns the rows of the request.
pub fn get(req: &Request, fetcher: &mut dyn Fetcher) -> Result<Vec<RecordBatch>> {
    let Some(Bounds { first, end, lo, hi }) = req.bounds()? else {
        return Ok(Vec::new());
    };
    if req.enable_cache {
        // Fully cached reads take no lock: every file change is an atomic rename.
        let known = log::coverage_at(&req.dir, &req.period, req.now_ms)?;
        if to_fetch(req, &known.covered, first, end)?.is_empty() {
            return read::read_range_hot(&req.dir, lo, hi, req.hot.as_deref(), req.verify);
        }
    }
    let fresh = !req.dir.exists();
    let fetched = {
        let guard = lock(&req.dir, req.lock_timeout)?;
        let known = if req.enable_cache {
            log::coverage_at(&req.dir, &req.period, req.now_ms)?
        } else {
            log::Coverage::default()
        };
        let missing = to_fetch(req, &known.covered, first, end)?;
        let mut folder = Folder(req);
        let mut run = Run::new(
            &req.period,
            req.now_ms,
            req.enable_cache,
            known.confirm,
            &mut folder,
        );
        let outcome = run.fetch_all(&missing, fetcher);
        let flushed = run.flush();
        if fresh && outcome.is_err() {
            discard(&req.dir, guard);
        }
        outcome?;
        flushed?;
        log::compact(&req.dir, &req.period, req.durable, false)?;
        run.returned
    };
    if req.enable_cache {
        read::read_range_hot(&req.dir, lo, hi, req.hot.as_deref(), req.verify)
    } else {
        let pieces = fetched
            .into_iter()
            .map(|b| (0, frame::slice_sorted(&b, lo, hi)))
            .collect();
        frame::merge(pieces).map_err(|e| OhlcvError::corrupted(&req.dir, e))
    }
}

/// The ranges to ask the exchange for: the requested slots not covered, without slots that
/// open after `now` (they cannot exist yet).
fn to_fetch(req: &Request, covered: &Ranges, first: i64, end: i64) -> Result<Vec<(i64, i64)>> {
    missing_slots(&req.period, req.now_ms, covered, first, end)
}

/// [`to_fetch`] for any store: the slots of `[first, end)` not in `covered` that exist at `now_ms`.
pub(crate) fn missing_slots(
    period: &Period,
    now_ms: i64,
    covered: &Ranges,
    first: i64,
    end: i64,
) -> Result<Vec<(i64, i64)>> {
    let existing_end = period.add(period.floor(now_ms)?, 1)?;
    Ok(covered.missing(first, end.min(existing_end)))
}

/// Where a fetch's rows and coverage go: the local folder under its lock, or the shared log
/// on object storage.
pub(crate) trait Sink {
    /// Store `rows` (sorted and unique on time), then record `entries`: data always before the
    /// coverage that vouches for it, so a crash in between loses coverage, never candles.
    fn commit(&mut self, rows: Option<RecordBatch>, entries: Vec<log::Entry>) -> Result<()>;
    /// Where the rows go, for error messages.
    fn place(&self) -> PathBuf;
}

/// The local folder of a request (its lock is held).
struct Folder<'a>(&'a Request);

impl Sink for Folder<'_> {
    fn commit(&mut self, rows: Option<RecordBatch>, entries: Vec<log::Entry>) -> Result<()> {
        let req = self.0;
        if let Some(batch) = rows {
            let opts = store::WriteOpts {
                durable: req.durable,
                codec: req.codec,
                verify: req.verify,
            };
            store::write_rows(&req.dir, &req.period, &batch, opts)?;
        }
        for entry in &entries {
            log::append(&req.dir, entry, req.durable)?;
        }
        if req.durable && !entries.is_empty() {
            fsio::fsync_dir(&req.dir)?;
        }
        Ok(())
    }

    fn place(&self) -> PathBuf {
        self.0.dir.clone()
    }
}

/// The state of one fetch under the lock: rows and coverage not yet written.
pub(crate) struct Run<'a> {
    period: &'a Period,
    now_ms: i64,
    enable_cache: bool,
    sink: &'a mut dyn Sink,
    final_end: i64,
    /// Slots ending at or before this may be claimed empty when the exchange has nothing after them.
    empty_end: i64,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    claims: Ranges,
    claim_rows: i64,
    /// Ranges answered empty once before, long enough ago: an empty answer there confirms.
    confirm: Ranges,
    /// Ranges answered empty for the first time (written as unconfirmed lines).
    unconfirmed: Ranges,
    /// With `enable_cache=False`, what was fetched is what is returned.
    pub(crate) returned: Vec<RecordBatch>,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        period: &'a Period,
        now_ms: i64,
        enable_cache: bool,
        confirm: Ranges,
        sink: &'a mut dyn Sink,
    ) -> Self {
        Run {
            period,
            now_ms,
            enable_cache,
            sink,
            final_end: log::final_end(period, now_ms).unwrap_or(i64::MIN),
            empty_end: log::final_end(period, now_ms.saturating_sub(EMPTY_TAIL_SETTLE_MS))
                .unwrap_or(i64::MIN),
            pending: Vec::new(),
            pending_rows: 0,
            claims: Ranges::new(),
            claim_rows: 0,
            confirm,
            unconfirmed: Ranges::new(),
            returned: Vec::new(),
        }
    }

    pub(crate) fn fetch_all(
        &mut self,
        missing: &[(i64, i64)],
        fetcher: &mut dyn Fetcher,
    ) -> Result<()> {
        let p = self.period;
        let mut total = 0;
        for &(a, b) in missing {
            total += p.slots(a, b)?;
        }
        let mut done = 0;
        for &(a, b) in missing {
            let mut cursor = a;
            while cursor < b {
                let limit = p.slots(cursor, b)?;
                let raw = fetcher.fetch(cursor, limit)?;
                let rows = self.validate(raw, cursor)?;
                let t = frame::times(&rows).values();
                let Some(&last) = t.last() else {
                    // Nothing at or after `cursor`: the rest of the range has no candles,
                    // as far as its settled part goes.
                    self.claim_empty(cursor, b.min(self.empty_end));
                    break;
                };
                let in_range = frame::slice_sorted(&rows, cursor, b);
                let next = p.add(last, 1)?;
                self.claim(cursor, next.min(b), in_range.num_rows() as i64);
                self.keep(in_range)?;
                done += p.slots(cursor, next.min(b))?;
                fetcher.progress(done.min(total), total);
                if next > self.final_end {
                    // Reached the still-forming candle: nothing final lies beyond it.
                    break;
                }
                cursor = next;
            }
        }
        fetcher.progress(total, total);
        Ok(())
    }

    /// Sorted, unique, aligned rows at or after `since`, or a clear error.
    fn validate(&self, raw: RecordBatch, since: i64) -> Result<RecordBatch> {
        let rows = frame::normalize(&raw, true).map_err(OhlcvError::BadCallbackData)?;
        let p = self.period;
        for &t in frame::times(&rows).values() {
            if t < since {
                let hint = if t.abs() < 100_000_000_000 && since.abs() >= 100_000_000_000 {
                    " (it looks like seconds; times must be epoch milliseconds)"
                } else {
                    ""
                };
                return Err(OhlcvError::BadCallbackData(format!(
                    "row at time {t} is before the requested since={since}{hint}"
                )));
            }
            if !p.is_aligned(t)? {
                return Err(OhlcvError::BadCallbackData(format!(
                    "row at time {t} is not the open time of a {} candle",
                    p.name()
                )));
            }
        }
        let rows = if frame::is_strictly_sorted(&rows) {
            rows
        } else {
            frame::concat(frame::merge(vec![(0, rows)]).map_err(OhlcvError::BadCallbackData)?)
                .map_err(OhlcvError::BadCallbackData)?
        };
        Ok(rows)
    }

    /// Record that `[a, b)` was answered; only its final part counts as covered.
    fn claim(&mut self, a: i64, b: i64, rows: i64) {
        self.claims.insert(a, b.min(self.final_end));
        self.claim_rows += rows;
    }

    /// Record that `[a, b)` was answered empty: confirmed where it had been answered empty
    /// before (long enough ago), unconfirmed elsewhere.
    fn claim_empty(&mut self, a: i64, b: i64) {
        let b = b.min(self.final_end);
        if a >= b {
            return;
        }
        let again: Ranges = self
            .confirm
            .as_slice()
            .iter()
            .map(|&(x, y)| (x.max(a), y.min(b)))
            .collect();
        for &(x, y) in again.as_slice() {
            self.claims.insert(x, y);
        }
        for (x, y) in again.missing(a, b) {
            self.unconfirmed.insert(x, y);
        }
    }

    fn keep(&mut self, rows: RecordBatch) -> Result<()> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += rows.num_rows();
        if !self.enable_cache {
            self.returned.push(rows.clone());
        }
        self.pending.push(rows);
        if self.pending_rows >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Write pending rows, then the log lines that cover them: data before its log line.
    pub(crate) fn flush(&mut self) -> Result<()> {
        let rows = if self.pending.is_empty() {
            None
        } else {
            let place = || self.sink.place();
            let merged = frame::merge(
                std::mem::take(&mut self.pending)
                    .into_iter()
                    .map(|b| (0, b))
                    .collect(),
            )
            .map_err(|e| OhlcvError::corrupted(place(), e))?;
            Some(frame::concat(merged).map_err(|e| OhlcvError::corrupted(place(), e))?)
        };
        let mut entries = Vec::new();
        let claims = std::mem::take(&mut self.claims);
        for (i, &(a, b)) in claims.as_slice().iter().enumerate() {
            // Row counts are per flush; attribute them to the first line.
            let count = if i == 0 { self.claim_rows } else { 0 };
            entries.push(log::entry_for(
                self.period,
                a,
                b,
                count,
                self.now_ms,
                "api",
            )?);
        }
        let first_time = std::mem::take(&mut self.unconfirmed);
        for &(a, b) in first_time.as_slice() {
            entries.push(log::entry_for(
                self.period,
                a,
                b,
                0,
                self.now_ms,
                log::UNCONFIRMED,
            )?);
        }
        if rows.is_none() && entries.is_empty() {
            return Ok(());
        }
        self.sink.commit(rows, entries)?;
        self.pending_rows = 0;
        self.claim_rows = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory exchange: candles every period from `listed` to `delisted`, a gap, a cap.
    struct Fake {
        period: Period,
        listed: i64,
        delisted: i64,
        gap: (i64, i64),
        cap: i64,
        calls: Vec<(i64, i64)>,
        now: i64,
        fail_after: Option<usize>,
        /// Answer `[]` (as a callback that swallows network errors does).
        outage: bool,
    }

    impl Fetcher for Fake {
        fn fetch(&mut self, since: i64, limit: i64) -> Result<RecordBatch> {
            self.calls.push((since, limit));
            if self.fail_after.is_some_and(|n| self.calls.len() > n) {
                return Err(OhlcvError::Callback("boom".into()));
            }
            let mut rows = Vec::new();
            if self.outage {
                return Ok(frame::from_rows(&rows));
            }
            let mut t = self.period.ceil(since.max(self.listed)).unwrap();
            while (rows.len() as i64) < limit.min(self.cap) && t < self.delisted && t <= self.now {
                if !(self.gap.0 <= t && t < self.gap.1) {
                    rows.push([t as f64, 1.0, 2.0, 0.5, (t / 60_000) as f64, 3.0]);
                }
                t = self.period.add(t, 1).unwrap();
            }
            Ok(frame::from_rows(&rows))
        }
    }

    const M: i64 = 60_000;

    fn setup() -> (tempfile::TempDir, Fake, Request) {
        let dir = tempfile::tempdir().unwrap();
        let period = Period::parse("1m").unwrap();
        let fake = Fake {
            period,
            listed: 100 * M,
            delisted: 100_000 * M,
            gap: (5000 * M, 5100 * M),
            cap: 1000,
            calls: Vec::new(),
            now: 200_000 * M,
            fail_after: None,
            outage: false,
        };
        let req = Request {
            dir: dir.path().join("X_1m"),
            period,
            start_time: 0,
            count: 3000,
            enable_cache: true,
            now_ms: 200_000 * M,
            durable: false,
            lock_timeout: None,
            hot: None,
            verify: Verify::Fast,
            codec: crate::ohlcv::parquet_file::default_codec(),
        };
        (dir, fake, req)
    }

    fn n(b: &[RecordBatch]) -> usize {
        b.iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn paginates_then_serves_from_cache() {
        let (_d, mut fake, req) = setup();
        let got = get(&req, &mut fake).unwrap();
        assert_eq!(n(&got), 2900); // listed at minute 100
        assert_eq!(fake.calls.len(), 3);
        let got = get(&req, &mut fake).unwrap();
        assert_eq!(n(&got), 2900);
        assert_eq!(fake.calls.len(), 3);
    }

    #[test]
    fn empty_answers_are_not_asked_again() {
        let (_d, mut fake, mut req) = setup();
        req.start_time = 4900 * M;
        req.count = 300;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 200);
        req.start_time = 99_990 * M;
        req.count = 100;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        let calls = fake.calls.len();
        req.start_time = 5000 * M;
        req.count = 100;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 0);
        req.start_time = 99_990 * M;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        assert_eq!(fake.calls.len(), calls);
    }

    #[test]
    fn an_empty_answer_is_asked_once_more_after_an_hour_then_trusted() {
        let (_d, mut fake, mut req) = setup();
        req.start_time = 99_990 * M; // the symbol was delisted at minute 100,000
        req.count = 100;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        let calls = fake.calls.len();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        assert_eq!(fake.calls.len(), calls, "asked again within the hour");
        req.now_ms += log::EMPTY_CONFIRM_MS;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        assert_eq!(fake.calls.len(), calls + 1, "not asked to confirm");
        assert_eq!(fake.calls.last(), Some(&(100_000 * M, 90)));
        req.now_ms += 10 * log::EMPTY_CONFIRM_MS;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        assert_eq!(fake.calls.len(), calls + 1, "asked after the confirmation");
        // Compacting the log keeps what is confirmed and what is not.
        log::compact(&req.dir, &req.period, false, true).unwrap();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 10);
        assert_eq!(fake.calls.len(), calls + 1);
    }

    #[test]
    fn a_range_answered_empty_during_an_outage_is_filled_later() {
        let (_d, mut fake, mut req) = setup();
        req.start_time = 1000 * M;
        req.count = 100;
        fake.outage = true;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 0);
        fake.outage = false;
        log::compact(&req.dir, &req.period, false, true).unwrap();
        req.now_ms += log::EMPTY_CONFIRM_MS;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 100);
        req.now_ms += 10 * log::EMPTY_CONFIRM_MS;
        let calls = fake.calls.len();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 100);
        assert_eq!(fake.calls.len(), calls);
    }

    #[test]
    fn open_candle_is_returned_but_refetched() {
        let (_d, mut fake, mut req) = setup();
        fake.now = 3000 * M + 30_000;
        req.now_ms = fake.now;
        req.start_time = 2990 * M;
        req.count = 20;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 11);
        let calls = fake.calls.len();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 11);
        assert_eq!(fake.calls.len(), calls + 1);
        assert_eq!(*fake.calls.last().unwrap(), (3000 * M, 1));
    }

    #[test]
    fn a_recent_empty_tail_is_asked_again() {
        let (_d, mut fake, mut req) = setup();
        // 30 s into minute 3000; the exchange has not yet published minute 2999.
        fake.now = 2998 * M;
        req.now_ms = 3000 * M + 30_000;
        req.start_time = 2990 * M;
        req.count = 11;
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 9);
        fake.now = 3000 * M;
        fake.calls.clear();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 11);
        assert_eq!(fake.calls, vec![(2999 * M, 2)]);
    }

    #[test]
    fn a_failing_callback_keeps_earlier_pages() {
        let (_d, mut fake, req) = setup();
        fake.fail_after = Some(2);
        assert!(matches!(get(&req, &mut fake), Err(OhlcvError::Callback(_))));
        fake.fail_after = None;
        fake.calls.clear();
        assert_eq!(n(&get(&req, &mut fake).unwrap()), 2900);
        assert_eq!(fake.calls, vec![(2100 * M, 900)]);
    }

    #[test]
    fn bad_rows_are_rejected() {
        struct Junk(i64);
        impl Fetcher for Junk {
            fn fetch(&mut self, since: i64, _: i64) -> Result<RecordBatch> {
                Ok(frame::from_rows(&[[
                    (since + self.0) as f64,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                    1.0,
                ]]))
            }
        }
        let (_d, _, req) = setup();
        assert!(matches!(
            get(&req, &mut Junk(-M)),
            Err(OhlcvError::BadCallbackData(_))
        ));
        assert!(matches!(
            get(&req, &mut Junk(1)),
            Err(OhlcvError::BadCallbackData(_))
        ));
        assert_eq!(
            n(&read::read_range(&req.dir, i64::MIN, i64::MAX).unwrap()),
            0
        );
    }
}
