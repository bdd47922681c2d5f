"""Child processes for test_crash_concurrency.py: ``python _workers.py COMMAND JSON_ARGS``.

Each command is run in its own interpreter (real processes: separate locks, separate crashes).
Calls to the fetch callback are recorded as JSON lines appended with O_APPEND to a shared
file, one ``os.write`` per line, so lines from several processes never interleave.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import polars as pl

import candlecache
from memory_exchange import DAY, MINUTE, T0, MemoryExchange

SYMBOL = "BTC/USDT"
PERIOD = "1m"


def record(path: str | None, **fields) -> None:
    if path is None:
        return
    line = (json.dumps({"pid": os.getpid(), **fields}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def recording_callback(ex: MemoryExchange, calls_file: str | None, sleep: float = 0.0, sleep_from: int = 0):
    """``ex.fetch_ohlcv`` that records each call (at its start and end) and sleeps per call."""
    n_calls = 0

    def cb(symbol, period, since, limit, **params):
        nonlocal n_calls
        n_calls += 1
        record(calls_file, event="start", since=since, limit=limit)
        if sleep and n_calls > sleep_from:
            time.sleep(sleep)
        rows = ex.fetch_ohlcv(symbol, period, since, limit)
        record(calls_file, event="end", since=since, limit=limit, n=len(rows), last=rows[-1][0] if rows else None)
        return rows

    return cb


def touch(path: str) -> None:
    Path(path).write_text(str(os.getpid()))


def wait_for(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.001)


def cmd_race(a: dict) -> None:
    """Wait for the start file, ask for one range, save the result."""
    ex = MemoryExchange(cap=a["cap"])
    cb = recording_callback(ex, a["calls_file"], a["sleep"])
    touch(a["ready_file"])
    wait_for(a["go_file"])
    if "storage_options" in a:
        # An object store root, as one machine of many: its own MarketCache and lease.
        with candlecache.MarketCache(a["base"], storage_options=a["storage_options"], lease=a.get("lease", 60)) as c:
            df = c.get_ohlcv(SYMBOL, PERIOD, a["start"], a["count"], cb, lock_timeout=60.0)
    else:
        df = candlecache.get_ohlcv_with_cache(a["base"], SYMBOL, PERIOD, a["start"], a["count"], cb, lock_timeout=60.0)
    df.write_parquet(a["out_file"])


def churn_ops(rnd: int, seed: int, d0: int):
    """The writes of one round of the kill -9 test, in order (endless enough to be killed)."""
    rng = random.Random(seed)
    a0 = T0 + rnd * 3000 * MINUTE
    d0 = d0 + rnd * 2000 * MINUTE
    n = rng.randint(100, 400)
    j = 0
    yield a0, n, True
    for i in range(1, 400):
        if i % 4 == 0:
            # enable_cache=False rewrite of stored rows (hits main files and deltas: compaction)
            cnt = rng.randint(5, 300)
            s = rng.randrange(T0, a0 + n * MINUTE - cnt * MINUTE, MINUTE)
            yield s, cnt, False
        elif i % 7 == 0 and j < 39:
            # a distant range, in another partition, growing by small pieces
            yield d0 + j * 50 * MINUTE, 50, True
            j += 1
        elif i % 13 == 0:
            # forget a stored range with its rows (cache=None): coverage goes before rows
            cnt = rng.randint(5, 300)
            s = rng.randrange(T0, a0 + n * MINUTE - cnt * MINUTE, MINUTE)
            yield s, cnt, None
        elif i % 11 == 0:
            # one request spanning cached rows and a new tail
            s = rng.randrange(T0, a0 + n * MINUTE, MINUTE)
            add = rng.randint(1, 60)
            n = min(n + add, 2990)
            yield s, (a0 + n * MINUTE - s) // MINUTE, True
        else:
            n = min(n + rng.randint(1, 40), 2990)  # small appends: delta files, then compactions
            yield a0, n, True


def cmd_churn(a: dict) -> None:
    ex = MemoryExchange()
    touch(a["ready_file"])
    for i, (start, count, cache) in enumerate(churn_ops(a["round"], a["seed"], a["d0"])):
        if cache is None:
            candlecache.forget(a["base"], SYMBOL, PERIOD, start, start + (count - 1) * MINUTE, drop_rows=True)
        else:
            candlecache.get_ohlcv_with_cache(a["base"], SYMBOL, PERIOD, start, count, ex.fetch_ohlcv, enable_cache=cache)
        record(a.get("progress_file"), event="op", i=i)
    touch(a["done_file"])


def cmd_slowfetch(a: dict) -> None:
    """One long multi-page fetch whose callback sleeps from call ``sleep_from + 1`` on."""
    ex = MemoryExchange(cap=a["cap"])
    cb = recording_callback(ex, a["calls_file"], a["sleep"], a["sleep_from"])
    touch(a["ready_file"])
    candlecache.get_ohlcv_with_cache(a["base"], SYMBOL, PERIOD, a["start"], a["count"], cb)
    touch(a["done_file"])


def _outcome(fn) -> dict:
    """What calling ``fn`` did: its result, or the exception's type, errno and identity."""
    try:
        value = fn()
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        return {
            "raised": type(e).__name__,
            "mro": [c.__name__ for c in type(e).__mro__],
            "errno": getattr(e, "errno", None),
            "message": str(e),
            "exc": e,
        }
    return {"raised": None, "value": value}


