"""Times as users write them: epoch ms, floats, datetimes, dates, ISO strings, numpy and pandas
times, ``end_time`` instead of ``count`` — and numbers in the wrong unit caught before anything
is fetched or written (issue 8, "natural time inputs")."""

from __future__ import annotations

import inspect
import time
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import get_ohlcv_with_cache, read_cached
from memory_exchange import HOUR, MINUTE, T0, MemoryExchange

BTC = "BTC/USDT"


def fetch(tmp_path, ex, start, count=None, period="1h", **kw):
    return get_ohlcv_with_cache(tmp_path, BTC, period, start, count, ex.fetch_ohlcv, **kw)


@pytest.mark.parametrize(
    "start",
    [
        T0,
        float(T0),
        float(T0) + 0.75,  # time.time() * 1000 has a fraction: dropped
        datetime(2024, 1, 1),  # naive: UTC
        datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))),
        date(2024, 1, 1),
        "2024-01-01",
        "2024-01-01T00:00:00Z",
        "2024-01-01 08:00:00+08:00",
        np.datetime64("2024-01-01T00:00:00"),
        np.int64(T0),
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-01-01 09:00", tz="Asia/Tokyo"),
    ],
    ids=lambda v: f"{type(v).__name__}:{v}",
)
def test_every_form_of_a_time_means_the_same_candles(tmp_path, start):
    ex = MemoryExchange()
    assert_frame_equal(fetch(tmp_path, ex, start, 24), ex.truth(BTC, "1h", T0, 24))
    assert_frame_equal(read_cached(tmp_path, BTC, "1h", start, T0 + 23 * HOUR), ex.truth(BTC, "1h", T0, 24))


@pytest.mark.parametrize(
    "value, unit, meant",
    [
        (T0 // 1000, "seconds", T0),
        pytest.param(None, "seconds", None, id="now-in-seconds"),  # time.time() at run time
        (T0 * 1000, "microseconds", T0),
        (T0 * 1_000_000, "nanoseconds", T0),
        (2**62, "nanoseconds", 2**62 // 10**6),
    ],
)
def test_a_number_in_the_wrong_unit_is_refused_with_the_ms_meant(tmp_path, value, unit, meant):
    # Collected ids must not depend on the clock (pytest-xdist workers compare them).
    value = time.time() if value is None else value
    ex = MemoryExchange()
    with pytest.raises(ValueError, match=unit) as info:
        fetch(tmp_path / "c", ex, value, 10)
    if meant is not None:
        assert f"pass {meant}" in str(info.value)
    assert ex.calls == []
    assert not (tmp_path / "c").exists(), "a call that failed on its input created files"
    with pytest.raises(ValueError, match=unit):
        read_cached(tmp_path, BTC, "1h", value)


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("first of January", ValueError, "ISO-8601"),
        (float("nan"), ValueError, "finite"),
        (pd.NaT, ValueError, "NaT"),
        (np.datetime64("NaT"), ValueError, "NaT"),
        (True, TypeError, "bool"),
        (None, TypeError, "epoch ms"),
        ([T0], TypeError, "list"),
    ],
)
def test_what_is_not_a_time_says_what_to_pass(tmp_path, value, error, match):
    ex = MemoryExchange()
    with pytest.raises(error, match=match):
        fetch(tmp_path, ex, value, 10)
    assert ex.calls == []


def test_end_time_instead_of_count_is_inclusive(tmp_path):
    ex = MemoryExchange()
    df = fetch(tmp_path, ex, "2024-01-01", end_time="2024-01-01T23:00:00Z")
    assert_frame_equal(df, ex.truth(BTC, "1h", T0, 24))
    # An unaligned start: the candle at end_time itself is still included.
    df = fetch(tmp_path, ex, T0 + 30 * MINUTE, end_time=T0 + 5 * HOUR)
    assert df["time"].to_list() == [T0 + h * HOUR for h in range(1, 6)]
    # end_time between two candles: up to the last candle opening at or before it.
    df = fetch(tmp_path, ex, T0, end_time=T0 + 5 * HOUR + 59 * MINUTE)
    assert df["time"].to_list() == [T0 + h * HOUR for h in range(6)]
    # end_time == start_time: one candle.
    assert fetch(tmp_path, ex, T0, end_time=T0).height == 1


def test_end_time_for_calendar_months_and_weeks(tmp_path):
    ex = MemoryExchange()
    df = fetch(tmp_path, ex, "2023-01-01", period="1M", end_time=datetime(2023, 12, 31))
    assert df.height == 12
    assert_frame_equal(df, fetch(tmp_path, ex, "2023-01-01", 12, period="1M"))
    df = fetch(tmp_path, ex, "2024-01-01", period="1w", end_time="2024-01-31")  # Mondays
    assert df["time"].to_list() == [T0 + d * 86_400_000 for d in (0, 7, 14, 21, 28)]


def test_count_and_end_time_one_or_the_other(tmp_path):
    ex = MemoryExchange()
    with pytest.raises(TypeError, match="both"):
        fetch(tmp_path, ex, T0, 10, end_time=T0 + HOUR)
    with pytest.raises(TypeError, match="neither"):
        get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, fetch_callback=ex.fetch_ohlcv)
    with pytest.raises(ValueError, match="before start_time"):
        fetch(tmp_path, ex, T0, end_time=T0 - HOUR)
    with pytest.raises(TypeError, match="fetch_callback is required"):
        get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 10)
    assert ex.calls == []


def test_a_count_too_large_is_a_value_error_not_an_overflow(tmp_path):
    ex = MemoryExchange()
    with pytest.raises(ValueError, match="count"):
        fetch(tmp_path, ex, T0, 10**19)
    assert ex.calls == []


def test_the_compat_entry_keeps_the_original_signature():
    from cache_tool import entry

    params = list(inspect.signature(entry.get_ohlcv_with_cache).parameters.values())
    assert [p.name for p in params[:6]] == ["base_dir", "symbol", "period", "start_time", "count", "fetch_callback"]
    assert all(p.default is inspect.Parameter.empty for p in params[:6])
    assert "end_time" in inspect.signature(candlecache.get_ohlcv_with_cache).parameters
