"""``MarketCache`` (issue 10, first slice): the hot tier and the statistics, through the
installed package, against other processes and the original tool writing the same files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

import candlecache
from candlecache import MarketCache, get_ohlcv_with_cache, read_cached
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange, candle

sys.path.insert(0, str(Path(__file__).parent / "original"))
import orig_cache_tool.entry as o_entry  # noqa: E402

BTC = "BTC/USDT"
HERE = Path(__file__).parent


def run_child(code: str, *args: object, env: dict[str, str] | None = None) -> str:
    src = "import sys\nsys.path.insert(0, %r)\n" % str(HERE) + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", src, *map(str, args)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_hot_reads_decode_nothing_and_equal_cold_reads(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        first = cache.get_ohlcv(BTC, "1m", T0, 100 * 1440, ex.fetch_ohlcv)  # Jan .. Apr: 4 files
        decodes = cache.stats()["hot_decodes"]
        for _ in range(5):
            again = cache.get_ohlcv(BTC, "1m", T0, 100 * 1440, ex.fetch_ohlcv)
            part = cache.get_ohlcv(BTC, "1m", T0 + 40 * DAY, 100, ex.fetch_ohlcv)
        s = cache.stats()
        assert s["hot_decodes"] == decodes, "a hot read decoded a file"
        assert s["hot_file_hits"] >= 5 * 4
        assert (s["hits"], s["misses"], s["hot_hits"], s["cold_hits"]) == (10, 1, 10, 0)
        assert again.equals(first)
        assert part.equals(first.filter(pl.col("time") >= T0 + 40 * DAY).head(100))
    cold = candlecache.read_cached(tmp_path, BTC, "1m", T0, T0 + 100 * DAY - MINUTE)
    assert cold.equals(first)


def test_a_write_by_another_process_is_seen_by_the_next_read(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        before = cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv)
        assert cache.read(BTC, "1h", T0, T0 + 47 * HOUR).equals(before)
        # Another process stores other values for the same candles (enable_cache=False
        # fetches and replaces), and appends candles after them.
        run_child(
            """
            import candlecache
            from memory_exchange import candle, HOUR
            base, T0 = sys.argv[1], int(sys.argv[2])
            def changed(symbol, period, since, limit):
                return [[t] + [v * 2 for v in candle(symbol, period, t)[1:]] for t in range(since, since + limit * HOUR, HOUR)]
            candlecache.get_ohlcv_with_cache(base, "BTC/USDT", "1h", T0, 60, changed, enable_cache=False)
            """,
            tmp_path, T0,
        )
        after = cache.read(BTC, "1h", T0, T0 + 59 * HOUR)
        assert after.height == 60
        assert after["close"].to_list()[:48] == [c * 2 for c in before["close"].to_list()]
        ex.calls.clear()
        assert cache.get_ohlcv(BTC, "1h", T0, 60, ex.fetch_ohlcv).equals(after)
        assert ex.calls == []


def test_a_write_by_the_original_tool_is_seen_by_the_next_read(tmp_path):
    """The original tool rewrites the partition file in place (same path): the next read sees
    the candles it added."""
    ex = MemoryExchange()
    cache = candlecache.market.default_cache(tmp_path)
    before = get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)
    assert read_cached(tmp_path, BTC, "1h").equals(before)
    assert cache.stats()["hot_entries"] >= 1

    def frames(symbol, period, since, limit, **params):
        rows = [candle(symbol, period, t) for t in range(since, since + limit * HOUR, HOUR)]
        return pl.DataFrame(rows, schema=["time", "open", "high", "low", "close", "volume"], orient="row")

    o_entry.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0 + 24 * HOUR, 24, frames)
    after = read_cached(tmp_path, BTC, "1h")
    assert after.height == 48
    assert after.equals(pl.concat([before, frames(BTC, "1h", T0 + 24 * HOUR, 24)]))


def test_statistics_add_up_across_processes(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)  # miss
        cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)  # hit
        run_child(
            """
            import candlecache
            from memory_exchange import MemoryExchange
            base, T0 = sys.argv[1], int(sys.argv[2])
            ex = MemoryExchange()
            for start in (T0, T0 + 3600_000 * 100):             # a hit, then a miss
                candlecache.get_ohlcv_with_cache(base, "BTC/USDT", "1h", start, 24, ex.fetch_ohlcv)
            candlecache.get_ohlcv_with_cache(base, "BTC/USDT", "1h", start, 24, ex.fetch_ohlcv)  # hit
            candlecache.read_cached(base, "BTC/USDT", "1h")
            """,
            tmp_path, T0,
        )
        s = cache.stats()
        assert (s["hits"], s["misses"], s["reads"]) == (3, 2, 1)
        assert s["requests"] == 2 and s["candles_fetched"] == 48
        assert s["hit_rate"] == pytest.approx(0.6)
        assert s["entries"] == 1 and s["bytes_on_disk"] > 0
        history = cache.stats_history()
        assert history.columns == ["day", "hits", "misses", "size"]
        assert history["hits"].sum() == 3 and history["misses"].sum() == 2
        assert cache.stats(reset=True)["hits"] == 3
        assert cache.stats()["hits"] == 0
        cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)
        assert cache.stats()["hits"] == 1
    # close() recorded today's size.
    assert MarketCache(tmp_path).stats_history()["size"].to_list()[-1] > 0


def test_a_reset_is_not_undone_by_a_process_that_keeps_running(tmp_path):
    """A running process holds its counts in memory and saves them again later: after a reset
    elsewhere, what it counted before the reset must not come back."""
    ex = MemoryExchange()
    go, ready = tmp_path / "go", tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        sys.path.insert(0, %r)
        from pathlib import Path
        import candlecache
        from memory_exchange import MemoryExchange, T0
        base = Path(sys.argv[1])
        ex = MemoryExchange()
        cache = candlecache.MarketCache(base)
        for _ in range(4):
            cache.get_ohlcv("BTC/USDT", "1h", T0, 24, ex.fetch_ohlcv)  # a miss, then 3 hits
        cache._stats.save()
        (base / "ready").touch()
        while not (base / "go").exists():
            time.sleep(0.01)
        cache.get_ohlcv("BTC/USDT", "1h", T0, 24, ex.fetch_ohlcv)      # one hit after the reset
        cache.close()
    """ % str(HERE)), str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = __import__("time").monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, child.stderr.read()
            assert __import__("time").monotonic() < deadline
            __import__("time").sleep(0.01)
        with MarketCache(tmp_path) as cache:
            before = cache.stats(reset=True)
            assert (before["hits"], before["misses"]) == (3, 1)
            go.touch()
            assert child.wait(timeout=60) == 0, child.stderr.read()
            after = cache.stats()
            assert (after["hits"], after["misses"]) == (1, 0), after
            assert cache.stats_history()["hits"].sum() == 1
    finally:
        child.kill()


