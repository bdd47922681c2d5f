"""The candle cache on object storage (S3 through a local moto server; file:// roots).

Every test goes through the installed package as a user calls it: ``get_ohlcv_with_cache``,
``MarketCache`` and ``read_cached`` with an ``s3://`` URL and ``storage_options``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import candlecache
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange
from s3 import S3Bucket, S3Proxy

SYMBOL = "BTC/USDT"
TESTS = Path(__file__).parent


def get(bucket: S3Bucket, ex: MemoryExchange, start: int, count: int, period: str = "1m", **kw) -> pl.DataFrame:
    return candlecache.get_ohlcv_with_cache(
        bucket.url, SYMBOL, period, start, count, ex.fetch_ohlcv, storage_options=bucket.storage_options, **kw
    )


def test_cold_then_warm_reads_fetch_once_and_match_the_exchange(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    df = get(s3_bucket, ex, T0, 3000)
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 3000))
    assert len(ex.calls) == 3
    again = get(s3_bucket, ex, T0 + 100 * MINUTE, 500)
    assert len(ex.calls) == 3
    assert again.equals(ex.truth(SYMBOL, "1m", T0 + 100 * MINUTE, 500))
    keys = s3_bucket.keys()
    assert any("/BTC_USDT_1m/_log/" in k for k in keys)
    assert any("/BTC_USDT_1m/data/2024-01-" in k and k.endswith(".parquet") for k in keys)
    # read_cached through the same URL sees the same rows.
    stored = candlecache.read_cached(s3_bucket.url, SYMBOL, "1m", storage_options=s3_bucket.storage_options)
    assert stored.equals(df)


def test_holes_are_fetched_alone(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    get(s3_bucket, ex, T0, 100)
    get(s3_bucket, ex, T0 + 200 * MINUTE, 100)
    ex.calls.clear()
    df = get(s3_bucket, ex, T0, 300)
    assert [c[2] for c in ex.calls] == [T0 + 100 * MINUTE]
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 300))


def test_a_range_answered_empty_is_not_asked_again_within_the_hour(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000, delisted=T0 + 50 * MINUTE)
    assert get(s3_bucket, ex, T0, 100).height == 50
    calls = len(ex.calls)
    assert get(s3_bucket, ex, T0 + 60 * MINUTE, 20).height == 0
    assert len(ex.calls) == calls


def test_the_open_candle_is_returned_and_fetched_again(s3_bucket: S3Bucket) -> None:
    now = int(time.time() * 1000)
    hour = now - now % HOUR
    ex = MemoryExchange(cap=1000)
    df = get(s3_bucket, ex, hour - 3 * HOUR, 4, "1h")
    assert df["time"].to_list()[-1] == hour
    calls = len(ex.calls)
    df = get(s3_bucket, ex, hour - 3 * HOUR, 4, "1h")
    assert len(ex.calls) == calls + 1
    assert ex.calls[-1][2] == hour
    assert df.height == 4


def test_enable_cache_false_fetches_everything_and_stores_it(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    get(s3_bucket, ex, T0, 100)
    ex.calls.clear()
    df = get(s3_bucket, ex, T0, 100, enable_cache=False)
    assert len(ex.calls) == 1 and df.height == 100
    ex.calls.clear()
    assert get(s3_bucket, ex, T0, 100).height == 100
    assert ex.calls == []


def test_market_cache_on_a_bucket_with_a_hot_tier_and_namespaces(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    with candlecache.MarketCache(
        s3_bucket.url, storage_options=s3_bucket.storage_options, namespace="binance"
    ) as cache:
        assert type(cache).__name__ == "ObjectMarketCache" and isinstance(cache, candlecache.MarketCache)
        df = cache.get_ohlcv(SYMBOL, "1m", T0, 2000, ex.fetch_ohlcv)
        again = cache.get_ohlcv(SYMBOL, "1m", T0, 2000, ex.fetch_ohlcv)
        assert df.equals(again)
        s = cache.stats()
        assert (s["misses"], s["hits"], s["hot_hits"]) == (1, 1, 1)
        assert cache.read(SYMBOL, "1m", T0, T0 + 9 * MINUTE).height == 10
        hours = cache.get_ohlcv(SYMBOL, "1h", T0, 24, ex.fetch_ohlcv, from_period="1m")
        assert hours.height == 24
        with pytest.raises(NotImplementedError, match="object storage"):
            cache.vacuum()
    assert any("/binance/BTC_USDT_1m/_log/" in k for k in s3_bucket.keys())


def test_many_small_appends_are_compacted_and_read_the_same(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    for i in range(12):
        get(s3_bucket, ex, T0 + i * 10 * MINUTE, 10)
    data = [k for k in s3_bucket.keys() if "/data/" in k]
    assert len(data) >= 12
    df = candlecache.read_cached(s3_bucket.url, SYMBOL, "1m", storage_options=s3_bucket.storage_options)
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 120))
    # Compaction committed one object in place of the nine that tipped it over.
    with candlecache.MarketCache(s3_bucket.url, storage_options=s3_bucket.storage_options, hot_cache_mb=0) as c:
        assert c.read(SYMBOL, "1m").equals(df)


def test_bad_urls_and_options_are_clear_errors(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    ex = MemoryExchange()
    with pytest.raises(ValueError, match="no bucket"):
        candlecache.get_ohlcv_with_cache("s3:///nobucket", SYMBOL, "1m", T0, 10, ex.fetch_ohlcv)
    with pytest.raises(ValueError, match="storage option"):
        candlecache.MarketCache(s3_bucket.url, storage_options={**s3_bucket.storage_options, "not_an_option": "1"})
    with pytest.raises(TypeError, match="storage_options"):
        candlecache.get_ohlcv_with_cache(tmp_path, SYMBOL, "1m", T0, 10, ex.fetch_ohlcv, storage_options={"a": "b"})
    with pytest.raises(TypeError, match="storage_options"):
        candlecache.MarketCache(s3_bucket.url, storage_options=["endpoint"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        candlecache.MarketCache(s3_bucket.url, storage_options=s3_bucket.storage_options, lease=0)


def test_a_missing_bucket_is_a_clear_error(s3_bucket: S3Bucket) -> None:
    opts = {**s3_bucket.storage_options, "max_retries": "0"}
    with pytest.raises(FileNotFoundError, match="does not exist at this endpoint"):
        candlecache.MarketCache(f"s3://no-such-bucket-{os.getpid()}/x", storage_options=opts)


def test_a_store_that_ignores_create_if_absent_is_refused(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    s3_proxy.strip_conditions = True
    lying = s3_bucket.via(s3_proxy)
    ex = MemoryExchange()
    with pytest.raises(candlecache.StoreRefusedError, match="create-if-absent"):
        candlecache.get_ohlcv_with_cache(
            lying.url, SYMBOL, "1m", T0, 10, ex.fetch_ohlcv, storage_options=lying.storage_options
        )
    assert ex.calls == []
    assert not [k for k in s3_bucket.keys() if "/_candlecache/" not in k]


def test_server_errors_are_retried_then_reported(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    via = s3_bucket.via(s3_proxy)
    ex = MemoryExchange(cap=1000)
    # Two 503s on a commit: retried by the client, the call succeeds.
    s3_proxy.fail(r"/_log/", 503, count=2, method="PUT")
    df = candlecache.get_ohlcv_with_cache(via.url, SYMBOL, "1m", T0, 100, ex.fetch_ohlcv, storage_options=via.storage_options)
    assert df.height == 100
    # A store that keeps failing: a catchable error naming the object, after the retries.
    opts = {**via.storage_options, "max_retries": "1", "retry_timeout": "2"}
    s3_proxy.fail(r"/_log/", 500, count=50)
    with pytest.raises(candlecache.ObjectStoreError, match="_log"):
        candlecache.get_ohlcv_with_cache(via.url, "ETH/USDT", "1m", T0, 100, ex.fetch_ohlcv, storage_options=opts)
    s3_proxy.reset()
    # Garbage instead of a listing.
    s3_proxy.fail(r"/", 200, count=1, method="GET", body=b"garbage")
    with pytest.raises((candlecache.ObjectStoreError, candlecache.CorruptionError)):
        candlecache.get_ohlcv_with_cache(via.url, "SOL/USDT", "1m", T0, 10, ex.fetch_ohlcv, storage_options=opts)


def test_a_callback_that_raises_keeps_nothing_half_committed(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    n = 0

    def flaky(symbol, period, since, limit):
        nonlocal n
        n += 1
        if n == 2:
            raise ConnectionError("exchange down")
        return ex.fetch_ohlcv(symbol, period, since, limit)

    with pytest.raises(ConnectionError):
        candlecache.get_ohlcv_with_cache(s3_bucket.url, SYMBOL, "1m", T0, 3000, flaky, storage_options=s3_bucket.storage_options)
    # What the first page brought is committed; the claim is released (no wait).
    ex.calls.clear()
    started = time.monotonic()
    df = get(s3_bucket, ex, T0, 3000, lock_timeout=5)
    assert time.monotonic() - started < 5
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 3000))
    assert ex.calls[0][2] == T0 + 1000 * MINUTE


def test_file_urls_work_without_a_server(tmp_path: Path) -> None:
    ex = MemoryExchange(cap=1000)
    url = (tmp_path / "shared").as_uri()
    df = candlecache.get_ohlcv_with_cache(url, SYMBOL, "1m", T0, 1500, ex.fetch_ohlcv)
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 1500))
    assert candlecache.read_cached(url, SYMBOL, "1m").equals(df)
    assert (tmp_path / "shared" / "BTC_USDT_1m" / "_log").is_dir()


# -- several machines --------------------------------------------------------------------


def spawn(tmp_path: Path, name: str, **args) -> subprocess.Popen:
    err = open(tmp_path / f"{name}.err", "wb")
    return subprocess.Popen([sys.executable, str(TESTS / "_workers.py"), "race", json.dumps(args)], cwd=TESTS, stderr=err)


def calls_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eight_machines_asking_for_the_same_ranges_fetch_each_once(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    go = tmp_path / "go"
    procs = []
    for i in range(8):
        # Two groups with overlapping ranges; each process is a machine of its own (its own
        # hot tier, no shared local state: only the bucket).
        start = T0 if i % 2 == 0 else T0 + 1000 * MINUTE
        procs.append(spawn(
            tmp_path, f"w{i}", base=s3_bucket.url, storage_options=s3_bucket.storage_options, start=start,
            count=3000, cap=1000, sleep=0.05, calls_file=str(calls), ready_file=str(tmp_path / f"ready{i}"),
            go_file=str(go), out_file=str(tmp_path / f"out{i}.parquet"),
        ))
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(8)):
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    go.write_text("go")
    for i, p in enumerate(procs):
        assert p.wait(120) == 0, (tmp_path / f"w{i}.err").read_text()
    ex = MemoryExchange()
    for i in range(8):
        start = T0 if i % 2 == 0 else T0 + 1000 * MINUTE
        out = pl.read_parquet(tmp_path / f"out{i}.parquet")
        assert out.equals(ex.truth(SYMBOL, "1m", start, 3000)), i
    starts = [c["since"] for c in calls_of(calls) if c["event"] == "start"]
    # 4000 minutes in pages of 1000: four pages, each asked once (a lapsed lease could
    # double one; none lapses here).
    assert len(starts) == len(set(starts)), sorted(starts)
    assert len(starts) <= 6


def test_a_writer_killed_between_data_and_commit_leaves_nothing_visible(
    s3_bucket: S3Bucket, s3_proxy: S3Proxy, tmp_path: Path
) -> None:
    via = s3_bucket.via(s3_proxy)
    calls = tmp_path / "calls.jsonl"
    # Let the claim through, then hold the next commit (the one with the data).
    s3_proxy.hang(r"/_log/00000000000000000002\.json", method="PUT")
    p = spawn(
        tmp_path, "victim", base=via.url, storage_options=via.storage_options, lease=3, start=T0, count=500, cap=1000, sleep=0.0, calls_file=str(calls), ready_file=str(tmp_path / "ready"),
        go_file=str(tmp_path / "ready"), out_file=str(tmp_path / "out.parquet"),
    )
    s3_proxy.wait_hung(60)
    data = [k for k in s3_bucket.keys() if "/data/" in k]
    assert len(data) == 1  # written, not committed
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    s3_proxy.release()
    # Nothing is visible: the data object is not in any commit.
    assert candlecache.read_cached(s3_bucket.url, SYMBOL, "1m", storage_options=s3_bucket.storage_options).height == 0
    # Another machine fetches the range once the dead writer's lease lapses.
    ex = MemoryExchange(cap=1000)
    with candlecache.MarketCache(s3_bucket.url, storage_options=s3_bucket.storage_options, lease=5) as cache:
        started = time.monotonic()
        df = cache.get_ohlcv(SYMBOL, "1m", T0, 500, ex.fetch_ohlcv, lock_timeout=120)
    assert df.equals(ex.truth(SYMBOL, "1m", T0, 500))
    assert len(ex.calls) == 1
    assert time.monotonic() - started < 30  # one lease (3 s, the victim's) and a little


def _child_fetch(args: tuple[str, dict[str, str], int]) -> int:
    url, options, start = args
    ex = MemoryExchange(cap=1000)
    # The default cache and its store were built by the parent, before the fork.
    df = candlecache.get_ohlcv_with_cache(url, SYMBOL, "1m", start, 100, ex.fetch_ohlcv, storage_options=options)
    assert df.equals(ex.truth(SYMBOL, "1m", start, 100))
    return len(ex.calls)


def test_a_handle_inherited_through_fork_works_in_the_child(s3_bucket: S3Bucket) -> None:
    import multiprocessing

    ex = MemoryExchange(cap=1000)
    opts = s3_bucket.storage_options
    # The parent starts the runtime and the client first.
    assert get(s3_bucket, ex, T0, 100).height == 100
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        fetched = pool.map(_child_fetch, [(s3_bucket.url, opts, T0 + i * 100 * MINUTE) for i in range(4)], chunksize=1)
    # The child that asked for the parent's range found it; the others fetched theirs.
    assert fetched == [0, 1, 1, 1]
    # And the parent's runtime still serves it.
    assert get(s3_bucket, ex, T0, 400).equals(ex.truth(SYMBOL, "1m", T0, 400))


def test_scan_ohlcv_reads_a_bucket_through_its_logs(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    opts = s3_bucket.storage_options
    candlecache.get_ohlcv_with_cache(s3_bucket.url, "BTC/USDT", "1m", T0, 300, ex.fetch_ohlcv, storage_options=opts)
    candlecache.get_ohlcv_with_cache(s3_bucket.url, "ETH/USDT", "1h", T0, 48, ex.fetch_ohlcv, storage_options=opts)
    candlecache.get_ohlcv_with_cache(
        s3_bucket.url, "BTC/USDT", "1m", T0, 50, ex.fetch_ohlcv, storage_options=opts, namespace="okx"
    )
    # An open candle refetched: the newer object wins, never a row twice.
    lf = candlecache.scan_ohlcv(s3_bucket.url, storage_options=opts)
    counts = lf.group_by("namespace", "symbol", "period").len().sort("symbol", "namespace").collect()
    assert counts.rows() == [(None, "BTC_USDT", "1m", 300), ("okx", "BTC_USDT", "1m", 50), (None, "ETH_USDT", "1h", 48)]
    hits = lf.filter((pl.col("symbol") == "ETH_USDT") & (pl.col("time") < T0 + DAY)).collect()
    assert hits.height == 24
    assert candlecache.scan_ohlcv(s3_bucket.url, periods=["1h"], storage_options=opts).collect().height == 48


def test_a_damaged_or_missing_object_is_dropped_and_fetched_again(s3_bucket: S3Bucket) -> None:
    ex = MemoryExchange(cap=1000)
    opts = s3_bucket.storage_options
    # Three months, one object each.
    start, n = T0 + 30 * DAY, 31 * DAY // MINUTE
    assert get(s3_bucket, ex, start, n).height == n
    data = sorted(k for k in s3_bucket.keys() if "/data/" in k)
    assert len(data) == 3
    # Same length, other bytes: the footer no longer decodes. And one object gone.
    for key in data[:2]:
        s3_bucket.put(key, b"\0" * len(s3_bucket.get(key)))
    s3_bucket.delete(data[2])
    # A read without a callback says what happened; the object is dropped with its coverage.
    with candlecache.MarketCache(s3_bucket.url, storage_options=opts, hot_cache_mb=0) as fresh:
        with pytest.raises(candlecache.CorruptionError, match="fetches them again"):
            fresh.read(SYMBOL, "1m")
    # get_ohlcv heals the rest in the same call: the candles come back from the exchange.
    ex.calls.clear()
    df = candlecache.get_ohlcv_with_cache(s3_bucket.url, SYMBOL, "1m", start, n, ex.fetch_ohlcv, storage_options=opts)
    assert df.equals(ex.truth(SYMBOL, "1m", start, n))
    assert ex.calls, "nothing fetched again"
    assert candlecache.read_cached(s3_bucket.url, SYMBOL, "1m", storage_options=opts).equals(df)
