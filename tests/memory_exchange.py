"""An in-memory exchange for tests: deterministic candles, a listing, a gap, a page cap."""

from __future__ import annotations

import hashlib
import struct

import polars as pl

import candlecache

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def candle(symbol: str, period: str, t: int) -> list:
    h = hashlib.blake2b(f"{symbol}|{period}|{t}".encode(), digest_size=16).digest()
    a, b, c, d = struct.unpack("<IIII", h)
    base = 100.0 + (a % 10_000) / 100.0
    high = base + (b % 500) / 100.0
    low = base - (c % 500) / 100.0
    close = low + (high - low) * ((d % 1000) / 1000.0)
    return [t, base, high, low, close, float(d % 100_000) / 10.0]


class MemoryExchange:
    """``fetch_ohlcv(symbol, timeframe, since, limit)`` in ccxt's shape, counting calls."""

    def __init__(self, *, listed=None, delisted=None, gaps=(), cap=1000, now=None):
        self.listed = listed
        self.delisted = delisted
        self.gaps = list(gaps)
        self.cap = cap
        self.now = now
        self.calls: list[tuple[str, str, int, int]] = []

    def exists(self, t: int, period: str) -> bool:
        if self.listed is not None and t < self.listed:
            return False
        if self.delisted is not None and t >= self.delisted:
            return False
        if self.now is not None and t > self.now:
            return False
        return not any(a <= t < b for a, b in self.gaps)

    def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None, params=None):
        self.calls.append((symbol, timeframe, since, limit))
        limit = min(limit or self.cap, self.cap)
        out = []
        t = candlecache._core.period_floor(timeframe, since)
        if t < since:
            t = candlecache._core.period_add(timeframe, t, 1)
        horizon = since + 400 * DAY * 40
        while len(out) < limit and t < horizon:
            if self.delisted is not None and t >= self.delisted:
                break
            if self.now is not None and t > self.now:
                break
            if self.exists(t, timeframe):
                out.append(candle(symbol, timeframe, t))
            t = candlecache._core.period_add(timeframe, t, 1)
        return out

    def truth(self, symbol: str, period: str, start: int, count: int) -> pl.DataFrame:
        end = candlecache._core.period_add(period, start, count - 1)
        t = candlecache._core.period_floor(period, start)
        if t < start:
            t = candlecache._core.period_add(period, t, 1)
        rows = []
        while t <= end:
            if self.exists(t, period):
                rows.append(candle(symbol, period, t))
            t = candlecache._core.period_add(period, t, 1)
        return pl.DataFrame(
            rows,
            schema={"time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64},
            orient="row",
        )