def _folder_state(folder: Path) -> dict:
    bad = []
    for p in folder.glob("*.parquet"):
        try:
            pl.read_parquet(p)
        except Exception as e:  # noqa: BLE001
            bad.append(f"{p.name}: {e}")
    return {"unreadable": bad, "names": sorted(p.name for p in folder.iterdir())}


def cmd_diskfull(a: dict) -> None:
    """Runs inside ``unshare -m`` with a tiny tmpfs mounted at ``a["mnt"]``; reports to ``a["out"]``."""
    base = Path(a["mnt"]) / "cache"
    out = Path(a["out"])
    folder = candlecache.data_dir(base, SYMBOL, PERIOD)
    ex = MemoryExchange()
    truth = ex.truth
    report: dict = {}

    def get(start, count, cb, **kw):
        return candlecache.get_ohlcv_with_cache(base, SYMBOL, PERIOD, start, count, cb, **kw)

    def refuse(*args, **kw):
        raise AssertionError(f"callback called for a cached range: {args}")

    small = get(T0, 500, ex.fetch_ohlcv)
    report["small_equals_truth"] = small.equals(truth(SYMBOL, PERIOD, T0, 500))

    # Fill the file system.
    filler = Path(a["mnt"]) / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * 4096
        try:
            while True:
                f.write(block)
        except OSError as e:
            report["fill_errno"] = e.errno

    big_start, big_count = T0 + 1000 * MINUTE, 20_000
    o = _outcome(lambda: get(big_start, big_count, ex.fetch_ohlcv))
    report["full_uncached"] = {k: v for k, v in o.items() if k not in ("exc", "value")}
    report["state_after_full"] = _folder_state(folder)

    boom = RuntimeError("exchange down")
    paged = MemoryExchange(cap=1000)

    def flaky(symbol, period, since, limit):
        if len(paged.calls) >= 2:
            raise boom
        return paged.fetch_ohlcv(symbol, period, since, limit)

    o = _outcome(lambda: get(big_start, big_count, flaky))
    report["full_callback_raises"] = {k: v for k, v in o.items() if k not in ("exc", "value")}
    report["full_callback_raises"]["is_boom"] = o.get("exc") is boom

    o = _outcome(lambda: get(T0, 500, refuse))
    report["full_cached_read"] = {
        "raised": o["raised"],
        "message": o.get("message"),
        "equals": o["raised"] is None and o["value"].equals(small),
    }

    # Free the space again.
    filler.unlink()
    calls_before = len(ex.calls)
    o = _outcome(lambda: get(T0, 500, ex.fetch_ohlcv))
    report["freed_cached_read"] = {
        "raised": o["raised"],
        "message": o.get("message"),
        "equals": o["raised"] is None and o["value"].equals(small),
        "calls": len(ex.calls) - calls_before,
    }
    o = _outcome(lambda: get(big_start, big_count, ex.fetch_ohlcv))
    report["freed_big"] = {
        "raised": o["raised"],
        "message": o.get("message"),
        "equals": o["raised"] is None and o["value"].equals(truth(SYMBOL, PERIOD, big_start, big_count)),
    }
    cached = candlecache.read_cached(base, SYMBOL, PERIOD)
    report["read_cached_unique"] = cached["time"].is_unique().all()
    report["read_cached_height"] = cached.height
    report["state_after_free"] = _folder_state(folder)

    # A read-only file system: writes fail with an OSError, cached reads still work.
    import subprocess

    ro = subprocess.run(["mount", "-o", "remount,ro", a["mnt"]], capture_output=True, text=True)
    report["remount_ro"] = ro.returncode
    if ro.returncode == 0:
        o = _outcome(lambda: get(T0 + 40 * DAY, 100, ex.fetch_ohlcv))
        report["ro_uncached"] = {k: v for k, v in o.items() if k not in ("exc", "value")}
        o = _outcome(lambda: get(T0, 500, refuse))
        report["ro_cached_read"] = {
            "raised": o["raised"],
            "message": o.get("message"),
            "equals": o["raised"] is None and o["value"].equals(small),
        }
    out.write_text(json.dumps(report, default=str))


def main() -> None:
    cmd, args = sys.argv[1], json.loads(sys.argv[2])
    {"race": cmd_race, "churn": cmd_churn, "slowfetch": cmd_slowfetch, "diskfull": cmd_diskfull}[cmd](args)


if __name__ == "__main__":
    main()
