"""Size limits, volume and statistics of the disk cache, as diskcache users rely on them."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

import candlecache


def disk_bytes(directory: str) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


@pytest.mark.parametrize("policy", ["least-recently-stored", "least-recently-used", "least-frequently-used"])
@pytest.mark.parametrize("value_size", [3_000, 100_000])  # in the log, and in value files
def test_overfilling_holds_the_size_limit_and_volume_is_what_is_on_disk(tmp_path, policy, value_size):
    limit = 2_000_000
    cache = candlecache.Cache(str(tmp_path / "c"), size_limit=limit, eviction_policy=policy)
    for i in range(3 * limit // value_size):
        cache.set(i, os.urandom(value_size))  # incompressible
        if policy != "least-recently-stored" and i % 3 == 0:
            cache.get(i // 2)
    assert cache.volume() <= 1.1 * limit
    assert abs(cache.volume() - disk_bytes(cache.directory)) <= 0.02 * limit
    assert len(cache) > 0
    assert cache.check() == []


def test_policy_none_never_evicts(tmp_path):
    cache = candlecache.Cache(str(tmp_path / "c"), size_limit=100_000, eviction_policy="none")
    for i in range(100):
        cache.set(i, os.urandom(5_000))
    assert len(cache) == 100


def _hits(directory: str, n: int) -> None:
    cache = candlecache.Cache(directory)
    for _ in range(n):
        cache.get("present")
        cache.get("absent")


def test_statistics_count_across_processes(tmp_path):
    d = str(tmp_path / "c")
    cache = candlecache.Cache(d, statistics=True)
    cache.set("present", 1)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hits, args=(d, 50)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert cache.stats() == (150, 150)
    assert cache.stats(reset=True) == (150, 150)
    assert candlecache.Cache(d).stats() == (0, 0)
