"""A wrong answer is not cached forever (issue 8, "undo and protect").

An empty answer is trusted for an hour, then asked once more; the second empty answer is
trusted for good. ``candlecache.forget`` drops coverage (and rows, with ``drop_rows``) at once.
The clock is candlecache's ``time.time()``, patched here.
"""

from __future__ import annotations

import json

import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import forget, get_ohlcv_with_cache, read_cached
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange

BTC = "BTC/USDT"
NOW = T0 + 30 * DAY


class Clock:
    def __init__(self, monkeypatch, ms):
        self.ms = ms
        monkeypatch.setattr(candlecache.ohlcv.time, "time", lambda: self.ms / 1000)


class Outage:
    """A callback in the common pattern ``except ccxt.NetworkError: return []``."""

    def __init__(self, ex):
        self.ex = ex
        self.down = False
        self.calls = 0

    def __call__(self, symbol, period, since, limit, **kw):
        self.calls += 1
        if self.down:
            return []
        return self.ex.fetch_ohlcv(symbol, period, since, limit)


def get(tmp_path, cb, start=T0, count=48, period="1h"):
    return get_ohlcv_with_cache(tmp_path, BTC, period, start, count, cb)


def test_an_outage_answered_with_an_empty_list_heals_after_an_hour(tmp_path, monkeypatch):
    clock = Clock(monkeypatch, NOW)
    ex = MemoryExchange(now=NOW)
    cb = Outage(ex)
    cb.down = True
    assert get(tmp_path, cb).height == 0
    assert cb.calls == 1
    cb.down = False
    clock.ms += 30 * MINUTE
    assert get(tmp_path, cb).height == 0  # trusted for an hour...
    assert cb.calls == 1
    clock.ms += 31 * MINUTE
    assert_frame_equal(get(tmp_path, cb), ex.truth(BTC, "1h", T0, 48))  # ...then asked again
    calls = cb.calls
    clock.ms += 10 * DAY
    assert_frame_equal(get(tmp_path, cb), ex.truth(BTC, "1h", T0, 48))
    assert cb.calls == calls
    lines = (candlecache.data_dir(tmp_path, BTC, "1h") / "fetch_log.jsonl").read_text().splitlines()
    assert all(json.loads(line)["data_start"] >= T0 for line in lines)


def test_a_real_gap_costs_one_extra_request_ever(tmp_path, monkeypatch):
    clock = Clock(monkeypatch, NOW)
    delisted = T0 + 10 * HOUR
    ex = MemoryExchange(delisted=delisted, now=NOW)
    assert get(tmp_path, ex.fetch_ohlcv).height == 10
    first = len(ex.calls)
    for step in (MINUTE, 59 * MINUTE, MINUTE, DAY, 100 * DAY):
        clock.ms += step
        assert get(tmp_path, ex.fetch_ohlcv).height == 10
    assert len(ex.calls) == first + 1
    assert ex.calls[-1][2] == delisted


def test_forget_makes_the_next_call_fetch_again_at_once(tmp_path, monkeypatch):
    Clock(monkeypatch, NOW)
    ex = MemoryExchange(now=NOW)
    cb = Outage(ex)
    cb.down = True
    assert get(tmp_path, cb).height == 0
    cb.down = False
    assert forget(tmp_path, BTC, "1h") == 0
    assert_frame_equal(get(tmp_path, cb), ex.truth(BTC, "1h", T0, 48))
    assert cb.calls == 2


def test_forget_a_range_refetches_only_that_range(tmp_path, monkeypatch):
    Clock(monkeypatch, NOW)
    ex = MemoryExchange(now=NOW)
    get(tmp_path, ex.fetch_ohlcv)
    ex.calls.clear()
    # Candle times 10:00..12:00 inclusive, given as an unaligned start and an ISO end.
    assert forget(tmp_path, BTC, "1h", T0 + 9 * HOUR + 1, "2024-01-01T12:00:00Z") == 0
    assert read_cached(tmp_path, BTC, "1h").height == 48  # the rows stay without drop_rows
    assert_frame_equal(get(tmp_path, ex.fetch_ohlcv), ex.truth(BTC, "1h", T0, 48))
    assert [(since, limit) for _, _, since, limit in ex.calls] == [(T0 + 10 * HOUR, 3)]


def test_forget_with_drop_rows_removes_the_candles(tmp_path, monkeypatch):
    Clock(monkeypatch, NOW)
    ex = MemoryExchange(now=NOW)
    get(tmp_path, ex.fetch_ohlcv, count=24 * 40, period="1m")  # spans partitions and deltas
    get(tmp_path, ex.fetch_ohlcv, start=T0 + 24 * 40 * MINUTE, count=10, period="1m")
    removed = forget(tmp_path, BTC, "1m", T0 + 100 * MINUTE, T0 + 199 * MINUTE, drop_rows=True)
    assert removed == 100
    left = read_cached(tmp_path, BTC, "1m")
    assert left.height == 24 * 40 + 10 - 100
    assert not left["time"].is_between(T0 + 100 * MINUTE, T0 + 199 * MINUTE).any()
    ex.calls.clear()
    assert_frame_equal(get(tmp_path, ex.fetch_ohlcv, count=24 * 40 + 10, period="1m"),
                       ex.truth(BTC, "1m", T0, 24 * 40 + 10))
    assert [(since, limit) for _, _, since, limit in ex.calls] == [(T0 + 100 * MINUTE, 100)]
    # Everything, rows included.
    assert forget(tmp_path, BTC, "1m", drop_rows=True) == 24 * 40 + 10
    assert read_cached(tmp_path, BTC, "1m").height == 0


def test_forget_what_was_never_cached_creates_nothing(tmp_path):
    assert forget(tmp_path / "none", BTC, "1h", "2024-01-01", "2024-01-02", drop_rows=True) == 0
    assert not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="seconds"):
        forget(tmp_path, BTC, "1h", 1704067200)
    with pytest.raises(ValueError, match="unknown period"):
        forget(tmp_path, BTC, "2h30m")
    with pytest.raises(ValueError, match="before start_time"):
        forget(tmp_path, BTC, "1h", T0, T0 - HOUR)