def test_a_forked_child_counts_its_own_calls_only(tmp_path):
    ex = MemoryExchange()
    cache = MarketCache(tmp_path)
    cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)
    cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)
    pid = os.fork()
    if pid == 0:
        try:
            cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)
            cache.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    s = cache.stats()
    assert (s["hits"], s["misses"]) == (2, 1)


def test_the_hot_tier_respects_its_budget_and_can_be_off(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, hot_cache_mb=0.5) as small:
        small.get_ohlcv(BTC, "1m", T0, 60 * 1440, ex.fetch_ohlcv)  # ~3 MB decoded
        s = small.stats()
        assert s["hot_bytes"] <= 0.5 * 2**20 and s["hot_budget"] == 2**19
    with MarketCache(tmp_path, hot_cache_mb=0) as off:
        assert off.read(BTC, "1m").height == 60 * 1440
        assert off.stats()["hot_entries"] == 0
        assert "hot tier off" in repr(off)
    out = run_child(
        """
        import candlecache
        c = candlecache.market.default_cache(sys.argv[1])
        print(c.stats()["hot_budget"], repr(c))
        """,
        tmp_path, env={"CANDLECACHE_HOT_MB": "0"},
    )
    assert out.startswith("0 ") and "hot tier off" in out


def test_repr_close_and_bad_arguments(tmp_path):
    cache = MarketCache(str(tmp_path), hot_cache_mb=64)
    assert repr(cache).startswith(f"MarketCache({str(tmp_path)!r}, hot 0.0 of 64 MiB in 0 files, open")
    cache.close()
    cache.close()
    assert repr(cache).endswith("closed)")
    with pytest.raises(ValueError, match="closed"):
        cache.read(BTC, "1h")
    for bad in (-1, "big", True):
        with pytest.raises(ValueError, match="hot_cache_mb"):
            MarketCache(tmp_path, hot_cache_mb=bad)
    with pytest.raises(ValueError, match="unknown period"):
        MarketCache(tmp_path).read(BTC, "7m")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        MarketCache(f)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # "garbage": the footer is overwritten
        path.write_bytes(data[:-64] + b"\x00" * 64)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_file_heals_within_the_call_that_meets_it(tmp_path, how):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        good = cache.get_ohlcv(BTC, "1h", T0 - 48 * HOUR, 96, ex.fetch_ohlcv)  # 2023 and 2024 files
        folder = tmp_path / "BTC_USDT_1h"
        _damage(folder / "2024.parquet", how)
        # Without a callback: a clear error that says what to do.
        with pytest.raises(candlecache.CorruptionError, match="2024.parquet.*fetch_callback"):
            cache.read(BTC, "1h")
        ex.calls.clear()
        again = cache.get_ohlcv(BTC, "1h", T0 - 48 * HOUR, 96, ex.fetch_ohlcv)
        assert again.equals(good)
        assert ex.calls and all(since >= T0 for _, _, since, _ in ex.calls), "only 2024 is fetched again"
        assert (folder / "2024.parquet.corrupt").exists()
        assert cache.stats()["files_repaired"] == 1
        assert cache.verify().height == 0


