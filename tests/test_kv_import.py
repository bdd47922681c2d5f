"""Importing python-diskcache directories (issue 13, part 2): directories written by
python-diskcache 5.6.3 itself, compared entry by entry after ``import_diskcache``; the source
is never written, a damaged or busy ``cache.db`` is a clear error."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import diskcache
import pytest

import candlecache
from candlecache import CandlecacheError, import_diskcache


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(cache) -> None:
    """Every key type, every value mode, expiry and tags."""
    cache.set("str", "small text")
    cache.set("text", "é€😀" * 20_000)  # MODE_TEXT: a file
    cache.set(b"bytes-key", b"small")
    cache.set("binary", os.urandom(100_000), tag="bt-001")  # MODE_BINARY: a file
    cache.set("read", io.BytesIO(b"r" * 70_000), read=True)
    cache.set(7, 7.5)
    cache.set(2**62, -1)
    cache.set(1.25, None)
    cache.set(("tuple", 1), {"nested": [1, 2]}, tag="bt-001")  # pickled key, pickled value
    cache.set("bigpickle", list(range(30_000)))  # MODE_PICKLE: a file
    cache.set("later", "x", expire=3600)
    cache.set("expired", "x", expire=0.001)
    cache.incr("counter", 41)


def _entries(cache) -> dict:
    out = {}
    for key in cache.iterkeys() if hasattr(cache, "iterkeys") else cache:
        value, expire, tag = cache.get(key, expire_time=True, tag=True)
        out[key] = (value, None if expire is None else round(expire, 3), tag)
    return out


@pytest.mark.parametrize("policy", ["least-recently-stored", "least-recently-used", "least-frequently-used", "none"])
def test_a_cache_written_by_python_diskcache_imports_entry_by_entry(tmp_path, policy):
    src, dst = tmp_path / "dc", tmp_path / "cc"
    with diskcache.Cache(src, eviction_policy=policy, size_limit=2**26, cull_limit=5, statistics=1) as dc:
        _fill(dc)
        time.sleep(0.01)
        want = _entries(dc)
        dc.push("queued", prefix="jobs")
        want.update({k: (dc[k], None, None) for k in dc.iterkeys() if isinstance(k, str) and k.startswith("jobs")})
        order = [k for k in dc.iterkeys() if k != "expired"]  # diskcache lists it until culled
    want.pop("expired", None)  # diskcache may have culled it already (its sets cull expired rows)
    before = _files(src)
    assert import_diskcache(src, dst) == len(want)
    assert _files(src) == before, "the source was written"
    with candlecache.Cache(dst) as cc:
        got = _entries(cc)
        assert got == want
        assert list(cc.iterkeys()) == order
        assert (cc.eviction_policy, cc.size_limit, cc.cull_limit, cc.statistics) == (policy, 2**26, 5, 1)
        assert cc.read("read").read() == b"r" * 70_000
        assert cc.check() == []
        assert cc.evict("bt-001") == 2
        assert cc.pull("jobs")[1] == "queued"


def test_a_fanout_cache_becomes_a_fanout_cache(tmp_path):
    src, dst = tmp_path / "dc", tmp_path / "cc"
    with diskcache.FanoutCache(src, shards=4) as dc:
        for i in range(200):
            dc.set(i, os.urandom(40_000) if i % 50 == 0 else f"v{i}", tag="even" if i % 2 == 0 else None)
    assert import_diskcache(src, dst) == 200
    assert sorted(p.name for p in dst.iterdir()) == ["000", "001", "002", "003"]
    with diskcache.FanoutCache(src, shards=4) as dc, candlecache.FanoutCache(dst, shards=4) as cc:
        for i in range(200):
            assert cc.get(i, tag=True) == dc.get(i, tag=True)
        assert cc.evict("even") == 100 and len(cc) == 100


def test_in_place_keeps_the_old_files_aside(tmp_path):
    src = tmp_path / "app"
    with diskcache.Cache(src) as dc:
        _fill(dc)
        time.sleep(0.01)
        want = _entries(dc)
    want.pop("expired", None)
    before = _files(src)
    assert import_diskcache(src) == len(want)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("app.diskcache-")]
    assert len(aside) == 1 and _files(aside[0]) == before
    with candlecache.Cache(src) as cc:
        assert _entries(cc) == want
    with pytest.raises(CandlecacheError, match="import_diskcache"):
        candlecache.Cache(aside[0])


def test_the_command_line(tmp_path):
    src = tmp_path / "dc"
    with diskcache.Cache(src) as dc:
        dc.set("a", 1)
    out = subprocess.run([sys.executable, "-m", "candlecache", "kv-import", str(src), str(tmp_path / "cc"), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"imported": 1' in out.stdout
    again = subprocess.run([sys.executable, "-m", "candlecache", "kv-import", str(src), str(tmp_path / "cc")],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "not empty" in again.stderr


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_cache_db_is_an_error_and_nothing_is_written(tmp_path, how):
    src, dst = tmp_path / "dc", tmp_path / "cc"
    with diskcache.Cache(src) as dc:
        for i in range(500):
            dc.set(i, "x" * 100)
    db = src / "cache.db"
    data = db.read_bytes()
    db.write_bytes(b"not a database" * 100 if how == "garbage" else data[: len(data) // 3])
    before = _files(src)
    with pytest.raises(CandlecacheError, match=r"cannot read .*cache\.db.*Nothing was written"):
        import_diskcache(src, dst)
    assert _files(src) == before and not dst.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CandlecacheError, match="not a python-diskcache directory"):
        import_diskcache(tmp_path / "empty")


def test_a_source_written_during_the_import_is_an_error(tmp_path, monkeypatch):
    src, dst = tmp_path / "dc", tmp_path / "cc"
    with diskcache.Cache(src) as dc:
        for i in range(300):
            dc.set(i, i)
    import candlecache.kvimport as kvimport

    real_put = kvimport._put
    written = threading.Event()

    def put_while_another_process_writes(cache, shard, row):
        if not written.is_set():
            written.set()
            subprocess.run([sys.executable, "-c", f"import diskcache; diskcache.Cache({str(src)!r}).set('late', 1)"],
                           check=True)
        real_put(cache, shard, row)

    monkeypatch.setattr(kvimport, "_put", put_while_another_process_writes)
    with pytest.raises(CandlecacheError, match="changed during the import"):
        import_diskcache(src, dst)
    assert not dst.exists(), "the partial copy was left behind"
    with diskcache.Cache(src) as dc:
        assert dc["late"] == 1 and len(dc) == 301
