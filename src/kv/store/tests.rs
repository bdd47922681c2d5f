//! Unit tests of the store: several handles on one directory, damage, snapshots, culling.
use super::*;
use crate::kv::files::HEAD_NAME;
use crate::kv::snapshot::idx_name;
use crate::kv::value::noise;

fn row(key: i64, value: Val) -> NewRow {
    NewRow {
        f: Fields::stored_now(Val::Int(key), 1.0, None, Val::Null, 1),
        value,
    }
}

fn value(s: &mut Store, key: i64) -> Option<Val> {
    s.row(&Val::Int(key), true).unwrap().map(|r| r.row.value)
}

#[test]
fn two_handles_see_each_others_writes_across_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    let mut b = Store::open(dir.path(), None).unwrap();
    a.put(row(1, Val::Text("x".repeat(1000)))).unwrap();
    assert_eq!(value(&mut b, 1), Some(Val::Text("x".repeat(1000))));
    b.put(row(2, Val::Int(7))).unwrap();
    a.with_lock(true, |s| s.compact()).unwrap();
    b.put(row(3, Val::Float(1.5))).unwrap();
    assert_eq!(value(&mut a, 2), Some(Val::Int(7)));
    assert_eq!(value(&mut a, 3), Some(Val::Float(1.5)));
    assert_eq!(value(&mut b, 1), Some(Val::Text("x".repeat(1000))));
    assert_eq!(a.debris(), Vec::<PathBuf>::new());
    let stray = dir.path().join(log_name(a.generation + 7));
    fs::write(&stray, b"x").unwrap();
    fs::write(dir.path().join(".cache.00000009.idx.h.1.2.tmp"), b"x").unwrap();
    assert_eq!(a.debris().len(), 2);
    assert_eq!(a.check(true).unwrap().len(), 2);
    assert!(a.check(false).unwrap().is_empty());
}

#[test]
fn an_opener_that_found_no_head_waits_and_follows_a_compaction_done_meanwhile() {
    // The interleaving that lost writes: a process finds no HEAD (a directory before its
    // first compaction), a compactor moves it to generation 1 and removes log 0, and the
    // process then creates log 0 anew and writes to it. Now the creation waits for the lock
    // and reads HEAD again under it.
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    a.put(row(1, Val::Int(1))).unwrap();
    fs::remove_file(dir.path().join(HEAD_NAME)).unwrap(); // as an earlier version left it
    a.begin().unwrap();
    let path = dir.path().to_owned();
    let opener = std::thread::spawn(move || {
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path.join(LOCK_NAME))
            .unwrap();
        init_head(&path, &lock, None).unwrap()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!opener.is_finished(), "created a log without the lock");
    a.put(row(2, Val::Int(2))).unwrap();
    a.compact().unwrap(); // deferred to the commit
    a.end(true).unwrap();
    assert_eq!(opener.join().unwrap(), 1);
    assert!(!dir.path().join(log_name(0)).exists());
    let mut b = Store::open(dir.path(), None).unwrap();
    b.put(row(3, Val::Int(3))).unwrap();
    assert_eq!(value(&mut a, 3), Some(Val::Int(3)));
    assert_eq!(value(&mut b, 2), Some(Val::Int(2)));
}

#[test]
fn a_writer_whose_log_was_removed_follows_head() {
    // A log removed without a record naming its successor (by hand, or by a process that
    // broke the protocol): the next write goes where HEAD points, not into the removed file.
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    a.put(row(1, Val::Int(1))).unwrap();
    let (old, new) = (dir.path().join(log_name(0)), dir.path().join(log_name(1)));
    fs::copy(&old, &new).unwrap();
    fs::write(dir.path().join(HEAD_NAME), "1").unwrap();
    fs::remove_file(&old).unwrap();
    a.put(row(2, Val::Int(2))).unwrap();
    assert_eq!(a.generation, 1);
    let mut b = Store::open(dir.path(), None).unwrap();
    assert_eq!(value(&mut b, 1), Some(Val::Int(1)));
    assert_eq!(value(&mut b, 2), Some(Val::Int(2)));
}

