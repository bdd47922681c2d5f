"""Tiered downsampling (issue 11, part 3): ``MarketCache.compact_tiers`` and ``candlecache compact-tiers``."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import candlecache
from candlecache import MarketCache
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange
from test_resample import reference

BTC = "BTC/USDT"
HERE = Path(__file__).parent


def folder_rows(base, period):
    return candlecache.read_cached(base, BTC, period)


def minutes_kept_or_moved(base, before):
    """Every minute covered ``before`` is still covered in 1m, or its 5m candle in 5m."""
    fine = candlecache.coverage(base, BTC, "1m")
    coarse = candlecache.coverage(base, BTC, "5m")
    for t in (t for a, z in before for t in range(a, z, MINUTE)):
        b = t - t % (5 * MINUTE)
        assert any(a <= t < z for a, z in fine) or any(a <= b < z for a, z in coarse), f"minute {t} lost"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=600),
    gaps=st.lists(st.tuples(st.integers(0, 600), st.integers(1, 30)), max_size=4),
    forgotten=st.lists(st.tuples(st.integers(0, 600), st.integers(1, 12)), max_size=3),
)
def test_tiers_are_exact_aggregates_of_covered_buckets_and_idempotent(tmp_path_factory, n, gaps, forgotten):
    base = tmp_path_factory.mktemp("tiers")
    ex = MemoryExchange(gaps=[(T0 + a * MINUTE, T0 + (a + w) * MINUTE) for a, w in gaps])
    with MarketCache(base) as cache:
        cache.get_ohlcv(BTC, "1m", T0, n, ex.fetch_ohlcv)
        for a, w in forgotten:  # slots never answered: their 5m candles must stay fine
            candlecache.forget(base, BTC, "1m", T0 + a * MINUTE, T0 + (a + w - 1) * MINUTE)
        covered = candlecache.coverage(base, BTC, "1m")
        truth = ex.truth(BTC, "1m", T0, n)
        moved = cache.compact_tiers([("1d", "5m")])
        coarse = folder_rows(base, "5m")
        # Exactly the polars aggregate of the minutes, for the buckets whose 5 slots were covered.
        complete = [b for b in range(T0, T0 + n * MINUTE, 5 * MINUTE)
                    if any(a <= b and b + 5 * MINUTE <= z for a, z in covered)]
        expected = reference(truth, "5m").filter(pl.col("time").is_in(complete))
        assert_frame_equal(coarse, expected)
        left = folder_rows(base, "1m")
        assert moved == truth.height - left.height
        assert_frame_equal(pl.concat([left, truth.filter(pl.col("time").is_in(left["time"].to_list()).not_())]).sort("time"), truth)
        minutes_kept_or_moved(base, covered)
        assert cache.compact_tiers([("1d", "5m")]) == 0
        assert_frame_equal(folder_rows(base, "5m"), coarse)


def test_chained_tiers_and_young_candles_stay(tmp_path):
    now = int(time.time() * 1000)
    ex = MemoryExchange(now=now)
    start = now - now % DAY - 3 * DAY
    with MarketCache(tmp_path) as cache:
        cache.get_ohlcv(BTC, "1m", start, 3 * 1440, ex.fetch_ohlcv)
        moved = cache.compact_tiers([("1d", "5m"), ("2d", "1h")])
        assert moved > 0
        hours, fives, minutes = (folder_rows(tmp_path, p) for p in ("1h", "5m", "1m"))
        assert hours["time"].max() < now - 2 * DAY <= fives["time"].min() + HOUR  # whole hours move
        assert fives["time"].max() < now - DAY <= minutes["time"].min() + 5 * MINUTE
        truth = ex.truth(BTC, "1m", start, 3 * 1440)
        assert_frame_equal(hours, reference(truth, "1h").filter(pl.col("time").is_in(hours["time"].to_list())))
        assert hours["volume"].sum() + fives["volume"].sum() + minutes["volume"].sum() == pytest.approx(truth["volume"].sum())


@pytest.mark.parametrize(
    ("tiers", "error", "match"),
    [
        ([("1d", "5m"), ("1h", "1h")], ValueError, "increase"),
        ([("1d", "1w"), ("2d", "1M")], ValueError, "not made of whole"),
        ([("1d", "7m")], ValueError, "unknown period"),
        ([("soon", "5m")], ValueError, "keep"),
        ("30d:5m", TypeError, "pairs"),
        ([], TypeError, "pairs"),
    ],
)
def test_bad_tiers(tmp_path, tiers, error, match):
    with MarketCache(tmp_path) as cache, pytest.raises(error, match=match):
        cache.compact_tiers(tiers)


def test_the_cli_verb(tmp_path):
    ex = MemoryExchange()
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1m", T0, 60, ex.fetch_ohlcv)
    out = subprocess.run([sys.executable, "-m", "candlecache", "compact-tiers", str(tmp_path), "--tier", "1d:5m", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"candles_moved": 60}
    assert folder_rows(tmp_path, "5m").height == 12
    out = subprocess.run([sys.executable, "-m", "candlecache", "compact-tiers", str(tmp_path), "--tier", "5m"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "AGE:PERIOD" in out.stderr


COMPACTOR = r"""
import sys
sys.path.insert(0, %r)
import candlecache
from memory_exchange import MemoryExchange, T0, DAY
base = sys.argv[1]
ex = MemoryExchange()
with candlecache.MarketCache(base, hot_cache_mb=0) as cache:
    while True:
        cache.get_ohlcv("BTC/USDT", "1m", T0, 20 * 1440, ex.fetch_ohlcv)
        cache.compact_tiers([("1d", "5m")])
        candlecache.forget(base, "BTC/USDT", "5m", T0, T0 + 20 * DAY, drop_rows=True)
""" % str(HERE)


def test_kill_9_during_compaction_loses_nothing_and_counts_nothing_twice(tmp_path):
    rnd = random.Random(5)
    ex = MemoryExchange()
    truth = ex.truth(BTC, "1m", T0, 20 * 1440)
    five = reference(truth, "5m")
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1.5 + rnd.random() * 2)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        with MarketCache(tmp_path, hot_cache_mb=0) as cache:
            assert cache.verify().height == 0
            for period, exp in (("1m", truth), ("5m", five)):
                for a, b in candlecache.coverage(tmp_path, BTC, period):
                    got = cache.read(BTC, period, a, b - 1)
                    assert_frame_equal(got, exp.filter(pl.col("time").is_between(a, b - 1)))
            # A candle covered in both folders would be counted twice by a scan of both.
            fine = candlecache.coverage(tmp_path, BTC, "1m")
            coarse = candlecache.coverage(tmp_path, BTC, "5m")
            overlap = [(max(a, c), min(b, d)) for a, b in fine for c, d in coarse if max(a, c) < min(b, d)]
            if overlap:  # only possible between the two steps: the next run settles it
                cache.compact_tiers([("1d", "5m")])
                fine = candlecache.coverage(tmp_path, BTC, "1m")
                coarse = candlecache.coverage(tmp_path, BTC, "5m")
                assert not [(a, c) for a, b in fine for c, d in coarse if max(a, c) < min(b, d)]
