"""Exact resampling (issue 11, part 4): ``candlecache.resample`` against polars'
``group_by_dynamic``, and ``MarketCache.get_ohlcv(..., from_period=...)`` serving coarse candles
from the finer ones it caches."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import candlecache
from candlecache import MarketCache
from candlecache.ohlcv import _frame
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange

BTC = "BTC/USDT"
EVERY = {"5m": "5m", "1h": "1h", "1d": "1d", "1w": "1w", "1M": "1mo"}


def reference(df: pl.DataFrame, period: str) -> pl.DataFrame:
    """The same aggregation with polars' group_by_dynamic (weeks start on Monday, months on the 1st)."""
    out = (
        df.with_columns(pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC").alias("t"))
        .sort("t")
        .group_by_dynamic("t", every=EVERY[period], start_by="monday" if period == "1w" else "window")
        .agg(
            pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
            pl.col("volume").sum(),
        )
    )
    return out.select(pl.col("t").dt.epoch("ms").alias("time"), "open", "high", "low", "close", "volume")


def candles(start: int, step: int, n: int, seed: int = 0, skip=()) -> pl.DataFrame:
    rows = []
    for i in range(n):
        if i in skip:
            continue
        x = ((i * 7919 + seed * 104729) % 1000) / 10.0
        rows.append((start + i * step, 100 + x, 110 + x, 90 + x, 100 + x / 2, 1.0 + (i % 13)))
    return pl.DataFrame(rows, schema=["time", "open", "high", "low", "close", "volume"], orient="row")


@pytest.mark.parametrize(
    ("fine", "step", "n", "coarse"),
    [
        ("1m", MINUTE, 3 * 1440, "5m"),
        ("1m", MINUTE, 3 * 1440, "1h"),
        ("1h", HOUR, 24 * 70, "1d"),
        ("1d", DAY, 400, "1w"),  # weeks across the new year and month ends
        ("1d", DAY, 400, "1M"),  # months of 28 to 31 days, a leap February
    ],
)
def test_every_period_pair_matches_polars(fine, step, n, coarse):
    start = int(datetime(2023, 12, 20, tzinfo=timezone.utc).timestamp() * 1000)
    if fine == "1m":
        start = T0 - 1440 * MINUTE  # across 2024-01-01
    df = candles(start, step, n, skip={5, 6, 77})
    got = candlecache.resample(df, coarse, from_period=fine)
    assert_frame_equal(got, reference(df, coarse))


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=60 * 24 * 800).map(lambda m: T0 - 400 * DAY + m * MINUTE),
    n=st.integers(min_value=0, max_value=3000),
    seed=st.integers(min_value=0, max_value=10**6),
    gaps=st.sets(st.integers(min_value=0, max_value=3000), max_size=50),
    coarse=st.sampled_from(["5m", "1h", "1d"]),
)
def test_any_minutes_match_polars(start, n, seed, gaps, coarse):
    df = candles(start, MINUTE, n, seed, skip=gaps)
    got = candlecache.resample(df, coarse)
    if df.height == 0:
        assert got.height == 0
    else:
        assert_frame_equal(got, reference(df, coarse))


def test_unsorted_duplicates_extra_columns_and_other_inputs():
    df = candles(T0, MINUTE, 10).with_columns(trades=pl.int_range(0, 10, dtype=pl.Int64))
    shuffled = pl.concat([df.reverse(), df.head(3)])
    got = candlecache.resample(shuffled, "5m")
    assert got["trades"].to_list() == [0 + 1 + 2 + 3 + 4, 5 + 6 + 7 + 8 + 9]
    assert got.drop("trades").equals(candlecache.resample(df.drop("trades"), "5m"))
    assert got.equals(candlecache.resample(df.lazy(), "5m"))
    assert got.equals(candlecache.resample(df.to_arrow(), "5m"))
    assert got.equals(candlecache.resample(df.to_pandas(), "5m"))