def test_verify_reports_and_repairs_and_clear_removes(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv)
        cache.get_ohlcv("ETH/USDT", "1h", T0, 48, ex.fetch_ohlcv)
        cache.get_ohlcv("ETH/USDT", "1d", T0, 10, ex.fetch_ohlcv)
        _damage(tmp_path / "ETH_USDT_1h" / "2024.parquet", "garbage")
        report = cache.verify()
        assert report.select("symbol", "period", "repaired").rows() == [("ETH_USDT", "1h", False)]
        assert report["file"][0].endswith("2024.parquet") and report["reason"][0]
        fixed = cache.verify(repair=True)
        assert fixed["repaired"].to_list() == [True]
        assert cache.verify().height == 0
        assert candlecache.coverage(tmp_path, "ETH/USDT", "1h") == []
        assert cache.clear("ETH/USDT", "1d") == 10
        assert cache.read("ETH/USDT", "1d").height == 0
        assert cache.read(BTC, "1h").height == 48
        assert cache.clear() == 48
        assert cache.read(BTC, "1h").height == 0
        ex.calls.clear()
        assert cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv).height == 48 and ex.calls


def _dir_bytes(base: Path) -> int:
    return sum(f.stat().st_size for f in base.rglob("*") if f.is_file())


MONTH = 31 * DAY  # January and March; the limit math below only needs "about a month"


@pytest.mark.parametrize("policy", ["lru", "size", "hybrid"])
def test_the_size_limit_holds_and_evicted_ranges_are_fetched_again(tmp_path, policy):
    ex = MemoryExchange()
    probe = tmp_path / "probe"
    get_ohlcv_with_cache(probe, BTC, "1m", T0, 31 * 1440, ex.fetch_ohlcv)
    month_bytes = _dir_bytes(probe)
    limit_mb = 2.5 * month_bytes / 2**20
    base = tmp_path / "limited"
    with MarketCache(base, cold_cache_mb=limit_mb, eviction_policy=policy, statistics=policy != "size") as cache:
        starts = [T0, T0 + 31 * DAY, T0 + 60 * DAY, T0 + 91 * DAY]  # Jan, Feb, Mar, Apr 2024
        cache.get_ohlcv(BTC, "1m", starts[0], 28 * 1440, ex.fetch_ohlcv)
        cache.get_ohlcv(BTC, "1m", starts[1], 28 * 1440, ex.fetch_ohlcv)
        cache.read(BTC, "1m", starts[0], starts[0] + DAY)  # January is used again: Feb is the LRU
        cache.get_ohlcv(BTC, "1m", starts[2], 28 * 1440, ex.fetch_ohlcv)
        assert _dir_bytes(base) <= limit_mb * 2**20
        if policy != "size":  # (without statistics, eviction works all the same)
            assert cache.stats()["partitions_evicted"] >= 1
        covered = candlecache.coverage(base, BTC, "1m")
        assert any(a <= starts[2] < b for a, b in covered), "the request being served is never evicted"
        if policy == "lru":
            assert any(a <= starts[0] < b for a, b in covered) and not any(a <= starts[1] < b for a, b in covered)
        # Every range still reads correctly: evicted ones are fetched again.
        for start in starts:
            df = cache.get_ohlcv(BTC, "1m", start, 28 * 1440, ex.fetch_ohlcv)
            assert df["time"].to_list() == list(range(start, start + 28 * 1440 * MINUTE, MINUTE))
            assert df.row(5) == tuple(candle(BTC, "1m", start + 5 * MINUTE))
            assert _dir_bytes(base) <= limit_mb * 2**20


