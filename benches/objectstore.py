"""Benchmark: the candle cache on object storage (S3 on a local moto server) against the same
cache on local disk, measured in the same run.

Three workloads, as a team sharing a bucket meets them:

1. A warm full-year read (525,600 1m candles) with the hot tier off, bucket vs local disk
   (and ``polars.read_parquet`` of the local files as the floor). Target: bucket <= 3x local.
2. A warm 100-row read: how many requests it costs, counted by a proxy in front of the
   server, in a process that has read the cache before (its log state and footers known)
   and in a fresh process. Target: <= 3 requests warm.
3. Eight cold readers (eight processes, each its own machine: own hot tier, nothing shared
   but the bucket) asking for the same year of an empty bucket at once: how many times the
   year is fetched from the exchange. Target: at most twice.

moto is a Python server on the same machine: latency is a loopback's, throughput a Python
process's (about 190 MB/s here, sharing the two cores with the reader). The bench prints that
floor (the same objects downloaded with boto3, nothing decoded). Real S3 adds ~10-30 ms per
request and has far more bandwidth. Not a test: nothing here
gates CI; the "met" column only reports.

    python benches/objectstore.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

import candlecache

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from s3 import S3Proxy, create_bucket, moto_server  # noqa: E402

MINUTE = 60_000
T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
N = 525_600
SYMBOL = "BTC/USDT"


def make_year(quantized: bool = True) -> pl.DataFrame:
    """A year of candles. ``quantized``: prices on a 0.01 tick and volumes on a 0.001 lot, as
    an exchange reports them; otherwise full-precision random floats, which no exchange
    reports and which compress worst (19 MB a year instead of 9)."""
    rng = np.random.default_rng(7)
    close = 20_000 + np.cumsum(rng.normal(0, 5, N))
    df = pl.DataFrame({
        "time": T0 + np.arange(N, dtype=np.int64) * MINUTE,
        "open": close + rng.normal(0, 1, N), "high": close + 5, "low": close - 5, "close": close,
        "volume": rng.uniform(0, 100, N),
    })
    if quantized:
        df = df.with_columns(*(pl.col(c).round(2) for c in ("open", "high", "low", "close")), pl.col("volume").round(3))
    return df


class Feed:
    """An in-memory exchange serving pages of up to 1000 candles; counts its pages."""

    def __init__(self, df: pl.DataFrame, log: str | None = None) -> None:
        self.df, self.t, self.pages, self.log = df, df["time"].to_numpy(), 0, log

    def __call__(self, symbol, period, since, limit, **_):
        self.pages += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{since}\n")
        i = int(np.searchsorted(self.t, since))
        return self.df.slice(i, min(limit, 1000))


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _cold_reader(args: tuple[str, dict[str, str], str, str]) -> int:
    url, options, go, log = args
    feed = Feed(_YEAR, log)
    while not Path(go).exists():
        time.sleep(0.001)
    with candlecache.MarketCache(url, storage_options=options) as cache:
        out = cache.get_ohlcv(SYMBOL, "1m", T0, N, feed, lock_timeout=600)
    assert out.height == N
    return feed.pages


_YEAR: pl.DataFrame


def main() -> None:
    global _YEAR
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    _YEAR = make_year()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, moto_server(Path(tmp) / "moto.log") as endpoint:
        bucket = create_bucket(endpoint)
        opts = bucket.storage_options
        local = Path(tmp) / "local"

        # -- 1. a warm full-year read, hot tier off --------------------------------------------
        for quantized in (True, False):
            year = _YEAR if quantized else make_year(quantized=False)
            where = bucket if quantized else create_bucket(endpoint)
            folder = local if quantized else Path(tmp) / "local-floats"
            fill_local = time.perf_counter()
            candlecache.get_ohlcv_with_cache(folder, SYMBOL, "1m", T0, N, Feed(year))
            fill_local = time.perf_counter() - fill_local
            fill_s3 = time.perf_counter()
            candlecache.get_ohlcv_with_cache(where.url, SYMBOL, "1m", T0, N, Feed(year), storage_options=where.storage_options)
            fill_s3 = time.perf_counter() - fill_s3
            on_disk = candlecache.MarketCache(folder, hot_cache_mb=0, statistics=False)
            on_s3 = candlecache.MarketCache(where.url, storage_options=where.storage_options, hot_cache_mb=0, statistics=False)
            assert on_s3.read(SYMBOL, "1m").equals(on_disk.read(SYMBOL, "1m"))
            files = sorted((folder / "BTC_USDT_1m").glob("*.parquet"))
            t_polars = median_s(lambda: pl.read_parquet(files), args.repeat)
            t_local = median_s(lambda: on_disk.read(SYMBOL, "1m"), args.repeat)
            t_s3 = median_s(lambda: on_s3.read(SYMBOL, "1m"), args.repeat)
            # The floor: the same objects downloaded with boto3 on 8 threads, nothing decoded.
            data = [k for k in where.keys() if "/data/" in k]
            with ThreadPoolExecutor(8) as pool:
                t_floor = median_s(lambda: list(pool.map(where.get, data)), args.repeat)
            what = "prices on a tick" if quantized else "random full-precision floats"
            mb = sum(f.stat().st_size for f in files) / 2**20
            rows.append((f"full-year read, hot tier off, {what}: bucket", f"{t_s3 * 1e3:.0f} ms",
                         f"{t_s3 / t_local:.2f}x local ({mb:.0f} MiB)", "<= 3x", t_s3 <= 3 * t_local))
            rows.append((f"  the same {len(data)} objects downloaded by boto3, 8 threads, not decoded", f"{t_floor * 1e3:.0f} ms",
                         f"{t_floor / t_local:.2f}x local", "", None))
            rows.append((f"full-year read, hot tier off, {what}: local disk", f"{t_local * 1e3:.0f} ms",
                         f"{t_local / t_polars:.2f}x polars.read_parquet ({t_polars * 1e3:.0f} ms)", "", None))
            rows.append((f"filling the year (526 pages), {what}: bucket / local", f"{fill_s3:.1f} s / {fill_local:.1f} s",
                         "", "", None))

        # -- 2. requests for a warm 100-row read -----------------------------------------------
        with S3Proxy(endpoint) as proxy:
            via = bucket.via(proxy)
            warm = candlecache.MarketCache(via.url, storage_options=via.storage_options, hot_cache_mb=0, statistics=False)
            mid = T0 + 200_000 * MINUTE
            warm.read(SYMBOL, "1m", mid, mid + 99 * MINUTE)  # learns the log and the footer
            proxy.clear()
            assert warm.read(SYMBOL, "1m", mid + 1000 * MINUTE, mid + 1099 * MINUTE).height == 100
            n_warm = len(proxy.requests)
            seen_warm = sorted({m for m, _, _ in proxy.requests})
            proxy.clear()
            code = (
                "import candlecache, json, sys; o = json.loads(sys.argv[2]); "
                "c = candlecache.MarketCache(sys.argv[1], storage_options=o, hot_cache_mb=0); "
                f"assert c.read('{SYMBOL}', '1m', {mid}, {mid + 99 * MINUTE}).height == 100"
            )
            subprocess.run([sys.executable, "-c", code, via.url, json.dumps(via.storage_options)], check=True)
            n_cold = len(proxy.requests)
            kinds = {}
            for m, path, _ in proxy.requests:
                kind = "probe" if "/_candlecache/" in path else "log" if "/_log/" in path else "data" if "/data/" in path else "list"
                kinds[f"{m} {kind}"] = kinds.get(f"{m} {kind}", 0) + 1
        rows.append(("warm 100-row read, process that read before", f"{n_warm} requests", "/".join(seen_warm), "<= 3", n_warm <= 3))
        rows.append(("100-row read, fresh process (self-test, log, footer, pages)", f"{n_cold} requests",
                     ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())), "", None))

        # -- 3. eight cold readers of the same year -------------------------------------------
        cold = create_bucket(endpoint)
        go = Path(tmp) / "go"
        log = Path(tmp) / "pages.log"
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(8) as pool:
            pending = pool.map_async(_cold_reader, [(cold.url, cold.storage_options, str(go), str(log))] * 8)
            time.sleep(1.0)
            started = time.perf_counter()
            go.write_text("go")
            pages = pending.get(900)
            took = time.perf_counter() - started
        one = -(-N // 1000)
        times = sum(pages) / one
        rows.append(("8 cold readers of one year: fetched from the exchange", f"{times:.2f}x the year",
                     f"{sum(pages)} pages of {one}; {took:.1f} s", "<= 2x", times <= 2))

    width = max(len(r[0]) for r in rows)
    print(f"{'workload':<{width}}  {'measured':>16}  {'ratio / detail':<44} target  met")
    for name, value, ratio, target, met in rows:
        mark = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<{width}}  {value:>16}  {ratio:<44} {target:<7} {mark}")


if __name__ == "__main__":
    main()
