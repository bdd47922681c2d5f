//! What the shared log of one symbol and period says: the live data objects, the coverage
//! entries, and the writers' claims. Commits are folded into a [`State`] in sequence order;
//! a checkpoint is a state written out whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ohlcv::log::{self, Entry};
use crate::ohlcv::{Period, Ranges};

/// The format version of commits and checkpoints; a reader refuses newer ones.
pub const FORMAT: u32 = 1;

/// Coverage entries are merged once a state holds more than this many.
const MERGE_AT: usize = 256;

/// A live data object: an immutable Parquet file under `data/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataObject {
    /// The key below the symbol-period prefix, e.g. `data/2024-01-<uuid>.parquet`.
    pub name: String,
    /// The first and last candle time it holds.
    pub first: i64,
    pub last: i64,
    pub rows: u64,
    pub size: u64,
    /// Bytes at the end of the object holding the footer and page index: one range GET
    /// fetches all the metadata a read needs.
    pub tail: u64,
    /// Merge priority: where two objects hold the same time, the higher wins (rows
    /// fetched later replace earlier ones, as an open candle's final values do).
    pub priority: u64,
}

/// A range a writer is fetching, until `until_ms` (wall clock) at the latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub start: i64,
    pub end: i64,
    pub until_ms: i64,
}

/// One commit object, `_log/{seq:020}.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Commit {
    pub format: u32,
    /// The writer (one id per fetch) and its wall clock when committing.
    pub writer: String,
    pub time_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<DataObject>,
    /// Names of data objects no longer live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Fetch-log entries, with the local log's meaning (see `ohlcv::log`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<Entry>,
    /// Ranges to forget (their rows are to be fetched again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncover: Vec<(i64, i64)>,
    /// The writer's claims from now on (replacing its earlier ones); `release` drops them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release: bool,
}

/// A checkpoint object, `_log/{seq:020}.checkpoint.json`: the state after commit `seq`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub seq: u64,
    pub objects: Vec<DataObject>,
    pub coverage: Vec<Entry>,
    pub claims: Vec<(String, Claim)>,
}

/// The state after commit `seq` (0: nothing committed yet).
#[derive(Clone, Debug, Default)]
pub struct State {
    pub seq: u64,
    pub objects: BTreeMap<String, DataObject>,
    pub coverage: Vec<Entry>,
    pub claims: BTreeMap<String, Vec<Claim>>,
}

impl State {
    pub fn from_checkpoint(c: Checkpoint) -> State {
        let mut claims: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
        for (writer, claim) in c.claims {
            claims.entry(writer).or_default().push(claim);
        }
        State {
            seq: c.seq,
            objects: c.objects.into_iter().map(|o| (o.name.clone(), o)).collect(),
            coverage: c.coverage,
            claims,
        }
    }

    /// The checkpoint of this state, with coverage merged into as few entries as it takes
    /// and lapsed claims left out.
    pub fn checkpoint(&self, period: &Period, now_ms: i64) -> Checkpoint {
        let coverage = log::merged_entries(&self.coverage, period, &[])
            .unwrap_or_else(|_| self.coverage.clone());
        Checkpoint {
            format: FORMAT,
            seq: self.seq,
            objects: self.objects.values().cloned().collect(),
            coverage,
            claims: self
                .claims
                .iter()
                .flat_map(|(w, cs)| cs.iter().map(move |c| (w.clone(), *c)))
                .filter(|(_, c)| c.until_ms > now_ms)
                .collect(),
        }
    }

    /// Fold commit `seq` in.
    pub fn apply(&mut self, seq: u64, c: &Commit, period: &Period) {
        self.seq = seq;
        for name in &c.remove {
            self.objects.remove(name);
        }
        for o in &c.add {
            self.objects.insert(o.name.clone(), o.clone());
        }
        if !c.uncover.is_empty() {
            self.coverage = log::merged_entries(&self.coverage, period, &c.uncover)
                .unwrap_or_else(|_| self.coverage.clone());
        }
        self.coverage.extend(c.coverage.iter().cloned());
        if self.coverage.len() > MERGE_AT {
            // A long-lived reader folds in commit after commit: keep the list short.
            self.coverage = log::merged_entries(&self.coverage, period, &[])
                .unwrap_or_else(|_| self.coverage.clone());
        }
        if c.release {
            self.claims.remove(&c.writer);
        }
        if !c.claims.is_empty() {
            self.claims.insert(c.writer.clone(), c.claims.clone());
        }
    }

    /// Ranges other writers hold claims on at `now_ms`.
    pub fn claimed_by_others(&self, me: &str, now_ms: i64) -> (Ranges, Option<i64>) {
        let mut ranges = Ranges::new();
        let mut lapse: Option<i64> = None;
        for (w, cs) in &self.claims {
            if w == me {
                continue;
            }
            for c in cs.iter().filter(|c| c.until_ms > now_ms) {
                ranges.insert(c.start, c.end);
                lapse = Some(lapse.map_or(c.until_ms, |l| l.min(c.until_ms)));
            }
        }
        (ranges, lapse)
    }

    /// Live objects that may hold times in `[lo, hi)`.
    pub fn overlapping(&self, lo: i64, hi: i64) -> Vec<&DataObject> {
        self.objects
            .values()
            .filter(|o| o.first < hi && o.last >= lo)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, first: i64, last: i64, priority: u64) -> DataObject {
        DataObject {
            name: name.into(),
            first,
            last,
            rows: 1,
            size: 10,
            tail: 5,
            priority,
        }
    }

    #[test]
    fn commits_fold_and_round_trip_through_a_checkpoint() {
        let p = Period::parse("1m").unwrap();
        let mut s = State::default();
        let now = 1_000_000_000;
        let c1 = Commit {
            format: FORMAT,
            writer: "a".into(),
            add: vec![obj("data/x", 0, 60_000, 1)],
            coverage: vec![log::entry_for(&p, 0, 120_000, 2, now, "api").unwrap()],
            claims: vec![Claim {
                start: 0,
                end: 10,
                until_ms: now + 5,
            }],
            ..Default::default()
        };
        s.apply(1, &c1, &p);
        assert_eq!(s.claimed_by_others("b", now).1, Some(now + 5));
        assert!(s.claimed_by_others("a", now).0.is_empty());
        assert!(s.claimed_by_others("b", now + 5).0.is_empty());
        let c2 = Commit {
            format: FORMAT,
            writer: "a".into(),
            add: vec![obj("data/y", 0, 60_000, 2)],
            remove: vec!["data/x".into()],
            release: true,
            ..Default::default()
        };
        s.apply(2, &c2, &p);
        assert!(s.claims.is_empty());
        assert_eq!(s.objects.keys().collect::<Vec<_>>(), ["data/y"]);
        let back = State::from_checkpoint(
            serde_json::from_slice(&serde_json::to_vec(&s.checkpoint(&p, now)).unwrap()).unwrap(),
        );
        assert_eq!(back.seq, 2);
        assert_eq!(back.objects, s.objects);
        let cov = log::coverage_of(&back.coverage, &p, now).covered;
        assert_eq!(cov.as_slice(), &[(0, 120_000)]);
        let mut t = back.clone();
        t.apply(
            3,
            &Commit {
                format: FORMAT,
                uncover: vec![(60_000, 120_000)],
                ..Default::default()
            },
            &p,
        );
        let cov = log::coverage_of(&t.coverage, &p, now).covered;
        assert_eq!(cov.as_slice(), &[(0, 60_000)]);
    }
}