def test_bad_arguments_say_what_is_wrong():
    df = candles(T0, DAY, 10)
    with pytest.raises(ValueError, match="unknown period"):
        candlecache.resample(df, "7m")
    with pytest.raises(ValueError, match="1w candles.*not made of whole"):
        candlecache.resample(df, "1M", from_period="1w")
    with pytest.raises(TypeError, match="must be a table"):
        candlecache.resample([1, 2, 3], "1h")
    with pytest.raises(ValueError, match="time"):
        candlecache.resample(pl.DataFrame({"x": [1]}), "1h")


def test_market_cache_serves_hours_from_cached_minutes(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1m", T0, 6 * 60, ex.fetch_ohlcv)  # the first 6 hours, as minutes
        ex.calls.clear()
        hours = cache.get_ohlcv(BTC, "1h", T0, 12, ex.fetch_ohlcv, from_period="1m")
        # Only the missing minutes (hours 6-11) were asked for, as 1m candles.
        assert ex.calls and all(tf == "1m" and since >= T0 + 6 * HOUR for _, tf, since, _ in ex.calls)
        minutes = ex.truth(BTC, "1m", T0, 12 * 60)
        assert_frame_equal(hours, reference(minutes, "1h"))
        assert not (tmp_path / "BTC_USDT_1h").exists(), "nothing is fetched or stored as 1h"
        # end_time works as for get_ohlcv.
        again = cache.get_ohlcv(BTC, "1h", T0, end_time=T0 + 11 * HOUR, fetch_callback=ex.fetch_ohlcv,
                                from_period="1m")
        assert_frame_equal(again, hours)


def test_a_candle_with_a_slot_never_answered_is_dropped_unless_partial(tmp_path):
    # 02:10-02:20 has no candles (a maintenance gap the exchange answers empty: covered);
    # 04:30-04:40 loses its coverage after the fetch (as after a failed refetch): missing.
    ex = MemoryExchange(gaps=[(T0 + 2 * HOUR + 10 * MINUTE, T0 + 2 * HOUR + 20 * MINUTE)])
    with MarketCache(tmp_path) as cache:
        hours = cache.get_ohlcv(BTC, "1h", T0, 6, ex.fetch_ohlcv, from_period="1m")
        assert hours["time"].to_list() == [T0 + h * HOUR for h in range(6)]  # the gap is no hole
        candlecache.forget(tmp_path, BTC, "1m", T0 + 4 * HOUR + 30 * MINUTE, T0 + 4 * HOUR + 39 * MINUTE)
        stored = cache.read(BTC, "1m")
        covered = candlecache.coverage(tmp_path, BTC, "1m")
        strict = _frame(candlecache._core.resample(stored, "1h", "1m", covered))
        assert strict["time"].to_list() == [T0 + h * HOUR for h in (0, 1, 2, 3, 5)]
        assert_frame_equal(strict, hours.filter(pl.col("time") != T0 + 4 * HOUR))
        assert candlecache.resample(stored, "1h").height == 6

        def down(*a, **k):
            raise RuntimeError("exchange down")

        with pytest.raises(RuntimeError, match="exchange down"):
            cache.get_ohlcv(BTC, "1h", T0, 6, down, from_period="1m")
        # A callback that answers again fills the slot: all six, equal to the first answer.
        assert_frame_equal(cache.get_ohlcv(BTC, "1h", T0, 6, ex.fetch_ohlcv, from_period="1m"), hours)


def test_partial_keeps_what_a_failed_range_left(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1m", T0, 90, ex.fetch_ohlcv)
        # 01:30-02:00 never fetched; asked with a callback that returns nothing more.
        got = cache.get_ohlcv(BTC, "1h", T0, 2, lambda *a, **k: [], from_period="1m", partial=True)
        assert got["time"].to_list() == [T0, T0 + HOUR]
        assert got["volume"][1] == ex.truth(BTC, "1m", T0 + HOUR, 30)["volume"].sum()


def test_the_candle_still_forming_is_returned(tmp_path):
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    hour = now - now % HOUR
    ex = MemoryExchange(now=now)
    with MarketCache(tmp_path) as cache:
        got = cache.get_ohlcv(BTC, "1h", hour - 2 * HOUR, 3, ex.fetch_ohlcv, from_period="1m")
    assert got["time"].to_list() == [hour - 2 * HOUR, hour - HOUR, hour]
