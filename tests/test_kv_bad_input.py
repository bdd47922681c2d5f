"""Cache and FanoutCache given bad input: unpicklable values, huge keys, a read-only directory,
a closed cache, damaged engine files.

DESIGN.md, "The disk-cache contract" and the error rules: what diskcache raises is raised by the
same type; a failed write leaves the cache as it was; damaged data is detected (``check()``),
repaired (``check(fix=True)``) and never crashes the process; what still decodes is returned.

The engine's file names are not fixed: the tests find its files by listing the cache directory
(everything not ending in ``.val`` and not a lock file).

``CANDLECACHE_TEST_IMPL=diskcache`` runs the diskcache-comparable parts against diskcache alone.
"""

from __future__ import annotations

import errno
import importlib
import json
import multiprocessing
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import diskcache
import pytest

IMPL = os.environ.get("CANDLECACHE_TEST_IMPL", "candlecache")
impl = importlib.import_module(IMPL)
if not hasattr(impl, "Cache"):
    pytest.skip("candlecache.Cache is not there yet", allow_module_level=True)

only_candlecache = pytest.mark.skipif(
    IMPL != "candlecache", reason="about candlecache's own engine files")
CTX = multiprocessing.get_context("spawn")
KINDS = ["Cache", "FanoutCache"]


def open_pair(tmp_path, kind="Cache"):
    if kind == "FanoutCache":
        return (impl.FanoutCache(str(tmp_path / "impl"), shards=3),
                diskcache.FanoutCache(str(tmp_path / "ref"), shards=3))
    return impl.Cache(str(tmp_path / "impl")), diskcache.Cache(str(tmp_path / "ref"))


def outcome(fn, cache):
    try:
        value = fn(cache)
    except Exception as exc:  # noqa: BLE001 - BaseException (a Rust panic) must propagate
        return ("raise", type(exc).__name__)
    return ("ok", type(value).__name__, value)


def same(cc, dc, label, fn):
    got, want = outcome(fn, cc), outcome(fn, dc)
    assert got == want, f"{label}: candlecache {got!r:.300} != diskcache {want!r:.300}"
    return want


def snapshot(cache):
    keys = list(cache)
    return keys, [cache.get(k) for k in keys], len(cache)


# -- unpicklable and unloadable values ---------------------------------------------------------


class Boom:
    def __reduce__(self):
        raise ValueError("boom while pickling")


def _explode():
    raise RuntimeError("boom while unpickling")


class LoadBoom:
    def __reduce__(self):
        return (_explode, ())


