"""Benchmark: candlecache vs a straightforward polars implementation vs polars.read_parquet.

One year of 1m candles (525,600 rows) served by an in-memory callback. Prints one table of
medians and ratios measured in the same run, then a second one for the hot tier
(``MarketCache``): hot vs hot tier off vs the original tool (tests/original/orig_cache_tool)
vs polars.read_parquet, the cost of the per-read freshness check, and the live-loop pattern
(the whole year asked again after 10 new candles). Not a test: nothing here gates CI, and
the "met" columns only report.

    python benches/ohlcv.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

import candlecache
from candlecache import _core
from candlecache.market import default_cache

# The original tool, vendored verbatim for the compatibility tests, run as is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "original"))
import orig_cache_tool.entry as orig_entry  # noqa: E402

MINUTE = 60_000
T0 = 1_672_531_200_000  # 2023-01-01T00:00:00Z
N = 525_600
SCHEMA = {"time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64}


def make_year(extra: int = 20) -> pl.DataFrame:
    """N candles from T0, plus ``extra`` more after them (for appends)."""
    rng = np.random.default_rng(7)
    close = 20_000 + np.cumsum(rng.normal(0, 5, N + extra))
    t = T0 + np.arange(N + extra, dtype=np.int64) * MINUTE
    return pl.DataFrame(
        {
            "time": t,
            "open": close + rng.normal(0, 1, N + extra),
            "high": close + 5,
            "low": close - 5,
            "close": close,
            "volume": rng.uniform(0, 100, N + extra),
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


def median_us(fn, repeat: int) -> float:
    return median_ms(fn, repeat) * 1000


def interleaved_us(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Each function once per round, round after round, so that all see the same load: the
    times in us, per function, in round order (pairs can be subtracted round by round)."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1e6)
    return out


def _met(target: str, value: float, peer: float | None = None) -> str:
    """'yes'/'no' for targets written '<= X' (ms), '<= Kx <peer>' or '>= Kx <peer>'."""
    if not target:
        return ""
    op, rest = target.split(" ", 1)
    words = rest.split()
    if words[0].endswith("x"):
        if peer is None:
            return ""
        bound, value = float(words[0][:-1]), (value / peer if op == "<=" else peer / value)
    else:
        bound = float(words[0])
    ok = value <= bound if op == "<=" else value >= bound
    return "yes" if ok else "NO"


# --- the hot tier (MarketCache) ---

SYM = "BTC/USDT"
HOT_MB = 256
LIVE_SHIFT = 15 * 1440  # the live year ends mid-month: appends land in a partition of 21,600 rows


class HotRow:
    def __init__(self, name, hot, off=None, orig=None, plr=None, target="", met=""):
        self.name, self.hot, self.off, self.orig, self.plr = name, hot, off, orig, plr
        self.target, self.met = target, met


def hot_tier(root: Path, cc_root: Path, files: list[str], feed: Feed, r: int, closing: list) -> tuple[list[HotRow], list[str]]:
    """Rows for the hot tier, on the year ``cc_root`` holds (as the paged fill left it)."""
    rows: list[HotRow] = []
    notes: list[str] = []
    hot = candlecache.MarketCache(cc_root, hot_cache_mb=HOT_MB)
    off = candlecache.MarketCache(cc_root, hot_cache_mb=0)
    closing += [hot, off]
    folder = candlecache.data_dir(cc_root, SYM, "1m")
    last = T0 + (N - 1) * MINUTE
    hot.read(SYM, "1m", T0, last)  # everything decoded once: the tier now holds the year
    held = hot.stats()
    deltas = [Path(f).name for f in files if ".d" in Path(f).name]
    notes.append(
        f"hot tier: {held['hot_entries']} files ({len(deltas)} of them deltas: {', '.join(deltas) or 'none'}),"
        f" {held['hot_bytes'] / 2**20:.1f} MiB of {HOT_MB} MiB after one full-year read"
    )

    # 1. the full year, all of it hot, against the same files read by polars and with the tier off
    pl_year = median_ms(lambda: pl.read_parquet(files), r)
    for how, fn_hot, fn_off in (
        ("MarketCache.read", lambda: hot.read(SYM, "1m", T0, last), lambda: off.read(SYM, "1m", T0, last)),
        (
            "MarketCache.get_ohlcv",
            lambda: hot.get_ohlcv(SYM, "1m", T0, N, feed),
            lambda: off.get_ohlcv(SYM, "1m", T0, N, feed),
        ),
    ):
        h, o = median_ms(fn_hot, r * 5), median_ms(fn_off, r)
        rows.append(HotRow(f"hot read, full year: {how}", h, o, None, pl_year, "<= 0.1x polars", _met("<= 0.1x polars", h, pl_year)))

    # 2. 100 rows
    mid = T0 + (N // 2) * MINUTE
    mid_end = mid + 99 * MINUTE
    pl_100 = median_ms(lambda: pl.scan_parquet(files).filter(pl.col("time").is_between(mid, mid_end)).collect(), r * 5)
    for how, fn_hot, fn_off in (
        ("MarketCache.read", lambda: hot.read(SYM, "1m", mid, mid_end), lambda: off.read(SYM, "1m", mid, mid_end)),
        (
            "MarketCache.get_ohlcv",
            lambda: hot.get_ohlcv(SYM, "1m", mid, 100, feed),
            lambda: off.get_ohlcv(SYM, "1m", mid, 100, feed),
        ),
    ):
        h, o = median_ms(fn_hot, r * 100), median_ms(fn_off, r * 20)
        rows.append(HotRow(f"hot read, 100 rows: {how}", h, o, None, pl_100, "<= 0.1", _met("<= 0.1", h)))

    # 3. The freshness check of a read is a directory listing and one stat per file it reads,
    # done in Rust inside _core.read_range. It cannot be timed alone from Python, so it is
    # bracketed: a hot 1-row read_range of the real folder (listing it, 1 stat of the month's
    # only file, a hot lookup, a 1-row slice) minus the same call on a folder that does not exist (the fixed cost
    # of a native read: the call, releasing the GIL, a failed opendir, an empty result). The
    # difference is an upper bound of the check (it also holds the lookup and the slice).
    # The calls are interleaved round by round and the check is the median of the per-round
    # differences, so that a busy machine weighs on both sides alike.
    n = r * 400
    missing = root / "no-such-folder"
    month = folder / f"{_key(mid)}.parquet"  # the file the 1-row read reads

    def py_check():
        os.listdir(folder)
        os.stat(month)

    got = interleaved_us(
        {
            "public": lambda: hot.read(SYM, "1m", mid, mid),
            "core": lambda: _core.read_range(folder, mid, mid, hot._hot),
            "core_df": lambda: pl.DataFrame(_core.read_range(folder, mid, mid, hot._hot)),
            "fixed": lambda: _core.read_range(missing, mid, mid, hot._hot),
            "trivial": lambda: _core.period_ms("1m"),
            "py_check": py_check,
            "stat": lambda: os.stat(month),
        },
        n,
    )
    med = {k: statistics.median(v) for k, v in got.items()}
    one_public, one_core, one_core_df, fixed = med["public"], med["core"], med["core_df"], med["fixed"]
    trivial, py_ref, stat_us = med["trivial"], med["py_check"], med["stat"]
    check = statistics.median(a - b for a, b in zip(got["core"], got["fixed"]))
    rows.append(HotRow("freshness check, 1 file (upper bound)", check / 1000, target="<= 0.02", met=_met("<= 0.02", check / 1000)))
    notes += [
        f"freshness check, how measured (medians of {n} calls, us; the tier holds the file):",
        f"  MarketCache.read, 1 row, hot ................................ {one_public:8.1f}",
        f"    of which polars import of the Arrow stream (pl.DataFrame) . {one_core_df - one_core:8.1f}",
        f"    of which Python around it (times, path, statistics) ....... {one_public - one_core_df:8.1f}",
        f"  _core.read_range(folder, t, t, hot), 1 row .................. {one_core:8.1f}",
        f"    fixed: the same call on a missing folder .................. {fixed:8.1f}"
        f"   (a trivial native call, _core.period_ms: {trivial:.1f})",
        f"    check = median of the differences: listing + 1 stat (+ lookup, slice)"
        f" {check:.1f}   target <= 20: {_met('<= 20', check)}",
        f"  for reference, in Python: os.listdir + os.stat {py_ref:.1f}, one os.stat {stat_us:.1f};"
        f" a full-year read stats {len(files)} files",
    ]
    rows_live, notes_live = live_loop(root, r, closing)
    return rows + rows_live + verify_cost(cc_root, r, closing), notes + notes_live


def verify_cost(cc_root: Path, r: int, closing: list) -> list[HotRow]:
    """Cold reads (hot tier off) with each ``verify`` mode against ``verify="off"``, which is
    the cold read as it was before checksums were recorded. Interleaved round by round."""
    caches = {v: candlecache.MarketCache(cc_root, hot_cache_mb=0, verify=v, statistics=False) for v in ("off", "fast", "full")}
    closing += caches.values()
    last = T0 + (N - 1) * MINUTE
    mid = T0 + (N // 2) * MINUTE
    rows = []
    for what, lo, hi, n in (("full year", T0, last, r * 2), ("100 rows", mid, mid + 99 * MINUTE, r * 40)):
        got = interleaved_us({v: (lambda c=c: c.read(SYM, "1m", lo, hi)) for v, c in caches.items()}, n)
        med = {v: statistics.median(t) / 1000 for v, t in got.items()}
        for v in ("fast", "full"):
            target = "<= 1.05x off" if v == "fast" else ""
            rows.append(HotRow(f"cold read, {what}: verify={v!r} (off: as before checksums)", med[v], med["off"],
                               target=target, met=_met("<= 1.05", med[v] / med["off"]) if target else ""))
    return rows


def live_loop(root: Path, r: int, closing: list) -> tuple[list[HotRow], list[str]]:
    """A bot's loop: 10 new candles are appended (through get_ohlcv_with_cache and a callback),
    then the whole year is asked for again; only the second call is timed. The year ends mid-
    month, so the new candles land in a partition that already holds 21,600 rows."""
    k = max(12, 2 * r)
    feed = Feed(make_year(LIVE_SHIFT + 10 * k + 20))
    cc_root, orig_root = root / "live-cc", root / "live-orig"
    start0 = T0 + LIVE_SHIFT * MINUTE
    candlecache.get_ohlcv_with_cache(cc_root, SYM, "1m", start0, N, feed)
    orig_entry.get_ohlcv_with_cache(orig_root, SYM, "1m", start0, N, feed)
    # Two hot caches, one per way of asking: the tier remembers the range each file was decoded
    # for, so one way of asking would otherwise warm the tier for the other.
    hot = candlecache.MarketCache(cc_root, hot_cache_mb=HOT_MB)
    hot_r = candlecache.MarketCache(cc_root, hot_cache_mb=HOT_MB)
    off = candlecache.MarketCache(cc_root, hot_cache_mb=0)
    closing += [hot, hot_r, off]
    hot.get_ohlcv(SYM, "1m", start0, N, feed)  # the bot has been running: the tier holds the year
    hot_r.read(SYM, "1m", start0)
    folder = candlecache.data_dir(cc_root, SYM, "1m")
    t_hot, t_off, t_orig, decoded = [], [], [], []
    t_rhot, t_roff, rdecoded = [], [], []
    heights = set()
    for i in range(1, k + 1):
        new = start0 + (N + 10 * (i - 1)) * MINUTE  # the 10 candles after the stored ones
        start = start0 + 10 * i * MINUTE  # the year ending with them
        candlecache.get_ohlcv_with_cache(cc_root, SYM, "1m", new, 10, feed)
        orig_entry.get_ohlcv_with_cache(orig_root, SYM, "1m", new, 10, feed)
        before = hot._hot.stats()["decodes"]
        t = time.perf_counter(); a = hot.get_ohlcv(SYM, "1m", start, N, feed); t_hot.append((time.perf_counter() - t) * 1000)
        decoded.append(hot._hot.stats()["decodes"] - before)
        t = time.perf_counter(); b = off.get_ohlcv(SYM, "1m", start, N, feed); t_off.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter(); c = orig_entry.get_ohlcv_with_cache(orig_root, SYM, "1m", start, N, feed); t_orig.append((time.perf_counter() - t) * 1000)
        # The same year asked without an end (all stored from `start`): the tier's entries were
        # decoded for an open end too, so only what changed on disk is decoded again.
        before = hot_r._hot.stats()["decodes"]
        t = time.perf_counter(); d = hot_r.read(SYM, "1m", start); t_rhot.append((time.perf_counter() - t) * 1000)
        rdecoded.append(hot_r._hot.stats()["decodes"] - before)
        t = time.perf_counter(); e = off.read(SYM, "1m", start); t_roff.append((time.perf_counter() - t) * 1000)
        heights.add((a.height, b.height, c.height, d.height, e.height))
    h, o, g = statistics.median(t_hot), statistics.median(t_off), statistics.median(t_orig)
    rh, ro = statistics.median(t_rhot), statistics.median(t_roff)
    rows = [
        HotRow("live loop: whole year after 10 new candles, get_ohlcv", h, o, g, None, ">= 6x original", _met(">= 6x original", h, g)),
        HotRow("  the same year as MarketCache.read(start), no end", rh, ro, g, None, ">= 6x original", _met(">= 6x original", rh, g)),
    ]
    names = sorted(f for f in os.listdir(folder) if f.endswith(".parquet"))
    tail_key = names[-1].split(".")[0]
    tail = [f for f in names if f.startswith(tail_key)]
    last_t = start0 + (N + 10 * k - 1) * MINUTE
    n = r * 200
    one_tail = median_us(lambda: _core.read_range(folder, last_t, last_t, hot._hot), n)
    one_head = median_us(lambda: _core.read_range(folder, start0 + 10 * k * MINUTE, start0 + 10 * k * MINUTE, hot._hot), n)
    notes = [
        f"live loop: {k} rounds; hot get_ohlcv per round (ms): min {min(t_hot):.2f}, median {h:.2f}, max {max(t_hot):.2f};"
        f" files decoded per read: {decoded}",
        f"  hot read(start) per round (ms): min {min(t_rhot):.2f}, median {rh:.2f}, max {max(t_rhot):.2f};"
        f" files decoded per read: {rdecoded}",
        f"  rows returned (get_ohlcv hot, off, original, read hot, off): {sorted(heights)}",
        f"  the partition appended to now has {len(tail)} files ({', '.join(tail)});"
        f" a hot 1-row read_range in it: {one_tail:.1f} us, in a partition of one file: {one_head:.1f} us",
    ]
    return rows, notes


def print_hot(rows: list[HotRow]) -> None:
    head = ("operation", "hot", "hot off", "off / hot", "original", "original / hot", "polars.read_parquet", "hot / polars", "target", "met")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for x in rows:
        cells = [
            x.name,
            f"{x.hot:.3f}",
            f"{x.off:.2f}" if x.off is not None else "",
            f"{x.off / x.hot:.1f}x" if x.off is not None else "",
            f"{x.orig:.2f}" if x.orig is not None else "",
            f"{x.orig / x.hot:.1f}x" if x.orig is not None else "",
            f"{x.plr:.2f}" if x.plr is not None else "",
            f"{x.hot / x.plr:.3f}x" if x.plr is not None else "",
            x.target,
            x.met,
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    r = args.repeat
    year = make_year()
    feed = Feed(year)
    root = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    rows = []
    hot_rows: list[HotRow] = []
    hot_notes: list[str] = []
    closing: list = []
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
        default_hot_mb = default_cache(cc_root).hot_cache_mb

        hot_rows, hot_notes = hot_tier(root, cc_root, files, feed, r, closing)

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

        # Exact resampling against polars on the same frame (its datetime column made beforehand).
        year = make_year(0)
        dated = year.with_columns(pl.from_epoch("time", time_unit="ms").alias("t"))

        def pl_resample():
            dated.group_by_dynamic("t", every="1h").agg(
                pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
                pl.col("volume").sum(),
            )

        rows.append(("resample the year 1m -> 1h (polars column: group_by_dynamic)",
                     median_ms(lambda: candlecache.resample(year, "1h"), r), None, median_ms(pl_resample, r), "<= 0.5x polars"))
    finally:
        # Close every MarketCache first: one left open saves its statistics at exit, and would
        # create its directory again under the removed root.
        for cache in closing:
            cache.close()
        for base in (cc_root, root / "live-cc"):
            default_cache(base).close()
        shutil.rmtree(root, ignore_errors=True)

    print(f"candlecache {candlecache.__version__}, polars {pl.__version__}; medians in ms")
    print(
        f"get_ohlcv_with_cache goes through the shared MarketCache: hot tier {default_hot_mb:g} MiB (CANDLECACHE_HOT_MB)"
        + (", so the warm reads below are hot reads" if default_hot_mb else ", off")
    )
    head = ("operation", "candlecache", "baseline", "speedup", "polars.read_parquet", "cc / polars", "target", "met")
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
            _met(target, cc, plr),
        ]
        print("| " + " | ".join(cells) + " |")
    print("speedup: baseline / candlecache; cc / polars below 1 means candlecache is faster")
    print()
    print(f"hot tier: MarketCache(dir, hot_cache_mb={HOT_MB}) vs MarketCache(dir, hot_cache_mb=0) vs the original tool; medians in ms")
    print_hot(hot_rows)
    for line in hot_notes:
        print(line)
    print()
    scan_bench(r)


def scan_bench(r: int) -> None:
    """scan_ohlcv over 10 symbols x 1 year of 1m, filtered to one symbol and one month, against
    polars.scan_parquet over a glob of that symbol's folder written by hand (the files the
    caller would have to know about), and the whole directory counted."""
    root = Path(tempfile.mkdtemp(prefix="cc-scan-"))
    try:
        year = make_year(0)
        feed = Feed(year)
        for i in range(10):
            candlecache.get_ohlcv_with_cache(root, f"S{i}/USDT", "1m", T0, N, feed)
        default_cache(root).close()
        mar, apr = T0 + 60 * 1440 * MINUTE, T0 + 91 * 1440 * MINUTE
        lf = candlecache.scan_ohlcv(root)

        def cc():
            return lf.filter((pl.col("symbol") == "S3_USDT") & pl.col("time").is_between(mar, apr - 1)).collect()

        def glob():
            return pl.scan_parquet(str(root / "S3_USDT_1m" / "*.parquet")).filter(pl.col("time").is_between(mar, apr - 1)).collect()

        assert cc().height == glob().height == (apr - mar) // MINUTE
        got = interleaved_us({"cc": cc, "glob": glob}, r * 3)
        a, b = statistics.median(got["cc"]) / 1000, statistics.median(got["glob"]) / 1000
        count_cc = median_ms(lambda: lf.select(pl.len()).collect(), r)
        count_pl = median_ms(lambda: pl.scan_parquet(str(root / "*_1m" / "*.parquet")).select(pl.len()).collect(), r)
        print("scan_ohlcv: 10 symbols x 1 year of 1m (5,256,000 rows); medians in ms")
        print("| query | scan_ohlcv | polars.scan_parquet, hand-written glob | ratio | target | met |")
        print("|---|---|---|---|---|---|")
        print(f"| one symbol, one month (44,640 rows) | {a:.2f} | {b:.2f} | {a / b:.2f}x | <= 1.2x | {_met('<= 1.2', a / b)} |")
        print(f"| count every row | {count_cc:.2f} | {count_pl:.2f} | {count_cc / count_pl:.2f}x |  |  |")
    finally:
        default_cache(root).close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
