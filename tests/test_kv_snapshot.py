"""The disk cache's index snapshot (``cache.NNNNNNNN.idx``): what opens fast must still be right.

Once a cache's log passes 2 MiB, writers keep a snapshot of the index next to it, and a new
process parses only the snapshot buckets it needs plus the log written after the snapshot.
These tests fill caches past that size (with values that stay in the log, under the 32 KiB
value-file threshold) and check that a process opening from the snapshot sees exactly what a
full replay of the log sees, with several writers racing to write snapshots, and with writers
killed at any instant.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

import candlecache

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CTX = multiprocessing.get_context("spawn")


def value(key, version: int = 0) -> bytes:
    """Incompressible, a pure function of the key and version, 1.5–3.5 KB."""
    rnd = random.Random(f"{key}/{version}")
    return rnd.randbytes(1500 + rnd.randrange(2000))


def snapshots(directory: str) -> list[str]:
    return glob.glob(os.path.join(directory, "**", "cache.*.idx"), recursive=True)


def state(cache) -> dict:
    """Everything a user can observe of a cache's rows, order included."""
    keys = list(cache)
    return {
        "keys": keys,
        "reversed": list(reversed(cache)),
        "len": len(cache),
        "items": {repr(k): cache.get(k, "<expired or missing>", expire_time=True, tag=True) for k in keys},
    }


def _report_state(kind: str, directory: str, out: str) -> None:
    cache = candlecache.FanoutCache(directory, shards=3) if kind == "FanoutCache" else candlecache.Cache(directory)
    Path(out).write_text(repr(state(cache)))
    cache.close()


def _report_rows(kind: str, directory: str, out: str) -> None:
    """Every row as the engine holds it (access fields and expiry included), in key order."""
    cache = candlecache.Cache(directory)
    rows = [cache._store.row(key, raw) for key, raw in cache._store.keys(True, False)]
    Path(out).write_text(repr(rows))
    cache.close()


def in_new_process(tmp_path, report, kind: str, directory: str) -> str:
    """What `report` writes about the cache when a new process opens it."""
    out = tmp_path / f"report-{time.monotonic_ns()}.txt"
    p = CTX.Process(target=report, args=(kind, directory, str(out)))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    return out.read_text()


@pytest.mark.parametrize("kind", ["Cache", "FanoutCache"])
def test_opening_from_the_snapshot_sees_what_a_full_replay_sees(tmp_path, kind):
    d = str(tmp_path / "c")
    cache = candlecache.FanoutCache(d, shards=3) if kind == "FanoutCache" else candlecache.Cache(d)
    rnd = random.Random(5)
    for i in range(5000):
        op = rnd.random()
        k = rnd.choice([rnd.randrange(800), f"k{rnd.randrange(800)}", float(rnd.randrange(50)) + 0.5])
        if op < 0.7:
            cache.set(k, value(k, i), tag=rnd.choice([None, "a", "b"]),
                      expire=rnd.choice([None, None, 3600, -1]))
        elif op < 0.8:
            cache.delete(k)
        elif op < 0.9:
            cache.touch(k, rnd.choice([None, 7200]))
        else:
            cache.pop(k)
    assert snapshots(d), "the log outgrew 2 MiB but no snapshot was written"
    here = repr(state(cache))
    from_snapshot = in_new_process(tmp_path, _report_state, kind, d)
    for path in snapshots(d):
        os.remove(path)
    replayed = in_new_process(tmp_path, _report_state, kind, d)
    assert from_snapshot == replayed
    assert here == replayed
    assert [str(w.message) for w in cache.check()] == []
    cache.close()


def test_a_process_opened_from_the_snapshot_writes_and_evicts_correctly(tmp_path):
    d = str(tmp_path / "c")
    cache = candlecache.Cache(d, cull_limit=0)  # so that expired rows stay until expire()
    for i in range(1200):
        cache.set(i, value(i), expire=None if i % 4 else -1, tag="even" if i % 2 == 0 else None)
    assert snapshots(d)
    other = candlecache.Cache(d)  # opens from the snapshot, rows not parsed yet
    assert other.get(5) == value(5) and other.get(4) is None  # 4 has expired
    assert other.set(5000, b"new") and other.delete(7)
    assert other.expire() == 300  # the expired rows, still in the snapshot, are found
    assert other.evict("even") == 300  # the 600 even rows less the 300 expired ones
    assert len(other) == len(cache) == 1200 - 300 - 300 + 1 - 1
    assert list(other) == list(cache)
    assert cache.get(5000) == b"new" and 7 not in cache
    assert other.volume() == cache.volume()
    other.close()
    cache.close()


