"""Benchmark: candlecache vs a straightforward polars implementation vs polars.read_parquet.

One year of 1m candles (525,600 rows) served by an in-memory callback. Prints one table of
medians and ratios measured in the same run. Not a test: nothing here gates CI.

    python benches/ohlcv.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

import candlecache

MINUTE = 60_000
T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
N = 525_600
SCHEMA = {"time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64}


def make_year() -> pl.DataFrame:
    rng = np.random.default_rng(7)
    close = 20_000 + np.cumsum(rng.normal(0, 5, N + 20))
    t = T0 + np.arange(N + 20, dtype=np.int64) * MINUTE
    return pl.DataFrame(
        {
            "time": t,
            "open": close + rng.normal(0, 1, N + 20),
            "high": close + 5,
            "low": close - 5,
            "close": close,
            "volume": rng.uniform(0, 100, N + 20),
        }
    )


class Feed:
    """A callback serving slices of a frame (no page cap), as an in-memory exchange would."""

    def __init__(self, df: pl.DataFrame) -> None:
        self.df = df
        self.t = df["time"].to_numpy()

    def __call__(self, symbol, period, since, limit, **_):
        i = int(np.searchsorted(self.t, since))
        return self.df.slice(i, limit)


class Pages:
    """ccxt's shape: lists of [ms, o, h, l, c, v], at most 1000 rows a call."""

    def __init__(self, df: pl.DataFrame) -> None:
        self.rows = df.rows()
        self.t = df["time"].to_numpy()

    def __call__(self, symbol, period, since, limit, **_):
        i = int(np.searchsorted(self.t, since))
        return [list(r) for r in self.rows[i : i + min(limit, 1000)]]


# --- the baseline: a straightforward pure-Python/polars implementation of the same layout ---


def _key(t: int) -> str:
    d = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
    return f"{d.year}-{d.month:02d}"


