"""get_ohlcv_with_cache through the installed package, with an in-memory exchange."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import get_ohlcv_with_cache
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange


def get(tmp_path, ex, start, count, period="1m", symbol="BTC/USDT", **kw):
    return get_ohlcv_with_cache(tmp_path, symbol, period, start, count, ex.fetch_ohlcv, **kw)


def test_cold_then_warm_equals_truth(tmp_path):
    ex = MemoryExchange()
    df = get(tmp_path, ex, T0, 2500)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1m", T0, 2500))
    assert len(ex.calls) == 3  # 1000-row cap
    assert [c[2] for c in ex.calls] == [T0, T0 + 1000 * MINUTE, T0 + 2000 * MINUTE]
    again = get(tmp_path, ex, T0, 2500)
    assert_frame_equal(again, df)
    assert len(ex.calls) == 3


def test_schema_and_empty_result(tmp_path):
    ex = MemoryExchange(listed=T0 + DAY)
    df = get(tmp_path, ex, T0, 10)
    assert df.schema == pl.Schema(
        {"time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64}
    )
    assert df.height == 0
    assert get(tmp_path, ex, T0, 0).height == 0


def test_str_and_path_base_dir(tmp_path):
    ex = MemoryExchange()
    a = get_ohlcv_with_cache(str(tmp_path), "ETH/USDT:USDT", "1h", T0, 5, ex.fetch_ohlcv)
    b = get_ohlcv_with_cache(Path(tmp_path), "ETH/USDT:USDT", "1h", T0, 5, ex.fetch_ohlcv)
    assert_frame_equal(a, b)
    assert (tmp_path / "ETH_USDT_USDT_1h" / "2024.parquet").exists()
    assert len(ex.calls) == 1


def test_extend_hole_partial_and_distant(tmp_path):
    ex = MemoryExchange()
    get(tmp_path, ex, T0, 100)
    get(tmp_path, ex, T0 + 200 * MINUTE, 100)
    ex.calls.clear()
    # One request spanning cached, hole, cached, and new at both ends.
    df = get(tmp_path, ex, T0 - 50 * MINUTE, 400)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1m", T0 - 50 * MINUTE, 400))
    assert sorted((c[2], c[3]) for c in ex.calls) == [
        (T0 - 50 * MINUTE, 50),
        (T0 + 100 * MINUTE, 100),
        (T0 + 300 * MINUTE, 50),
    ]
    ex.calls.clear()
    far = T0 + 300 * DAY
    get(tmp_path, ex, far, 60)
    assert [(c[2], c[3]) for c in ex.calls] == [(far, 60)]


def test_empty_ranges_are_not_asked_again(tmp_path):
    listed, delisted = T0 + 100 * MINUTE, T0 + 900 * MINUTE
    ex = MemoryExchange(listed=listed, delisted=delisted, gaps=[(T0 + 300 * MINUTE, T0 + 400 * MINUTE)])
    df = get(tmp_path, ex, T0, 1000)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1m", T0, 1000))
    n = len(ex.calls)
    for start, count in [(T0, 100), (T0 + 300 * MINUTE, 100), (T0 + 900 * MINUTE, 100), (T0, 1000)]:
        get(tmp_path, ex, start, count)
    assert len(ex.calls) == n


def test_open_candle_is_refetched_and_corrected(tmp_path, monkeypatch):
    import time as time_mod

    now = T0 + 500 * MINUTE + 30_000
    ex = MemoryExchange(now=now)
    monkeypatch.setattr(time_mod, "time", lambda: now / 1000)
    df = get(tmp_path, ex, T0 + 490 * MINUTE, 20)
    assert df["time"].to_list()[-1] == T0 + 500 * MINUTE
    ex.calls.clear()
    get(tmp_path, ex, T0 + 490 * MINUTE, 20)
    assert [(c[2], c[3]) for c in ex.calls] == [(T0 + 500 * MINUTE, 1)]
    # The candle closes; its final values replace the stored ones, then it is cached for good.
    later = T0 + 520 * MINUTE
    monkeypatch.setattr(time_mod, "time", lambda: later / 1000)
    ex.now = later

    def changed(symbol, timeframe, since=None, limit=None):
        rows = ex.fetch_ohlcv(symbol, timeframe, since, limit)
        return [[r[0], r[1], r[2], r[3], 42.0, r[5]] for r in rows]

    df = get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1m", T0 + 490 * MINUTE, 20, changed)
    assert df.filter(pl.col("time") == T0 + 500 * MINUTE)["close"].item() == 42.0
    ex.calls.clear()
    df2 = get(tmp_path, ex, T0 + 490 * MINUTE, 20)
    assert ex.calls == []
    assert_frame_equal(df, df2)


def test_enable_cache_false_fetches_and_stores(tmp_path):
    ex = MemoryExchange()
    get(tmp_path, ex, T0, 10)
    ex.calls.clear()
    df = get(tmp_path, ex, T0, 10, enable_cache=False)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1m", T0, 10))
    assert [(c[2], c[3]) for c in ex.calls] == [(T0, 10)]
    ex.calls.clear()
    assert_frame_equal(get(tmp_path, ex, T0, 10), df)
    assert ex.calls == []
    # Then a cached call extending the range never sees a negative limit.
    get(tmp_path, ex, T0, 20)
    assert all(c[3] > 0 for c in ex.calls)


@pytest.mark.parametrize("period", candlecache.PERIODS)
def test_every_period(tmp_path, period):
    ex = MemoryExchange()
    start = T0 + 12_345  # unaligned
    df = get(tmp_path, ex, start, 30, period=period)
    assert_frame_equal(df, ex.truth("BTC/USDT", period, start, 30))
    n = len(ex.calls)
    get(tmp_path, ex, start, 30, period=period)
    assert len(ex.calls) == n


def test_callback_formats(tmp_path):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    ex = MemoryExchange()
    cols = ["time", "open", "high", "low", "close", "volume"]

    def as_polars(*a, **k):
        return pl.DataFrame(ex.fetch_ohlcv(*a), schema=cols, orient="row").with_columns(trades=pl.lit(7))

    def as_pandas(*a, **k):
        return pd.DataFrame(ex.fetch_ohlcv(*a), columns=cols)

    def as_arrow(*a, **k):
        return pa.Table.from_pylist([dict(zip(cols, r)) for r in ex.fetch_ohlcv(*a)])

    for i, cb in enumerate([as_polars, as_pandas, as_arrow]):
        df = get_ohlcv_with_cache(tmp_path, f"S{i}/USDT", "5m", T0, 50, cb)
        assert_frame_equal(df.select(cols), ex.truth(f"S{i}/USDT", "5m", T0, 50))
    df = get_ohlcv_with_cache(tmp_path, "S0/USDT", "5m", T0, 50, as_polars)
    assert df["trades"].to_list() == [7] * 50


def test_callback_params_are_passed(tmp_path):
    seen = {}

    def cb(symbol, period, since, limit, **kw):
        seen.update(kw)
        return []

    get_ohlcv_with_cache(tmp_path, "X/Y", "1h", T0, 3, cb, {"params": {"price": "mark"}})
    assert seen == {"params": {"price": "mark"}}


def test_callback_exception_propagates_unchanged_and_keeps_pages(tmp_path):
    ex = MemoryExchange(cap=100)
    boom = RuntimeError("exchange down")

    def flaky(symbol, period, since, limit):
        if len(ex.calls) >= 3:
            raise boom
        return ex.fetch_ohlcv(symbol, period, since, limit)

    with pytest.raises(RuntimeError) as info:
        get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1m", T0, 1000, flaky)
    assert info.value is boom
    ex.calls.clear()
    df = get(tmp_path, ex, T0, 1000)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1m", T0, 1000))
    assert ex.calls[0][2] == T0 + 300 * MINUTE


@pytest.mark.parametrize(
    "returned, exc",
    [
        (None, TypeError),
        ("nope", TypeError),
        ({"time": [1]}, TypeError),
        ([[T0, "a", 1, 1, 1, 1]], TypeError),
        ([[T0, 1, 1]], TypeError),
        ([[T0 - MINUTE, 1, 1, 1, 1, 1]], candlecache.CallbackError),
        ([[T0 + 1, 1, 1, 1, 1, 1]], candlecache.CallbackError),
        ([[T0 // 1000, 1, 1, 1, 1, 1]], candlecache.CallbackError),
        (pl.DataFrame({"t": [T0]}), candlecache.CallbackError),
    ],
)
def test_junk_from_callback_is_a_clear_error_and_loses_nothing(tmp_path, returned, exc):
    ex = MemoryExchange()
    good = get(tmp_path, ex, T0, 10)
    with pytest.raises(exc):
        get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1m", T0 + 10 * MINUTE, 5, lambda *a: returned)
    assert issubclass(candlecache.CallbackError, ValueError)
    assert_frame_equal(get(tmp_path, ex, T0, 10), good)


def test_bad_arguments(tmp_path):
    ex = MemoryExchange()
    with pytest.raises(ValueError, match="unknown period"):
        get(tmp_path, ex, T0, 10, period="7m")
    with pytest.raises(ValueError, match="count"):
        get(tmp_path, ex, T0, -1)
    with pytest.raises(ValueError, match="ISO-8601"):
        get(tmp_path, ex, "first of January", 10)
    with pytest.raises(TypeError):
        get(tmp_path, ex, T0, 1.5)
    with pytest.raises(TypeError):
        get_ohlcv_with_cache(123, "BTC/USDT", "1m", T0, 10, ex.fetch_ohlcv)
    with pytest.raises(TypeError):
        get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1m", T0, 10, "not callable")
    with pytest.raises(ValueError):
        get(tmp_path, ex, T0, 10, lock_timeout=-1)
    assert ex.calls == []


def test_lock_held_too_long_is_a_timeout(tmp_path):
    import threading

    ex = MemoryExchange()
    folder = candlecache.data_dir(tmp_path, "BTC/USDT", "1m")
    t = threading.Thread(target=candlecache._core.hold_lock, args=(folder, 1.5))
    t.start()
    try:
        import time

        time.sleep(0.2)
        with pytest.raises(candlecache.Timeout):
            get(tmp_path, ex, T0, 10, lock_timeout=0.2)
    finally:
        t.join()
    assert get(tmp_path, ex, T0, 10).height == 10


def test_torn_last_log_line_is_ignored(tmp_path):
    ex = MemoryExchange()
    df = get(tmp_path, ex, T0, 100)
    log = candlecache.data_dir(tmp_path, "BTC/USDT", "1m") / "fetch_log.jsonl"
    with open(log, "a") as f:
        f.write('{"fetch_time": "2024-01-01T00:00:00+00:00", "data_start": 17040')
    ex.calls.clear()
    assert_frame_equal(get(tmp_path, ex, T0, 100), df)
    assert ex.calls == []
    get(tmp_path, ex, T0 + 100 * MINUTE, 10)
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1])["data_start"] == T0 + 100 * MINUTE


def test_corrupted_parquet_is_reported_then_repaired(tmp_path):
    ex = MemoryExchange()
    get(tmp_path, ex, T0, 100)
    feb = T0 + 31 * DAY
    good_feb = get(tmp_path, ex, feb, 100)
    jan = candlecache.data_dir(tmp_path, "BTC/USDT", "1m") / "2024-01.parquet"
    data = jan.read_bytes()
    jan.write_bytes(data[: len(data) // 2])
    # Reading without a callback moves it aside and says how to fetch it again
    # (get_ohlcv_with_cache heals it within the call: see test_market_cache.py).
    with pytest.raises(candlecache.CorruptionError, match="2024-01.parquet.*fetch_callback"):
        candlecache.read_cached(tmp_path, "BTC/USDT", "1m", T0, T0 + 99 * MINUTE)
    assert (jan.parent / "2024-01.parquet.corrupt").exists()
    assert_frame_equal(get(tmp_path, ex, feb, 100), good_feb)  # other partitions unaffected
    assert candlecache.repair_cache(tmp_path, "BTC/USDT", "1m") == []  # nothing left to repair
    ex.calls.clear()
    assert_frame_equal(get(tmp_path, ex, T0, 100), ex.truth("BTC/USDT", "1m", T0, 100))
    assert [(c[2], c[3]) for c in ex.calls] == [(T0, 100)]
    ex.calls.clear()
    assert_frame_equal(get(tmp_path, ex, feb, 100), good_feb)
    assert ex.calls == []


def test_glob_readers_see_each_row_once(tmp_path):
    ex = MemoryExchange()
    get(tmp_path, ex, T0, 1000)
    for i in range(20):  # many small appends: deltas, then compactions
        get(tmp_path, ex, T0, 1000 + 10 * (i + 1))
    folder = candlecache.data_dir(tmp_path, "BTC/USDT", "1m")
    scanned = pl.scan_parquet(str(folder / "*.parquet")).collect().sort("time")
    assert_frame_equal(scanned, ex.truth("BTC/USDT", "1m", T0, 1200))


def test_progress_bar_on_long_fetches(tmp_path, capfd):
    pytest.importorskip("tqdm")
    ex = MemoryExchange()
    get(tmp_path, ex, T0, 3000, progress=True)
    err = capfd.readouterr().err
    assert "BTC/USDT 1m" in err and "3000/3000" in err
    get(tmp_path / "quiet", ex, T0, 3000, progress=False)
    assert capfd.readouterr().err == ""


def test_progress_callback_failure_does_not_break_the_fetch(tmp_path, monkeypatch):
    import candlecache.ohlcv as mod

    def broken(self, done, total):
        raise RuntimeError("display gone")

    monkeypatch.setattr(mod._Progress, "__call__", broken)
    ex = MemoryExchange()
    assert get(tmp_path, ex, T0, 1500, progress=True).height == 1500


@pytest.mark.parametrize("unit, tz", [("ms", None), ("us", "UTC"), ("ns", "Asia/Shanghai")])
def test_datetime_time_column_becomes_utc_ms(tmp_path, unit, tz):
    ex = MemoryExchange()
    cols = ["time", "open", "high", "low", "close", "volume"]

    def cb(*a):
        df = pl.DataFrame(ex.fetch_ohlcv(*a), schema=cols, orient="row")
        t = pl.from_epoch("time", time_unit="ms").dt.cast_time_unit(unit)
        if tz is not None:  # the same instants, shown in another zone
            t = t.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
        return df.with_columns(t)

    df = get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1h", T0, 30, cb)
    assert_frame_equal(df, ex.truth("BTC/USDT", "1h", T0, 30))


@pytest.mark.parametrize("codec", ["snappy", "lz4", "gzip", "uncompressed", "zstd"])
def test_partitions_written_by_other_tools_with_any_common_codec_are_read(tmp_path, codec):
    """pandas and pyarrow write Snappy by default; a cache folder filled by hand or by another
    tool is read whatever the codec (and extended by the next fetch)."""
    ex = MemoryExchange()
    folder = candlecache.data_dir(tmp_path, "BTC/USDT", "1m")
    folder.mkdir(parents=True)
    ex.truth("BTC/USDT", "1m", T0, 100).write_parquet(folder / "2024-01.parquet", compression=codec)
    got = candlecache.read_cached(tmp_path, "BTC/USDT", "1m")
    assert_frame_equal(got, ex.truth("BTC/USDT", "1m", T0, 100))
    assert_frame_equal(get(tmp_path, ex, T0, 200), ex.truth("BTC/USDT", "1m", T0, 200))
