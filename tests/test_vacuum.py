"""Retention (issue 11, part 2): ``MarketCache.vacuum`` and ``candlecache vacuum``."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import MarketCache
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange

BTC = "BTC/USDT"
HERE = Path(__file__).parent


def test_vacuum_removes_exactly_the_candles_before_the_cutoff_and_they_come_back(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1m", T0 - 40 * DAY, 70 * 1440, ex.fetch_ohlcv)  # Nov 22 .. Jan 31: 3 months
        cache.get_ohlcv(BTC, "1h", T0 - 40 * DAY, 70 * 24, ex.fetch_ohlcv)
        cutoff = T0 + 10 * DAY + 7 * MINUTE + 30_000  # mid-candle: the candle opening before it goes
        removed = cache.vacuum(keep_since=cutoff, period="1m")
        first_kept = T0 + 10 * DAY + 8 * MINUTE
        assert removed == (first_kept - (T0 - 40 * DAY)) // MINUTE
        left = cache.read(BTC, "1m")
        assert left["time"].min() == first_kept
        assert_frame_equal(left, ex.truth(BTC, "1m", first_kept, (T0 + 30 * DAY - first_kept) // MINUTE))
        folder = tmp_path / "BTC_USDT_1m"
        assert sorted(p.name.split(".")[0] for p in folder.glob("*.parquet")) == ["2024-01"] * len(list(folder.glob("*.parquet")))
        assert cache.read(BTC, "1h").height == 70 * 24, "other periods untouched"
        assert cache.verify().height == 0
        # A later request refetches only what was removed.
        ex.calls.clear()
        again = cache.get_ohlcv(BTC, "1m", T0 - 40 * DAY, 70 * 1440, ex.fetch_ohlcv)
        assert_frame_equal(again, ex.truth(BTC, "1m", T0 - 40 * DAY, 70 * 1440))
        assert ex.calls and all(since < first_kept for _, _, since, _ in ex.calls)


def test_keep_as_an_age_and_a_timedelta(tmp_path):
    now = int(time.time() * 1000)
    ex = MemoryExchange(now=now)
    start = now - now % HOUR - 10 * DAY
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1h", start, 10 * 24, ex.fetch_ohlcv)
        assert cache.vacuum(keep="7d") == pytest.approx(3 * 24, abs=1)
        assert cache.vacuum(keep=timedelta(days=2)) == pytest.approx(5 * 24, abs=1)
        assert cache.read(BTC, "1h").height == pytest.approx(2 * 24, abs=1)
        assert cache.vacuum(keep="30d") == 0


@pytest.mark.parametrize("bad", [90, "90 days", "d", "-5d", object()])
def test_bad_ages_are_refused(tmp_path, bad):
    with MarketCache(tmp_path) as cache, pytest.raises(ValueError, match="keep"):
        cache.vacuum(keep=bad)


def test_keep_or_keep_since_not_both(tmp_path):
    with MarketCache(tmp_path) as cache:
        with pytest.raises(TypeError, match="either"):
            cache.vacuum()
        with pytest.raises(TypeError, match="both"):
            cache.vacuum(keep="1d", keep_since=T0)


def test_the_cli_verb(tmp_path):
    ex = MemoryExchange()
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1d", T0, 20, ex.fetch_ohlcv)
    out = subprocess.run([sys.executable, "-m", "candlecache", "vacuum", str(tmp_path), "--keep-since", "2024-01-11", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"candles_removed": 10}
    out = subprocess.run([sys.executable, "-m", "candlecache", "vacuum", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--keep" in out.stderr


VACUUMER = r"""
import sys
sys.path.insert(0, %r)
import candlecache
from memory_exchange import MemoryExchange, T0, DAY
base = sys.argv[1]
ex = MemoryExchange()
with candlecache.MarketCache(base, hot_cache_mb=0) as cache:
    step = 0
    while True:
        cache.get_ohlcv("BTC/USDT", "1m", T0 - 60 * DAY, 90 * 1440, ex.fetch_ohlcv)
        step = (step + 7) %% 80
        cache.vacuum(keep_since=T0 - 60 * DAY + step * DAY)
""" % str(HERE)


def test_kill_9_during_vacuum_loses_nothing_covered(tmp_path):
    rnd = random.Random(3)
    ex = MemoryExchange()
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", VACUUMER, str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1.5 + rnd.random() * 2)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        with MarketCache(tmp_path, hot_cache_mb=0) as cache:
            assert cache.verify().height == 0
            for a, b in candlecache.coverage(tmp_path, BTC, "1m"):
                got = cache.read(BTC, "1m", a, b - MINUTE)
                assert_frame_equal(got, ex.truth(BTC, "1m", a, (b - a) // MINUTE))
            stored = cache.read(BTC, "1m")
            assert stored["time"].is_unique().all()
    with MarketCache(tmp_path) as cache:
        df = cache.get_ohlcv(BTC, "1m", T0 - 60 * DAY, 90 * 1440, ex.fetch_ohlcv)
        assert_frame_equal(df, ex.truth(BTC, "1m", T0 - 60 * DAY, 90 * 1440))
