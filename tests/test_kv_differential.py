"""Differential test: ``candlecache.Cache``/``FanoutCache`` against python-diskcache 5.6.3.

DESIGN.md, "The disk-cache contract": same public API and semantics as diskcache. A hypothesis
state machine applies the same random operations to ``candlecache.Cache(dir1)`` and
``diskcache.Cache(dir2)`` and compares every observable result: return values, raised exception
types, key/value types (``type(a) is type(b)``, recursively), order of iteration, ``len``,
``stats()``; ``check()`` must return ``[]`` and ``volume()`` must be positive.

Both libraries read "now" from ``time.time()``. Every operation runs with ``time.time`` replaced
by one fake clock (advanced by a rule), so expiry is deterministic and ``expire_time`` values can
be compared exactly.

Three machines, so that a divergence in one area does not hide the others:
``CacheNoExpiry`` (no expire arguments, frozen clock), ``CacheWithExpiry`` and ``FanoutCacheDiff``.

``CANDLECACHE_TEST_IMPL=diskcache`` runs diskcache against itself (checks the test itself).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import random
import shutil
import signal
import sys
import tempfile
import time

import diskcache
import pytest
from hypothesis import HealthCheck, note, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

if os.environ.get("CANDLECACHE_TEST_IMPL") == "diskcache":
    impl = diskcache
else:
    import candlecache as impl

    if not hasattr(impl, "Cache"):
        pytest.skip("candlecache.Cache is not there yet", allow_module_level=True)

# -- the fake clock ---------------------------------------------------------------------------

_REAL_TIME = time.time
T0 = 1_700_000_000.25


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _time_targets():
    """(object, attribute) pairs that hold the real ``time.time``: the ``time`` module itself and
    any module of either library that did ``from time import time``."""
    targets = [(time, "time")]
    for name, mod in list(sys.modules.items()):
        if mod is None or name.split(".")[0] not in ("candlecache", "diskcache"):
            continue
        for attr, val in list(vars(mod).items()):
            if val is _REAL_TIME:
                targets.append((mod, attr))
    return targets


@contextlib.contextmanager
def frozen_time(clock: FakeClock):
    targets = _time_targets()
    for obj, attr in targets:
        setattr(obj, attr, clock)
    try:
        yield
    finally:
        for obj, attr in targets:
            setattr(obj, attr, _REAL_TIME)


# -- normalising results for exact comparison -------------------------------------------------


def norm(x):
    """A comparable form of ``x`` that keeps exact types, order and float bits."""
    t = type(x)
    if x is None or t in (bool, int, str, bytes):
        return (t.__name__, x)
    if t is float:
        return ("float", x.hex())
    if t in (list, tuple):
        return (t.__name__, tuple(norm(i) for i in x))
    if t is dict:
        return ("dict", tuple((norm(k), norm(v)) for k, v in x.items()))
    if hasattr(x, "read") and hasattr(x, "close"):  # get(read=True) / read(): a binary handle
        try:
            data = x.read()
        finally:
            x.close()
        return ("handle", norm(data))
    return ("other", t.__name__, repr(x))


class _ReferenceHung(BaseException):
    """Raised by the alarm in ``reference_outcome``; a BaseException so ``outcome`` lets it by."""


def reference_outcome(fn, cache):
    """diskcache's outcome. An example on which diskcache loops forever is rejected rather than
    compared: its peek/pull/peekitem retry a row whose value file is gone without end (seen
    once in a few hundred runs of these machines)."""
    def hung(*_):
        raise _ReferenceHung

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 20)
    try:
        return outcome(fn, cache)
    except _ReferenceHung:
        reject()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(fn, cache):
    try:
        return ("ok", norm(fn(cache)))
    except Exception as exc:  # noqa: BLE001 - compared below; BaseException (panics) propagate
        t = type(exc)
        return ("raise", t.__name__ if t.__module__ == "builtins" else "lib." + t.__name__)


# -- strategies -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def big_bytes(kind: int, n: int) -> bytes:
    if kind == 0:
        return random.Random(n).randbytes(n)  # incompressible
    return (b"candle%d-" % kind) * (n // 8) + b"x" * (n % 8)  # compressible


@functools.lru_cache(maxsize=None)
def big_text(kind: int, n: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz" if kind == 0 else "é€😀 ab"
    r = random.Random(n + kind)
    return "".join(r.choice(alphabet) for _ in range(n))


def big_list(n: int) -> list:
    return list(range(n))


SMALL_ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.binary(max_size=6),
)

KEY_POOL = [
    0, 1, 2, -1, 3, 2**63 - 1, 2**64, 500000000000000, 1.0, 0.5, -0.0, 1e20, True, False, None,
    "", "a", "b", "é", "q-1", "a\x00b", b"", b"a", b"\x80", (1,), (1.0,), ("a", 1),
]

KEYS = st.one_of(
    st.sampled_from(KEY_POOL),  # a small pool, so reads and writes meet
    st.integers(-3, 3),
    st.sampled_from([-(2**63), 499999999999999, 3.0, float("inf"), -2.5, "ab", b"\x80\x05"]),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.tuples(st.sampled_from([0, 1, 1.0, True, "a", b"a", None])),
    st.tuples(st.integers(0, 2), st.sampled_from(["a", 1.0, (1, 2)])),
)

VALUES = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.0**53, float("inf")]),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(SMALL_ATOMS, max_size=5),
    st.dictionaries(st.text(max_size=3), SMALL_ATOMS, max_size=4),
    # around and above diskcache's 32 KiB file threshold
    st.builds(big_bytes, st.integers(0, 2), st.sampled_from([32767, 32768, 40_000, 100_000])),
    st.builds(big_text, st.integers(0, 1), st.sampled_from([32767, 32768, 40_000])),
    st.builds(big_list, st.sampled_from([5_000, 20_000])),
)

TAGS = st.sampled_from([None, None, "t1", "t2"])
EXPIRES = st.sampled_from([None, None, None, 0, 0.5, 1, 2.25, 10, 1000, -1])
DELTAS = st.sampled_from([1, 1, -1, 0, 3, 10**6, 0.5])
DEFAULTS = st.sampled_from([0, 0, None, 5, 1.5])
PREFIXES = st.sampled_from([None, None, "q", "r"])
FLAGS = st.booleans()
DT = st.sampled_from([0, 0.25, 0.5, 1, 2, 10, 1000])


# -- the machines -----------------------------------------------------------------------------


class _Base(RuleBasedStateMachine):
    """Shared plumbing: two caches, the fake clock, ``both(fn)``."""

    FANOUT = False

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="kvdiff-")
        self.d_impl = os.path.join(self.tmp, "impl")
        self.d_ref = os.path.join(self.tmp, "ref")
        self.clock = FakeClock()
        self.closed = False
        with frozen_time(self.clock):
            self._open()
            self.cc.stats(enable=True)
            self.dc.stats(enable=True)

    def _open(self) -> None:
        if self.FANOUT:
            self.cc = impl.FanoutCache(self.d_impl, shards=3)
            self.dc = diskcache.FanoutCache(self.d_ref, shards=3)
        else:
            self.cc = impl.Cache(self.d_impl)
            self.dc = diskcache.Cache(self.d_ref)

    def teardown(self) -> None:
        try:
            self.cc.close()
            self.dc.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def both(self, label: str, fn, quiet: bool = False):
        with frozen_time(self.clock):
            got = outcome(fn, self.cc)
            want = reference_outcome(fn, self.dc)
        if not quiet:
            note(f"{label} -> {want!r:.300}")
        assert got == want, f"{label}: candlecache {got!r:.2000} != diskcache {want!r:.2000}"
        return want

    # -- writes ---------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES, expire=EXPIRES, tag=TAGS)
    def set(self, key, value, expire, tag):
        self.both(f"set({key!r}, <{type(value).__name__}>, expire={expire}, tag={tag!r})",
                  lambda c: c.set(key, value, expire=expire, tag=tag))

    @rule(key=KEYS, kind=st.integers(0, 2), n=st.sampled_from([0, 10, 32768, 70_000]),
          tag=TAGS)
    def set_read(self, key, kind, n, tag):
        """set(read=True) from a binary file object: stored (and returned) as bytes."""
        data = big_bytes(kind, n) if n else b""
        self.both(f"set({key!r}, <file of {n} bytes>, read=True, tag={tag!r})",
                  lambda c: c.set(key, io.BytesIO(data), read=True, tag=tag))

    @rule(key=KEYS, value=VALUES)
    def setitem(self, key, value):
        def op(c):
            c[key] = value

        self.both(f"[{key!r}] = <{type(value).__name__}>", op)

    @rule(key=KEYS, value=VALUES, expire=EXPIRES, tag=TAGS)
    def add(self, key, value, expire, tag):
        self.both(f"add({key!r}, expire={expire}, tag={tag!r})",
                  lambda c: c.add(key, value, expire=expire, tag=tag))

    @rule(key=KEYS, delta=DELTAS, default=DEFAULTS, down=FLAGS)
    def incr(self, key, delta, default, down):
        if down:
            self.both(f"decr({key!r}, {delta}, {default})", lambda c: c.decr(key, delta, default))
        else:
            self.both(f"incr({key!r}, {delta}, {default})", lambda c: c.incr(key, delta, default))

    @rule(key=KEYS, expire=EXPIRES)
    def touch(self, key, expire):
        self.both(f"touch({key!r}, {expire})", lambda c: c.touch(key, expire))

    @rule(key=KEYS)
    def delete(self, key):
        self.both(f"delete({key!r})", lambda c: c.delete(key))

    @rule(key=KEYS)
    def delitem(self, key):
        def op(c):
            del c[key]

        self.both(f"del [{key!r}]", op)

    @rule(key=KEYS, expire_time=FLAGS, tag=FLAGS)
    def pop(self, key, expire_time, tag):
        self.both(f"pop({key!r}, expire_time={expire_time}, tag={tag})",
                  lambda c: c.pop(key, "<default>", expire_time=expire_time, tag=tag))

    @rule(tag=st.sampled_from(["t1", "t2", "nope"]))
    def evict(self, tag):
        self.both(f"evict({tag!r})", lambda c: c.evict(tag))

    @rule()
    def clear(self):
        self.both("clear()", lambda c: c.clear())

    @rule()
    def reopen(self):
        """Close both and open new instances on the same directories (state comes from disk)."""
        with frozen_time(self.clock):
            self.cc.close()
            self.dc.close()
            self._open()

    @rule()
    def close_and_continue(self):
        """diskcache reopens transparently after close(); the next operations must just work."""
        self.both("close()", lambda c: c.close())

    # -- reads ----------------------------------------------------------------------------

    @rule(key=KEYS, expire_time=FLAGS, tag=FLAGS, read=FLAGS)
    def get(self, key, expire_time, tag, read):
        self.both(f"get({key!r}, expire_time={expire_time}, tag={tag}, read={read})",
                  lambda c: c.get(key, "<default>", read=read, expire_time=expire_time, tag=tag))

    @rule(key=KEYS)
    def getitem(self, key):
        self.both(f"[{key!r}]", lambda c: c[key])

    @rule(key=KEYS)
    def read(self, key):
        self.both(f"read({key!r})", lambda c: c.read(key))

    @rule(key=KEYS)
    def contains(self, key):
        self.both(f"{key!r} in cache", lambda c: key in c)

    @rule(reset=FLAGS)
    def stats(self, reset):
        self.both(f"stats(reset={reset})", lambda c: c.stats(enable=True, reset=reset))

    @rule()
    def check_and_volume(self):
        """check() finds nothing wrong (or, after a transaction that raised, the same orphaned
        value file diskcache leaves behind); volume() is positive."""
        def summary(c):
            return sorted((w.category.__name__, str(w.message).split(":")[0]) for w in c.check())

        with frozen_time(self.clock):
            got, want = summary(self.cc), summary(self.dc)
            # diskcache can leave a value file behind when an operation fails after writing it
            # (e.g. push() hitting an existing key); candlecache removes it, so may report less.
            assert got == want or not got, f"check(): candlecache {got} != diskcache {want}"
            assert set(want) <= {("UnknownFileWarning", "unknown file")}, want
            assert self.cc.volume() > 0 and self.dc.volume() > 0
            if want:
                for c in (self.cc, self.dc):
                    for _ in range(3):  # diskcache removes one level of empty dirs per pass
                        c.check(fix=True)
                    assert c.check() == []

    @rule()
    def every_value(self):
        """get(expire_time=True, tag=True) of every key in iteration order (counts as hits)."""
        self.both("every value",
                  lambda c: [c.get(k, "<default>", expire_time=True, tag=True) for k in list(c)])

    @invariant()
    def listings(self):
        if not hasattr(self, "cc"):
            return
        self.both("len", len, quiet=True)
        self.both("list(cache)", list, quiet=True)
        self.both("list(reversed(cache))", lambda c: list(reversed(c)), quiet=True)
        self.both("stats()", lambda c: c.stats(), quiet=True)


class _CacheOnly(_Base):
    """Operations FanoutCache does not have."""

    @rule(value=VALUES, prefix=PREFIXES, side=st.sampled_from(["back", "front"]), expire=EXPIRES,
          tag=TAGS)
    def push(self, value, prefix, side, expire, tag):
        self.both(f"push(prefix={prefix!r}, side={side}, expire={expire}, tag={tag!r})",
                  lambda c: c.push(value, prefix=prefix, side=side, expire=expire, tag=tag))

    @rule(prefix=PREFIXES, side=st.sampled_from(["back", "front"]), expire_time=FLAGS, tag=FLAGS)
    def pull(self, prefix, side, expire_time, tag):
        self.both(f"pull(prefix={prefix!r}, side={side}, expire_time={expire_time}, tag={tag})",
                  lambda c: c.pull(prefix, side=side, expire_time=expire_time, tag=tag))

    @rule(prefix=PREFIXES, side=st.sampled_from(["back", "front"]), expire_time=FLAGS, tag=FLAGS)
    def peek(self, prefix, side, expire_time, tag):
        self.both(f"peek(prefix={prefix!r}, side={side}, expire_time={expire_time}, tag={tag})",
                  lambda c: c.peek(prefix, side=side, expire_time=expire_time, tag=tag))

    @rule(last=FLAGS, expire_time=FLAGS, tag=FLAGS)
    def peekitem(self, last, expire_time, tag):
        self.both(f"peekitem(last={last}, expire_time={expire_time}, tag={tag})",
                  lambda c: c.peekitem(last=last, expire_time=expire_time, tag=tag))

    @rule(key=KEYS, key2=KEYS, value=VALUES)
    def transact(self, key, key2, value):
        def op(c):
            with c.transact():
                a = c.set(key, value)
                b = c.incr(key2, 1, 0)
                return a, b, c.get(key, "<default>")

        self.both(f"transact(set {key!r}; incr {key2!r})", op)

    @invariant()
    def key_order(self):
        if not hasattr(self, "cc"):
            return
        self.both("list(iterkeys())", lambda c: list(c.iterkeys()), quiet=True)
        self.both("list(iterkeys(reverse=True))", lambda c: list(c.iterkeys(reverse=True)), quiet=True)


class _Expiry:
    """Mixin: the clock moves; expiry-related operations."""

    @rule(dt=DT)
    def advance_clock(self, dt):
        self.clock.now += dt
        note(f"clock += {dt}")

    @rule(ahead=st.sampled_from([None, None, 0.5, 5, 10**6]))
    def expire(self, ahead):
        if ahead is None:
            self.both("expire()", lambda c: c.expire())
        else:
            now = self.clock.now + ahead
            self.both(f"expire(now=clock+{ahead})", lambda c: c.expire(now))

    @rule()
    def cull(self):
        self.both("cull()", lambda c: c.cull())


class CacheNoExpiry(_CacheOnly):
    """No expiry at all: isolates the core key/value/order semantics."""

    @rule(key=KEYS, value=VALUES, tag=TAGS)
    def set(self, key, value, tag):
        self.both(f"set({key!r}, <{type(value).__name__}>, tag={tag!r})",
                  lambda c: c.set(key, value, tag=tag))

    @rule(key=KEYS, value=VALUES, tag=TAGS)
    def add(self, key, value, tag):
        self.both(f"add({key!r}, tag={tag!r})", lambda c: c.add(key, value, tag=tag))

    @rule(key=KEYS)
    def touch(self, key):
        self.both(f"touch({key!r})", lambda c: c.touch(key))

    @rule(value=VALUES, prefix=PREFIXES, side=st.sampled_from(["back", "front"]), tag=TAGS)
    def push(self, value, prefix, side, tag):
        self.both(f"push(prefix={prefix!r}, side={side}, tag={tag!r})",
                  lambda c: c.push(value, prefix=prefix, side=side, tag=tag))


class CacheWithExpiry(_Expiry, _CacheOnly):
    """Everything, with expiry and a moving clock."""


class FanoutCacheDiff(_Expiry, _Base):
    """FanoutCache(shards=3): the operations it shares with Cache."""

    FANOUT = True


_SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

# KV_DIFF_SCALE=10 runs ten times as many examples (bug hunting); the default keeps the file ~20 s.
_SCALE = int(os.environ.get("KV_DIFF_SCALE", "1"))
CacheNoExpiry.TestCase.settings = settings(max_examples=40 * _SCALE, stateful_step_count=40, **_SETTINGS)
CacheWithExpiry.TestCase.settings = settings(max_examples=60 * _SCALE, stateful_step_count=50, **_SETTINGS)
FanoutCacheDiff.TestCase.settings = settings(max_examples=30 * _SCALE, stateful_step_count=40, **_SETTINGS)

TestCacheNoExpiry = CacheNoExpiry.TestCase
TestCacheWithExpiry = CacheWithExpiry.TestCase
TestFanoutCacheDiff = FanoutCacheDiff.TestCase


# -- fixed edge cases (not worth leaving to chance) -------------------------------------------


def _pair(tmp_path, fanout=False):
    if fanout:
        return impl.FanoutCache(str(tmp_path / "impl"), shards=3), diskcache.FanoutCache(
            str(tmp_path / "ref"), shards=3)
    return impl.Cache(str(tmp_path / "impl")), diskcache.Cache(str(tmp_path / "ref"))


def _same(cc, dc, label, fn, clock=None):
    with frozen_time(clock or FakeClock()):
        got, want = outcome(fn, cc), outcome(fn, dc)
    assert got == want, f"{label}: candlecache {got!r:.1000} != diskcache {want!r:.1000}"
    return want


@pytest.mark.parametrize(
    "setup, op",
    [
        # ints beyond 64 bits are pickled by diskcache: incr on them is a TypeError there
        ("big", lambda c: c.incr("k")),
        # 64-bit overflow: diskcache raises OverflowError and keeps the old value
        ("max", lambda c: c.incr("k")),
        ("str", lambda c: c.incr("k")),
        ("bytes", lambda c: c.incr("k")),
        ("float", lambda c: c.incr("k", 2)),
        ("list", lambda c: c.incr("k")),
        ("none", lambda c: c.incr("k")),
        ("file", lambda c: c.incr("k")),
        ("missing", lambda c: c.incr("k", default=None)),
        ("missing", lambda c: c.decr("k", 2, default=1.5)),
        ("missing", lambda c: c.peekitem()),
        ("missing", lambda c: c.pull()),
        ("missing", lambda c: c.peek(default="d", expire_time=True, tag=True)),
        ("missing", lambda c: c.pop("k", expire_time=True, tag=True)),
        ("missing", lambda c: c.get("k", expire_time=True)),
    ],
)
def test_incr_and_empty_edges(tmp_path, setup, op):
    cc, dc = _pair(tmp_path)
    initial = {
        "big": 2**70, "max": 2**63 - 1, "str": "1", "bytes": b"1", "float": 1.5, "list": [1],
        "none": None, "file": b"x" * 40_000,
    }
    if setup in initial:
        _same(cc, dc, "set", lambda c: c.set("k", initial[setup]))
    _same(cc, dc, f"{setup}: op", op)
    _same(cc, dc, f"{setup}: after", lambda c: (c.get("k", "<default>"), len(c), list(c)))


def test_incr_overflow_keeps_old_value(tmp_path):
    cc, dc = _pair(tmp_path)
    for c in (cc, dc):
        c.set("k", 2**63 - 1)
    _same(cc, dc, "incr at int64 max", lambda c: c.incr("k"))
    _same(cc, dc, "value after", lambda c: c.get("k"))


def test_expire_time_boundaries(tmp_path):
    """expire=0 gives expire_time == now: get/touch/add/contains say gone, incr says present."""
    cc, dc = _pair(tmp_path)
    clock = FakeClock()
    for label, fn in [
        ("set expire=0", lambda c: c.set("k", 1, expire=0)),
        ("get", lambda c: c.get("k", "<d>", expire_time=True)),
        ("contains", lambda c: "k" in c),
        ("incr", lambda c: c.incr("k")),
        ("len", len),
        ("add", lambda c: c.add("k", 10, expire=0)),
        ("touch", lambda c: c.touch("k", 5)),
        ("expire()", lambda c: c.expire()),
        ("list", list),
        ("push expiring", lambda c: c.push("v", expire=-1)),
        ("peek skips expired", lambda c: c.peek(expire_time=True)),
        ("len", len),
    ]:
        _same(cc, dc, label, fn, clock)


def test_one_and_one_point_zero_and_true(tmp_path):
    """1 and 1.0 are one key (the first spelling is kept); True is another key."""
    for fanout in (False, True):
        sub = tmp_path / str(fanout)
        cc, dc = _pair(sub, fanout)
        for label, fn in [
            ("set 1", lambda c: c.set(1, "int")),
            ("set 1.0", lambda c: c.set(1.0, "float")),
            ("set True", lambda c: c.set(True, "bool")),
            ("set (1,)", lambda c: c.set((1,), "t-int")),
            ("set (1.0,)", lambda c: c.set((1.0,), "t-float")),
            ("list", list),
            ("values", lambda c: [c[k] for k in list(c)]),
            ("get 1.0", lambda c: c[1.0]),
            ("len", len),
        ]:
            _same(cc, dc, f"fanout={fanout} {label}", fn)


def test_check_and_volume_on_fresh_and_used_cache(tmp_path):
    cc, dc = _pair(tmp_path)
    for c in (cc, dc):
        assert c.check() == []
        assert c.volume() > 0
        for i in range(50):
            c.set(i, b"v" * (i * 1000))
        c.clear()
        assert c.check() == []
        assert c.volume() > 0


def test_push_front_onto_existing_key_0(tmp_path):
    """Keys 0 and 1 exist; push(side='front') computes key 0. diskcache raises
    sqlite3.IntegrityError; the existing value of key 0 must not be silently replaced."""
    cc, dc = _pair(tmp_path)
    for c in (cc, dc):
        c.set(0, "zero")
        c.set(1, "one")
    res = _same(cc, dc, "push front", lambda c: c.push("pushed", side="front"))
    assert res == ("raise", "lib.IntegrityError")
    _same(cc, dc, "after", lambda c: (c.get(0), c.get(1), len(c), list(c)))