def test_files_moved_aside_go_before_live_partitions_under_the_limit(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, cold_cache_mb=1.5) as cache:
        cache.get_ohlcv(BTC, "1m", T0, 1440, ex.fetch_ohlcv)
        junk = tmp_path / "BTC_USDT_1m" / "2023-12.parquet.corrupt"
        junk.write_bytes(b"\0" * (2 * 2**20))
        cache.get_ohlcv(BTC, "1m", T0 + 2 * DAY, 1440, ex.fetch_ohlcv)  # a write: the limit acts
        assert not junk.exists()
        assert cache.stats()["partitions_evicted"] == 0
        assert cache.read(BTC, "1m").height == 2 * 1440


def test_runs_are_recorded_and_cleared_alone(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv, run_id="bt-001")              # 2024
        cache.get_ohlcv(BTC, "1h", T0 - 48 * HOUR, 24, ex.fetch_ohlcv, run_id="bt-001")  # 2023
        cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv, run_id="bt-002")              # 2024 too
        cache.read("ETH/USDT", "1d", run_id="bt-002")  # nothing stored: nothing used
        runs = cache.runs()
        assert runs.select("run_id", "symbol", "period", "partitions").rows() == [
            ("bt-001", "BTC_USDT", "1h", 2), ("bt-002", "BTC_USDT", "1h", 1),
        ]
        # bt-001 alone used 2023: that goes; 2024 stays for bt-002.
        assert cache.clear(run_id="bt-001") == 24
        assert cache.read(BTC, "1h").height == 24
        assert cache.runs()["run_id"].to_list() == ["bt-002"]
        assert cache.clear(run_id="nope") == 0
        with pytest.raises(TypeError, match="run_id"):
            cache.read(BTC, "1h", run_id=5)
    # Another process sees the runs.
    out = run_child(
        """
        import candlecache
        print(candlecache.MarketCache(sys.argv[1]).runs()["run_id"].to_list())
        """,
        tmp_path,
    )
    assert out == "['bt-002']"


def test_bad_limit_and_policy(tmp_path):
    for bad in (0, -5, "1GB"):
        with pytest.raises(ValueError, match="cold_cache_mb"):
            MarketCache(tmp_path, cold_cache_mb=bad)
    with pytest.raises(ValueError, match="eviction_policy"):
        MarketCache(tmp_path, eviction_policy="fifo")


def test_after_an_append_a_growing_window_decodes_only_the_new_file(tmp_path):
    """The live loop: a bot asks for everything up to the newest candle again after a few
    candles were appended. Only the delta file holding them is decoded."""
    ex = MemoryExchange()
    n = 90 * 1440 - 600  # Jan 1 .. Mar 30 14:00: the window ends inside March
    with MarketCache(tmp_path) as cache:
        first = cache.get_ohlcv(BTC, "1m", T0, n, ex.fetch_ohlcv)
        cache.get_ohlcv(BTC, "1m", T0, n, ex.fetch_ohlcv)
        for step in range(1, 4):
            before = cache.stats()["hot_decodes"]
            df = cache.get_ohlcv(BTC, "1m", T0, n + 10 * step, ex.fetch_ohlcv)
            assert cache.stats()["hot_decodes"] - before == 1, "only the new delta file"
            assert df.height == n + 10 * step and df.head(n).equals(first)


WORKER = r"""
import random, sys, time
sys.path.insert(0, %r)
import candlecache
from memory_exchange import MemoryExchange, T0, DAY
base, seed, rounds, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ex = MemoryExchange()
rnd = random.Random(seed)
with candlecache.MarketCache(base, cold_cache_mb=limit, hot_cache_mb=8) as cache:
    for _ in range(rounds):
        month = rnd.randrange(6)
        start = T0 + month * 30 * DAY + rnd.randrange(5) * DAY
        cache.get_ohlcv("BTC/USDT", "1m", start, rnd.choice([1440, 5 * 1440, 12 * 1440]), ex.fetch_ohlcv)
        if rnd.random() < 0.3:
            cache.read("BTC/USDT", "1m", start, start + DAY)
print("done")
""" % str(HERE)


