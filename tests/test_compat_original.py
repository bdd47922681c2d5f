"""Interoperability with the original ``cache_tool`` (seed 000) and the ``cache_tool`` compat package.

The original tool is vendored verbatim under ``tests/original/orig_cache_tool`` and run as is:
caches it writes must be read and extended by candlecache, and caches candlecache writes must
stay readable by it (and by ``polars.scan_parquet`` / DuckDB globs).
"""

from __future__ import annotations

import datetime as _dt
import inspect
import itertools
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import candlecache
from candlecache import _core
from memory_exchange import DAY, HOUR, MINUTE, T0, candle

sys.path.insert(0, str(Path(__file__).parent / "original"))

import orig_cache_tool.config as o_config  # noqa: E402
import orig_cache_tool.continuity as o_continuity  # noqa: E402
import orig_cache_tool.entry as o_entry  # noqa: E402
import orig_cache_tool.log_manager as o_log  # noqa: E402
import orig_cache_tool.storage as o_storage  # noqa: E402

import cache_tool  # noqa: E402
import cache_tool.config as c_config  # noqa: E402
import cache_tool.continuity as c_continuity  # noqa: E402
import cache_tool.entry as c_entry  # noqa: E402
import cache_tool.log_manager as c_log  # noqa: E402
import cache_tool.storage as c_storage  # noqa: E402

