"""The engine's fast path of Cache (get/set/in/delete/incr with the default Disk and a raw key)
against the Python path (a Disk subclass keeps it) and python-diskcache, value by value; the
shard hash of FanoutCache; `durable=True` (fsyncs counted with strace)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import candlecache
from candlecache import Cache, Disk, FanoutCache, _core

diskcache = pytest.importorskip("diskcache")


class PlainDisk(Disk):
    """The default Disk under another type: the Python path."""


# Not float("nan"): diskcache stores it as SQL NULL, which no lookup matches; candlecache (on
# either path) finds it. A known difference, not the fast path's.
KEYS = [
    "k", "", "é" * 3, b"", b"k", 0, -1, 2**63 - 1, -(2**63), 2**63, 2**70, 1.0, -0.0, 0.5,
    float("inf"), True, None, (1, "a"), ("k",), frozenset({1}),
]
VALUES = [
    "s", "", "x" * 40_000, b"", b"b" * 100, b"b" * 40_000, 0, -5, 2**63, 2**100, 1.5, float("nan"),
    float("-inf"), True, False, None, (1, 2), [1, [2]], {"a": 1}, {1, 2}, b"\x00" * 600,
]


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.fixture
def three(tmp_path):
    fast = Cache(tmp_path / "fast")
    slow = Cache(tmp_path / "slow", disk=PlainDisk)
    ref = diskcache.Cache(str(tmp_path / "ref"))
    assert fast._fast is not None and slow._fast is None
    yield fast, slow, ref
    for c in (fast, slow, ref):
        c.close()


def test_every_key_and_value_reads_back_as_on_the_python_path_and_in_diskcache(three):
    for i, key in enumerate(KEYS):
        value = VALUES[i % len(VALUES)]
        for c in three:
            assert c.set(key, value) is True
    for i, key in enumerate(KEYS):
        got = [c.get(key, "<missing>") for c in three]
        assert _same(got[0], got[1]) and _same(got[0], got[2]), (key, got)
        assert [key in c for c in three] == [True] * 3, key
    for value in VALUES:
        got = []
        for c in three:
            c["v"] = value
            got.append(c["v"])
        assert _same(got[0], got[1]) and _same(got[0], got[2]), (value, got)


def test_delete_contains_expire_and_tag_match(three):
    for c in three:
        c.set("a", 1, expire=-1)
        c.set("b", b"x", tag="t")
        c.set("c", "y" * 50_000)  # a value file
    for c in three:
        assert ("a" in c, "b" in c, c.get("a", "d")) == (False, True, "d")
        assert c.get("b", tag=True) == (b"x", "t")
        assert c.delete("a") is False and c.delete("b") is True and c.delete("b") is False
        assert c.delete("c") is True and c.get("c") is None
        with pytest.raises(KeyError):
            del c["b"]
    # the value file went with its row
    leftover = [f for _, _, files in os.walk(three[0].directory) for f in files if f.endswith(".val")]
    assert leftover == []


def test_incr_matches_including_what_the_engine_leaves_to_python(three):
    cases = [
        ("n", 1, 0), ("n", 5, 0), ("n", 0.5, 0), ("f", 1, 1.5), ("big", 2**62, 2**62),
        ("big", 2**62, 0), ("neg", -3, None), ("b", True, 0),
    ]
    for c in three:
        c.set("neg", -1)
    for key, delta, default in cases:
        got = []
        for c in three:
            try:
                got.append(("ok", c.incr(key, delta, default)))
            except Exception as e:  # noqa: BLE001
                got.append(("err", type(e).__name__))
        assert got[0] == got[1] == got[2], (key, delta, default, got)
    for c in three:
        with pytest.raises(KeyError):
            c.incr("absent", default=None)
        c.set("text", "abc")
        with pytest.raises(TypeError):
            c.incr("text")


def test_frames_and_read_handles_still_go_through_disk(tmp_path):
    pl = pytest.importorskip("polars")
    c = Cache(tmp_path)
    frame = pl.DataFrame({"a": [1, 2, 3]})
    c.set("f", frame)
    assert c.get("f").equals(frame)  # a Deferred row, read by Disk.fetch
    c.set("f", b"replaced")  # the fast set removes the frame file it replaced
    assert c.get("f") == b"replaced"
    assert not [f for _, _, files in os.walk(tmp_path) for f in files if f.endswith(".arrow")]
    c.set("r", b"z" * 40_000)
    with c.read("r") as handle:
        assert handle.read() == b"z" * 40_000


def test_a_swapped_disk_takes_the_python_path(tmp_path):
    c = Cache(tmp_path)
    calls = []

    class Spy(Disk):
        def put(self, key):
            calls.append(key)
            return super().put(key)

    c._disk = Spy(c.directory)
    c.set("k", 1)
    assert c.get("k") == 1 and calls


def test_fanout_shard_hash_is_diskcache_s(tmp_path):
    hasher = _core.KeyHasher(Disk(str(tmp_path)).hash)
    ref = diskcache.Disk(str(tmp_path))
    for key in KEYS + ["x" * 1000, 12345678901234]:
        assert hasher(key) == ref.hash(key), key
    fc = FanoutCache(tmp_path / "fc", shards=4)
    ref_fc = diskcache.FanoutCache(str(tmp_path / "ref"), shards=4)
    for i in range(50):
        fc[f"k{i}"] = i
        ref_fc[f"k{i}"] = i
    for n in range(4):
        mine = sorted(fc._shards[n].iterkeys())
        theirs = sorted(ref_fc._shards[n].iterkeys())
        assert mine == theirs


# ---------------------------------------------------------------- durable=True

STRACE = shutil.which("strace")


def _fsyncs(directory, durable):
    """fsync + fdatasync calls made by 20 sets in a fresh process (counted by strace);
    `durable=None` opens the cache without the argument."""
    setting = "" if durable is None else f", durable={durable}"
    script = textwrap.dedent(f"""
        import candlecache
        c = candlecache.Cache({str(directory)!r}{setting})
        import os
        os.write(2, b"START\\n")
        for i in range(20):
            c.set(f"k{{i}}", b"v" * 100)
        os.write(2, b"END\\n")
    """)
    out = subprocess.run(
        [STRACE, "-f", "-e", "trace=fsync,fdatasync,write", "-o", "/dev/stderr", sys.executable, "-c", script],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trace = out.stderr
    body = trace[trace.index('"START\\n"'):trace.index('"END\\n"')]
    return sum(1 for line in body.splitlines() if "fsync(" in line or "fdatasync(" in line)


@pytest.mark.skipif(STRACE is None, reason="strace not installed")
def test_durable_sets_are_flushed_before_they_return(tmp_path):
    assert _fsyncs(tmp_path / "plain", False) == 0
    flushed = _fsyncs(tmp_path / "durable", True)
    assert flushed >= 20, flushed  # one fdatasync per acknowledged set, at least
    assert flushed <= 20 + 3, flushed  # and the directory once, not per set
    # the setting is persisted: a later opener without the argument flushes too
    assert _fsyncs(tmp_path / "durable", None) >= 20
    assert Cache(tmp_path / "durable").durable == 1


@pytest.mark.skipif(STRACE is None, reason="strace not installed")
def test_durable_value_files_are_flushed_with_their_folders(tmp_path):
    script = textwrap.dedent(f"""
        import os, candlecache
        c = candlecache.Cache({str(tmp_path)!r}, durable=True)
        os.write(2, b"START\\n")
        c.set("big", b"x" * 100_000)
        os.write(2, b"END\\n")
    """)
    out = subprocess.run(
        [STRACE, "-f", "-e", "trace=fsync,fdatasync,write", "-o", "/dev/stderr", sys.executable, "-c", script],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    body = out.stderr[out.stderr.index('"START\\n"'):out.stderr.index('"END\\n"')]
    calls = [line for line in body.splitlines() if "fsync(" in line or "fdatasync(" in line]
    # the value file, its folder, the two folders made for it, and the log record
    assert len(calls) >= 5, calls


def test_durable_is_a_persisted_setting_and_off_by_default(tmp_path):
    c = Cache(tmp_path)
    assert c.durable == 0 and c.disk.durable is False
    c.reset("durable", True)
    assert Cache(tmp_path).durable == 1 and Cache(tmp_path).disk.durable is True
    assert candlecache.DEFAULT_SETTINGS["durable"] == 0