UNPICKLABLE = {
    "lambda": lambda: 0,
    "lock": threading.Lock(),
    "generator": (i for i in range(3)),
    "reduce-raises": Boom(),
    "nested": [b"x" * 40_000, {"f": lambda: 1}],  # large, fails only deep inside
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("what", sorted(UNPICKLABLE))
def test_unpicklable_value_raises_like_diskcache_and_changes_nothing(tmp_path, kind, what):
    value = UNPICKLABLE[what]
    cc, dc = open_pair(tmp_path, kind)
    for c in (cc, dc):
        c.set("present", b"old" * 20_000, tag="t")
        c.set("small", 1)
    before = [snapshot(c) for c in (cc, dc)]
    ops = {
        "set new": lambda c: c.set("new", value),
        "set over existing": lambda c: c.set("present", value),
        "setitem": lambda c: c.__setitem__("small", value),
        "add": lambda c: c.add("new", value),
        "set expire tag": lambda c: c.set("new", value, expire=10, tag="t"),
    }
    if kind == "Cache":
        ops["push"] = lambda c: c.push(value)
        ops["push prefix"] = lambda c: c.push(value, prefix="q", side="front")
    for label, op in ops.items():
        res = same(cc, dc, f"{what}: {label}", op)
        assert res[0] == "raise", res
    assert [snapshot(c) for c in (cc, dc)] == before
    assert cc.get("present", tag=True) == (b"old" * 20_000, "t")
    assert cc.check() == []  # no orphaned value file left behind
    assert "new" not in cc and len(cc) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_unpicklable_keys(tmp_path, kind):
    cc, dc = open_pair(tmp_path, kind)
    for c in (cc, dc):
        c.set("a", 1)
    for key in (lambda: 0, threading.Lock(), ("t", Boom())):
        for label, op in {
            "set": lambda c: c.set(key, 1),
            "get": lambda c: c.get(key),
            "contains": lambda c: key in c,
            "delete": lambda c: c.delete(key),
            "pop": lambda c: c.pop(key),
            "incr": lambda c: c.incr(key),
            "touch": lambda c: c.touch(key),
        }.items():
            same(cc, dc, f"{key!r}: {label}", op)
    same(cc, dc, "after", lambda c: (list(c), len(c), c.get("a")))
    assert cc.check() == []


@pytest.mark.parametrize("kind", KINDS)
def test_value_that_fails_to_unpickle(tmp_path, kind):
    cc, dc = open_pair(tmp_path, kind)
    for label, op in {
        "set": lambda c: c.set("k", LoadBoom()),
        "set big": lambda c: c.set("big", [LoadBoom(), b"x" * 40_000]),
        "get": lambda c: c.get("k"),
        "get big": lambda c: c.get("big"),
        "getitem": lambda c: c["k"],
        "pop": lambda c: c.pop("k"),
        "after pop": lambda c: ("k" in c, len(c)),
        "get other": lambda c: c.get("nope", 7),
    }.items():
        same(cc, dc, label, op)
    assert cc.set("k2", 2) and cc.get("k2") == 2


# -- huge keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_huge_keys(tmp_path, kind):
    cc, dc = open_pair(tmp_path, kind)
    rnd = random.Random(1)
    big_str = "".join(rnd.choice("abcé€😀") for _ in range(1 << 20))
    big_bytes = rnd.randbytes(1 << 20)
    big_tuple = ("t", big_bytes[: 1 << 19], 1)
    keys = [big_str, big_bytes, big_tuple, big_str[:-1] + "X"]
    for i, key in enumerate(keys):
        for c in (cc, dc):
            assert c.set(key, i if i % 2 else b"v" * 50_000, tag="big") is True
    same(cc, dc, "len", len)
    same(cc, dc, "list", list)
    same(cc, dc, "reversed", lambda c: list(reversed(c)))
    for i, key in enumerate(keys):
        same(cc, dc, f"get {i}", lambda c: c.get(key, expire_time=True, tag=True))
        same(cc, dc, f"contains {i}", lambda c: key in c)
        same(cc, dc, f"incr {i}", lambda c: c.incr(key) if i % 2 else None)
    if kind == "Cache":
        same(cc, dc, "iterkeys", lambda c: list(c.iterkeys()))
        same(cc, dc, "peekitem", lambda c: c.peekitem(last=False))
    same(cc, dc, "pop", lambda c: c.pop(big_bytes))
    same(cc, dc, "delete", lambda c: c.delete(big_str))
    same(cc, dc, "after", lambda c: (list(c), len(c)))
    # state survives a reopen
    cc.close()
    cc2 = impl.FanoutCache(cc.directory, shards=3) if kind == "FanoutCache" else impl.Cache(
        cc.directory)
    same(cc2, dc, "reopened", lambda c: [(k, c.get(k)) for k in c])
    same(cc2, dc, "evict", lambda c: c.evict("big"))
    assert len(cc2) == 0 and cc2.check() == []


# -- read-only directory ----------------------------------------------------------------------

_RO_CHILD = textwrap.dedent(
    """
    import errno, json, os, sys, traceback
    import {impl} as lib
    kind, directory, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    def open_cache(d):
        return lib.FanoutCache(d, shards=3) if kind == "FanoutCache" else lib.Cache(d)
    if phase == "populate":
        c = open_cache(os.path.join(directory, "c"))
        c.set("small", 1); c.set("big", b"b" * 50_000); c.close()
        sys.exit(0)
    out = {{}}
    def attempt(label, fn):
        try:
            out[label] = ["ok", repr(fn())[:100]]
        except BaseException as exc:
            out[label] = ["raise", type(exc).__module__ + "." + type(exc).__name__,
                          getattr(exc, "errno", None), str(exc)[:300],
                          isinstance(exc, OSError)]
    attempt("open new", lambda: open_cache(os.path.join(directory, "new")))
    attempt("open existing", lambda: open_cache(os.path.join(directory, "c")))
    try:
        c = open_cache(os.path.join(directory, "c"))
    except BaseException:
        c = None
    if c is not None:
        attempt("get small", lambda: c.get("small"))
        attempt("get big", lambda: c.get("big") == b"b" * 50_000)
        attempt("set", lambda: c.set("x", 1))
        attempt("set big", lambda: c.set("y", b"y" * 50_000))
        attempt("incr", lambda: c.incr("small"))
        attempt("delete", lambda: c.delete("small"))
        attempt("clear", lambda: c.clear())
        attempt("get small after", lambda: c.get("small"))
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.parametrize("kind", KINDS)
def test_read_only_directory_gives_clear_oserror(tmp_path, kind):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "child.py"
    script.write_text(_RO_CHILD.format(impl=IMPL))
    py = sys.executable
    shell = (
        f"mount -t tmpfs tmpfs {mnt} && "
        f"{py} {script} {kind} {mnt} populate && "
        f"mount -o remount,ro {mnt} && "
        f"{py} {script} {kind} {mnt} readonly"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True,
                          env=env, timeout=120)
    if "RESULT " not in proc.stdout and ("mount" in proc.stderr or "unshare" in proc.stderr):
        pytest.skip(f"cannot mount a private read-only tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(json.dumps(out, indent=1))
    if IMPL != "candlecache":
        pytest.skip("diskcache raises sqlite3.OperationalError here, not OSError")
    # Every failure is an OSError that says why (EROFS/EACCES), nothing else, no crash.
    failures = {k: v for k, v in out.items() if v[0] == "raise"}
    for label, res in failures.items():
        assert res[4], f"{label}: expected OSError, got {res[1]}: {res[3]}"
        assert res[2] in (errno.EROFS, errno.EACCES, errno.EPERM), f"{label}: errno {res}"
    assert out["open new"][0] == "raise", "creating a cache on a read-only filesystem succeeded"
    for label in ("set", "set big", "incr", "delete"):
        if label in out:
            assert out[label][0] == "raise", f"{label} on a read-only filesystem did not raise"
    # reads, if the cache could be opened at all, still see the data
    if out.get("get small", ["raise"])[0] == "ok":
        assert out["get small"][1] == "1"
        assert out["get small after"][1] == "1"


# -- closed cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_closed_cache_reopens_like_diskcache(tmp_path, kind):
    cc, dc = open_pair(tmp_path, kind)
    steps = [
        ("set", lambda c: c.set("a", 1)),
        ("close", lambda c: c.close()),
        ("close again", lambda c: c.close()),
        ("get after close", lambda c: c.get("a")),
        ("close", lambda c: c.close()),
        ("set after close", lambda c: c.set("b", b"x" * 40_000)),
        ("close", lambda c: c.close()),
        ("len after close", len),
        ("close", lambda c: c.close()),
        ("list after close", list),
        ("close", lambda c: c.close()),
        ("incr after close", lambda c: c.incr("n")),
        ("close", lambda c: c.close()),
        ("contains after close", lambda c: "a" in c),
        ("close", lambda c: c.close()),
        ("check after close", lambda c: c.check()),
        ("close", lambda c: c.close()),
        ("stats after close", lambda c: c.stats()),
        ("close", lambda c: c.close()),
        ("volume > 0 after close", lambda c: c.volume() > 0),
        ("close", lambda c: c.close()),
        ("with", lambda c: c.__enter__() is c),
        ("exit", lambda c: c.__exit__(None, None, None)),
        ("get big after exit", lambda c: c.get("b") == b"x" * 40_000),
        ("delete after close", lambda c: (c.close(), c.delete("a"))[1]),
        ("clear after close", lambda c: (c.close(), c.clear())[1]),
    ]
    for label, fn in steps:
        same(cc, dc, label, fn)


# -- damaged engine files ---------------------------------------------------------------------


def engine_files(directory: str) -> dict[str, int]:
    """The engine's own files (not value files, not locks), path -> size."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".val") or "lock" in name.lower():
                continue
            path = os.path.join(root, name)
            found[path] = os.path.getsize(path)
    return found


def value_files(directory: str) -> list[str]:
    return sorted(
        os.path.join(root, n) for root, _, files in os.walk(directory) for n in files
        if n.endswith(".val"))


SMALL = {f"k{i:04d}": {"i": i, "pad": "p" * (i % 50)} for i in range(400)}
LARGE = {f"L{i}": random.Random(i).randbytes(40_000 + i) for i in range(4)}


def _populate_for_damage(directory: str) -> str:
    """Fill a cache; return the engine file that grew while small values were written (the log)."""
    c = impl.Cache(directory)
    c.set("first", "first")
    before = engine_files(directory)
    for k, v in SMALL.items():
        c.set(k, v)
    for k, v in LARGE.items():
        c.set(k, v)
    c.close()
    after = engine_files(directory)
    grown = [p for p in after if after[p] > before.get(p, 0)]
    pool = grown or list(after)
    assert pool, f"no engine files in {os.listdir(directory)}"
    return max(pool, key=lambda p: after[p])


def _damage(path: str, how: str) -> None:
    data = bytearray(Path(path).read_bytes())
    n = len(data)
    if "flip" in how:
        mid = n // 2
        for i in range(mid, min(n, mid + 16)):
            data[i] ^= 0xA5
    if "truncate" in how:
        data = data[: max(0, len(data) - 37)]  # mid-record, most likely
    if "garbage" in how:
        data += random.Random(3).randbytes(100)
    if "zero" in how:
        q = n * 3 // 4
        data[q: q + 4096] = bytes(len(data[q: q + 4096]))
    Path(path).write_bytes(bytes(data))


def _read_all(directory: str, out: str) -> None:
    """In a child process: read everything back after damage, check, fix, check, use."""
    import candlecache as lib

    allowed = tuple(
        e for e in (getattr(lib, "CorruptionError", None),) if e is not None
    )
    report = {"unexpected": [], "returned": [], "missing": [], "wrong": [], "corrupt": []}

    def note_exc(where, exc):
        report["unexpected"].append(f"{where}: {type(exc).__module__}.{type(exc).__name__}: {exc}")

    expected = dict(SMALL, **LARGE, first="first")
    try:
        c = lib.Cache(directory)
    except BaseException as exc:  # noqa: BLE001
        note_exc("open", exc)
        write = json.dumps(report)
        Path(out).write_text(write)
        return
    for k, want in expected.items():
        try:
            got = c.get(k, "<missing>")
        except allowed:
            report["corrupt"].append(k)
            continue
        except BaseException as exc:  # noqa: BLE001
            note_exc(f"get {k}", exc)
            continue
        if got == "<missing>":
            report["missing"].append(k)
        elif got == want:
            report["returned"].append(k)
        else:
            report["wrong"].append(k)
    try:  # before anything writes: a write may rewrite the log
        report["check_first"] = [str(w.message) for w in c.check()]
    except BaseException as exc:  # noqa: BLE001
        note_exc("check", exc)
    for label, fn in [("len", len), ("list", list), ("reversed", lambda c: list(reversed(c))),
                      ("iterkeys", lambda c: list(c.iterkeys())), ("stats", lambda c: c.stats()),
                      ("volume", lambda c: c.volume()), ("peekitem", lambda c: c.peekitem())]:
        try:
            fn(c)
        except allowed:
            pass
        except KeyError:
            pass
        except BaseException as exc:  # noqa: BLE001
            note_exc(label, exc)
    try:
        report["check"] = [str(w.message) for w in c.check()]
        report["check_fix"] = [str(w.message) for w in c.check(fix=True)]
        report["check_after"] = [str(w.message) for w in c.check()]
    except BaseException as exc:  # noqa: BLE001
        note_exc("check", exc)
    try:
        c2 = lib.Cache(directory)
        report["after_fix_returned"] = [k for k in report["returned"] if c2.get(k) == expected[k]]
        report["after_fix_wrong"] = [
            k for k in expected if c2.get(k, "<missing>") not in ("<missing>", expected[k])]
        c2.set("new", b"n" * 50_000)
        c2.set("new-small", 5)
        report["works"] = c2.get("new") == b"n" * 50_000 and c2.get("new-small") == 5
        report["len_matches"] = len(c2) == len(list(c2))
        report["check_final"] = [str(w.message) for w in c2.check()]
    except BaseException as exc:  # noqa: BLE001
        note_exc("after fix", exc)
    Path(out).write_text(json.dumps(report))


def _run_reader(tmp_path, directory):
    out = tmp_path / "report.json"
    p = CTX.Process(target=_read_all, args=(directory, str(out)))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        pytest.fail("reading the damaged cache hung")
    assert p.exitcode == 0, f"reading the damaged cache crashed the process (exit {p.exitcode})"
    report = json.loads(out.read_text())
    print(json.dumps({k: (v if not isinstance(v, list) or len(v) < 8 else f"{len(v)} items")
                      for k, v in report.items()}, indent=1))
    return report


@only_candlecache
@pytest.mark.parametrize("how", ["flip", "truncate", "flip+truncate", "garbage", "zero"])
def test_damaged_log(tmp_path, how):
    d = str(tmp_path / "c")
    log = _populate_for_damage(d)
    _damage(log, how)
    r = _run_reader(tmp_path, d)
    assert r["unexpected"] == [], r["unexpected"]
    assert r["wrong"] == [], f"damaged records decoded into wrong values: {r['wrong'][:10]}"
    # what decodes is still returned: the records written before the damage
    assert "first" in r["returned"]
    if how in ("truncate", "garbage"):
        assert len(r["returned"]) >= len(SMALL) // 2
    if how == "garbage":  # a torn tail is ignored: nothing is lost
        assert r["missing"] == [] and r["corrupt"] == []
    else:
        log_warnings = [m for m in r["check_first"] if not m.startswith(("unknown file", "empty dir"))]
        assert log_warnings, f"check() did not report the damaged log: {r['check_first']}"
    assert r["check_after"] == [], r["check_after"]
    assert r["check_final"] == [], r["check_final"]
    assert r["after_fix_wrong"] == []
    assert r["after_fix_returned"] == r["returned"], "check(fix=True) dropped readable values"
    assert r["works"] and r["len_matches"]


@only_candlecache
@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "zero"])
def test_damaged_every_engine_file(tmp_path, how):
    """Damage every engine file at once (logs, indexes, settings, whatever there is)."""
    d = str(tmp_path / "c")
    _populate_for_damage(d)
    for path in engine_files(d):
        if os.path.getsize(path) > 0:
            _damage(path, how)
    r = _run_reader(tmp_path, d)
    assert r["unexpected"] == [], r["unexpected"]
    assert r["wrong"] == [], r["wrong"][:10]
    assert r.get("check_after") == [] and r.get("check_final") == []
    assert r.get("works") and r.get("len_matches")


