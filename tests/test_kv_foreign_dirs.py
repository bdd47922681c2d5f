"""A python-diskcache directory is never opened (it would look empty, and ``check(fix=True)``
would remove its value files as unknown), and diskcache's metadata attributes exist."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import diskcache
import pytest

import candlecache


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("flavor", ["Cache", "FanoutCache", "Index", "Deque"])
def test_a_python_diskcache_directory_is_refused_and_left_untouched(tmp_path, flavor):
    src = tmp_path / "dc"
    if flavor == "FanoutCache":
        with diskcache.FanoutCache(src, shards=3) as dc:
            for i in range(20):
                dc.set(i, os.urandom(40_000) if i % 2 else i)
    else:
        with diskcache.Cache(src) as dc:
            for i in range(20):
                dc.set(i, os.urandom(40_000) if i % 2 else i)
    before = _snapshot(src)
    assert any(name.endswith(".val") for name in before)
    with pytest.raises(candlecache.CandlecacheError, match=r"python-diskcache database \(cache\.db\)"):
        if flavor == "FanoutCache":
            candlecache.FanoutCache(src, shards=3)
        elif flavor == "Index":
            candlecache.Index(str(src))
        elif flavor == "Deque":
            candlecache.Deque(directory=str(src))
        else:
            candlecache.Cache(src)
    assert _snapshot(src) == before, "opening a python-diskcache directory changed it"


def test_metadata_attributes_as_diskcache_has_them(tmp_path):
    # python-diskcache's tutorial, run against candlecache.
    cache = candlecache.Cache(tmp_path / "t", size_limit=int(4e9))
    assert cache.size_limit == 4000000000 and cache.disk_min_file_size == 32768
    assert cache.reset("cull_limit", 0) == 0
    assert cache.set(b"key", 1.234) is True
    assert cache.count == 0  # stale attribute
    assert cache.reset("count") == 1  # prefer: len(cache)
    cache.close()
    with candlecache.Cache(tmp_path / "c", statistics=True) as cache:
        cache.set("big", b"x" * 100_000)
        cache.get("big")
        cache.get("absent")
        assert (cache.hits, cache.misses) == (0, 0)
        assert (cache.reset("hits"), cache.reset("misses")) == (1, 1)
        assert (cache.hits, cache.misses) == (1, 1)
        assert cache.reset("size") >= 100_000 and cache.size >= 100_000
        assert cache.reset("hits", 0) == 0 and cache.stats() == (0, 0)
    with candlecache.Cache(tmp_path / "c") as again:
        assert again.count == 1  # read at open
