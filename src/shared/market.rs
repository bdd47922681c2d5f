//! `get_ohlcv_with_cache` and reads on object storage: the same fetch loop as the local
//! folder (`ohlcv::fetch::Run`), with claims instead of a lock and commits instead of
//! appends.
//!
//! Before fetching, a writer commits a claim on the ranges it will fetch, with a lease; other
//! writers wait for that claim's data commit, or for the lease to lapse, instead of fetching
//! the same candles. A writer renews its claim while it works, so a lease only runs out
//! when its writer is gone. Rows are written as new objects, then committed with their
//! coverage and the claim's release in one commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::StoreError;
use super::commits::Log;
use super::gc;
use super::objects;
use super::runtime::block_on;
use super::state::{Claim, Commit, DataObject, FORMAT, State};
use crate::fsio::FileStamp;
use crate::ohlcv::checksums::now_ms as wall_ms;
use crate::ohlcv::error::{OhlcvError, Result};
use crate::ohlcv::fetch::{Bounds, Fetcher, Request, Run, Sink, missing_slots};
use crate::ohlcv::hot::HotTier;
use crate::ohlcv::log::{self, Entry};
use crate::ohlcv::{Ranges, frame, store};

/// How long a claim holds without renewal, unless the caller says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// A partition with more live objects than this is compacted into one by the writer that
/// committed the last of them.
const MAX_OBJECTS: usize = 8;
/// Objects read at once.
const PARALLEL_READS: usize = 8;
/// The longest a writer keeps written objects uncommitted (far under `gc::DEFAULT_GRACE`).
const MAX_STAGED: Duration = Duration::from_secs(300);
/// Attempts at committing before giving up on a contended log.
const COMMIT_TRIES: u32 = 200;

