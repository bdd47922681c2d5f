"""Crash safety and concurrency of get_ohlcv_with_cache, with real processes.

DESIGN.md, "The OHLCV contract": one lock per folder serialises fetch-and-write, so N processes
asking for the same range fetch it once; fully cached reads take no lock; a crash at any point
(``kill -9``) leaves a cache that reads correctly and at worst refetches. Child processes run
``tests/_workers.py``; their fetch callbacks append one JSON line per call to a shared file.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import get_ohlcv_with_cache
from memory_exchange import DAY, MINUTE, T0, MemoryExchange

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

TESTS = Path(__file__).resolve().parent
WORKERS = TESTS / "_workers.py"
SYMBOL, PERIOD = "BTC/USDT", "1m"


# -- helpers -------------------------------------------------------------------------------


def spawn(tmp_path: Path, cmd: str, name: str, **args) -> subprocess.Popen:
    err = open(tmp_path / f"{name}.stderr", "wb")  # a file, not a pipe: a killed child never blocks
    try:
        return subprocess.Popen([sys.executable, str(WORKERS), cmd, json.dumps(args)], cwd=TESTS, stderr=err)
    finally:
        err.close()


def stderr_of(tmp_path: Path, name: str) -> str:
    p = tmp_path / f"{name}.stderr"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def wait_file(path: Path, proc: subprocess.Popen, tmp_path: Path, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"worker {name} exited with {proc.returncode}:\n{stderr_of(tmp_path, name)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"worker {name} never wrote {path.name}")
        time.sleep(0.002)


def kill9(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=30)


def read_calls(path: Path, event: str) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)  # O_APPEND single writes: never torn, never interleaved
        if rec["event"] == event:
            out.append(rec)
    return out


def fetched_span(call: dict) -> tuple[int, int]:
    """Slots a completed call consumed: ``[since, last + 1 period)`` capped at ``since + limit``."""
    asked_end = call["since"] + call["limit"] * MINUTE
    if call["n"] == 0:
        return call["since"], asked_end
    return call["since"], min(call["last"] + MINUTE, asked_end)


def assert_disjoint(spans: list[tuple[int, int]]) -> None:
    spans = sorted(spans)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 <= b0, f"slots fetched twice: [{a0}, {a1}) and [{b0}, {b1})"


def inside(span: tuple[int, int], ranges: list[tuple[int, int]]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in ranges)


_DELTA = re.compile(r"^(?P<key>.+)\.d(?P<seq>\d+)\.parquet$")


def live_parquet_files(folder: Path) -> list[Path]:
    """``*.parquet`` files minus those superseded per the footer metadata (store.rs's rule)."""
    groups: dict[str, dict] = {}
    others = []
    for p in sorted(folder.glob("*.parquet")):
        m = _DELTA.match(p.name)
        key, seq = (m["key"], int(m["seq"])) if m else (p.name[: -len(".parquet")], 0)
        if key.startswith("."):
            others.append(p)
            continue
        groups.setdefault(key, {})[seq] = p
    live = list(others)
    for files in groups.values():
        through, dead = 0, set()
        for seq, p in files.items():
            kv = {k.decode(): v.decode() for k, v in (pq.read_metadata(p).metadata or {}).items()}
            if seq == 0:
                through = max(through, int(kv.get("candlecache.compacted_through", "0") or 0))
            elif "candlecache.supersedes" in kv:
                dead |= {int(x) for x in kv["candlecache.supersedes"].split(",") if x.strip()}
        live += [p for seq, p in files.items() if seq == 0 or (seq > through and seq not in dead)]
    return live


def assert_folder_sound(folder: Path) -> None:
    """Every ``*.parquet`` readable; no time in two live files; only known names present."""
    for p in folder.iterdir():
        name = p.name
        if name in ("fetch_log.jsonl", ".lock", ".checksums.jsonl"):
            continue
        if name.startswith(".") and name.endswith(".tmp"):
            assert not p.match("*.parquet")
            continue
        assert name.endswith(".parquet"), f"unexpected file {name}"
    for p in folder.glob("*.parquet"):
        try:
            pl.read_parquet(p)
        except Exception as e:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{p.name} is not readable by polars: {e}")
    live = live_parquet_files(folder)
    times = pl.concat([pl.read_parquet(p, columns=["time"]) for p in live]) if live else pl.DataFrame({"time": []})
    dup = times.filter(pl.col("time").is_duplicated())["time"].unique().sort()
    assert dup.len() == 0, f"times in two live files: {dup.head(5).to_list()} ({[p.name for p in live]})"


def assert_matches_truth(df: pl.DataFrame, truth_all: pl.DataFrame) -> None:
    """``df`` is sorted, unique on time, and every row is the exchange's row of that time."""
    assert df["time"].is_unique().all(), "duplicate times"
    assert df["time"].is_sorted()
    expected = truth_all.filter(pl.col("time").is_in(df["time"].implode()))
    assert_frame_equal(df.select(expected.columns), expected)


def assert_coverage_backed_by_data(folder: Path, truth_all: pl.DataFrame) -> list[tuple[int, int]]:
    """Data is written before its log line: every covered slot has its row on disk."""
    covered = [tuple(r) for r in candlecache._core.coverage(folder, PERIOD)]
    stored = candlecache._core.read_range(folder, None, None)
    stored = pl.DataFrame(stored)
    for a, b in covered:
        want = truth_all.filter((pl.col("time") >= a) & (pl.col("time") < b))
        got = stored.filter((pl.col("time") >= a) & (pl.col("time") < b))
        assert_frame_equal(got.select(want.columns), want, check_dtypes=True)
    return covered


# -- 1. same range, 4 processes ---------------------------------------------------------------


def test_four_processes_same_range_fetch_once(tmp_path):
    base = tmp_path / "cache"
    calls = tmp_path / "calls.jsonl"
    go = tmp_path / "go"
    start, count = T0 + 17 * MINUTE, 3000
    procs = []
    for i in range(4):
        procs.append(
            spawn(
                tmp_path, "race", f"w{i}", base=str(base), start=start, count=count, cap=1000, sleep=0.15,
                calls_file=str(calls), ready_file=str(tmp_path / f"ready{i}"), go_file=str(go),
                out_file=str(tmp_path / f"out{i}.parquet"),
            )
        )
    for i, p in enumerate(procs):
        wait_file(tmp_path / f"ready{i}", p, tmp_path, f"w{i}")
    go.touch()
    for i, p in enumerate(procs):
        assert p.wait(timeout=60) == 0, stderr_of(tmp_path, f"w{i}")

    truth = MemoryExchange().truth(SYMBOL, PERIOD, start, count)
    results = [pl.read_parquet(tmp_path / f"out{i}.parquet") for i in range(4)]
    for df in results:
        assert_frame_equal(df, truth)
    ended = read_calls(calls, "end")
    assert len(read_calls(calls, "start")) == len(ended) == 3, ended  # 3 pages of 1000, once in total
    assert len({c["pid"] for c in ended}) == 1
    spans = [fetched_span(c) for c in ended]
    assert_disjoint(spans)
    assert sorted(spans)[0][0] == start and sorted(spans)[-1][1] == start + count * MINUTE
    assert sum(b - a for a, b in spans) == count * MINUTE


# -- 2. overlapping ranges, 4 processes -------------------------------------------------------


def test_four_processes_overlapping_ranges(tmp_path):
    base = tmp_path / "cache"
    calls = tmp_path / "calls.jsonl"
    go = tmp_path / "go"
    b = T0 + 44_000 * MINUTE  # around the January/February partition boundary (minute 44640)
    ranges = [(b, 1500), (b + 800 * MINUTE, 1500), (b - 700 * MINUTE, 1200), (b + 400 * MINUTE, 2500)]
    procs = []
    for i, (s, n) in enumerate(ranges):
        procs.append(
            spawn(
                tmp_path, "race", f"w{i}", base=str(base), start=s, count=n, cap=100_000, sleep=0.1,
                calls_file=str(calls), ready_file=str(tmp_path / f"ready{i}"), go_file=str(go),
                out_file=str(tmp_path / f"out{i}.parquet"),
            )
        )
    for i, p in enumerate(procs):
        wait_file(tmp_path / f"ready{i}", p, tmp_path, f"w{i}")
    go.touch()
    for i, p in enumerate(procs):
        assert p.wait(timeout=60) == 0, stderr_of(tmp_path, f"w{i}")

    ex = MemoryExchange()
    for i, (s, n) in enumerate(ranges):
        assert_frame_equal(pl.read_parquet(tmp_path / f"out{i}.parquet"), ex.truth(SYMBOL, PERIOD, s, n))

    ended = read_calls(calls, "end")
    assert len(read_calls(calls, "start")) == len(ended)
    # No page cap is hit, so each call's [since, since + limit) is exactly what it fetched.
    assert all(c["n"] == c["limit"] for c in ended), ended
    assert_disjoint([(c["since"], c["since"] + c["limit"] * MINUTE) for c in ended])
    lo, hi = b - 700 * MINUTE, b + 2900 * MINUTE
    assert sum(c["limit"] for c in ended) == (hi - lo) // MINUTE

    folder = candlecache.data_dir(base, SYMBOL, PERIOD)
    assert {p.name for p in folder.glob("*.parquet") if not _DELTA.match(p.name)} >= {"2024-01.parquet", "2024-02.parquet"}
    scanned = pl.scan_parquet(str(folder / "*.parquet")).collect()
    assert scanned.height == scanned["time"].n_unique()
    assert_frame_equal(scanned.sort("time"), ex.truth(SYMBOL, PERIOD, lo, (hi - lo) // MINUTE))


# -- 3. kill -9 during writes ------------------------------------------------------------------


def test_kill_9_at_random_points_during_writes(tmp_path):
    kill_rounds(tmp_path, rounds=15, seed=0xC0FFEE)


def kill_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    base = tmp_path / "cache"
    folder = candlecache.data_dir(base, SYMBOL, PERIOD)
    ex = MemoryExchange()
    d0 = T0 + 200 * DAY  # the child's distant ranges: another partition
    truth_a = ex.truth(SYMBOL, PERIOD, T0, rounds * 3000)
    truth_d = ex.truth(SYMBOL, PERIOD, d0, rounds * 2000)
    truth_all = pl.concat([truth_a, truth_d])
    progress = tmp_path / "progress.jsonl"  # one line per call the workers completed
    killed = 0
    for rnd in range(rounds):
        name = f"churn{rnd}"
        ready, done = tmp_path / f"ready{rnd}", tmp_path / f"done{rnd}"
        p = spawn(tmp_path, "churn", name, base=str(base), round=rnd, seed=rng.randrange(2**32),
                  ready_file=str(ready), done_file=str(done), d0=d0, progress_file=str(progress))
        wait_file(ready, p, tmp_path, name)
        time.sleep(rng.uniform(0.010, 0.400))
        rc = kill9(p)
        if rc == -signal.SIGKILL:
            killed += 1
        else:
            assert rc == 0 and done.exists(), f"round {rnd}: worker exited {rc}:\n{stderr_of(tmp_path, name)}"

        # Straight after the crash: a sound folder, data behind every log line.
        if folder.exists():
            assert_folder_sound(folder)
            # The checksum record agrees with the files a crash left: nothing reads as damage.
            report = candlecache.MarketCache(base, hot_cache_mb=0, statistics=False).verify()
            assert report.height == 0, report.to_dicts()
            assert_matches_truth(candlecache.read_cached(base, SYMBOL, PERIOD), truth_all)
            covered = assert_coverage_backed_by_data(folder, truth_all)
        else:
            covered = []

        # A fresh call covering everything written so far never raises and returns the truth,
        # asking the exchange only for what the log does not cover.
        n_a, n_d = (rnd + 1) * 3000, (rnd + 1) * 2000
        parent = MemoryExchange()
        missing = [tuple(r) for r in candlecache._core.ranges_missing(covered, T0, T0 + n_a * MINUTE)]
        missing += [tuple(r) for r in candlecache._core.ranges_missing(covered, d0, d0 + n_d * MINUTE)]
        got_a = get_ohlcv_with_cache(base, SYMBOL, PERIOD, T0, n_a, parent.fetch_ohlcv, lock_timeout=10)
        assert_frame_equal(got_a, truth_a.head(n_a))
        got_d = get_ohlcv_with_cache(base, SYMBOL, PERIOD, d0, n_d, parent.fetch_ohlcv, lock_timeout=10)
        assert_frame_equal(got_d, truth_d.head(n_d))
        for _, _, since, limit in parent.calls:
            assert inside((since, since + limit * MINUTE), missing), (rnd, since, limit, missing)

        assert_folder_sound(folder)
        assert_frame_equal(
            candlecache.read_cached(base, SYMBOL, PERIOD), pl.concat([truth_a.head(n_a), truth_d.head(n_d)])
        )
        # Everything is covered now: the same calls are served from the cache.
        again = MemoryExchange()
        assert_frame_equal(get_ohlcv_with_cache(base, SYMBOL, PERIOD, T0, n_a, again.fetch_ohlcv), got_a)
        assert again.calls == []
    assert killed >= rounds // 2, f"only {killed} of {rounds} workers were still writing when killed"
    assert len(read_calls(progress, "op")) >= 5 * rounds, "the workers hardly wrote anything before being killed"


# -- 4. kill -9 mid-fetch of a multi-page range --------------------------------------------------


@pytest.mark.parametrize("kill_at_call", [2, 7])
def test_kill_9_mid_fetch_refetches_only_what_is_missing(tmp_path, kill_at_call):
    base = tmp_path / "cache"
    folder = candlecache.data_dir(base, SYMBOL, PERIOD)
    calls = tmp_path / "calls.jsonl"
    count, cap = 260_000, 40_000
    p = spawn(tmp_path, "slowfetch", "slow", base=str(base), start=T0, count=count, cap=cap, sleep=30.0,
              sleep_from=kill_at_call - 1, calls_file=str(calls), ready_file=str(tmp_path / "ready"),
              done_file=str(tmp_path / "done"))
    deadline = time.monotonic() + 60
    while len(read_calls(calls, "start")) < kill_at_call:  # call `kill_at_call` is sleeping
        assert p.poll() is None, stderr_of(tmp_path, "slow")
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(random.Random(kill_at_call).uniform(0.0, 0.1))
    assert kill9(p) == -signal.SIGKILL
    assert len(read_calls(calls, "end")) == kill_at_call - 1

    ex = MemoryExchange()
    truth = ex.truth(SYMBOL, PERIOD, T0, count)
    assert_folder_sound(folder)
    covered = assert_coverage_backed_by_data(folder, truth)
    if kill_at_call > 5:
        # Six pages of 40k candles were answered: a long backfill writes what it has fetched
        # every 200k rows (fetch.rs FLUSH_ROWS), so at least the first five are on disk and logged.
        assert sum(b - a for a, b in covered) >= 200_000 * MINUTE, covered
    missing = [tuple(r) for r in candlecache._core.ranges_missing(covered, T0, T0 + count * MINUTE)]

    df = get_ohlcv_with_cache(base, SYMBOL, PERIOD, T0, count, ex.fetch_ohlcv)
    assert_frame_equal(df, truth)
    assert ex.calls
    for _, _, since, limit in ex.calls:
        assert inside((since, since + limit * MINUTE), missing), (since, limit, missing)
    assert_folder_sound(folder)


# -- 5. a held lock ----------------------------------------------------------------------------


def test_held_lock_times_out_uncached_but_not_cached_reads(tmp_path):
    ex = MemoryExchange()
    cached = get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0, 500, ex.fetch_ohlcv)
    folder = candlecache.data_dir(tmp_path, SYMBOL, PERIOD)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, candlecache; candlecache._core.hold_lock(sys.argv[1], float(sys.argv[2]))",
         str(folder), "2.5"]
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # until the child holds the lock
            try:
                candlecache._core.hold_lock(folder, 0, lock_timeout=0)
            except candlecache.Timeout:
                break
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        ex.calls.clear()

        t = time.monotonic()
        df = get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0 + 100 * MINUTE, 300, ex.fetch_ohlcv, lock_timeout=0.3)
        assert time.monotonic() - t < 0.3, "a fully cached read waited for the lock"
        assert_frame_equal(df, cached.slice(100, 300))

        for start, count in [(T0 + 1000 * MINUTE, 100), (T0 + 400 * MINUTE, 200)]:  # uncached, partly cached
            t = time.monotonic()
            with pytest.raises(candlecache.Timeout):
                get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, start, count, ex.fetch_ohlcv, lock_timeout=0.3)
            assert 0.25 <= time.monotonic() - t < 3.0
        assert ex.calls == []
        assert holder.poll() is None, "the lock holder ended early; the timeouts prove nothing"
    finally:
        holder.wait(timeout=30)
    assert_frame_equal(
        get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0 + 400 * MINUTE, 200, ex.fetch_ohlcv, lock_timeout=5),
        ex.truth(SYMBOL, PERIOD, T0 + 400 * MINUTE, 200),
    )
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 500 * MINUTE, 100)]


