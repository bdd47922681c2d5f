//! The log of one symbol and period on object storage: numbered commit objects
//! `_log/{seq:020}.json`, each written with create-if-absent, and checkpoints
//! `_log/{seq:020}.checkpoint.json` that bound how much a cold reader fetches.
//!
//! A writer that loses the race for the next number re-reads the log and decides again;
//! nothing is ever overwritten, so no lock is needed and no commit is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;

use super::StoreError;
use super::root::Root;
use super::state::{Checkpoint, Commit, FORMAT, State};
use crate::ohlcv::Period;

/// A checkpoint follows every this many commits.
const CHECKPOINT_EVERY: u64 = 16;
/// Commits fetched at once when catching up.
const PARALLEL_GETS: usize = 8;

/// The log of one symbol-period folder below a root.
#[derive(Clone, Debug)]
pub struct Log {
    pub root: Root,
    /// The folder below the root: `{symbol}_{period}` or `{namespace}/{symbol}_{period}`.
    pub folder: String,
    pub period: Period,
}

/// What a log listing names.
enum Listed {
    Commit(u64),
    Checkpoint(u64),
}

fn parse_name(name: &str) -> Option<Listed> {
    if let Some(seq) = name.strip_suffix(".checkpoint.json") {
        return seq.parse().ok().map(Listed::Checkpoint);
    }
    name.strip_suffix(".json")?.parse().ok().map(Listed::Commit)
}

/// States already read, per log: a refresh lists only what came after.
fn states() -> &'static Mutex<HashMap<String, Arc<State>>> {
    static STATES: OnceLock<Mutex<HashMap<String, Arc<State>>>> = OnceLock::new();
    STATES.get_or_init(Default::default)
}

impl Log {
    pub fn new(root: &Root, folder: &str, period: Period) -> Log {
        Log {
            root: root.clone(),
            folder: folder.to_owned(),
            period,
        }
    }

    /// Where this log lives, for messages and cache keys.
    pub fn place(&self) -> String {
        format!("{}/{}", self.root.url(), self.folder)
    }

    fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        self.root.store()
    }

    fn dir(&self) -> ObjectPath {
        self.root.key(&[&self.folder, "_log"])
    }

    pub fn commit_key(&self, seq: u64) -> ObjectPath {
        self.dir().join(format!("{seq:020}.json"))
    }

    fn checkpoint_key(&self, seq: u64) -> ObjectPath {
        self.dir().join(format!("{seq:020}.checkpoint.json"))
    }

    /// The key of a data object named `name` (`data/…`).
    pub fn object_key(&self, name: &str) -> ObjectPath {
        self.root.key(&[&self.folder, name])
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        store: &dyn ObjectStore,
        key: &ObjectPath,
    ) -> Result<T, StoreError> {
        let bytes = store
            .get(key)
            .await
            .map_err(|e| StoreError::request("read", key, e))?
            .bytes()
            .await
            .map_err(|e| StoreError::request("read", key, e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupted(key, e))?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format.is_some_and(|f| f > u64::from(FORMAT)) {
            return Err(StoreError::corrupted(
                key,
                format!(
                    "written in format {} by a newer candlecache (this one reads format {FORMAT}); upgrade candlecache",
                    format.unwrap_or_default()
                ),
            ));
        }
        serde_json::from_value(value).map_err(|e| StoreError::corrupted(key, e))
    }

    /// The state as of now: the last one read, brought up to date with one listing of what
    /// came after it (usually nothing: one small request).
    pub async fn state(&self) -> Result<Arc<State>, StoreError> {
        let id = self.place();
        let known = states().lock().ok().and_then(|m| m.get(&id).cloned());
        let state = match known {
            Some(s) if s.seq > 0 => match self.catch_up(&s).await? {
                Some(newer) => newer,
                // The commits after it are gone (removed after a checkpoint): start over.
                None => self.load().await?,
            },
            _ => self.load().await?,
        };
        if let Ok(mut m) = states().lock() {
            let newer = m.get(&id).is_none_or(|old| old.seq < state.seq);
            if newer {
                m.insert(id, state.clone());
            }
        }
        Ok(state)
    }

    async fn list(
        &self,
        store: &dyn ObjectStore,
        after: Option<&ObjectPath>,
    ) -> Result<Vec<Listed>, StoreError> {
        let dir = self.dir();
        let stream = match after {
            Some(offset) => store.list_with_offset(Some(&dir), offset),
            None => store.list(Some(&dir)),
        };
        let metas: Vec<_> = stream
            .try_collect()
            .await
            .map_err(|e| StoreError::request("list", &dir, e))?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_name))
            .collect())
    }

    /// `known` with the commits after it applied; None if they do not follow on from it.
    async fn catch_up(&self, known: &Arc<State>) -> Result<Option<Arc<State>>, StoreError> {
        let store = self.store()?;
        let listed = self
            .list(&*store, Some(&self.commit_key(known.seq)))
            .await?;
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|l| match l {
                Listed::Commit(s) if *s > known.seq => Some(*s),
                _ => None,
            })
            .collect();
        // Commits up to a checkpoint are removed a day after it: a state older than that
        // sees a newer checkpoint and no commit following its own, and must not take that
        // for "nothing new" (its next commit would reuse a removed number).
        let newer_checkpoint = listed
            .iter()
            .any(|l| matches!(l, Listed::Checkpoint(s) if *s > known.seq));
        seqs.sort_unstable();
        match seqs.first() {
            None if newer_checkpoint => return Ok(None),
            None => return Ok(Some(known.clone())),
            Some(first) if *first != known.seq + 1 => return Ok(None),
            Some(_) => {}
        }
        let mut state = (**known).clone();
        self.apply_commits(&*store, &mut state, &seqs).await?;
        Ok(Some(Arc::new(state)))
    }

    /// The state from the newest checkpoint and the commits after it.
    async fn load(&self) -> Result<Arc<State>, StoreError> {
        let store = self.store()?;
        let listed = self.list(&*store, None).await?;
        let checkpoint = listed
            .iter()
            .filter_map(|l| match l {
                Listed::Checkpoint(s) => Some(*s),
                _ => None,
            })
            .max();
        let mut state = match checkpoint {
            Some(seq) => State::from_checkpoint(
                self.get_json::<Checkpoint>(&*store, &self.checkpoint_key(seq))
                    .await?,
            ),
            None => State::default(),
        };
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|l| match l {
                Listed::Commit(s) if *s > state.seq => Some(*s),
                _ => None,
            })
            .collect();
        seqs.sort_unstable();
        self.apply_commits(&*store, &mut state, &seqs).await?;
        Ok(Arc::new(state))
    }

    /// Fetch and fold in the commits `seqs` (sorted), as far as they run on without a gap.
    async fn apply_commits(
        &self,
        store: &dyn ObjectStore,
        state: &mut State,
        seqs: &[u64],
    ) -> Result<(), StoreError> {
        let run: Vec<u64> = seqs
            .iter()
            .copied()
            .enumerate()
            .take_while(|(i, s)| *s == state.seq + 1 + *i as u64)
            .map(|(_, s)| s)
            .collect();
        let commits: Vec<(u64, Commit)> = futures::stream::iter(run)
            .map(|seq| async move {
                let c = self
                    .get_json::<Commit>(store, &self.commit_key(seq))
                    .await?;
                Ok::<_, StoreError>((seq, c))
            })
            .buffered(PARALLEL_GETS)
            .try_collect()
            .await?;
        for (seq, c) in &commits {
            state.apply(*seq, c, &self.period);
        }
        Ok(())
    }

    /// Commit `commit` as the one after `base`. `Ok(None)` when another writer took that
    /// number first: the caller reads the log again and decides anew.
    pub async fn try_commit(
        &self,
        base: &State,
        commit: &Commit,
    ) -> Result<Option<Arc<State>>, StoreError> {
        let store = self.store()?;
        let seq = base.seq + 1;
        let key = self.commit_key(seq);
        let body = serde_json::to_vec(commit).map_err(|e| StoreError::corrupted(&key, e))?;
        match store
            .put_opts(
                &key,
                PutPayload::from(Bytes::from(body)),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::request("commit", &key, e)),
        }
        let mut state = base.clone();
        state.apply(seq, commit, &self.period);
        let state = Arc::new(state);
        if let Ok(mut m) = states().lock() {
            let id = self.place();
            if m.get(&id).is_none_or(|old| old.seq < seq) {
                m.insert(id, state.clone());
            }
        }
        if seq.is_multiple_of(CHECKPOINT_EVERY) {
            // A checkpoint only saves readers work: failing to write one loses nothing.
            let cp = state.checkpoint(&self.period, commit.time_ms);
            if let Ok(body) = serde_json::to_vec(&cp) {
                let _ = store
                    .put_opts(
                        &self.checkpoint_key(seq),
                        PutPayload::from(Bytes::from(body)),
                        PutOptions::from(PutMode::Create),
                    )
                    .await;
            }
        }
        Ok(Some(state))
    }
}

