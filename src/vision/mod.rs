//! The Binance public-archive backfill (`data.binance.vision`): plan which daily and monthly
//! zips a range needs, download them concurrently, verify each against its SHA-256
//! `.CHECKSUM`, parse it, and store it through the OHLCV layer (same partitions, same fetch
//! log, same folder lock) so that `get_ohlcv_with_cache` serves the range without a request.
//!
//! - A file is stored only once verified (or, with `proceed_on_failure`, stored and still
//!   registered as failing). Data is written before its log line, as every fetch does, so a
//!   kill at any point leaves a cache that reads correctly and a rerun downloads only what
//!   is not covered yet.
//! - A stored file covers its slots from its start through its last candle: slots inside it
//!   without a candle (maintenance) are covered empty; slots after its last candle (a short
//!   file) stay missing and are planned again, from daily files if it was monthly.
//! - What the archive lacks is returned as holes, for the caller to fetch through REST.

pub mod error;
pub mod http;
pub mod market;
pub mod parse;
pub mod plan;
pub mod registry;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::Duration;

use arrow_array::RecordBatch;
use sha2::{Digest, Sha256};

use crate::ohlcv::period::iso_utc;
use crate::ohlcv::{Period, Ranges, fetch, frame, integrity, log, parquet_file, store};
use crate::shared::market::Appender;

pub use error::{Problem, Result, VisionError};
pub use market::{Market, Target};
pub use plan::{ArchiveFile, Kind, Planner};

/// One backfill of a symbol and period.
#[derive(Clone, Debug)]
pub struct Backfill {
    pub base: PathBuf,
    pub symbol: String,
    pub period: Period,
    pub target: Target,
    pub base_url: String,
    pub start_ms: i64,
    /// The open time of the last candle wanted; `None`: up to what is published.
    pub end_ms: Option<i64>,
    pub verify: bool,
    pub proceed_on_failure: bool,
    /// Registered failures (archive paths) to download again whatever the coverage says.
    pub retry: Vec<String>,
    pub workers: usize,
    pub lock_timeout: Option<Duration>,
    pub durable: bool,
    pub lag_ms: i64,
    pub now_ms: i64,
    /// Store into this log on object storage instead of the folder below `base` (which
    /// then holds only the failure registry).
    pub shared: Option<crate::shared::Log>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub files_planned: usize,
    pub files_downloaded: usize,
    pub files_skipped: usize,
    pub files_verified: usize,
    pub files_unverified: usize,
    pub files_missing: Vec<String>,
    pub failures: Vec<(String, String)>,
    pub rows_written: u64,
    /// Half-open ranges of the request still not covered.
    pub holes: Vec<(i64, i64)>,
    pub bytes: u64,
}

/// What a worker brings back for one file.
struct Fetched {
    file: ArchiveFile,
    bytes: u64,
    downloaded: bool,
    result: std::result::Result<Rows, Problem>,
}

struct Rows {
    batch: RecordBatch,
    verified: bool,
    /// Stored anyway (`proceed_on_failure`) despite this.
    problem: Option<Problem>,
}

impl Backfill {
    fn planner(&self) -> Planner<'_> {
        Planner {
            period: &self.period,
            target: &self.target,
            now_ms: self.now_ms,
            lag_ms: self.lag_ms,
        }
    }

    /// The slots `[lo, hi)` asked for.
    pub fn span(&self) -> Result<(i64, i64)> {
        let lo = self.period.ceil(self.start_ms)?;
        let hi = match self.end_ms {
            Some(e) => self.period.add(self.period.floor(e)?, 1)?,
            None => self.planner().horizon()?,
        };
        Ok((lo, hi.max(lo)))
    }

    /// Check the arguments before anything touches the disk or the network.
    pub fn validate(&self) -> Result<()> {
        market::check(&self.period, &self.target)?;
        if let Some(e) = self.end_ms
            && e < self.start_ms
        {
            return Err(VisionError::InvalidArgument(format!(
                "end_time {} is before start_time {}",
                iso_utc(e),
                iso_utc(self.start_ms)
            )));
        }
        if self.workers == 0 {
            return Err(VisionError::InvalidArgument(
                "workers must be at least 1".into(),
            ));
        }
        let planner = self.planner();
        for path in &self.retry {
            planner.from_path(path)?;
        }
        self.span().map(|_| ())
    }
}