SCHEMA = {
    "time": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
LOG_FIELDS = {"fetch_time", "data_start", "data_end", "count", "source"}
MODULE_PAIRS = [
    (o_config, c_config),
    (o_storage, c_storage),
    (o_log, c_log),
    (o_continuity, c_continuity),
    (o_entry, c_entry),
]


# ---------------------------------------------------------------------------------------------
# An in-memory exchange returning polars DataFrames (the shape the original tool requires)
# ---------------------------------------------------------------------------------------------


def ceil_slot(period: str, t: int) -> int:
    f = _core.period_floor(period, t)
    return f if f == t else _core.period_add(period, f, 1)


class PolarsExchange:
    """``cb(symbol, period, since, limit, **params)``: existing candles with
    ``since <= t < since + limit * period`` (at most ``cap``), as a polars DataFrame.

    A candle exists from ``listed`` on and once it has opened by ``now_ms``; the candle still
    forming at ``now_ms`` has partial values (close and volume grow during the candle).
    """

    def __init__(self, *, now_ms: int | None = None, listed: int | None = None, cap: int | None = None):
        self.now_ms = now_ms
        self.listed = listed
        self.cap = cap
        self.calls: list[tuple] = []
        self.answers: list[pl.DataFrame] = []

    def exists(self, period: str, t: int) -> bool:
        if self.listed is not None and t < self.listed:
            return False
        return self.now_ms is None or t <= self.now_ms

    def row(self, symbol: str, period: str, t: int, now_ms: int | None = None) -> list:
        now_ms = self.now_ms if now_ms is None else now_ms
        r = candle(symbol, period, t)
        end = _core.period_add(period, t, 1)
        if now_ms is not None and t <= now_ms < end:
            frac = (now_ms - t) / (end - t)
            o = r[1]
            r = [t, o, r[2], r[3], o + (r[4] - o) * frac, r[5] * frac]
        return r

    def __call__(self, symbol, period, since, limit, **params):
        self.calls.append((symbol, period, since, limit, params))
        rows = []
        t = ceil_slot(period, since)
        stop = _core.period_add(period, ceil_slot(period, since), max(limit, 0))
        while t < stop and (self.cap is None or len(rows) < self.cap):
            if self.exists(period, t):
                rows.append(self.row(symbol, period, t))
            t = _core.period_add(period, t, 1)
        df = pl.DataFrame(rows, schema=SCHEMA, orient="row")
        self.answers.append(df)
        return df

    def truth(self, symbol: str, period: str, start: int, end_incl: int) -> pl.DataFrame:
        rows = []
        t = ceil_slot(period, start)
        while t <= end_incl:
            if self.exists(period, t):
                rows.append(self.row(symbol, period, t))
            t = _core.period_add(period, t, 1)
        return pl.DataFrame(rows, schema=SCHEMA, orient="row")


class Clock:
    """A settable ``time.time`` for candlecache, which reads now at call time."""

    def __init__(self, monkeypatch, now_ms: int):
        self.now_ms = now_ms
        monkeypatch.setattr(time, "time", lambda: self.now_ms / 1000)


def end_of(period: str, start: int, count: int) -> int:
    return _core.period_add(period, start, count - 1)


def norm(df: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by time, OHLCV columns only, canonical dtypes."""
    return df.select(list(SCHEMA)).cast(SCHEMA).sort("time")


def assert_unique_times(df: pl.DataFrame) -> None:
    assert df["time"].n_unique() == df.height, "duplicate times"


def log_lines(d: Path) -> list[dict]:
    import json

    return [json.loads(x) for x in (d / "fetch_log.jsonl").read_text().splitlines() if x.strip()]


def parquet_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.parquet"))


def delta_files(d: Path) -> list[str]:
    return [n for n in parquet_files(d) if ".d" in n]


# ---------------------------------------------------------------------------------------------
# 1. A cache written by the original tool, read and extended by candlecache
# ---------------------------------------------------------------------------------------------


def test_original_cache_is_read_then_extended(tmp_path):
    sym, per, P = "BTC/USDT:USDT", "1h", HOUR
    ex = PolarsExchange()
    d = o_config.get_data_dir(tmp_path, sym, per)
    # Several original calls: a normal fetch across the 2023/2024 partition boundary, two
    # enable_cache=False fetches (separate log lines, one in 2025), then an extension before the
    # start (merged by the original's compact_log) and a fully cached call.
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0 - 30 * P, 60, ex)
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0 + 100 * P, 50, ex, enable_cache=False)
    far = T0 + 400 * DAY
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, far, 24, ex, enable_cache=False)
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0 - 40 * P, 5, ex)
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0 - 10 * P, 20, ex)
    assert parquet_files(d) == ["2023.parquet", "2024.parquet", "2025.parquet"]
    lines = log_lines(d)
    assert len(lines) == 3 and all(set(x) == LOG_FIELDS for x in lines)
    assert sorted((x["data_start"], x["data_end"]) for x in lines) == [
        (T0 - 40 * P, T0 + 29 * P),
        (T0 + 100 * P, T0 + 149 * P),
        (far, far + 23 * P),
    ]
    # Our reading of those lines: the inclusive candle ranges as half-open coverage.
    assert _core.coverage(d, per) == [(T0 - 40 * P, T0 + 30 * P), (T0 + 100 * P, T0 + 150 * P), (far, far + 24 * P)]

    # Covered ranges: no callback call, rows identical to what the original returns/stores.
    ex.calls.clear()
    for start, count in [
        (T0 - 40 * P, 70),
        (T0 - 40 * P, 1),
        (T0 + 29 * P, 1),
        (T0 - 3 * P + 1234, 10),  # unaligned start, across the partition boundary
        (T0 + 100 * P, 50),
        (T0 + 120 * P, 7),
        (far, 24),
    ]:
        got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, start, count, ex)
        end = end_of(per, start, count)
        assert_frame_equal(norm(got), norm(o_storage.read_ohlcv(tmp_path, sym, per, start, end)))
        assert_frame_equal(norm(got), ex.truth(sym, per, start, end))
        assert_frame_equal(
            norm(cache_tool.get_ohlcv_with_cache(tmp_path, sym, per, start, count, ex)), norm(got)
        )
    assert ex.calls == []

    # Extension: only the holes and the ends are fetched, each exactly once.
    start, count = T0 - 50 * P, 211  # T0-50h .. T0+160h
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, start, count, ex, {"tag": "x"})
    assert_frame_equal(norm(got), ex.truth(sym, per, start, end_of(per, start, count)))
    assert_unique_times(got)
    assert sorted((c[2], c[3]) for c in ex.calls) == [
        (T0 - 50 * P, 10),
        (T0 + 30 * P, 70),
        (T0 + 150 * P, 11),
    ]
    assert all(c[4] == {"tag": "x"} for c in ex.calls)
    ex.calls.clear()
    candlecache.get_ohlcv_with_cache(tmp_path, sym, per, start, count, ex)
    candlecache.get_ohlcv_with_cache(tmp_path, sym, per, far - 2 * P, 30, ex)
    assert sorted((c[2], c[3]) for c in ex.calls) == [(far - 2 * P, 2), (far + 24 * P, 4)]

    # The original still reads the whole folder: same rows, no duplicates.
    full = o_storage.read_ohlcv(tmp_path, sym, per)
    assert_unique_times(full)
    want = pl.concat([ex.truth(sym, per, T0 - 50 * P, T0 + 160 * P), ex.truth(sym, per, far - 2 * P, far + 27 * P)])
    assert_frame_equal(norm(full), want)
    assert_frame_equal(norm(candlecache.read_cached(tmp_path, sym, per)), want)


def test_original_empty_answer_and_short_answer_are_refetched_only_where_uncovered(tmp_path):
    """The original logs min..max of the rows it got: the parts it asked but got nothing for
    are not covered by its line, so candlecache asks for them (once)."""
    sym, per, P = "ETH/USDT", "1m", MINUTE
    listed = T0 + 10 * P
    ex = PolarsExchange(listed=listed)
    o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0, 30, ex)
    d = o_config.get_data_dir(tmp_path, sym, per)
    assert [(x["data_start"], x["data_end"]) for x in log_lines(d)] == [(listed, T0 + 29 * P)]
    ex.calls.clear()
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0, 30, ex)
    assert_frame_equal(norm(got), ex.truth(sym, per, T0, T0 + 29 * P))
    assert [(c[2], c[3]) for c in ex.calls] == [(T0, 10)]
    candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0, 30, ex)
    assert len(ex.calls) == 1  # answered empty: never asked again


# ---------------------------------------------------------------------------------------------
# 2. The original's cached open candle is refetched
# ---------------------------------------------------------------------------------------------


def _fake_datetime(now_ms: int):
    class FakeDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.fromtimestamp(now_ms / 1000, tz=tz)

    return FakeDatetime


def test_original_open_candle_is_refetched(tmp_path, monkeypatch):
    sym, per, P = "BTC/USDT", "1m", MINUTE
    fetched_at = T0 + 100 * P + 30_000  # 30 s into the candle opening at T0+100m
    ex = PolarsExchange(now_ms=fetched_at)
    with monkeypatch.context() as m:
        m.setattr(o_log, "datetime", _fake_datetime(fetched_at))
        first = o_entry.get_ohlcv_with_cache(tmp_path, sym, per, T0, 101, ex)
    assert first.height == 101
    partial = first.filter(pl.col("time") == T0 + 100 * P)
    assert partial["volume"][0] < candle(sym, per, T0 + 100 * P)[5]  # stored while forming
    d = o_config.get_data_dir(tmp_path, sym, per)
    (line,) = log_lines(d)
    assert (line["data_start"], line["data_end"]) == (T0, T0 + 100 * P)
    assert _core.coverage(d, per) == [(T0, T0 + 100 * P)]

    clock = Clock(monkeypatch, fetched_at + 10_000)  # still inside that candle
    ex.now_ms = clock.now_ms
    ex.calls.clear()
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0, 101, ex)
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 100 * P, 1)]
    assert_frame_equal(norm(got), ex.truth(sym, per, T0, T0 + 100 * P))

    # Later: the candle has closed; it is fetched once more, final, and replaces the stored row.
    clock.now_ms = T0 + 200 * P
    ex.now_ms = clock.now_ms
    ex.calls.clear()
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0, 101, ex)
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 100 * P, 1)]
    want = ex.truth(sym, per, T0, T0 + 100 * P)
    assert_frame_equal(norm(got), want)
    assert got.filter(pl.col("time") == T0 + 100 * P).row(0) == tuple(candle(sym, per, T0 + 100 * P))
    ex.calls.clear()
    again = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0, 101, ex)
    assert ex.calls == []
    assert_frame_equal(norm(again), want)
    # The original sees the replacement too, once.
    stored = o_storage.read_ohlcv(tmp_path, sym, per)
    assert_unique_times(stored)
    assert_frame_equal(norm(stored), want)


# ---------------------------------------------------------------------------------------------
# 3/4. A cache written by candlecache, read by the original, polars and DuckDB
# ---------------------------------------------------------------------------------------------


def build_candlecache_dir(base: Path, monkeypatch):
    """Many small appends (delta files) and an open-candle refetch, all by candlecache."""
    sym, per, P = "ETH/USDT", "1m", MINUTE
    clock = Clock(monkeypatch, T0 + 10 * DAY)
    ex = PolarsExchange(now_ms=clock.now_ms)
    d = c_config.get_data_dir(base, sym, per)
    get = lambda s, n: candlecache.get_ohlcv_with_cache(base, sym, per, s, n, ex)  # noqa: E731

    get(T0 - 30 * P, 100)  # Dec 2023 and Jan 2024
    assert parquet_files(d) == ["2023-12.parquet", "2024-01.parquet"]
    most_deltas = 0
    for i in range(12):
        s = T0 + 70 * P + i * 5 * P
        ex.calls.clear()
        got = get(s, 5)
        assert [(c[2], c[3]) for c in ex.calls] == [(s, 5)]
        assert_frame_equal(norm(got), ex.truth(sym, per, s, s + 4 * P))
        most_deltas = max(most_deltas, len(delta_files(d)))
        seen = o_storage.read_ohlcv(base, sym, per)
        assert_unique_times(seen)
        assert_frame_equal(norm(seen), ex.truth(sym, per, T0 - 30 * P, s + 4 * P))
    assert most_deltas >= 2, parquet_files(d)

    # An open candle: T0+200m fetched 20 s after it opened...
    clock.now_ms = T0 + 200 * P + 20_000
    ex.now_ms = clock.now_ms
    got = get(T0 + 130 * P, 71)
    assert_frame_equal(norm(got), ex.truth(sym, per, T0 + 130 * P, T0 + 200 * P))
    assert got["volume"][-1] < candle(sym, per, T0 + 200 * P)[5]
    # ... and again later, final, with more after it: only from that candle on is fetched.
    clock.now_ms = T0 + 300 * P
    ex.now_ms = clock.now_ms
    ex.calls.clear()
    got = get(T0 + 190 * P, 20)
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 200 * P, 10)]
    assert got.filter(pl.col("time") == T0 + 200 * P).row(0) == tuple(candle(sym, per, T0 + 200 * P))
    assert delta_files(d), parquet_files(d)
    return sym, per, d, ex, ex.truth(sym, per, T0 - 30 * P, T0 + 209 * P)


def test_candlecache_cache_is_readable_by_the_original(tmp_path, monkeypatch):
    sym, per, d, ex, want = build_candlecache_dir(tmp_path, monkeypatch)
    assert_frame_equal(norm(candlecache.read_cached(tmp_path, sym, per)), want)

    # The original's reader globs every *.parquet: same rows, each time once.
    seen = o_storage.read_ohlcv(tmp_path, sym, per)
    assert_unique_times(seen)
    assert_frame_equal(norm(seen), want)
    assert seen.schema == pl.Schema(SCHEMA)
    part = o_storage.read_ohlcv(tmp_path, sym, per, T0 + 195 * MINUTE, T0 + 205 * MINUTE)
    assert_frame_equal(norm(part), want.filter(pl.col("time").is_between(T0 + 195 * MINUTE, T0 + 205 * MINUTE)))

    # Its log reader: the original fields; the inclusive ranges are our coverage.
    log = o_log.read_log(d)
    assert LOG_FIELDS <= set(log.columns)
    assert log["data_start"].is_sorted()
    spans = [(a, b + MINUTE) for a, b in zip(log["data_start"], log["data_end"])]
    assert all(a < b for a, b in spans)
    assert _core.ranges_union(spans) == _core.coverage(d, per) == [(T0 - 30 * MINUTE, T0 + 210 * MINUTE)]
    assert o_continuity.get_data_range(d) == {"start": T0 - 30 * MINUTE, "end": T0 + 209 * MINUTE}


def test_candlecache_cache_is_readable_by_glob_readers(tmp_path, monkeypatch):
    sym, per, d, ex, want = build_candlecache_dir(tmp_path, monkeypatch)
    scanned = pl.scan_parquet(str(d / "*.parquet")).collect()
    assert_unique_times(scanned)
    assert_frame_equal(norm(scanned), want)
    assert_frame_equal(norm(pl.read_parquet(d / "*.parquet")), want)


def test_candlecache_cache_is_readable_by_duckdb(tmp_path, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    sym, per, d, ex, want = build_candlecache_dir(tmp_path, monkeypatch)
    del duckdb
    # In a child process: duckdb's bindings print reference-leak noise at interpreter exit.
    out = tmp_path / "duck.parquet"
    script = (
        "import duckdb, sys; "
        "duckdb.sql(f\"COPY (SELECT * FROM read_parquet('{sys.argv[1]}/*.parquet') ORDER BY time) "
        "TO '{sys.argv[2]}' (FORMAT parquet)\")"
    )
    subprocess.run([sys.executable, "-c", script, str(d), str(out)], check=True, capture_output=True)
    got = pl.read_parquet(out)
    assert_unique_times(got)
    assert_frame_equal(norm(got), want)


def test_original_runs_on_a_candlecache_cache(tmp_path, monkeypatch):
    sym, per, d, ex, want = build_candlecache_dir(tmp_path, monkeypatch)
    monkeypatch.undo()  # real clock again for everything below
    ex.now_ms = None
    # Inside, before, after, and spanning the cached range; also enable_cache=False.
    for start, count, kw in [
        (T0, 50, {}),
        (T0 + 150 * MINUTE, 60, {}),
        (T0 - 60 * MINUTE, 40, {}),
        (T0 + 200 * MINUTE, 60, {}),
        (T0 - 70 * MINUTE, 400, {}),
        (T0 + 10 * MINUTE, 5, {"enable_cache": False}),
    ]:
        got = o_entry.get_ohlcv_with_cache(tmp_path, sym, per, start, count, ex, **kw)
        assert set(got["time"]) == set(ex.truth(sym, per, start, end_of(per, start, count))["time"])
    o_log.read_log(d)
    # Whatever the original wrote (it may store a time in a main file that a delta also
    # holds), candlecache still reads each time once, with the right values.
    want = ex.truth(sym, per, T0 - 70 * MINUTE, T0 + 329 * MINUTE)
    assert_frame_equal(norm(candlecache.read_cached(tmp_path, sym, per)), want)
    ex.calls.clear()
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0 - 70 * MINUTE, 400, ex)
    assert ex.calls == []
    assert_frame_equal(norm(got), want)
    # And keeps extending it.
    got = candlecache.get_ohlcv_with_cache(tmp_path, sym, per, T0 - 70 * MINUTE, 403, ex)
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 330 * MINUTE, 3)]
    assert_frame_equal(norm(got), ex.truth(sym, per, T0 - 70 * MINUTE, T0 + 332 * MINUTE))


# ---------------------------------------------------------------------------------------------
# 5. The cache_tool compat modules
# ---------------------------------------------------------------------------------------------


def original_public_names(mod) -> list[str]:
    """Public names the original module defines or takes from its own package."""
    out = []
    for name in dir(mod):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue
        owner = getattr(obj, "__module__", None)
        if owner is not None and not str(owner).startswith("orig_cache_tool"):
            continue  # polars, Path, FileLock, typing names, datetime...
        out.append(name)
    return out


@pytest.mark.parametrize("orig, compat", MODULE_PAIRS, ids=lambda m: getattr(m, "__name__", ""))
def test_compat_modules_expose_the_original_names_and_signatures(orig, compat):
    names = original_public_names(orig)
    assert names
    for name in names:
        assert hasattr(compat, name), f"{compat.__name__} lacks {name}"
        o, c = getattr(orig, name), getattr(compat, name)
        if not callable(o):
            continue
        op = list(inspect.signature(o).parameters.values())
        cp = list(inspect.signature(c).parameters.values())
        assert [(p.name, p.kind, p.default) for p in cp[: len(op)]] == [(p.name, p.kind, p.default) for p in op], name
        # Anything added must be keyword-only with a default, so every original call still works.
        for extra in cp[len(op) :]:
            assert extra.kind is inspect.Parameter.KEYWORD_ONLY and extra.default is not inspect.Parameter.empty, (
                name,
                extra,
            )


def test_compat_partition_config_and_keys():
    for k, v in o_config.PARTITION_CONFIG.items():
        assert c_config.PARTITION_CONFIG[k] == v
    times = [T0, T0 - 1, T0 + 45 * DAY + 123, 0, 946_684_800_000, 1_893_456_000_000 - 1, T0 + 3650 * DAY]
    # Periods the original handles (period_to_ms accepts m/h/d); others default to yearly files.
    for period in ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d"]:
        for t in times:
            assert c_config.get_partition_key(t, period) == o_config.get_partition_key(t, period), (t, period)
    assert c_config.get_partition_key(T0, "1m") == "2024-01"
    assert c_config.get_partition_key(T0, "1h") == "2024"
    assert c_config.get_partition_key(T0, "1d") == "2020s"
    for base in ["cache", Path("cache"), Path("/tmp/x")]:
        for sym in ["BTC/USDT", "BTC/USDT:USDT", "ETHBTC"]:
            assert c_config.get_data_dir(base, sym, "1h") == o_config.get_data_dir(Path(base), sym, "1h")


def frame(times, value: float) -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame(
        {"time": list(times), "open": [value] * n, "high": [value] * n, "low": [value] * n, "close": [value] * n, "volume": [value] * n},
        schema=SCHEMA,
    )


@pytest.mark.parametrize("save", [c_storage.save_ohlcv, c_storage.save_ohlcv_with_lock])
def test_compat_storage_round_trip_and_replace(tmp_path, save):
    sym, per = "BTC/USDT", "1m"
    assert c_storage.read_ohlcv(tmp_path, sym, per).is_empty()
    save(tmp_path, sym, per, frame([], 0.0))
    first = [T0 - 5 * MINUTE + i * MINUTE for i in range(10)]  # Dec 2023 / Jan 2024
    save(tmp_path, sym, per, frame(first, 1.0))
    save(tmp_path, sym, per, frame([T0 + i * MINUTE for i in range(10)], 2.0))
    d = c_config.get_data_dir(tmp_path, sym, per)
    assert {n.split(".")[0] for n in parquet_files(d)} == {"2023-12", "2024-01"}
    got = c_storage.read_ohlcv(tmp_path, sym, per)
    want = pl.concat([frame(first[:5], 1.0), frame([T0 + i * MINUTE for i in range(10)], 2.0)])
    assert_frame_equal(norm(got), want)
    assert_frame_equal(norm(o_storage.read_ohlcv(tmp_path, sym, per)), want)  # no duplicates
    # Inclusive bounds, either optional.
    assert c_storage.read_ohlcv(tmp_path, sym, per, T0, T0 + 2 * MINUTE)["time"].to_list() == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert c_storage.read_ohlcv(tmp_path, sym, per, start_time=T0 + 9 * MINUTE).height == 1
    assert c_storage.read_ohlcv(tmp_path, sym, per, end_time=T0 - 5 * MINUTE).height == 1
    # Unsorted new rows replace stored ones too.
    save(tmp_path, sym, per, frame([T0 + 3 * MINUTE, T0 + 1 * MINUTE], 3.0))
    got = c_storage.read_ohlcv(tmp_path, sym, per, T0, T0 + 9 * MINUTE)
    assert_unique_times(got)
    assert got.filter(pl.col("time").is_in([T0 + MINUTE, T0 + 3 * MINUTE]))["close"].to_list() == [3.0, 3.0]


def test_compat_functions_work_inside_the_original_lock_pattern(tmp_path):
    """The original's entry holds ``FileLock(data_dir/.lock)`` while it calls ``save_ohlcv``,
    ``append_log`` and ``compact_log``; code built from these modules the same way must not
    deadlock (the original's ``save_ohlcv`` and ``compact_log`` take no lock)."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        import polars as pl
        from filelock import FileLock
        from cache_tool.config import get_data_dir
        from cache_tool.storage import save_ohlcv, read_ohlcv
        from cache_tool.log_manager import append_log, compact_log, rebuild_log_from_data
        base = Path({str(tmp_path)!r})
        d = get_data_dir(base, "BTC/USDT", "1m")
        d.mkdir(parents=True, exist_ok=True)
        df = pl.DataFrame({{"time": [{T0}, {T0 + MINUTE}], "open": [1.0, 1.0], "high": [1.0, 1.0],
                            "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]}})
        with FileLock(d / ".lock"):
            save_ohlcv(base, "BTC/USDT", "1m", df)
            append_log(d, {T0}, {T0 + MINUTE}, 2)
            compact_log(d)
            rebuild_log_from_data(d, 60000)
            assert read_ohlcv(base, "BTC/USDT", "1m").height == 2
        print("ok")
        """
    )
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("cache_tool.storage/log_manager deadlock when the caller holds FileLock(data_dir/'.lock')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_compat_log_manager(tmp_path):
    d = c_config.get_data_dir(tmp_path, "BTC/USDT", "1m")
    d.mkdir(parents=True)
    assert c_log.get_log_path(d) == d / "fetch_log.jsonl"
    assert c_log.read_log(d).is_empty()
    c_log.append_log(d, T0 + 10 * MINUTE, T0 + 19 * MINUTE, 10, source="x")
    c_log.append_log(d, T0, T0 + 9 * MINUTE, 10)
    log = c_log.read_log(d)
    assert LOG_FIELDS <= set(log.columns)
    assert log["data_start"].to_list() == [T0, T0 + 10 * MINUTE]
    assert log["source"].to_list() == ["api", "x"]
    ft = _dt.datetime.fromisoformat(log["fetch_time"][0])
    assert abs(ft.timestamp() - time.time()) < 60
    # Same lines through the original reader.
    assert o_log.read_log(d).select("data_start", "data_end", "count").equals(log.select("data_start", "data_end", "count"))

    # Adjacent lines (ours) and the original's touching lines both merge.
    c_log.append_log(d, T0 + 19 * MINUTE, T0 + 29 * MINUTE, 11)
    c_log.append_log(d, T0 + 40 * MINUTE, T0 + 49 * MINUTE, 10)
    c_log.compact_log(d)
    log = c_log.read_log(d)
    assert list(zip(log["data_start"], log["data_end"])) == [(T0, T0 + 29 * MINUTE), (T0 + 40 * MINUTE, T0 + 49 * MINUTE)]
    assert _core.coverage(d, "1m") == [(T0, T0 + 30 * MINUTE), (T0 + 40 * MINUTE, T0 + 50 * MINUTE)]

    # Rebuild from data: one line per run of consecutive candles.
    c_storage.save_ohlcv(tmp_path, "BTC/USDT", "1m", frame([T0 + i * MINUTE for i in [0, 1, 2, 5, 6]], 1.0))
    c_log.rebuild_log_from_data(d, MINUTE)
    log = c_log.read_log(d)
    assert list(zip(log["data_start"], log["data_end"], log["count"])) == [(T0, T0 + 2 * MINUTE, 3), (T0 + 5 * MINUTE, T0 + 6 * MINUTE, 2)]
    assert set(log["source"]) == {"rebuilt"}
    # The original's period_ms form works on a folder named any way.
    other = tmp_path / "renamed"
    other.mkdir()
    for f in d.glob("*.parquet"):
        (other / f.name).write_bytes(f.read_bytes())
    c_log.rebuild_log_from_data(other, MINUTE)
    assert len(c_log.read_log(other)) == 2


def test_compat_continuity(tmp_path):
    d = c_config.get_data_dir(tmp_path, "BTC/USDT", "1m")
    d.mkdir(parents=True)
    assert c_continuity.check_continuity(d) == []
    assert c_continuity.get_data_range(d) is None
    assert c_continuity.find_missing_ranges(d, T0, T0 + 9 * MINUTE) == [{"start": T0, "end": T0 + 9 * MINUTE}]
    c_log.append_log(d, T0, T0 + 9 * MINUTE, 10)
    c_log.append_log(d, T0 + 20 * MINUTE, T0 + 29 * MINUTE, 10)
    assert c_continuity.check_continuity(d) == [
        {"gap_after": T0 + 9 * MINUTE, "gap_before": T0 + 20 * MINUTE, "missing_from": T0 + 10 * MINUTE, "missing_to": T0 + 20 * MINUTE}
    ]
    assert c_continuity.get_data_range(d) == {"start": T0, "end": T0 + 29 * MINUTE}
    assert c_continuity.find_missing_ranges(d, T0 - 5 * MINUTE, T0 + 35 * MINUTE) == [
        {"start": T0 - 5 * MINUTE, "end": T0 - MINUTE},
        {"start": T0 + 10 * MINUTE, "end": T0 + 19 * MINUTE},
        {"start": T0 + 30 * MINUTE, "end": T0 + 35 * MINUTE},
    ]
    assert c_continuity.find_missing_ranges(d, T0 + 2 * MINUTE, T0 + 8 * MINUTE) == []
    # Unaligned bounds: only whole candles inside [target_start, target_end].
    assert c_continuity.find_missing_ranges(d, T0 + 9 * MINUTE + 1, T0 + 20 * MINUTE - 1) == [
        {"start": T0 + 10 * MINUTE, "end": T0 + 19 * MINUTE}
    ]


def test_compat_entry(tmp_path):
    from cache_tool.entry import get_ohlcv_with_cache

    for p in ["1m", "5m", "15m", "30m", "1h", "4h", "12h", "1d", "3d"]:
        assert c_entry.period_to_ms(p) == o_entry.period_to_ms(p)
    with pytest.raises(ValueError):
        c_entry.period_to_ms("7x")
    ex = PolarsExchange()
    got = get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1h", T0, 30, ex)
    assert_frame_equal(norm(got), ex.truth("BTC/USDT", "1h", T0, T0 + 29 * HOUR))
    got2 = get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1h", T0, 30, ex, {}, True)
    assert_frame_equal(got2, got)
    assert len(ex.calls) == 1
    # enable_cache=False fetches (and stores) what was asked, as the original does.
    got3 = c_entry.get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1h", T0, 30, ex, enable_cache=False)
    assert_frame_equal(norm(got3), norm(got))
    assert len(ex.calls) == 2
    # The compat entry's folder is the one the original uses.
    assert o_storage.read_ohlcv(tmp_path, "BTC/USDT", "1h").height == 30


# ---------------------------------------------------------------------------------------------
# 6. Properties
# ---------------------------------------------------------------------------------------------

small = st.integers(0, 40)
small_ranges = st.lists(st.tuples(small, small), max_size=8)


def points(ranges) -> set[int]:
    return set(itertools.chain.from_iterable(range(a, b) for a, b in ranges))


def assert_normalised(ranges) -> None:
    assert all(a < b for a, b in ranges), ranges
    assert all(x[1] < y[0] for x, y in zip(ranges, ranges[1:])), ranges  # sorted, disjoint, non-adjacent


@given(covered=small_ranges, start=small, end=small)
def test_ranges_missing_matches_a_set_model(covered, start, end):
    got = _core.ranges_missing(covered, start, end)
    assert_normalised(got)
    assert points(got) == set(range(start, end)) - points(covered)


@given(ranges=small_ranges)
def test_ranges_union_normalises(ranges):
    got = _core.ranges_union(ranges)
    assert_normalised(got)
    assert points(got) == points(ranges)
    assert _core.ranges_union(got) == got
    assert _core.ranges_union(list(reversed(ranges))) == got


big = st.integers(-(2**62), 2**62)


@given(covered=st.lists(st.tuples(big, big), max_size=8), start=big, end=big)
def test_ranges_missing_is_the_complement_of_the_union(covered, start, end):
    got = _core.ranges_missing(covered, start, end)
    assert_normalised(got)
    union = _core.ranges_union(covered)
    # missing + (union clipped to [start, end)) tile [start, end) exactly.
    clipped = [(max(a, start), min(b, end)) for a, b in union if max(a, start) < min(b, end)]
    pieces = sorted(got + clipped)
    if start >= end:
        assert got == []
    else:
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(x[1] == y[0] for x, y in zip(pieces, pieces[1:]))


_example = itertools.count()

calls_st = st.lists(
    st.tuples(st.integers(-20, 60), st.sampled_from([0, 0, 1, 30_000, 59_999]), st.integers(0, 25)),
    min_size=1,
    max_size=8,
)


def answered_slots(call: tuple, answer: pl.DataFrame) -> set[int]:
    """Candles a callback call answered for: up to its last row, or all it asked if empty."""
    _, period, since, limit, _ = call
    first = ceil_slot(period, since)
    if answer.height:
        stop = _core.period_add(period, answer["time"][-1], 1)
    else:
        stop = _core.period_add(period, first, limit)
    return set(range(first, stop, MINUTE))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=calls_st,
    listed=st.one_of(st.none(), st.integers(-10, 50)),
    cap=st.sampled_from([None, 3, 7]),
    query=st.tuples(st.integers(-30, 70), st.integers(0, 40)),
)
def test_random_calls_fetch_each_candle_once(tmp_path, calls, listed, cap, query):
    base = tmp_path / f"ex{next(_example)}"
    sym, per = "BTC/USDT", "1m"
    ex = PolarsExchange(listed=None if listed is None else T0 + listed * MINUTE, cap=cap)
    d = c_config.get_data_dir(base, sym, per)
    model: set[int] = set()  # candles asked of the exchange so far

    def run(start: int, count: int) -> None:
        n = len(ex.calls)
        got = candlecache.get_ohlcv_with_cache(base, sym, per, start, count, ex)
        if count > 0:
            assert_frame_equal(norm(got), ex.truth(sym, per, start, end_of(per, start, count)))
        else:
            assert got.height == 0
        for call, answer in zip(ex.calls[n:], ex.answers[n:]):
            slots = answered_slots(call, answer)
            assert not slots & model, f"candles asked twice: {sorted(slots & model)}"
            model.update(slots)

    for k, off, count in calls:
        run(T0 + k * MINUTE + off, count)

    qs, qn = T0 + query[0] * MINUTE, query[1]
    qe = T0 + (query[0] + max(qn, 1) - 1) * MINUTE
    want_missing = sorted(set(range(qs, qe + 1, MINUTE)) - model)
    runs = []
    for t in want_missing:
        if runs and runs[-1]["end"] + MINUTE == t:
            runs[-1]["end"] = t
        else:
            runs.append({"start": t, "end": t})
    assert c_continuity.find_missing_ranges(d, qs, qe) == runs
    n = len(ex.calls)
    run(qs, max(qn, 1))
    # The query fetched exactly what find_missing_ranges said was missing.
    asked = set().union(*[answered_slots(c, a) for c, a in zip(ex.calls[n:], ex.answers[n:])])
    assert asked == set(want_missing)