def _writer(directory: str, wid: int, n: int, out: str) -> None:
    """Writes its own keys, and now and then opens a new Cache to check they are all there."""
    cache = candlecache.Cache(directory)
    errors = []
    for i in range(n):
        cache.set(f"w{wid}-{i}", value(f"w{wid}-{i}"))
        cache.set(f"ver-{wid}", i)
        if i % 150 == 149:
            fresh = candlecache.Cache(directory)
            for j in range(0, i + 1, 7):
                if fresh.get(f"w{wid}-{j}") != value(f"w{wid}-{j}"):
                    errors.append(f"w{wid}-{j} wrong or missing in a new Cache after {i}")
            if fresh.get(f"ver-{wid}") != i:
                errors.append(f"ver-{wid} stale in a new Cache")
            fresh.close()
    cache.close()
    Path(out).write_text("\n".join(errors))


def test_writers_racing_to_write_snapshots_lose_nothing(tmp_path):
    d = str(tmp_path / "c")
    n = 900
    outs = [tmp_path / f"w{w}.txt" for w in range(4)]
    procs = [CTX.Process(target=_writer, args=(d, w, n, str(outs[w]))) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * 4
    assert [o.read_text() for o in outs] == [""] * 4
    assert snapshots(d)
    cache = candlecache.Cache(d)
    for w in range(4):
        for i in range(n):
            assert cache.get(f"w{w}-{i}") == value(f"w{w}-{i}")
    assert len(cache) == 4 * n + 4
    assert [str(x.message) for x in cache.check()] == []


def _acked_writer(directory: str, ack: str, tag: str) -> None:
    """Writes (and sometimes deletes) until killed; logs each acknowledged call after it returns."""
    cache = candlecache.Cache(directory)
    i = 0
    with open(ack, "a", buffering=1) as log:
        while True:
            key = f"{tag}-{i}"
            cache.set(key, value(key))
            log.write(f"set {key}\n")
            if i % 9 == 4:
                gone = f"{tag}-{i - 4}"
                log.write(f"deleting {gone}\n")
                cache.delete(gone)
                log.write(f"del {gone}\n")
            i += 1


def test_kill9_while_writing_snapshots_loses_nothing_acknowledged(tmp_path):
    d = str(tmp_path / "c")
    rnd = random.Random(11)
    acks = []
    for rnd_no in range(4):
        round_acks = [tmp_path / f"r{rnd_no}w{w}" for w in range(3)]
        procs = [CTX.Process(target=_acked_writer, args=(d, str(a), a.name)) for a in round_acks]
        for p in procs:
            p.start()
        for a in round_acks:  # each writer has started writing
            deadline = time.monotonic() + 60
            while not (a.exists() and a.read_text().count("\n") >= 2):
                assert time.monotonic() < deadline, f"{a.name} wrote nothing"
                time.sleep(0.01)
        for p in procs:
            time.sleep(rnd.uniform(0.05, 0.6))
            os.kill(p.pid, signal.SIGKILL)
            p.join(30)
        acks += round_acks
        cache = candlecache.Cache(d)
        present, deleted = set(), set()
        for a in acks:
            for line in a.read_text().splitlines():
                op, _, key = line.partition(" ")
                if op == "set":
                    present.add(key)
                elif op == "deleting":
                    present.discard(key)
                elif op == "del":
                    deleted.add(key)
        assert present, "the writers acknowledged nothing"
        for key in present:
            assert cache.get(key) == value(key), f"acknowledged {key} lost or wrong"
        for key in deleted:
            assert key not in cache, f"acknowledged delete of {key} undone"
        assert len(cache) == len(list(cache))
        bad = [str(w.message) for w in cache.check()
               if not any(s in str(w.message) for s in ("incomplete", "orphan"))]
        assert bad == []
        cache.close()
    assert snapshots(d)


@pytest.mark.parametrize("policy", ["least-recently-used", "least-frequently-used"])
def test_access_and_expiry_changes_after_the_snapshot_are_kept(tmp_path, policy):
    """Gets under LRU/LFU and touch() write records that change rows without replacing them;
    a process opening from the snapshot applies them to rows it reads later."""
    d = str(tmp_path / "c")
    writer = candlecache.Cache(d, eviction_policy=policy, cull_limit=0)
    for i in range(1500):
        writer.set(i, value(i))
    assert snapshots(d)
    other = candlecache.Cache(d)
    rnd = random.Random(9)
    for _ in range(3000):
        other.get(rnd.randrange(1500))
    for i in range(0, 1500, 7):
        other.touch(i, expire=rnd.choice([None, 3600, -5]))
    with_snapshot = in_new_process(tmp_path, _report_rows, "Cache", d)
    for path in snapshots(d):
        os.remove(path)
    assert with_snapshot == in_new_process(tmp_path, _report_rows, "Cache", d)
    other.close()
    writer.close()
