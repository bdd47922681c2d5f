"""candlecache driven through a real ccxt.binance pointed at a fake Binance server.

Every call passes ``exchange.fetch_ohlcv`` directly as the callback. The fake server logs each
``/api/v3/klines`` request, so the tests assert how many requests were made and from where.
Ground truth comes from ``fake_binance.expected_frame`` (a pure function of symbol, interval
and open time), not from what the server answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import ccxt
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import candlecache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_binance as fb  # noqa: E402
from fake_binance import BTC_GAP, DAY, HOUR, MINUTE, NEW_LISTED, OLD_DELISTED, add_periods, ms  # noqa: E402

# ------------------------------------------------------------------------------------------
# fixtures (kept here, not in conftest.py, so this file stands alone)
# ------------------------------------------------------------------------------------------


@pytest.fixture
def fake_binance():
    """A fake Binance spot REST server on 127.0.0.1, stopped at teardown."""
    server = fb.FakeBinance().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def exchange(fake_binance):
    """A real ccxt.binance pointed at the fake server, markets loaded, request log cleared."""
    ex = fb.make_exchange(fake_binance)
    fake_binance.reset_log()
    return ex


class Clock:
    """Fake wall clock in epoch ms; drives both candlecache and the fake server via time.time."""

    def __init__(self, now_ms: int):
        self.ms = now_ms

    def set(self, now_ms: int):
        self.ms = now_ms

    def advance(self, delta_ms: int):
        self.ms += delta_ms

    def time(self) -> float:
        return self.ms / 1000.0


@pytest.fixture
def clock(monkeypatch):
    """Monkeypatches time.time (read at call time by candlecache and the fake server)."""
    c = Clock(int(time.time() * 1000))
    monkeypatch.setattr(time, "time", c.time)
    return c


COLS = ["time", "open", "high", "low", "close", "volume"]
BTC = "BTC/USDT"


def get(base_dir, ex, symbol, period, start, count, **kw):
    return candlecache.get_ohlcv_with_cache(base_dir, symbol, period, start, count, ex.fetch_ohlcv, **kw)


def expected(symbol, period, start, count, now_ms=None, revision=0):
    end = add_periods(period, start, count - 1)
    return fb.expected_frame(symbol, period, start, end, now_ms, revision)


def check(df, exp):
    assert isinstance(df, pl.DataFrame)
    assert df.columns == COLS
    assert_frame_equal(df, exp)


def starts(server):
    """startTime of each successful klines request since the last reset, in order."""
    return [int(r["params"]["startTime"]) for r in server.klines_log()]


def requests_for(server, fn):
    """Run fn with a fresh request log; return (result, successful klines requests)."""
    server.reset_log()
    out = fn()
    return out, server.klines_log()


# ------------------------------------------------------------------------------------------
# the fake itself (no candlecache involved)
# ------------------------------------------------------------------------------------------


def test_fake_server_matches_ground_truth_through_ccxt(fake_binance, exchange):
    start = ms(2023, 3, 24, 12)
    rows = exchange.fetch_ohlcv(BTC, "1m", start, 300)
    assert rows == fb.expected_rows(BTC, "1m", start, rows[-1][0])
    assert len(rows) == 300
    assert not any(BTC_GAP[0] <= r[0] < BTC_GAP[1] for r in rows)  # maintenance gap
    assert len(exchange.fetch_ohlcv(BTC, "1m", start, 5000)) == 1000  # ccxt + server cap
    assert [r["params"]["limit"] for r in fake_binance.klines_log()] == ["300", "1000"]


# ------------------------------------------------------------------------------------------
# basics
# ------------------------------------------------------------------------------------------

T = ms(2023, 1, 1)


def test_cold_fetch_equals_ground_truth(tmp_path, fake_binance, exchange):
    df = get(tmp_path, exchange, BTC, "1h", T, 500)
    check(df, expected(BTC, "1h", T, 500))
    assert df.height == 500
    assert starts(fake_binance) == [T]
    folder = tmp_path / "BTC_USDT_1h"
    assert list(folder.glob("*.parquet"))
    assert (folder / "fetch_log.jsonl").is_file()


def test_repeat_call_makes_no_request(tmp_path, fake_binance, exchange):
    first = get(tmp_path, exchange, BTC, "1m", T, 700)
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 700))
    assert reqs == []
    assert_frame_equal(df, first)
    # a sub-range of the cached span needs nothing either
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T + 100 * MINUTE, 50))
    assert reqs == []
    check(df, expected(BTC, "1m", T + 100 * MINUTE, 50))


def test_extending_range_fetches_only_new_part(tmp_path, fake_binance, exchange):
    get(tmp_path, exchange, BTC, "1m", T, 500)
    # forward
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 800))
    assert starts(fake_binance) == [T + 500 * MINUTE]
    check(df, expected(BTC, "1m", T, 800))
    # backward
    s = T - 300 * MINUTE
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 1100))
    assert starts(fake_binance) == [s]
    check(df, expected(BTC, "1m", s, 1100))
    # both ends at once
    s = T - 400 * MINUTE
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 1300))
    assert starts(fake_binance) == [s, T + 800 * MINUTE]
    check(df, expected(BTC, "1m", s, 1300))


def test_hole_inside_cached_span_is_filled(tmp_path, fake_binance, exchange):
    get(tmp_path, exchange, BTC, "1m", T, 100)
    get(tmp_path, exchange, BTC, "1m", T + 300 * MINUTE, 100)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 400))
    assert starts(fake_binance) == [T + 100 * MINUTE]
    check(df, expected(BTC, "1m", T, 400))
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 400))
    assert reqs == []


def test_holes_partly_overlapping_request_are_filled(tmp_path, fake_binance, exchange):
    get(tmp_path, exchange, BTC, "1m", T + 100 * MINUTE, 100)
    get(tmp_path, exchange, BTC, "1m", T + 300 * MINUTE, 100)
    s = T + 50 * MINUTE  # 50 before the first block ... 50 after the second
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 400))
    assert starts(fake_binance) == [T + 50 * MINUTE, T + 200 * MINUTE, T + 400 * MINUTE]
    check(df, expected(BTC, "1m", s, 400))
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 500))
    assert [int(r["params"]["startTime"]) for r in reqs] == [T, T + 450 * MINUTE]


def test_distant_range_fetches_only_itself(tmp_path, fake_binance, exchange):
    get(tmp_path, exchange, BTC, "1h", T, 100)
    far = ms(2023, 3, 1)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1h", far, 50))
    assert starts(fake_binance) == [far]
    check(df, expected(BTC, "1h", far, 50))
    # the span between the two was never fetched: asking for all of it fetches only the middle
    count = (far - T) // HOUR + 50
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1h", T, count))
    st = starts(fake_binance)
    assert st[0] == T + 100 * HOUR
    assert all(T + 100 * HOUR <= s < far for s in st)
    assert len(st) == 2  # 1316 candles in the middle: two pages of at most 1000
    check(df, expected(BTC, "1h", T, count))


def test_pagination_across_1000_row_cap(tmp_path, fake_binance, exchange):
    df = get(tmp_path, exchange, BTC, "1m", T, 2500)
    check(df, expected(BTC, "1m", T, 2500))
    assert starts(fake_binance) == [T, T + 1000 * MINUTE, T + 2000 * MINUTE]
    assert all(int(r["params"]["limit"]) <= 1000 for r in fake_binance.klines_log())


def test_unaligned_start_time(tmp_path, fake_binance, exchange):
    s = T + 30_500  # 30.5 s into a minute
    df = get(tmp_path, exchange, BTC, "1m", s, 100)
    check(df, expected(BTC, "1m", s, 100))
    assert df.height == 99  # the candle containing s opened before s
    assert df["time"][0] == T + MINUTE
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 100))
    assert reqs == []
    s = T + 5 * HOUR + 17 * MINUTE
    df = get(tmp_path, exchange, BTC, "1h", s, 48)
    check(df, expected(BTC, "1h", s, 48))
    assert df["time"][0] == T + 6 * HOUR and df.height == 47
    # the cached 1m candles around are reused by an aligned request
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T + MINUTE, 99))
    assert reqs == []


# ------------------------------------------------------------------------------------------
# ranges answered empty
# ------------------------------------------------------------------------------------------


def _assert_cached_forever(tmp_path, server, ex, symbol, period, start, count):
    df = get(tmp_path, ex, symbol, period, start, count)
    check(df, expected(symbol, period, start, count))
    df2, reqs = requests_for(server, lambda: get(tmp_path, ex, symbol, period, start, count))
    assert reqs == [], f"{symbol} {period} {start} asked again: {reqs}"
    assert_frame_equal(df2, df)
    return df


def test_maintenance_gap_never_asked_again(tmp_path, fake_binance, exchange):
    g0, g1 = BTC_GAP
    inside = g0 + 10 * MINUTE
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, BTC, "1m", inside, 60)
    assert df.height == 0
    s = g0 - 60 * MINUTE
    count = (g1 - s) // MINUTE + 60
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, BTC, "1m", s, count)
    assert df.height == count - (g1 - g0) // MINUTE
    assert df.filter((pl.col("time") >= g0) & (pl.col("time") < g1)).height == 0


def test_before_listing_never_asked_again(tmp_path, fake_binance, exchange):
    sym = "NEW/USDT"
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, sym, "1h", NEW_LISTED - 48 * HOUR, 24)
    assert df.height == 0
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, sym, "1h", NEW_LISTED - 5 * DAY, 10 * 24)
    assert df["time"][0] == NEW_LISTED and df.height == 5 * 24
    # the daily candle of the listing day opens at midnight, before the listing hour
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, sym, "1d", ms(2024, 1, 1), 90)
    assert df["time"][0] == ms(2024, 3, 1)


def test_after_delisting_never_asked_again(tmp_path, fake_binance, exchange):
    sym = "OLD/USDT"
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, sym, "1h", OLD_DELISTED + DAY, 24)
    assert df.height == 0
    df = _assert_cached_forever(tmp_path, fake_binance, exchange, sym, "1h", OLD_DELISTED - 2 * DAY, 5 * 24)
    assert df["time"][-1] == OLD_DELISTED - HOUR and df.height == 48


# ------------------------------------------------------------------------------------------
# the open candle (clock controlled through time.time for both sides)
# ------------------------------------------------------------------------------------------


def test_open_candle_refetched_until_final(tmp_path, fake_binance, exchange, clock):
    t_open = ms(2024, 6, 1, 12, 30)
    s = t_open - 10 * MINUTE
    clock.set(t_open + 15_000)
    df = get(tmp_path, exchange, BTC, "1m", s, 11)
    check(df, expected(BTC, "1m", s, 11, clock.ms, revision=0))
    assert df.height == 11 and df["time"][-1] == t_open
    final_close = fb.candle_row(BTC, "1m", t_open, t_open + MINUTE, 0)[4]
    assert df["close"][-1] != final_close

    # the open candle changes on the exchange: the next call refetches only it
    fake_binance.revision = 1
    clock.advance(20_000)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 11))
    assert starts(fake_binance) == [t_open]
    check(df, expected(BTC, "1m", s, 11, clock.ms, revision=1))

    # closed on the exchange, but inside candlecache's 2 s grace: still refetched
    clock.set(t_open + MINUTE + 1000)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 11))
    assert starts(fake_binance) == [t_open]
    check(df, expected(BTC, "1m", s, 11, clock.ms))
    assert df["close"][-1] == final_close
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 11))
    assert len(reqs) == 1

    # past the grace: fetched once more, then final for good
    clock.set(t_open + MINUTE + 2000)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 11))
    assert starts(fake_binance) == [t_open]
    check(df, expected(BTC, "1m", s, 11, clock.ms))
    clock.advance(HOUR)
    fake_binance.revision = 2
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 11))
    assert reqs == []
    check(df, expected(BTC, "1m", s, 11, clock.ms))


def test_future_slots_fetched_once_they_exist(tmp_path, fake_binance, exchange, clock):
    t_open = ms(2024, 6, 1, 12, 30)
    s = t_open - 5 * MINUTE
    clock.set(t_open + 15_000)
    df = get(tmp_path, exchange, BTC, "1m", s, 10)  # ends at 12:34, now is 12:30:15
    check(df, expected(BTC, "1m", s, 10, clock.ms))
    assert df.height == 6
    clock.set(t_open + 6 * MINUTE)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 10))
    assert starts(fake_binance) == [t_open]
    check(df, expected(BTC, "1m", s, 10, clock.ms))
    assert df.height == 10
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", s, 10))
    assert reqs == []


# ------------------------------------------------------------------------------------------
# enable_cache=False
# ------------------------------------------------------------------------------------------


def test_enable_cache_false_fetches_returns_and_stores(tmp_path, fake_binance, exchange):
    exp = expected(BTC, "5m", T, 1500)
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "5m", T, 1500, enable_cache=False))
    check(df, exp)
    assert len(reqs) == 2
    # never reads the cache: fetches again
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "5m", T, 1500, enable_cache=False))
    check(df, exp)
    assert len(reqs) == 2
    # but what it fetched was stored and is served from the cache
    assert list((tmp_path / "BTC_USDT_5m").glob("*.parquet"))
    df, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "5m", T, 1500))
    assert reqs == []
    check(df, exp)


# ------------------------------------------------------------------------------------------
# every period
# ------------------------------------------------------------------------------------------

PERIODS = ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"]
P_START = ms(2018, 1, 1)  # a Monday, the 1st of a month, and a multiple of 3 days since the epoch
P_LAST = ms(2024, 12, 1)


def _count(period):
    n = 0
    t = P_START
    while n < 1200 and t <= P_LAST:
        n += 1
        t = fb.next_open(period, t)
    return n


@pytest.mark.parametrize("period", PERIODS)
def test_every_period(tmp_path, fake_binance, exchange, period):
    count = _count(period)
    df = get(tmp_path, exchange, BTC, period, P_START, count)
    check(df, expected(BTC, period, P_START, count))
    assert df.height == count
    pages = -(-count // 1000)
    assert len(fake_binance.klines_log()) == pages
    times = [datetime.fromtimestamp(t / 1000, tz=timezone.utc) for t in df["time"]]
    if period == "1w":
        assert all(d.weekday() == 0 and d.hour == 0 and d.minute == 0 for d in times)
    if period == "1M":
        assert all(d.day == 1 and d.hour == 0 for d in times)
        assert times[1] == datetime(2018, 2, 1, tzinfo=timezone.utc)
    if period == "3d":
        assert all(t % (3 * DAY) == 0 for t in df["time"])
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, period, P_START, count))
    assert reqs == []


@pytest.mark.parametrize("period", ["3d", "1w", "1M"])
def test_unaligned_start_coarse_periods(tmp_path, fake_binance, exchange, period):
    s = ms(2019, 5, 2, 7, 45)  # a Thursday, the 2nd of the month, 07:45
    df = get(tmp_path, exchange, BTC, period, s, 20)
    check(df, expected(BTC, period, s, 20))
    assert df.height == 19
    assert df["time"][0] == fb.align_up(period, s)
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, period, s, 20))
    assert reqs == []


# ------------------------------------------------------------------------------------------
# several processes
# ------------------------------------------------------------------------------------------


def test_four_processes_fetch_once(tmp_path, fake_binance):
    fake_binance.delay = 0.1  # the first fetcher holds the lock for several round trips
    base = tmp_path / "cache"
    go = tmp_path / "go"
    procs, outs, readies = [], [], []
    try:
        for i in range(4):
            out, ready = tmp_path / f"out{i}.parquet", tmp_path / f"ready{i}"
            outs.append(out)
            readies.append(ready)
            args = [fake_binance.url, str(base), BTC, "1m", str(T), "2500", str(out), str(ready), str(go)]
            procs.append(
                subprocess.Popen(
                    [sys.executable, fb.__file__, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            assert time.monotonic() < deadline, "workers not ready"
            time.sleep(0.01)
        fake_binance.reset_log()
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert starts(fake_binance) == [T, T + 1000 * MINUTE, T + 2000 * MINUTE]
    exp = expected(BTC, "1m", T, 2500)
    for out in outs:
        check(pl.read_parquet(out), exp)


# ------------------------------------------------------------------------------------------
# exchange errors
# ------------------------------------------------------------------------------------------


def test_429_raises_ccxt_exception_then_recovers(tmp_path, fake_binance, exchange):
    fake_binance.fail_next(1, 429)
    with pytest.raises(ccxt.DDoSProtection) as ei:
        get(tmp_path, exchange, BTC, "1m", T, 2500)
    assert type(ei.value) is ccxt.DDoSProtection  # what ccxt.binance raises for HTTP 429
    assert "-1003" in str(ei.value)
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 2500))
    assert starts(fake_binance) == [T, T + 1000 * MINUTE, T + 2000 * MINUTE]
    check(df, expected(BTC, "1m", T, 2500))


@pytest.mark.parametrize(
    "body,exc",
    [
        (None, ccxt.ExchangeError),  # JSON {"code": -1008, ...}
        ("<html><body><h1>503 Service Unavailable</h1></body></html>", ccxt.ExchangeNotAvailable),
    ],
)
def test_503_mid_pagination_keeps_pages_and_refetches_only_missing(tmp_path, fake_binance, exchange, body, exc):
    fake_binance.fail_next(1, 503, after=1, body=body)
    with pytest.raises(exc) as ei:
        get(tmp_path, exchange, BTC, "1m", T, 2500)
    assert type(ei.value) is exc
    assert starts(fake_binance) == [T]  # the first page was served, the second failed
    df, _ = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 2500))
    assert starts(fake_binance) == [T + 1000 * MINUTE, T + 2000 * MINUTE]
    check(df, expected(BTC, "1m", T, 2500))
    _, reqs = requests_for(fake_binance, lambda: get(tmp_path, exchange, BTC, "1m", T, 2500))
    assert reqs == []


def test_callback_exception_is_the_same_object(tmp_path, fake_binance, exchange):
    seen = []

    def cb(*args, **kwargs):
        try:
            return exchange.fetch_ohlcv(*args, **kwargs)
        except Exception as e:
            seen.append(e)
            raise

    fake_binance.fail_next(1, 429)
    with pytest.raises(ccxt.DDoSProtection) as ei:
        candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1m", T, 10, cb)
    assert len(seen) == 1 and ei.value is seen[0]