/// Run a backfill. `progress(done, total)` is called after each file is handled.
pub fn backfill(req: &Backfill, progress: &mut dyn FnMut(usize, usize)) -> Result<Report> {
    req.validate()?;
    let http = http::Http::new(&req.base_url)?;
    let (lo, hi) = req.span()?;
    let dir = fetch::data_dir(&req.base, &req.symbol, req.period.name());
    let (_lock, appender, covered) = match &req.shared {
        None => {
            let lock = fetch::lock(&dir, req.lock_timeout)?;
            let covered = log::coverage_at(&dir, &req.period, req.now_ms)?.covered;
            (Some(lock), None, covered)
        }
        Some(shared) => {
            let appender = Appender::new(shared, parquet_file::default_codec())?;
            let covered = appender.covered(req.now_ms);
            (None, Some(appender), covered)
        }
    };
    let mut run = Run {
        req,
        dir,
        appender,
        covered,
        report: Report::default(),
        resolved: Vec::new(),
        done: 0,
        total: 0,
    };
    let planner = req.planner();
    run.report.files_skipped = planner
        .all(lo, hi)?
        .iter()
        .filter(|f| run.covered.covers(f.start.max(lo), f.end.min(hi)))
        .count();
    let retry: Vec<ArchiveFile> = req
        .retry
        .iter()
        .map(|p| planner.from_path(p))
        .collect::<Result<_>>()?;
    let outcome = (|| {
        run.download(&http, retry, progress)?;
        let monthly = planner.monthly(&run.covered, lo, hi)?;
        run.download(&http, monthly, progress)?;
        let daily = planner.daily(&run.covered, lo, hi)?;
        run.download(&http, daily, progress)
    })();
    let resolved = std::mem::take(&mut run.resolved);
    let registered =
        registry::record_resolved(&req.base, &resolved, &iso_utc(req.now_ms), req.durable);
    outcome?;
    registered?;
    match run.appender.take() {
        Some(appender) => appender.finish()?,
        None => {
            log::compact(&run.dir, &req.period, req.durable, false)?;
        }
    }
    let settled = log::final_end(&req.period, req.now_ms)?;
    run.report.holes = run.covered.missing(lo, hi.min(settled.max(lo)));
    Ok(run.report)
}

struct Run<'a> {
    req: &'a Backfill,
    dir: PathBuf,
    /// The shared log's writer, when storing to object storage.
    appender: Option<Appender<'a>>,
    covered: Ranges,
    report: Report,
    resolved: Vec<String>,
    done: usize,
    total: usize,
}