@only_candlecache
@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_value_file(tmp_path, how):
    """A large value's own file damaged: never returned as wrong bytes; check reports, fix repairs."""
    d = str(tmp_path / "c")
    _populate_for_damage(d)
    files = value_files(d)
    assert len(files) >= len(LARGE), os.listdir(d)
    for path in files:
        if how == "delete":
            os.remove(path)
        else:
            _damage(path, how)
    r = _run_reader(tmp_path, d)
    assert r["unexpected"] == [], r["unexpected"]
    assert r["wrong"] == [], f"damaged value files returned wrong content: {r['wrong']}"
    assert set(SMALL) <= set(r["returned"])
    if how == "delete":
        # peek/peekitem drop a row whose value file is gone for good (diskcache loops forever
        # there), so by the time check() runs it may have nothing left to report.
        assert r["check"] or not (set(LARGE) & set(r["returned"]))
    else:
        assert r["check_first"], "check() did not report the damaged value files"
    assert r["check_after"] == [] and r["check_final"] == []
    assert r["works"] and r["len_matches"]


@only_candlecache
def test_unknown_files_are_reported_like_diskcache(tmp_path):
    cc, dc = open_pair(tmp_path)
    for c in (cc, dc):
        c.set("big", b"x" * 50_000)
        os.makedirs(os.path.join(c.directory, "ab", "cd"), exist_ok=True)
        Path(c.directory, "ab", "cd", "stray.val").write_bytes(b"junk")
        os.makedirs(os.path.join(c.directory, "ef", "01"), exist_ok=True)
    w_cc, w_dc = cc.check(), dc.check()
    cats = lambda ws: sorted(w.category.__name__ for w in ws)  # noqa: E731
    assert cats(w_cc) == cats(w_dc), ([str(w.message) for w in w_cc], [str(w.message) for w in w_dc])
    cc.check(fix=True)
    for _ in range(3):
        dc.check(fix=True)
    assert cc.check() == [] and dc.check() == []
    assert cc.get("big") == b"x" * 50_000


@only_candlecache
@pytest.mark.parametrize("write_first", [False, True])
def test_damaged_log_keeps_intact_records_after_the_damage(tmp_path, write_first):
    """16 flipped bytes in the middle of the log damage one or two records. The records after
    them are intact (each is framed with its own checksum), so their values still decode and must
    still be returned, also after an unrelated write (which must not discard them)."""
    d = str(tmp_path / "c")
    log = _populate_for_damage(d)
    _damage(log, "flip")
    if write_first:
        c = impl.Cache(d)
        c.set("unrelated", 1)
        c.close()
    r = _run_reader(tmp_path, d)
    assert r["unexpected"] == [] and r["wrong"] == []
    lost = r["missing"] + r["corrupt"]
    assert len(lost) <= 5, f"{len(lost)} of {len(SMALL) + len(LARGE) + 1} values lost to 16 flipped bytes"