def _covered_is_stored(base: Path) -> None:
    """What the log covers is stored, and equal to the exchange's candles."""
    ex = MemoryExchange()
    for a, b in candlecache.coverage(base, BTC, "1m"):
        got = read_cached(base, BTC, "1m", a, b - MINUTE)
        assert got["time"].to_list() == list(range(a, b, MINUTE)), f"covered {a}..{b} is not all stored"
        assert got.equals(ex.truth(BTC, "1m", a, (b - a) // MINUTE))


def test_four_processes_with_a_small_limit_lose_nothing_covered(tmp_path):
    limit = 1.5  # MiB: under two months of 1m candles (0.9 MiB each); the workers ask for six
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(seed), "12", str(limit)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "done" in out, err
    _covered_is_stored(tmp_path)
    assert MarketCache(tmp_path).stats()["partitions_evicted"] > 0, "the limit never acted"
    assert _dir_bytes(tmp_path) <= limit * 2**20 * 1.5  # each writer enforces it after its own write


def test_kill_9_during_eviction_leaves_a_cache_that_reads_correctly(tmp_path):
    import random
    import signal
    import time as _time

    rnd = random.Random(7)
    # Start over the limit with four old months (about 3.6 MiB, least recently used): every
    # write of a worker evicts, however slowly a loaded machine runs it, so the kills land
    # during eviction, and what went is seen in the coverage (a killed worker's statistics
    # are never saved).
    old = T0 - 400 * DAY
    with MarketCache(tmp_path) as filler:
        filler.get_ohlcv(BTC, "1m", old, 120 * 1440, MemoryExchange().fetch_ohlcv)
    for i in range(6):
        p = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(100 + i), "40", "1.5"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _time.sleep(1.0 + rnd.random() * 1.5)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        _covered_is_stored(tmp_path)
        assert candlecache.MarketCache(tmp_path).verify().height == 0
    kept = sum(b - a for a, b in candlecache.coverage(tmp_path, BTC, "1m") if a < T0)
    assert kept < 120 * DAY, "the limit never acted"
    # And the cache goes on working after the kills.
    ex = MemoryExchange()
    df = MarketCache(tmp_path).get_ohlcv(BTC, "1m", T0, 1440, ex.fetch_ohlcv)
    assert df.equals(ex.truth(BTC, "1m", T0, 1440))


def test_files_of_exited_processes_are_folded_and_counts_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(candlecache._usage, "_FOLD_AT", 2)
    for i in range(3):
        run_child(
            """
            import candlecache
            from memory_exchange import MemoryExchange
            base, T0, i = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
            with candlecache.MarketCache(base) as c:
                c.get_ohlcv("BTC/USDT", "1h", T0, 24, MemoryExchange().fetch_ohlcv, run_id=f"bt-{i}")
            """,
            tmp_path, T0, i,
        )
    stats_dir = tmp_path / ".candlecache" / "stats"
    assert len(list(stats_dir.glob("*.json"))) == 3
    with MarketCache(tmp_path) as cache:
        s = cache.stats()
        assert (s["hits"], s["misses"], s["requests"]) == (2, 1, 1)
        assert [p.name for p in stats_dir.glob("*.json")] == ["archive.json"]
        assert cache.stats()["hits"] == 2, "folding counts each file once"
        assert cache.stats_history()["misses"].sum() == 1
        assert cache.runs()["run_id"].to_list() == ["bt-0", "bt-1", "bt-2"]
        assert [p.name for p in (tmp_path / ".candlecache" / "usage").glob("*.json")] == ["archive.json"]
        assert cache.clear(run_id="bt-0") == 0  # bt-1 and bt-2 used the same partition


@pytest.mark.parametrize(("codec", "level", "parquet_name"), [
    ("zstd", None, "ZSTD"), ("zstd", 9, "ZSTD"), ("lz4", None, "LZ4"), ("snappy", None, "SNAPPY"),
    ("gzip", 6, "GZIP"), ("none", None, "UNCOMPRESSED"),
])
def test_the_compression_setting_writes_files_any_reader_reads(tmp_path, codec, level, parquet_name):
    import pyarrow.parquet as pq

    ex = MemoryExchange()
    with MarketCache(tmp_path, compression=codec, compression_level=level) as cache:
        df = cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv)
        cache.get_ohlcv(BTC, "1h", T0, 60, ex.fetch_ohlcv)  # a delta file too
    for f in (tmp_path / "BTC_USDT_1h").glob("*.parquet"):
        assert pq.ParquetFile(f).metadata.row_group(0).column(1).compression == parquet_name
    assert pl.scan_parquet(tmp_path / "BTC_USDT_1h" / "*.parquet").collect().sort("time").head(48).equals(df)
    assert read_cached(tmp_path, BTC, "1h").height == 60


@pytest.mark.parametrize(("codec", "level", "error"), [
    ("brotli", None, ValueError), ("zstd", 40, ValueError), ("lz4", 3, ValueError), (None, None, TypeError),
    ("zstd", 2.5, TypeError),
])
def test_a_bad_compression_setting_is_refused(tmp_path, codec, level, error):
    with pytest.raises(error, match="compression|zstd|lz4|levels"):
        MarketCache(tmp_path, compression=codec, compression_level=level)
