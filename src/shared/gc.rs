//! Removing what no commit references any more, once it is old enough that no writer can
//! still be about to commit it and no reader still be reading it.
//!
//! - Data objects not live in the current state: compacted away, or written by a writer
//!   that died before its commit. They go once older than the grace period, which must
//!   exceed the time a live writer keeps objects staged (a third of its lease).
//! - Commits up to the newest checkpoint, and older checkpoints: readers start from the
//!   newest checkpoint. They go only after [`LOG_RETENTION`], so that a writer holding a
//!   state from before the checkpoint could never recreate a removed commit's number.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::StoreError;
use super::commits::Log;
use super::state::State;

/// How long commits before the newest checkpoint are kept.
pub const LOG_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long an unreferenced data object is kept, unless the caller says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What a collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub objects: usize,
    pub log_entries: usize,
}

/// Remove from `log`'s folder what `state` (a current one) no longer references and is older
/// than `grace` (data objects) or [`LOG_RETENTION`] (log entries before the newest
/// checkpoint).
pub async fn collect(log: &Log, state: &State, grace: Duration) -> Result<Collected, StoreError> {
    let store = log.root.store()?;
    let now = chrono::Utc::now();
    let older_than = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
    let data_dir = log.root.key(&[&log.folder, "data"]);
    let metas: Vec<_> = store
        .list(Some(&data_dir))
        .try_collect()
        .await
        .map_err(|e| StoreError::request("list", &data_dir, e))?;
    let folder = log.root.key(&[&log.folder]);
    let cutoff = older_than(grace);
    let mut doomed = Vec::new();
    for m in &metas {
        let name = m.location.prefix_match(&folder).map(|parts| {
            parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        });
        if let Some(name) = name
            && !state.objects.contains_key(&name)
            && m.last_modified < cutoff
        {
            doomed.push(m.location.clone());
        }
    }
    let objects = doomed.len();
    let log_dir = log.root.key(&[&log.folder, "_log"]);
    let entries: Vec<_> = store
        .list(Some(&log_dir))
        .try_collect()
        .await
        .map_err(|e| StoreError::request("list", &log_dir, e))?;
    let newest_checkpoint = entries
        .iter()
        .filter_map(|m| checkpoint_seq(m.location.filename()?))
        .filter(|s| *s <= state.seq)
        .max();
    let mut log_entries = 0;
    if let Some(c) = newest_checkpoint {
        let cutoff = older_than(LOG_RETENTION.max(grace));
        for m in &entries {
            let Some(name) = m.location.filename() else {
                continue;
            };
            let old_commit = commit_seq(name).is_some_and(|s| s <= c);
            let old_checkpoint = checkpoint_seq(name).is_some_and(|s| s < c);
            if (old_commit || old_checkpoint) && m.last_modified < cutoff {
                doomed.push(m.location.clone());
                log_entries += 1;
            }
        }
    }
    futures::stream::iter(doomed)
        .map(|key| {
            let store = store.clone();
            async move {
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(StoreError::request("delete", &key, e)),
                }
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(Collected {
        objects,
        log_entries,
    })
}

fn commit_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".json")
        .filter(|s| !s.ends_with(".checkpoint"))?
        .parse()
        .ok()
}

fn checkpoint_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".checkpoint.json")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use object_store::{PutPayload, path::Path as ObjectPath};

    use super::*;
    use crate::ohlcv::Period;
    use crate::shared::Root;
    use crate::shared::runtime::block_on;
    use crate::shared::state::{Commit, DataObject, FORMAT};

    #[test]
    fn unreferenced_objects_go_after_the_grace_period_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let root = Root::parse(url.as_str(), HashMap::new()).unwrap();
        let log = Log::new(&root, "X_1m", Period::parse("1m").unwrap());
        block_on(async {
            let store = root.store().unwrap();
            let put = |name: &'static str| {
                let store = store.clone();
                let key: ObjectPath = log.object_key(name);
                async move {
                    store
                        .put(&key, PutPayload::from_static(b"x"))
                        .await
                        .unwrap()
                }
            };
            put("data/2024-01-live.parquet").await;
            put("data/2024-01-orphan.parquet").await;
            let base = log.state().await.unwrap();
            let live = DataObject {
                name: "data/2024-01-live.parquet".into(),
                first: 0,
                last: 0,
                rows: 1,
                size: 1,
                tail: 1,
                priority: 1,
            };
            let commit = Commit {
                format: FORMAT,
                add: vec![live],
                ..Default::default()
            };
            let state = log.try_commit(&base, &commit).await.unwrap().unwrap();
            let young = collect(&log, &state, Duration::from_secs(3600))
                .await
                .unwrap();
            assert_eq!(young, Collected::default());
            let now = collect(&log, &state, Duration::ZERO).await.unwrap();
            assert_eq!(now.objects, 1);
            assert!(
                store
                    .head(&log.object_key("data/2024-01-live.parquet"))
                    .await
                    .is_ok()
            );
            assert!(
                store
                    .head(&log.object_key("data/2024-01-orphan.parquet"))
                    .await
                    .is_err()
            );
        })
        .unwrap();
    }
}