class Baseline:
    """Coverage log as JSONL, partitions by month, whole-partition rewrite on write."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "BTC_USDT_1m"

    def coverage(self) -> list[tuple[int, int]]:
        log = self.dir / "fetch_log.jsonl"
        if not log.exists():
            return []
        spans = sorted(
            (e["data_start"], e["data_end"] + MINUTE)
            for e in map(json.loads, log.read_text().splitlines())
        )
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        return [(a, b) for a, b in merged]

    def missing(self, a: int, b: int) -> list[tuple[int, int]]:
        out, cur = [], a
        for s, e in self.coverage():
            if e <= cur or s >= b:
                continue
            if s > cur:
                out.append((cur, s))
            cur = max(cur, e)
        if cur < b:
            out.append((cur, b))
        return out

    def save(self, df: pl.DataFrame) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        df = df.with_columns(pl.col("time").map_elements(_key, return_dtype=pl.Utf8).alias("_k"))
        for (key,), group in df.group_by("_k"):
            path = self.dir / f"{key}.parquet"
            group = group.drop("_k")
            if path.exists():
                group = pl.concat([pl.read_parquet(path), group])
            group.unique("time", keep="last").sort("time").write_parquet(path)

    def get(self, start: int, count: int, cb) -> pl.DataFrame:
        end = start + count * MINUTE
        for a, b in self.missing(start, end):
            new = cb("BTC/USDT", "1m", a, (b - a) // MINUTE)
            if new.height:
                self.save(new)
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / "fetch_log.jsonl", "a") as f:
                f.write(json.dumps({"data_start": a, "data_end": b - MINUTE, "count": new.height}) + "\n")
        keys = sorted({_key(t) for t in (start, end - MINUTE)})
        files = [self.dir / f"{k}.parquet" for k in _month_keys(start, end)]
        files = [f for f in files if f.exists()]
        del keys
        return (
            pl.scan_parquet(files).filter(pl.col("time").is_between(start, end - 1)).sort("time").collect()
        )


def _month_keys(start: int, end: int) -> list[str]:
    d = datetime.fromtimestamp(start / 1000, tz=timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out = []
    while d.timestamp() * 1000 < end:
        out.append(f"{d.year}-{d.month:02d}")
        d = d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1)
    return out


# --- measurement ---


def median_ms(fn, repeat: int, setup=None) -> float:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    r = args.repeat
    year = make_year()
    feed = Feed(year)
    root = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    rows = []
    try:
        cc_root, bl_root = root / "cc", root / "bl"

        def cc_cold():
            shutil.rmtree(cc_root, ignore_errors=True)
            candlecache.get_ohlcv_with_cache(cc_root, "BTC/USDT", "1m", T0, N, feed)

        def bl_cold():
            shutil.rmtree(bl_root, ignore_errors=True)
            Baseline(bl_root).get(T0, N, feed)

        rows.append(("cold fill, 525,600 rows", median_ms(cc_cold, max(3, r // 2)), median_ms(bl_cold, max(3, r // 2)), None, "<= 250"))

        pages = Pages(year)

        def cc_cold_pages():
            shutil.rmtree(cc_root, ignore_errors=True)
            candlecache.get_ohlcv_with_cache(cc_root, "BTC/USDT", "1m", T0, N, pages)

        rows.append(("cold fill, ccxt lists, 1000/page", median_ms(cc_cold_pages, max(3, r // 2)), None, None, ""))
        cc_dir = candlecache.data_dir(cc_root, "BTC/USDT", "1m")
        files = sorted(str(p) for p in cc_dir.glob("*.parquet"))
        mid = T0 + (N // 2) * MINUTE
        bl = Baseline(bl_root)

        def cc_100():
            candlecache.get_ohlcv_with_cache(cc_root, "BTC/USDT", "1m", mid, 100, feed)

        def bl_100():
            bl.get(mid, 100, feed)

        def pl_100():
            pl.scan_parquet(files).filter(pl.col("time").is_between(mid, mid + 99 * MINUTE)).collect()

        rows.append(("warm read, 100 rows", median_ms(cc_100, r * 20), median_ms(bl_100, r * 5), median_ms(pl_100, r * 5), "<= 0.5"))

        def cc_year():
            candlecache.get_ohlcv_with_cache(cc_root, "BTC/USDT", "1m", T0, N, feed)

        def bl_year():
            bl.get(T0, N, feed)

        def pl_year():
            pl.read_parquet(files)

        rows.append(("warm read, full year", median_ms(cc_year, r), median_ms(bl_year, r), median_ms(pl_year, r), "<= 1.2x polars"))

        extra = {"cc": 0, "bl": 0}
        durable = {"on": False}

        def cc_append():
            extra["cc"] += 10
            candlecache.get_ohlcv_with_cache(
                cc_root, "BTC/USDT", "1m", T0 + (N - 100) * MINUTE, 100 + extra["cc"], feed, durable=durable["on"]
            )

        def bl_append():
            extra["bl"] += 10
            bl.get(T0 + (N - 100) * MINUTE, 100 + extra["bl"], feed)

        # The feed holds 20 candles past the year: two appends of 10 each, then re-fill.
        def reset_tail():
            for key in ("cc", "bl"):
                if extra[key] >= 20:
                    extra[key] = 0
                    shutil.rmtree(cc_root if key == "cc" else bl_root, ignore_errors=True)
                    (candlecache.get_ohlcv_with_cache(cc_root, "BTC/USDT", "1m", T0, N, feed) if key == "cc" else Baseline(bl_root).get(T0, N, feed))

        cc_times, bl_times = [], []
        for _ in range(max(4, r)):
            reset_tail()
            t = time.perf_counter(); cc_append(); cc_times.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter(); bl_append(); bl_times.append((time.perf_counter() - t) * 1000)
        rows.append(("append 10 candles to the year", statistics.median(cc_times), statistics.median(bl_times), None, "<= 5"))
        durable["on"] = True
        cc_times = []
        for _ in range(max(4, r)):
            reset_tail()
            t = time.perf_counter(); cc_append(); cc_times.append((time.perf_counter() - t) * 1000)
        rows.append(("  the same with durable=True", statistics.median(cc_times), None, None, ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"candlecache {candlecache.__version__}, polars {pl.__version__}; medians in ms")
    head = ("operation", "candlecache", "baseline", "speedup", "polars.read_parquet", "cc / polars", "target")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for name, cc, base, plr, target in rows:
        cells = [
            name,
            f"{cc:.2f}",
            f"{base:.2f}" if base is not None else "",
            f"{base / cc:.1f}x" if base is not None else "",
            f"{plr:.2f}" if plr is not None else "",
            f"{cc / plr:.2f}x" if plr is not None else "",
            target,
        ]
        print("| " + " | ".join(cells) + " |")
    print("speedup: baseline / candlecache; cc / polars below 1 means candlecache is faster")


if __name__ == "__main__":
    main()