fn run<T>(fut: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T> {
    Ok(block_on(fut)??)
}

/// Read the cache, fetching what is missing; returns the rows of the request. A data object
/// found missing or damaged is dropped with its coverage and its candles fetched again.
pub fn get(
    req: &Request,
    log: &Log,
    lease: Duration,
    fetcher: &mut dyn Fetcher,
) -> Result<Vec<RecordBatch>> {
    // Each drop removes an object, so this ends; the bound only keeps a pathological store
    // from holding the call forever.
    for _ in 0..64 {
        match get_once(req, log, lease, fetcher) {
            Err(OhlcvError::Store(StoreError::Dropped { .. })) => continue,
            other => return other,
        }
    }
    get_once(req, log, lease, fetcher)
}

fn get_once(
    req: &Request,
    log: &Log,
    lease: Duration,
    fetcher: &mut dyn Fetcher,
) -> Result<Vec<RecordBatch>> {
    let Some(bounds) = req.bounds()? else {
        return Ok(Vec::new());
    };
    run(log.root.self_test())?;
    if req.enable_cache {
        let state = run(log.state())?;
        let known = log::coverage_of(&state.coverage, &req.period, req.now_ms);
        let missing = missing_slots(
            &req.period,
            req.now_ms,
            &known.covered,
            bounds.first,
            bounds.end,
        )?;
        if missing.is_empty() {
            return read(log, state, bounds.lo, bounds.hi, req.hot.as_deref());
        }
    }
    let fetched = fill(req, log, lease, bounds, fetcher)?;
    if req.enable_cache {
        let state = run(log.state())?;
        read(log, state, bounds.lo, bounds.hi, req.hot.as_deref())
    } else {
        let pieces = fetched
            .into_iter()
            .map(|b| (0, frame::slice_sorted(&b, bounds.lo, bounds.hi)))
            .collect();
        frame::merge(pieces).map_err(|e| OhlcvError::corrupted(log.place(), e))
    }
}

/// Fetch what the log does not cover of the request, claim by claim; with
/// `enable_cache=False`, everything, without claims. Returns the rows fetched.
fn fill(
    req: &Request,
    log: &Log,
    lease: Duration,
    b: Bounds,
    fetcher: &mut dyn Fetcher,
) -> Result<Vec<RecordBatch>> {
    let me = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut todo: Option<Vec<(i64, i64)>> = None;
    let mut returned = Vec::new();
    loop {
        let state = run(log.state())?;
        let known = if req.enable_cache {
            log::coverage_of(&state.coverage, &req.period, req.now_ms)
        } else {
            log::Coverage::default()
        };
        // The slots still to settle: at first what is missing; later, only what others
        // held when we looked (ours were answered, whatever the exchange said).
        let slots: Vec<(i64, i64)> = match &todo {
            None => missing_slots(&req.period, req.now_ms, &known.covered, b.first, b.end)?,
            Some(t) => t
                .iter()
                .flat_map(|&(x, y)| known.covered.missing(x, y))
                .collect(),
        };
        if slots.is_empty() {
            return Ok(returned);
        }
        let wall = wall_ms();
        let (others, lapse) = if req.enable_cache {
            state.claimed_by_others(&me, wall)
        } else {
            (Ranges::new(), None)
        };
        let mine: Vec<(i64, i64)> = slots
            .iter()
            .flat_map(|&(x, y)| others.missing(x, y))
            .collect();
        todo = Some(slots);
        if mine.is_empty() {
            if let Some(limit) = req.lock_timeout
                && started.elapsed() >= limit
            {
                let writer = state
                    .claims
                    .keys()
                    .find(|w| **w != me)
                    .cloned()
                    .unwrap_or_default();
                return Err(StoreError::ClaimWait {
                    path: log.place(),
                    writer,
                    waited: started.elapsed(),
                }
                .into());
            }
            let until_lapse = lapse.map_or(pause, |l| {
                Duration::from_millis(u64::try_from(l - wall).unwrap_or(0) + 1)
            });
            std::thread::sleep(pause.min(until_lapse));
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        }
        let mut writer = Writer {
            log,
            me: me.clone(),
            lease,
            codec: req.codec,
            state,
            claims: mine.clone(),
            staged: Commit::default(),
            last_commit: Instant::now(),
        };
        if req.enable_cache && !writer.claim()? {
            // Another writer committed first: look again at what it claimed or covered.
            todo = None;
            continue;
        }
        let cell = RefCell::new(writer);
        let mut sink = Staging(&cell);
        let mut renewing = Renewing {
            inner: fetcher,
            writer: &cell,
        };
        let mut fetch = Run::new(
            &req.period,
            req.now_ms,
            req.enable_cache,
            known.confirm,
            &mut sink,
        );
        let outcome = fetch.fetch_all(&mine, &mut renewing);
        let flushed = fetch.flush();
        returned.append(&mut fetch.returned);
        drop(fetch);
        // Released even after a failure, so that others need not wait for the lease.
        let released = cell.borrow_mut().commit_staged(true);
        outcome?;
        flushed?;
        released?;
        let state = cell.into_inner().state;
        compact(log, &state, req.codec)?;
        collect_now_and_then(log);
        if !req.enable_cache {
            return Ok(returned);
        }
        if let Some(t) = &mut todo {
            let done: Ranges = mine.iter().copied().collect();
            *t = t.iter().flat_map(|&(x, y)| done.missing(x, y)).collect();
        }
    }
}

/// One fetch's claim and staged commit.
struct Writer<'a> {
    log: &'a Log,
    me: String,
    lease: Duration,
    codec: parquet::basic::Compression,
    state: Arc<State>,
    claims: Vec<(i64, i64)>,
    staged: Commit,
    last_commit: Instant,
}

