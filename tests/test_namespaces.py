"""Namespaces (issue 11, part 1): one folder per exchange, ``base_dir/{namespace}/{symbol}_{period}``."""

from __future__ import annotations

import asyncio

import ccxt
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import MarketCache
from memory_exchange import HOUR, T0, MemoryExchange

BTC = "BTC/USDT"


class Shifted(MemoryExchange):
    """Another exchange: the same times, other prices."""

    def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None, params=None):
        rows = super().fetch_ohlcv(symbol, timeframe, since, limit, params)
        return [[t, o + 1000, h + 1000, lo + 1000, c + 1000, v] for t, o, h, lo, c, v in rows]


class FakeBinance(ccxt.binance):
    """A real ccxt exchange class whose fetch_ohlcv answers from memory (no network)."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryExchange()

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params={}):  # noqa: B006 - ccxt's signature
        return self.memory.fetch_ohlcv(symbol, timeframe, since, limit)


def test_two_exchanges_in_two_namespaces_never_mix(tmp_path):
    a, b = MemoryExchange(), Shifted()
    got_a = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, a.fetch_ohlcv, namespace="binance")
    got_b = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, b.fetch_ohlcv, namespace="okx")
    assert (tmp_path / "binance" / "BTC_USDT_1h").is_dir() and (tmp_path / "okx" / "BTC_USDT_1h").is_dir()
    assert not (tmp_path / "BTC_USDT_1h").exists()
    assert ((got_b["close"] - got_a["close"] - 1000).abs() < 1e-6).all()
    assert_frame_equal(candlecache.read_cached(tmp_path, BTC, "1h", namespace="okx"), got_b)
    assert_frame_equal(candlecache.read_cached(tmp_path, BTC, "1h", namespace="binance"), got_a)
    assert candlecache.read_cached(tmp_path, BTC, "1h").height == 0  # the drop-in layout is apart
    a.calls.clear()
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, a.fetch_ohlcv, namespace="binance")
    assert a.calls == []
    counts = candlecache.scan_ohlcv(tmp_path).group_by("namespace").len().sort("namespace").collect().rows()
    assert counts == [("binance", 24), ("okx", 24)]


def test_auto_takes_the_ccxt_exchange_id(tmp_path):
    ex = FakeBinance()
    df = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv, namespace="auto")
    assert df.height == 24 and (tmp_path / "binance" / "BTC_USDT_1h").is_dir()
    with MarketCache(tmp_path, namespace="auto") as cache:
        assert_frame_equal(cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv), df)
        assert_frame_equal(cache.read(BTC, "1h", namespace="binance"), df)
        with pytest.raises(ValueError, match="auto"):
            cache.read(BTC, "1h")
    with pytest.raises(ValueError, match="bound method"):
        candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, MemoryExchange().fetch_ohlcv.__func__.__get__(object()),
                                         namespace="auto")
    with pytest.raises(ValueError, match="bound method"):
        candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, lambda *a, **k: [], namespace="auto")


def test_auto_through_the_async_functions(tmp_path):
    ex = FakeBinance()

    async def main():
        a = await candlecache.get_ohlcv_with_cache_async(tmp_path, BTC, "1h", T0, 12, ex.fetch_ohlcv, namespace="auto")
        with MarketCache(tmp_path, namespace="auto") as cache:
            b = await cache.get_ohlcv_async(BTC, "1h", T0, 12, ex.fetch_ohlcv)
        return a, b

    a, b = asyncio.run(main())
    assert_frame_equal(a, b)
    assert (tmp_path / "binance" / "BTC_USDT_1h").is_dir()


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 65, "binance_1m", "1h", "a b"])
def test_bad_names_are_refused(tmp_path, bad):
    ex = MemoryExchange()
    with pytest.raises(ValueError, match="namespace"):
        candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv, namespace=bad)
    with pytest.raises(ValueError, match="namespace"):
        MarketCache(tmp_path, namespace=bad)
    with pytest.raises(TypeError, match="namespace"):
        candlecache.read_cached(tmp_path, BTC, "1h", namespace=3)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_a_market_cache_in_a_namespace_verifies_clears_and_limits_it(tmp_path):
    ex = MemoryExchange()
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)  # drop-in layout
    with MarketCache(tmp_path, namespace="okx") as okx:
        okx.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv, run_id="bt-1")
        assert okx.verify().height == 0
        assert okx.runs().select("symbol", "namespace", "partitions").rows() == [("BTC_USDT", "okx", 1)]
        assert okx.clear(run_id="bt-1") == 48 and okx.read(BTC, "1h").height == 0
        okx.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv)
        assert okx.stats()["entries"] == 2  # statistics and size are the whole directory's
        assert okx.vacuum(keep_since=T0 + 24 * HOUR) == 24
        assert okx.clear() == 24
    assert candlecache.read_cached(tmp_path, BTC, "1h").height == 24, "the drop-in layout untouched"
    with MarketCache(tmp_path) as every:
        every.get_ohlcv(BTC, "1h", T0, 24, Shifted().fetch_ohlcv, namespace="okx")
        assert every.clear(BTC, "1h") == 48, "no namespace: every namespace"


def test_the_size_limit_counts_and_evicts_namespaced_partitions(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, cold_cache_mb=1.0, namespace="okx") as cache:
        for month in range(3):
            cache.get_ohlcv(BTC, "1m", T0 + month * 31 * 24 * HOUR, 31 * 1440, ex.fetch_ohlcv)
        assert cache.stats()["partitions_evicted"] > 0
        left = pl.concat([cache.read(BTC, "1m")])
        assert left.height > 0
        covered = candlecache.coverage(tmp_path / "okx", BTC, "1m")
        assert sum(b - a for a, b in covered) // 60_000 == left.height
