"""``get_ohlcv_with_cache_async`` with ccxt's async client against the fake Binance server, and
a coroutine function given to the sync API (issue 8, "async")."""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

import pytest
from polars.testing import assert_frame_equal

import candlecache
from memory_exchange import HOUR, T0, MemoryExchange

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_binance as fb  # noqa: E402
from fake_binance import add_periods, ms  # noqa: E402

ccxt_async = pytest.importorskip("ccxt.async_support")

BTC = "BTC/USDT"
T = ms(2023, 1, 1)


from test_ccxt_exchange import fake_binance  # noqa: E402,F401 - the fixture


async def async_exchange(server):
    ex = fb.make_exchange(server, module=ccxt_async)
    await ex.load_markets()
    return ex


def test_ccxt_async_exchange_fills_the_cache_without_blocking_the_loop(tmp_path, fake_binance):
    async def main():
        ex = await async_exchange(fake_binance)
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.create_task(ticker())
        try:
            fake_binance.reset_log()
            df = await candlecache.get_ohlcv_with_cache_async(tmp_path, BTC, "1m", T, 2500, ex.fetch_ohlcv)
            first = len(fake_binance.klines_log())
            again = await candlecache.get_ohlcv_with_cache_async(
                tmp_path, BTC, "1m", "2023-01-01", fetch_callback=ex.fetch_ohlcv,
                end_time=T + 2499 * 60_000,
            )
            both = await asyncio.gather(*(
                candlecache.get_ohlcv_with_cache_async(tmp_path, sym, "1h", T, 100, ex.fetch_ohlcv)
                for sym in (BTC, "ETH/USDT")
            ))
        finally:
            done.set()
            await tick
            await ex.close()
        return df, first, again, both, ticks

    df, first, again, both, ticks = asyncio.run(main())
    assert_frame_equal(df, fb.expected_frame(BTC, "1m", T, add_periods("1m", T, 2499), None, 0))
    assert first == 3  # 1000-candle pages
    assert_frame_equal(again, df)
    assert_frame_equal(both[1], fb.expected_frame("ETH/USDT", "1h", T, add_periods("1h", T, 99), None, 0))
    assert ticks > 0


def test_async_variant_takes_a_plain_callback_and_propagates_errors(tmp_path):
    ex = MemoryExchange()

    async def failing(symbol, period, since, limit, **kw):
        raise ccxt_async.NetworkError("exchange down")

    async def main():
        df = await candlecache.get_ohlcv_with_cache_async(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)
        with pytest.raises(ccxt_async.NetworkError, match="exchange down"):
            await candlecache.get_ohlcv_with_cache_async(tmp_path / "x", BTC, "1h", T0, 24, failing)
        with pytest.raises(ValueError, match="seconds"):
            await candlecache.get_ohlcv_with_cache_async(tmp_path, BTC, "1h", T0 // 1000, 24, ex.fetch_ohlcv)
        return df

    assert_frame_equal(asyncio.run(main()), ex.truth(BTC, "1h", T0, 24))


def test_the_sync_function_given_a_coroutine_function_names_the_async_variant(tmp_path):
    async def fetch(symbol, period, since, limit, **kw):
        return []

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with pytest.raises(TypeError, match="get_ohlcv_with_cache_async"):
            candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, fetch)
        # A plain function that returns a coroutine (a lambda around an async method).
        with pytest.raises(TypeError, match="get_ohlcv_with_cache_async"):
            candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, lambda *a, **k: fetch(*a, **k))
    assert candlecache.read_cached(tmp_path, BTC, "1h", T0, T0 + 23 * HOUR).height == 0


def test_market_cache_get_ohlcv_async_awaits_a_coroutine_callback(tmp_path):
    ex = MemoryExchange()

    async def fetch(symbol, period, since, limit, **kw):
        await asyncio.sleep(0)
        return ex.fetch_ohlcv(symbol, period, since, limit)

    async def main():
        with candlecache.MarketCache(tmp_path) as cache:
            df = await cache.get_ohlcv_async(BTC, "1h", T0, 24, fetch, run_id="bt-async")
            again = await cache.get_ohlcv_async(BTC, "1h", T0, 24, fetch)
            return df, again, cache.stats(), cache.runs()

    df, again, stats, runs = asyncio.run(main())
    assert_frame_equal(df, ex.truth(BTC, "1h", T0, 24))
    assert_frame_equal(again, df)
    assert (stats["hits"], stats["misses"]) == (1, 1)
    assert runs["run_id"].to_list() == ["bt-async"]