impl Writer<'_> {
    fn claims_until(&self, wall: i64) -> Vec<Claim> {
        let until_ms = wall.saturating_add(self.lease.as_millis() as i64);
        self.claims
            .iter()
            .map(|&(start, end)| Claim {
                start,
                end,
                until_ms,
            })
            .collect()
    }

    /// What is staged, as this writer's commit after `base`: its claim renewed, or released.
    fn stamped(&self, base: &State, release: bool) -> Commit {
        let wall = wall_ms();
        let mut commit = self.staged.clone();
        commit.format = FORMAT;
        commit.writer = self.me.clone();
        commit.time_ms = wall;
        commit.release = release;
        commit.claims = if release {
            Vec::new()
        } else {
            self.claims_until(wall)
        };
        // Rows committed later win over rows committed earlier for the same time.
        for o in &mut commit.add {
            o.priority = base.seq + 1;
        }
        commit
    }

    fn committed(&mut self, state: Arc<State>) {
        self.state = state;
        self.staged = Commit::default();
        self.last_commit = Instant::now();
    }

    /// Commit the claim (nothing is staged yet) on the state it was planned on; false if
    /// another commit came first.
    fn claim(&mut self) -> Result<bool> {
        let commit = self.stamped(&self.state, false);
        match run(self.log.try_commit(&self.state, &commit))? {
            Some(state) => {
                self.committed(state);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Commit what is staged (data objects, coverage) with the claim renewed, or released.
    fn commit_staged(&mut self, release: bool) -> Result<()> {
        let holds_claim = self.state.claims.contains_key(&self.me);
        if release && !holds_claim && self.staged.add.is_empty() && self.staged.coverage.is_empty()
        {
            return Ok(());
        }
        let state = commit_on_latest(self.log, self.state.clone(), |base| {
            Some(self.stamped(base, release))
        })?;
        if let Some(state) = state {
            self.committed(state);
        }
        Ok(())
    }

    /// Renew the claim (committing what is staged with it) once a third of the lease has
    /// passed since the last commit, and at least every [`MAX_STAGED`]: staged objects must be
    /// committed well within the cleanup's grace period.
    fn renew_if_due(&mut self) -> Result<()> {
        if self.last_commit.elapsed() >= (self.lease / 3).min(MAX_STAGED) {
            self.commit_staged(false)?;
        }
        Ok(())
    }

    /// Write `rows` as one new object per partition and stage them with `entries`.
    fn stage(&mut self, rows: Option<RecordBatch>, entries: Vec<Entry>) -> Result<()> {
        if let Some(batch) = rows {
            let objects = write_objects(self.log, &batch, self.codec)?;
            self.staged.add.extend(objects);
        }
        self.staged.coverage.extend(entries);
        Ok(())
    }
}

/// Commits rows to a shared log batch by batch, without claims: the archive backfill, whose
/// files each become one commit as they arrive.
pub struct Appender<'a> {
    writer: Writer<'a>,
}

impl<'a> Appender<'a> {
    pub fn new(log: &'a Log, codec: parquet::basic::Compression) -> Result<Self> {
        run(log.root.self_test())?;
        let state = run(log.state())?;
        Ok(Appender {
            writer: Writer {
                log,
                me: uuid::Uuid::new_v4().simple().to_string(),
                lease: DEFAULT_LEASE,
                codec,
                state,
                claims: Vec::new(),
                staged: Commit::default(),
                last_commit: Instant::now(),
            },
        })
    }

    /// What the log covers at `now_ms`.
    pub fn covered(&self, now_ms: i64) -> Ranges {
        let log = self.writer.log;
        log::coverage_of(&self.writer.state.coverage, &log.period, now_ms).covered
    }

    /// Store `rows` as new objects and commit them with `entry`.
    pub fn append(&mut self, rows: RecordBatch, entry: Entry) -> Result<()> {
        self.writer.stage(Some(rows), vec![entry])?;
        self.writer.commit_staged(true)
    }

    /// Compact partitions left with many objects.
    pub fn finish(self) -> Result<()> {
        compact(self.writer.log, &self.writer.state, self.writer.codec)
    }
}

/// Rows, split by partition, written as new data objects (not yet committed).
fn write_objects(
    log: &Log,
    batch: &RecordBatch,
    codec: parquet::basic::Compression,
) -> Result<Vec<DataObject>> {
    let parts = store::by_partition(&log.period, batch)?;
    let mut out = Vec::with_capacity(parts.len());
    let mut uploads = Vec::with_capacity(parts.len());
    for (key, rows) in parts {
        let (bytes, tail) = objects::encode(&rows, codec)?;
        let (first, last) = objects::span(&rows).unwrap_or_default();
        let name = format!("data/{key}-{}.parquet", uuid::Uuid::new_v4().simple());
        out.push(DataObject {
            name: name.clone(),
            first,
            last,
            rows: rows.num_rows() as u64,
            size: bytes.len() as u64,
            tail,
            priority: 0,
        });
        uploads.push((log.object_key(&name), bytes));
    }
    let store = log.root.store()?;
    run(async move {
        futures::stream::iter(uploads)
            .map(|(key, bytes): (_, Bytes)| {
                let store = store.clone();
                async move { objects::put_new(&*store, &key, bytes).await }
            })
            .buffer_unordered(PARALLEL_READS)
            .try_collect::<Vec<()>>()
            .await
    })?;
    Ok(out)
}

/// The fetch loop's sink: rows become objects at once, commits wait for the end (or for the
/// next renewal).
struct Staging<'a, 'b>(&'a RefCell<Writer<'b>>);

impl Sink for Staging<'_, '_> {
    fn commit(&mut self, rows: Option<RecordBatch>, entries: Vec<Entry>) -> Result<()> {
        self.0.borrow_mut().stage(rows, entries)
    }

    fn place(&self) -> PathBuf {
        PathBuf::from(self.0.borrow().log.place())
    }
}

/// The user's fetcher, renewing the claim between pages.
struct Renewing<'a, 'b> {
    inner: &'a mut dyn Fetcher,
    writer: &'a RefCell<Writer<'b>>,
}

impl Fetcher for Renewing<'_, '_> {
    fn fetch(&mut self, since: i64, limit: i64) -> Result<RecordBatch> {
        self.writer.borrow_mut().renew_if_due()?;
        self.inner.fetch(since, limit)
    }

    fn progress(&mut self, done: i64, total: i64) {
        self.inner.progress(done, total);
    }
}

/// The partition key of a data object's name (`data/{key}-{uuid}.parquet`).
fn partition_of(name: &str) -> Option<&str> {
    let stem = name.strip_prefix("data/")?.strip_suffix(".parquet")?;
    stem.rsplit_once('-').map(|(key, _)| key)
}

/// Fold the objects of any partition that has more than [`MAX_OBJECTS`] into one new
/// object. Losing the race to another compaction leaves the new object unreferenced, for
/// the grace-period cleanup.
fn compact(log: &Log, state: &Arc<State>, codec: parquet::basic::Compression) -> Result<()> {
    let mut groups: BTreeMap<&str, Vec<&DataObject>> = BTreeMap::new();
    for o in state.objects.values() {
        if let Some(p) = partition_of(&o.name) {
            groups.entry(p).or_default().push(o);
        }
    }
    for (_, group) in groups.into_iter().filter(|(_, g)| g.len() > MAX_OBJECTS) {
        let Ok(rows) = read_objects(log, &group, i64::MIN, i64::MAX, None)? else {
            // An unreadable object: the next read drops it; compact once it is gone.
            continue;
        };
        let merged = frame::merge(rows).map_err(|e| OhlcvError::corrupted(log.place(), e))?;
        let batch = frame::concat(merged).map_err(|e| OhlcvError::corrupted(log.place(), e))?;
        let mut new = write_objects(log, &batch, codec)?;
        let priority = group.iter().map(|o| o.priority).max().unwrap_or(0);
        for o in &mut new {
            o.priority = priority;
        }
        let removed: Vec<String> = group.iter().map(|o| o.name.clone()).collect();
        let commit = Commit {
            format: FORMAT,
            writer: "compaction".into(),
            time_ms: wall_ms(),
            add: new,
            remove: removed.clone(),
            ..Default::default()
        };
        // Moot once another compaction removed any input; best effort when contended.
        let still_live = |base: &State| removed.iter().all(|n| base.objects.contains_key(n));
        match commit_on_latest(log, state.clone(), |base| {
            still_live(base).then(|| commit.clone())
        }) {
            Err(OhlcvError::Store(StoreError::Contended { .. })) => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Commit what `build` makes of the state, starting from `state` and reading it again after
/// each race lost to another writer. `build` returning None gives up: what the commit was
/// for is done or moot. Returns the state after the commit, None if given up.
fn commit_on_latest(
    log: &Log,
    mut state: Arc<State>,
    mut build: impl FnMut(&State) -> Option<Commit>,
) -> Result<Option<Arc<State>>> {
    for _ in 0..COMMIT_TRIES {
        let Some(commit) = build(&state) else {
            return Ok(None);
        };
        match run(log.try_commit(&state, &commit))? {
            Some(after) => return Ok(Some(after)),
            None => state = run(log.state())?,
        }
    }
    Err(StoreError::Contended {
        path: log.place(),
        tries: COMMIT_TRIES,
    }
    .into())
}

/// Remove what no commit references (see `gc`), at most once an hour per log and process.
/// Best effort: a store that refuses deletes (write-once credentials) keeps working.
fn collect_now_and_then(log: &Log) {
    static LAST: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let due = LAST
        .get_or_init(Default::default)
        .lock()
        .is_ok_and(|mut m| {
            let place = log.place();
            let due = m
                .get(&place)
                .is_none_or(|t| t.elapsed() >= gc::DEFAULT_GRACE);
            if due {
                m.insert(place, Instant::now());
            }
            due
        });
    if due {
        // The freshest state: what it does not name and is older than the grace is garbage.
        let _ = block_on(async {
            let state = log.state().await?;
            gc::collect(log, &state, gc::DEFAULT_GRACE).await
        });
    }
}

/// The rows with `lo <= time < hi` of `state`'s live objects.
pub fn read(
    log: &Log,
    mut state: Arc<State>,
    lo: i64,
    hi: i64,
    hot: Option<&HotTier>,
) -> Result<Vec<RecordBatch>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let objects = state.overlapping(lo, hi);
        match read_objects(log, &objects, lo, hi, hot)? {
            Ok(pieces) => {
                return frame::merge(pieces).map_err(|e| OhlcvError::corrupted(log.place(), e));
            }
            // Compacted away and cleaned up since the state was read: read the state again.
            Err(u) if u.error.is_not_found() && attempt < 4 => state = run(log.state())?,
            Err(u) if u.error.is_not_found() || matches!(u.error, StoreError::Corrupted { .. }) => {
                drop_object(log, &u.object)?;
                return Err(StoreError::Dropped {
                    path: log.object_key(&u.object.name).to_string(),
                    reason: u.error.to_string(),
                }
                .into());
            }
            Err(u) => return Err(u.error.into()),
        }
    }
}

/// An object a read could not use, and why.
struct Unreadable {
    object: DataObject,
    error: StoreError,
}

/// Commit `object`'s removal with the coverage of its span, so that its candles are fetched
/// again (as a damaged local file is moved aside with its coverage).
fn drop_object(log: &Log, object: &DataObject) -> Result<()> {
    let commit = Commit {
        format: FORMAT,
        writer: "repair".into(),
        time_ms: wall_ms(),
        remove: vec![object.name.clone()],
        uncover: vec![(object.first, object.last.saturating_add(1))],
        ..Default::default()
    };
    let state = run(log.state())?;
    commit_on_latest(log, state, |base| {
        base.objects
            .contains_key(&object.name)
            .then(|| commit.clone())
    })?;
    Ok(())
}

/// Rows of each object with `lo <= time < hi`, tagged with its priority, from the hot tier
/// where it holds them.
fn read_objects(
    log: &Log,
    objects: &[&DataObject],
    lo: i64,
    hi: i64,
    hot: Option<&HotTier>,
) -> Result<std::result::Result<Vec<(u64, RecordBatch)>, Unreadable>> {
    let mut pieces = Vec::new();
    let mut wanted = Vec::new();
    for o in objects {
        let id = format!("{}/{}", log.place(), o.name);
        let stamp = FileStamp::immutable(o.size);
        let (a, b) = within(o, lo, hi);
        if let Some(h) = hot
            && let Some(rows) = h.get(std::path::Path::new(&id), stamp, a, b)
        {
            pieces.extend(slices(&rows, lo, hi).into_iter().map(|r| (o.priority, r)));
            continue;
        }
        let (a, b) = if hot.is_some() {
            to_decode(o, lo, hi)
        } else {
            (lo, hi)
        };
        wanted.push(((*o).clone(), id, a, b));
    }
    let store = log.root.store()?;
    let keys: Vec<_> = wanted
        .iter()
        .map(|(o, ..)| log.object_key(&o.name))
        .collect();
    let decoded: std::result::Result<Vec<Vec<RecordBatch>>, (usize, StoreError)> =
        block_on(async {
            futures::stream::iter(wanted.iter().zip(keys).enumerate())
                .map(|(i, ((o, id, a, b), key))| {
                    // A task each: objects decode on every runtime thread while others download.
                    let (store, id, size, tail, a, b) =
                        (store.clone(), id.clone(), o.size, o.tail, *a, *b);
                    tokio::spawn(async move {
                        objects::read(store, key, &id, size, tail, a, b)
                            .await
                            .map_err(|e| (i, e))
                    })
                })
                .buffered(PARALLEL_READS)
                .map(|joined| {
                    joined.map_err(|e| (usize::MAX, StoreError::Runtime(e.to_string())))?
                })
                .try_collect()
                .await
        })?;
    let decoded = match decoded {
        Ok(d) => d,
        Err((i, error)) => {
            return match wanted.get(i) {
                Some((object, ..)) => Ok(Err(Unreadable {
                    object: object.clone(),
                    error,
                })),
                None => Err(error.into()),
            };
        }
    };
    for ((o, id, a, b), rows) in wanted.iter().zip(decoded) {
        if let Some(h) = hot {
            h.put(
                std::path::Path::new(id),
                FileStamp::immutable(o.size),
                *a,
                *b,
                &rows,
            );
        }
        pieces.extend(slices(&rows, lo, hi).into_iter().map(|r| (o.priority, r)));
    }
    Ok(Ok(pieces))
}

/// The part of `[lo, hi)` an object can hold; the whole object as `(MIN, MAX)`.
fn within(o: &DataObject, lo: i64, hi: i64) -> (i64, i64) {
    let (a, b) = (o.first, o.last.saturating_add(1));
    if lo <= a && hi >= b {
        (i64::MIN, i64::MAX)
    } else {
        (lo.max(a), hi.min(b))
    }
}

/// What to decode of an object for the hot tier: all of it when the request takes half or
/// more of it, else only the part asked for.
fn to_decode(o: &DataObject, lo: i64, hi: i64) -> (i64, i64) {
    let (x, y) = within(o, lo, hi);
    if (x, y) == (i64::MIN, i64::MAX) || y.saturating_sub(x) >= (o.last - o.first) / 2 {
        (i64::MIN, i64::MAX)
    } else {
        (x, y)
    }
}

fn slices(rows: &[RecordBatch], lo: i64, hi: i64) -> Vec<RecordBatch> {
    rows.iter()
        .map(|r| frame::slice_sorted(r, lo, hi))
        .filter(|r| r.num_rows() > 0)
        .collect()
}

/// What the log covers (merged ranges).
pub fn coverage(log: &Log) -> Result<Ranges> {
    let state = run(log.state())?;
    Ok(state
        .coverage
        .iter()
        .filter_map(|e| e.coverage(&log.period))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ohlcv::integrity::Verify;
    use crate::ohlcv::{Period, parquet_file};
    use crate::shared::Root;

    const M: i64 = 60_000;

    /// Candles every minute, pages of 1000, counting calls across threads.
    struct Exchange<'a> {
        calls: &'a AtomicUsize,
        pause: Duration,
    }

    impl Fetcher for Exchange<'_> {
        fn fetch(&mut self, since: i64, limit: i64) -> Result<RecordBatch> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.pause);
            let rows: Vec<[f64; 6]> = (0..limit.min(1000))
                .map(|i| {
                    let t = (since + i * M) as f64;
                    [t, 1.0, 2.0, 0.5, t / 1e9, 3.0]
                })
                .collect();
            Ok(frame::from_rows(&rows))
        }
    }

    fn request(log: &Log, start: i64, count: i64) -> Request {
        Request {
            dir: log.place().into(),
            period: log.period,
            start_time: start,
            count,
            enable_cache: true,
            now_ms: 1_000_000 * M,
            durable: true,
            lock_timeout: Some(Duration::from_secs(60)),
            hot: None,
            verify: Verify::Fast,
            codec: parquet_file::default_codec(),
        }
    }

    fn rows(b: &[RecordBatch]) -> usize {
        b.iter().map(|b| b.num_rows()).sum()
    }

    fn log_at(url: &str) -> Log {
        let root = Root::parse(url, HashMap::new()).unwrap();
        Log::new(&root, "X_1m", Period::parse("1m").unwrap())
    }

    #[test]
    fn writers_racing_for_one_range_fetch_it_once() {
        let log = log_at("memory://race-market/c");
        let calls = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let mut ex = Exchange {
                        calls: &calls,
                        pause: Duration::from_millis(20),
                    };
                    let got = get(&request(&log, 0, 3000), &log, DEFAULT_LEASE, &mut ex).unwrap();
                    assert_eq!(rows(&got), 3000);
                });
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_dead_writers_claim_holds_for_one_lease() {
        let log = log_at("memory://dead-writer/c");
        // A writer that claimed the range and died.
        let state = run(log.state()).unwrap();
        let dead = Commit {
            format: FORMAT,
            writer: "dead".into(),
            claims: vec![Claim {
                start: 0,
                end: 100 * M,
                until_ms: wall_ms() + 1500,
            }],
            ..Default::default()
        };
        run(log.try_commit(&state, &dead)).unwrap().unwrap();
        let calls = AtomicUsize::new(0);
        let mut ex = Exchange {
            calls: &calls,
            pause: Duration::ZERO,
        };
        let started = Instant::now();
        let got = get(&request(&log, 0, 100), &log, DEFAULT_LEASE, &mut ex).unwrap();
        assert_eq!(rows(&got), 100);
        assert!(started.elapsed() >= Duration::from_millis(1000));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // With a short lock_timeout the wait is refused with a clear error instead.
        let run2 = log_at("memory://dead-writer-2/c");
        let state = super::run(run2.state()).unwrap();
        let mut alive = dead.clone();
        alive.claims[0].until_ms = wall_ms() + 60_000;
        super::run(run2.try_commit(&state, &alive))
            .unwrap()
            .unwrap();
        let mut req = request(&run2, 0, 100);
        req.lock_timeout = Some(Duration::from_millis(100));
        assert!(matches!(
            get(&req, &run2, DEFAULT_LEASE, &mut ex),
            Err(OhlcvError::Store(StoreError::ClaimWait { .. }))
        ));
    }

    #[test]
    fn the_local_file_system_store_serves_the_same_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let log = log_at(url.as_str());
        let calls = AtomicUsize::new(0);
        let mut ex = Exchange {
            calls: &calls,
            pause: Duration::ZERO,
        };
        for i in 0..12 {
            let got = get(&request(&log, i * 10 * M, 10), &log, DEFAULT_LEASE, &mut ex).unwrap();
            assert_eq!(rows(&got), 10);
        }
        // Compacted: one partition, at most MAX_OBJECTS live objects, all rows readable.
        let state = run(log.state()).unwrap();
        assert!(state.objects.len() <= MAX_OBJECTS);
        let all = read(&log, state, i64::MIN, i64::MAX, None).unwrap();
        assert_eq!(rows(&all), 120);
        assert_eq!(calls.load(Ordering::SeqCst), 12);
    }
}