#[test]
fn compaction_from_a_log_head_has_moved_past_does_not_replace_the_live_generation() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    a.put(row(1, Val::Int(1))).unwrap();
    let mut stale = Store::open(dir.path(), None).unwrap();
    // The directory moves on to generation 1 without a record in log 0 (as an orphan
    // log created by an earlier version would see it).
    fs::copy(dir.path().join(log_name(0)), dir.path().join(log_name(1))).unwrap();
    fs::write(dir.path().join(HEAD_NAME), "1").unwrap();
    let mut live = Store::open(dir.path(), None).unwrap();
    live.put(row(2, Val::Int(2))).unwrap();
    stale.with_lock(true, |s| s.compact()).unwrap();
    assert_eq!(stale.generation, 2);
    let mut c = Store::open(dir.path(), None).unwrap();
    assert_eq!(value(&mut c, 1), Some(Val::Int(1)));
    assert_eq!(
        value(&mut c, 2),
        Some(Val::Int(2)),
        "the live generation was replaced"
    );
}

#[test]
fn a_torn_tail_is_ignored_and_the_next_writer_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    a.put(row(1, Val::Int(1))).unwrap();
    let log = dir.path().join(log_name(0));
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
    let mut b = Store::open(dir.path(), None).unwrap();
    assert_eq!(value(&mut b, 1), Some(Val::Int(1)));
    assert_eq!(b.check(false).unwrap().len(), 1);
    b.put(row(2, Val::Int(2))).unwrap();
    assert_eq!(value(&mut a, 2), Some(Val::Int(2)));
    assert!(a.check(false).unwrap().is_empty());
}

#[test]
fn transactions_commit_atomically_or_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    let mut b = Store::open(dir.path(), None).unwrap();
    a.begin().unwrap();
    a.put(row(1, Val::Blob(vec![9; 5000]))).unwrap();
    a.put(row(2, Val::Int(2))).unwrap();
    assert_eq!(value(&mut a, 1), Some(Val::Blob(vec![9; 5000])));
    a.end(true).unwrap();
    assert_eq!(value(&mut b, 1), Some(Val::Blob(vec![9; 5000])));
    assert_eq!(value(&mut a, 1), Some(Val::Blob(vec![9; 5000])));
    a.begin().unwrap();
    a.delete(&Val::Int(1), true).unwrap();
    a.end(false).unwrap();
    assert_eq!(value(&mut a, 1), Some(Val::Blob(vec![9; 5000])));
    assert_eq!(b.count().unwrap(), 2);
}

#[test]
fn records_larger_than_a_read_chunk_and_across_chunks_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    let noise = noise(1, 3 * SYNC_CHUNK);
    for k in 0..3000 {
        a.put(row(
            k,
            Val::Blob(noise[k as usize..k as usize + 1500].to_vec()),
        ))
        .unwrap();
    }
    a.put(row(-1, Val::Blob(noise.clone()))).unwrap();
    let mut b = Store::open(dir.path(), None).unwrap();
    assert_eq!(b.count().unwrap(), 3001);
    assert_eq!(value(&mut b, -1), Some(Val::Blob(noise.clone())));
    assert_eq!(
        value(&mut b, 2999),
        Some(Val::Blob(noise[2999..4499].to_vec()))
    );
    assert!(b.check(false).unwrap().is_empty());
}

/// Every row as the store hands it out, in rowid order.
fn state(s: &mut Store) -> Vec<String> {
    s.keys(false, false)
        .unwrap()
        .into_iter()
        .map(|(k, raw)| format!("{:?}", s.row(&k, raw).unwrap().unwrap()))
        .collect()
}

/// 3000 rows of about 1 KiB (so the log outgrows `SNAPSHOT_MIN`), some expiring, some
/// tagged, some deleted or touched afterwards.
fn fill(a: &mut Store) {
    for k in 0..3000i64 {
        let mut r = row(k, Val::Blob(noise(k as u64 + 1, 1000 + (k % 7) as usize)));
        if k % 5 == 0 {
            r.f.expire_time = Some(1000.0 + k as f64);
        }
        if k % 3 == 0 {
            r.f.tag = Val::Text(format!("t{}", k % 4));
        }
        a.put(r).unwrap();
    }
    for k in (0..3000).step_by(11) {
        a.delete(&Val::Int(k), true).unwrap();
    }
    for k in (1..3000).step_by(13) {
        a.touch(&Val::Int(k), true, 0.0, Some(5.0)).unwrap();
    }
}