/// The names of the folders directly below `sub` of `root` (one listing with a delimiter).
pub async fn folders(root: &Root, sub: &str) -> Result<Vec<String>, StoreError> {
    let store = root.store()?;
    let dir = if sub.is_empty() {
        root.prefix().clone()
    } else {
        root.key(&[sub])
    };
    let listed = store
        .list_with_delimiter(Some(&dir))
        .await
        .map_err(|e| StoreError::request("list", &dir, e))?;
    let mut names: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::runtime::block_on;

    fn log(name: &str) -> Log {
        let root = Root::parse(&format!("memory://{name}/cache"), HashMap::new()).unwrap();
        Log::new(&root, "BTC_USDT_1m", Period::parse("1m").unwrap())
    }

    fn commit(writer: &str) -> Commit {
        Commit {
            format: FORMAT,
            writer: writer.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_second_writer_of_a_number_loses_and_catches_up() {
        block_on(async {
            let a = log("race");
            let base = a.state().await.unwrap();
            assert_eq!(base.seq, 0);
            let won = a.try_commit(&base, &commit("a")).await.unwrap().unwrap();
            assert_eq!(won.seq, 1);
            assert!(a.try_commit(&base, &commit("b")).await.unwrap().is_none());
            let now = a.state().await.unwrap();
            assert_eq!(now.seq, 1);
            assert!(a.try_commit(&now, &commit("b")).await.unwrap().is_some());
        })
        .unwrap();
    }

    #[test]
    fn a_cold_reader_starts_from_the_newest_checkpoint() {
        block_on(async {
            let a = log("checkpoints");
            let mut state = a.state().await.unwrap();
            for i in 0..(CHECKPOINT_EVERY + 3) {
                let mut c = commit("w");
                c.remove = vec![format!("data/{i}")];
                state = a.try_commit(&state, &c).await.unwrap().unwrap();
            }
            let store = a.store().unwrap();
            // Remove the early commits, as cleanup after a checkpoint does.
            for seq in 1..=CHECKPOINT_EVERY {
                store.delete(&a.commit_key(seq)).await.unwrap();
            }
            states().lock().unwrap().clear();
            let cold = a.state().await.unwrap();
            assert_eq!(cold.seq, CHECKPOINT_EVERY + 3);
        })
        .unwrap();
    }

    #[test]
    fn a_state_from_before_removed_commits_reloads_instead_of_reusing_their_numbers() {
        block_on(async {
            let a = log("idle");
            let mut state = a.state().await.unwrap();
            for _ in 0..CHECKPOINT_EVERY {
                state = a.try_commit(&state, &commit("w")).await.unwrap().unwrap();
            }
            // A process that knew seq 2, idle while commits 1..=16 were cleaned up.
            let mut stale = (*state).clone();
            stale.seq = 2;
            states().lock().unwrap().insert(a.place(), Arc::new(stale));
            let store = a.store().unwrap();
            for seq in 1..=CHECKPOINT_EVERY {
                store.delete(&a.commit_key(seq)).await.unwrap();
            }
            let now = a.state().await.unwrap();
            assert_eq!(now.seq, CHECKPOINT_EVERY);
            let next = a.try_commit(&now, &commit("w")).await.unwrap().unwrap();
            assert_eq!(next.seq, CHECKPOINT_EVERY + 1);
        })
        .unwrap();
    }
}