# -- 6. disk full, read-only --------------------------------------------------------------------


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    r = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs -o size=64k tmpfs "$1"', "sh", str(probe)],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def test_disk_full_raises_oserror_and_keeps_the_cache(tmp_path):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs in a private mount namespace here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = tmp_path / "report.json"
    args = json.dumps({"mnt": str(mnt), "out": str(out)})
    # The tmpfs exists only in the child's private mount namespace and vanishes with it.
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o size=2m tmpfs "$1" && exec "$2" "$3" diskfull "$4"',
         "sh", str(mnt), sys.executable, str(WORKERS), args],
        cwd=TESTS, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())

    assert rep["small_equals_truth"]
    assert rep["fill_errno"] == errno.ENOSPC
    full = rep["full_uncached"]
    assert full["raised"] is not None, "a write on a full disk reported success"
    assert "OSError" in full["mro"] and full["errno"] == errno.ENOSPC, full
    assert rep["state_after_full"]["unreadable"] == []
    assert all(not n.startswith(".") or n in (".lock", ".checksums.jsonl") or n.endswith(".tmp") for n in rep["state_after_full"]["names"])
    assert rep["full_callback_raises"]["is_boom"], rep["full_callback_raises"]  # not replaced by ENOSPC
    assert rep["full_cached_read"] == {"raised": None, "message": None, "equals": True}
    assert rep["freed_cached_read"] == {"raised": None, "message": None, "equals": True, "calls": 0}
    assert rep["freed_big"]["raised"] is None and rep["freed_big"]["equals"], rep["freed_big"]
    assert rep["read_cached_unique"] and rep["read_cached_height"] == 20_500
    assert rep["state_after_free"]["unreadable"] == []
    if rep["remount_ro"] == 0:
        ro = rep["ro_uncached"]
        assert "OSError" in ro["mro"] and ro["errno"] == errno.EROFS, ro
        assert rep["ro_cached_read"] == {"raised": None, "message": None, "equals": True}