impl Run<'_> {
    /// Download `files` on `workers` threads; store each as it arrives.
    fn download(
        &mut self,
        http: &http::Http,
        files: Vec<ArchiveFile>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        self.report.files_planned += files.len();
        self.total += files.len();
        let workers = self.req.workers.min(files.len());
        let queue = Mutex::new(VecDeque::from(files));
        let stop = AtomicBool::new(false);
        let cpu = Gate::new(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(workers),
        );
        let (verify, proceed) = (self.req.verify, self.req.proceed_on_failure);
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            for _ in 0..workers {
                let tx = tx.clone();
                let (queue, stop, cpu) = (&queue, &stop, &cpu);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                        let Some(file) = next else { break };
                        if tx
                            .send(fetch_one(http, cpu, file, verify, proceed))
                            .is_err()
                        {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for fetched in rx {
                if let Err(e) = self.store(fetched) {
                    // Disk full or the like: stop the workers, keep what is stored.
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                self.done += 1;
                progress(self.done, self.total);
            }
            Ok(())
        })
    }

    fn store(&mut self, fetched: Fetched) -> Result<()> {
        let Fetched {
            file,
            bytes,
            downloaded,
            result,
        } = fetched;
        self.report.bytes += bytes;
        self.report.files_downloaded += usize::from(downloaded);
        let rows = match result {
            Ok(rows) => rows,
            Err(Problem::NotFound) => {
                // A monthly file not there yet is no gap when daily files can stand in.
                if file.kind == Kind::Daily || !market::has_daily(&self.req.period) {
                    self.report.files_missing.push(file.path);
                }
                return Ok(());
            }
            Err(problem) => return self.fail(&file, &problem),
        };
        let batch = self.on_grid(&file, &rows.batch)?;
        let t = frame::times(&batch).values();
        let (Some(&first), Some(&last)) = (t.first(), t.last()) else {
            return self.fail(&file, &Problem::NoRows);
        };
        let n = batch.num_rows();
        let (a, b) = (file.start.min(first), self.req.period.add(last, 1)?);
        let source = format!("vision:{}", file.name());
        let entry = log::entry_for(&self.req.period, a, b, n as i64, self.req.now_ms, &source)?;
        if let Some(appender) = &mut self.appender {
            appender.append(batch, entry)?;
        } else {
            self.store_in_folder(&batch, &entry)?;
        }
        self.covered.insert(a, b);
        self.report.rows_written += n as u64;
        match (&rows.problem, rows.verified) {
            (Some(problem), _) => {
                self.report.files_unverified += 1;
                self.fail(&file, problem)?;
            }
            (None, true) => {
                self.report.files_verified += 1;
                self.resolved.push(file.path);
            }
            (None, false) => self.report.files_unverified += 1,
        }
        Ok(())
    }

    /// Write rows, then their log line, in the local folder (under its lock).
    fn store_in_folder(&mut self, batch: &RecordBatch, entry: &log::Entry) -> Result<()> {
        match store::write_rows(&self.dir, &self.req.period, batch, self.req.durable) {
            Err(crate::ohlcv::OhlcvError::Corrupted { .. }) => {
                // A file these rows merge with is damaged: move it aside (its other candles
                // lose their coverage and are fetched again) and write them without it.
                integrity::repair(&self.dir, &self.req.period, self.req.durable)?;
                store::write_rows(&self.dir, &self.req.period, batch, self.req.durable)?;
            }
            other => other?,
        }
        log::append(&self.dir, entry, self.req.durable)?;
        if self.req.durable {
            crate::fsio::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The rows that are candles of this period near the file's span: a weekly candle
    /// opening in the last days of the previous month may sit in a monthly file.
    fn on_grid(&self, file: &ArchiveFile, batch: &RecordBatch) -> Result<RecordBatch> {
        let p = &self.req.period;
        let from = p.add(file.start, -1)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for &t in frame::times(batch).values() {
            keep.push(t >= from && t < file.end && p.is_aligned(t)?);
        }
        let mask = arrow_array::BooleanArray::from(keep);
        arrow_select::filter::filter_record_batch(batch, &mask)
            .map_err(|e| crate::ohlcv::OhlcvError::corrupted(&self.dir, e).into())
    }

    fn fail(&mut self, file: &ArchiveFile, problem: &Problem) -> Result<()> {
        let reason = problem.to_string();
        self.report
            .failures
            .push((file.path.clone(), reason.clone()));
        let (expected, actual) = problem.digests();
        let req = self.req;
        let failure = registry::Failure {
            file: file.path.clone(),
            url: format!("{}/{}", req.base_url.trim_end_matches('/'), file.path),
            symbol: req.symbol.clone(),
            period: req.period.name().to_owned(),
            market: req.target.market.name().to_owned(),
            market_id: req.target.id.clone(),
            reason,
            expected: expected.map(str::to_owned),
            actual: actual.map(str::to_owned),
            when: iso_utc(req.now_ms),
            attempts: 0,
        };
        registry::record_failed(&req.base, failure, req.durable)
    }
}

/// A counting semaphore: at most `n` closures run at once.
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn new(n: usize) -> Self {
        Gate {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        if let Ok(mut free) = self.free.lock() {
            while *free == 0 {
                match self.freed.wait(free) {
                    Ok(g) => free = g,
                    Err(_) => return f(),
                }
            }
            *free -= 1;
        }
        let out = f();
        if let Ok(mut free) = self.free.lock() {
            *free += 1;
        }
        self.freed.notify_one();
        out
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digest a `.CHECKSUM` file states (`<64 hex>  <name>`).
fn parse_checksum(body: &[u8]) -> std::result::Result<String, Problem> {
    let text = String::from_utf8_lossy(body);
    let token = text.split_whitespace().next().unwrap_or("");
    if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(token.to_ascii_lowercase())
    } else {
        Err(Problem::BadChecksumFile(format!("{:.80}", text.trim())))
    }
}

/// Download, verify and parse one file; a bad checksum or zip is downloaded once more.
fn fetch_one(
    http: &http::Http,
    cpu: &Gate,
    file: ArchiveFile,
    verify: bool,
    proceed: bool,
) -> Fetched {
    let mut out = Fetched {
        file,
        bytes: 0,
        downloaded: false,
        result: Err(Problem::NotFound),
    };
    for attempt in 0..2 {
        let zip = match http.get(&out.file.path) {
            Ok(http::Got::Body(b)) => b,
            Ok(http::Got::NotFound) => {
                out.result = Err(Problem::NotFound);
                return out;
            }
            Err(p) => {
                out.result = Err(p);
                return out;
            }
        };
        out.downloaded = true;
        out.bytes += zip.len() as u64;
        let sum = if verify {
            Some(match http.get(&format!("{}.CHECKSUM", out.file.path)) {
                Ok(http::Got::Body(b)) => {
                    out.bytes += b.len() as u64;
                    parse_checksum(&b)
                }
                Ok(http::Got::NotFound) => Err(Problem::ChecksumMissing),
                Err(p) => Err(p),
            })
        } else {
            None
        };
        // Hashing and decoding take the CPU: at most one file per core at a time, so files
        // finish one after another and the main thread stores each while others decode.
        let (check, parsed) = cpu.run(|| {
            let check = match sum {
                None => Ok(()),
                Some(sum) => sum.and_then(|expected| {
                    let actual = sha256_hex(&zip);
                    if expected == actual {
                        Ok(())
                    } else {
                        Err(Problem::ChecksumMismatch { expected, actual })
                    }
                }),
            };
            let parsed = parse::read_zip(&zip).and_then(|b| {
                if b.num_rows() == 0 {
                    Err(Problem::NoRows)
                } else {
                    Ok(b)
                }
            });
            (check, parsed)
        });
        out.result = match (check, parsed) {
            (Ok(()), Ok(batch)) => {
                return Fetched {
                    result: Ok(Rows {
                        batch,
                        verified: verify,
                        problem: None,
                    }),
                    ..out
                };
            }
            (Err(problem), Ok(batch)) if proceed && attempt == 1 => Ok(Rows {
                batch,
                verified: false,
                problem: Some(problem),
            }),
            (Err(problem), _) | (Ok(()), Err(problem)) => Err(problem),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_checksum(format!("{hex}  X.zip").as_bytes()).unwrap(),
            hex
        );
        assert!(parse_checksum(b"<html>").is_err());
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