#[test]
fn a_new_handle_opens_from_the_snapshot_and_agrees_with_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    fill(&mut a);
    assert!(dir.path().join(idx_name(a.generation)).exists());

    // Records after the snapshot: replace, delete and add rows.
    for k in (2..3000).step_by(17) {
        a.put(row(k, Val::Int(k))).unwrap();
        a.delete(&Val::Int(k + 1), true).unwrap();
        a.put(row(10_000 + k, Val::Text(format!("new {k}"))))
            .unwrap();
    }
    let mut reader = Store::open(dir.path(), None).unwrap();
    for k in [2, 3, 4, 10_002, 2999] {
        assert_eq!(value(&mut reader, k), value(&mut a, k), "key {k}");
    }
    assert!(!reader.index.is_complete());
    assert_eq!(state(&mut reader), state(&mut a));

    let mut b = Store::open(dir.path(), None).unwrap();
    assert!(
        b.snap_pos > 0 && b.snap_pos < b.pos && !b.index.is_complete(),
        "b did not start from the snapshot"
    );
    assert_eq!(b.count().unwrap(), a.count().unwrap());
    assert_eq!(b.volume().unwrap(), a.volume().unwrap());
    for k in (0..3000).step_by(7) {
        assert_eq!(value(&mut b, k), value(&mut a, k), "key {k}");
    }
    // Writes through the lazily opened handle: rowids continue where the log left off.
    let next = a.with_lock(false, |s| Ok(s.index.next_rowid())).unwrap();
    b.put(row(5000, Val::Int(1))).unwrap();
    b.delete(&Val::Int(1), true).unwrap();
    assert_eq!(a.row(&Val::Int(5000), true).unwrap().unwrap().rowid, next);
    assert!(value(&mut a, 1).is_none());

    let mut c = Store::open(dir.path(), None).unwrap();
    c.rebuild().unwrap();
    let want = state(&mut c);
    assert_eq!(state(&mut a), want);
    assert_eq!(state(&mut b), want);
    assert!(b.check(false).unwrap().is_empty());
}

#[test]
fn expired_rows_still_in_the_snapshot_are_culled() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    fill(&mut a);
    let mut b = Store::open(dir.path(), None).unwrap();
    assert!(!b.index.is_complete());
    // Rows touched to expire at 5.0 have expired by 10.0; none else has.
    let removed = b.expire(10.0, None).unwrap().len();
    assert_eq!(
        removed,
        (1..3000).step_by(13).filter(|k| k % 11 != 0).count()
    );
    assert_eq!(a.expire(10.0, None).unwrap().len(), 0);
}

#[test]
fn a_damaged_snapshot_is_ignored_reported_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    fill(&mut a);
    let want = state(&mut a);
    let idx = dir.path().join(idx_name(a.generation));
    let good = fs::read(&idx).unwrap();
    // Damage in the head: the snapshot is not used at all.
    let mut bytes = good.clone();
    bytes[20] ^= 0x5A;
    fs::write(&idx, &bytes).unwrap();
    let mut b = Store::open(dir.path(), None).unwrap();
    assert_eq!(b.snap_pos, 0);
    assert_eq!(state(&mut b), want);
    // Damage in a bucket: found when the bucket is read; the index is rebuilt from the log.
    let mut bytes = good.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x5A;
    fs::write(&idx, &bytes).unwrap();
    let mut c = Store::open(dir.path(), None).unwrap();
    assert_eq!(state(&mut c), want);
    let mut d = Store::open(dir.path(), None).unwrap();
    d.begin().unwrap();
    d.put(row(-7, Val::Int(7))).unwrap();
    assert_eq!(state(&mut d).len(), want.len() + 1);
    d.end(false).unwrap();
    assert_eq!(state(&mut d), want);

    let warnings = c.check(false).unwrap();
    assert!(warnings.iter().any(|w| w.contains(".idx")), "{warnings:?}");
    c.check(true).unwrap();
    assert!(c.check(false).unwrap().is_empty());
    let mut e = Store::open(dir.path(), None).unwrap();
    assert!(e.snap_pos > 0);
    assert_eq!(state(&mut e), want);
}

#[test]
fn cull_evicts_in_policy_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Store::open(dir.path(), None).unwrap();
    for k in 0..20 {
        let mut r = row(k, Val::Int(k));
        r.f.store_time = 100.0 - k as f64;
        a.put(r).unwrap();
    }
    a.cull(0.0, 5, 0, Policy::LeastRecentlyStored).unwrap();
    assert_eq!(a.count().unwrap(), 15);
    assert!(value(&mut a, 19).is_none());
    assert!(value(&mut a, 0).is_some());
}