def test_read_only_folder_raises_permission_error_and_keeps_the_cache(tmp_path):
    ex = MemoryExchange()
    small = get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0, 100, ex.fetch_ohlcv)
    folder = candlecache.data_dir(tmp_path, SYMBOL, PERIOD)
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (root)")
        with pytest.raises(PermissionError):
            get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0 + 1000 * MINUTE, 100, ex.fetch_ohlcv)

        boom = RuntimeError("exchange down")
        paged = MemoryExchange(cap=20)

        def flaky(symbol, period, since, limit):
            if len(paged.calls) >= 2:
                raise boom
            return paged.fetch_ohlcv(symbol, period, since, limit)

        with pytest.raises(RuntimeError) as info:
            get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0 + 1000 * MINUTE, 100, flaky)
        assert info.value is boom
        ex.calls.clear()
        assert_frame_equal(get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0, 100, ex.fetch_ohlcv), small)
        assert ex.calls == []
    finally:
        folder.chmod(mode)
    assert_frame_equal(get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0, 100, ex.fetch_ohlcv), small)
    assert ex.calls == []
    assert_frame_equal(
        get_ohlcv_with_cache(tmp_path, SYMBOL, PERIOD, T0 + 1000 * MINUTE, 100, ex.fetch_ohlcv),
        ex.truth(SYMBOL, PERIOD, T0 + 1000 * MINUTE, 100),
    )
    assert_folder_sound(folder)
