"""Benchmark: candlecache.Cache / FanoutCache vs python-diskcache 5.6.3 vs diskcache-rs 0.4.10.

Key-value load on string keys with 1 KiB bytes values (20k keys by default): get hits, sets, a
90% get / 10% set mix, the same mix and a write-heavy one (half sets) from 4 processes sharing
one directory (aggregate ops/s, lost values, and the time one operation takes, median and p99:
under contention that is mostly waiting for the other processes' locks), opening a directory
that holds the 20k entries (new process, first get included), and 1 MiB values. candlecache is
also measured with ``durable=True`` (set rate beside diskcache's default, which does not fsync)
and, for the write-heavy mix, with lock waits polling as before this release
(``CANDLECACHE_LOCK_POLL=1``). Every library is used with its defaults: ``Cache(directory)`` and
``FanoutCache(directory, shards=8)``; each gets fresh temporary directories. Prints one Markdown
table of medians and ratios measured in the same run. Not a test: nothing here gates CI, and a
library that is missing, or fails at some operation, gets "n/a" / "error: ..." in that cell.

    pip install diskcache==5.6.3 diskcache-rs==0.4.10
    python benches/kv.py            # about 6.5 minutes on 2 cores (three libraries)
    python benches/kv.py --quick    # smoke run, a few seconds per library
    python benches/kv.py --frames   # DataFrames as values (kv_frames.py), about 2 minutes

diskcache-rs is imported as ``diskcache_rs``; its diskcache-compatible classes are
``diskcache_rs.Cache`` / ``diskcache_rs.FanoutCache`` (Python wrappers over the Rust ``PyCache``).
Its ``set`` returns False and its ``get`` returns the default instead of raising, so this bench
counts misses, failed sets and lost values rather than trusting return values.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

VALUE_SIZE = 1024
BIG_SIZE = 1 << 20
SHARDS = 8
NPROC = 4
CHILD_TIMEOUT = 120.0  # seconds a child process may take before it is reported as an error

# name shown -> (import name, distribution name)
LIBS: dict[str, tuple[str, str]] = {
    "candlecache": ("candlecache", "candlecache"),
    "diskcache": ("diskcache", "diskcache"),
    "diskcache-rs": ("diskcache_rs", "diskcache-rs"),
}
BASELINE = "diskcache"
SUBJECT = "candlecache"


class NotAvailable(Exception):
    """The library (or its diskcache-compatible class) is not there: the cell shows n/a."""


def cache_class(lib: str, flavor: str) -> Any:
    modname = LIBS[lib][0]
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:
        raise NotAvailable(f"import {modname} failed: {e}") from e
    cls = getattr(mod, flavor, None)
    if cls is None:
        raise NotAvailable(f"{modname}.{flavor} does not exist")
    return cls


def open_cache(lib: str, flavor: str, directory: str, **settings: Any) -> Any:
    cls = cache_class(lib, flavor)
    if flavor == "FanoutCache":
        return cls(directory, shards=SHARDS, **settings)
    return cls(directory, **settings)


def close_quietly(cache: Any) -> None:
    try:
        cache.close()
    except Exception:
        pass


def key(i: int) -> str:
    return f"key-{i:08d}"


_BASE = random.Random(1234).randbytes(BIG_SIZE)


def value(tag_a: int, tag_b: int, size: int = VALUE_SIZE) -> bytes:
    """Distinct bytes per (tag_a, tag_b): a 16-byte header then fixed random filler."""
    return struct.pack("<qq", tag_a, tag_b) + _BASE[16:size]


def mixed_plan(
    rng: random.Random, n_ops: int, n_keys: int, set_keys: list[int] | None = None, set_share: float = 0.1,
) -> list[tuple[bool, int]]:
    """Gets of any key and `set_share` sets (of any key, or of one of set_keys)."""
    plan = []
    for _ in range(n_ops):
        if rng.random() < set_share:
            idx = rng.choice(set_keys) if set_keys is not None else rng.randrange(n_keys)
            plan.append((True, idx))
        else:
            plan.append((False, rng.randrange(n_keys)))
    return plan


# --------------------------------------------------------------------------- result cells


@dataclass
class Cell:
    value: float | None = None  # the median
    text: str | None = None  # "n/a" or "error: ..." when there is no value
    notes: list[str] = field(default_factory=list)

    def render(self, fmt: Callable[[float], str]) -> str:
        if self.value is None:
            s = self.text or "n/a"
        else:
            s = fmt(self.value)
        if self.notes:
            s += " (" + "; ".join(self.notes) + ")"
        return s.replace("|", "\\|")


def error_cell(e: BaseException) -> Cell:
    if isinstance(e, NotAvailable):
        return Cell(text="n/a")
    msg = f"{type(e).__name__}: {e}".replace("\n", " ")
    if len(msg) > 80:
        msg = msg[:77] + "..."
    return Cell(text=f"error: {msg}")


def guarded(fn: Callable[[], Cell]) -> Cell:
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - the bench never crashes on a library's failure
        if isinstance(e, KeyboardInterrupt):
            raise
        return error_cell(e)


# --------------------------------------------------------------------------- single-process phases


@dataclass
class Cfg:
    n_keys: int
    set_repeat: int  # each set repeat fills a fresh directory
    repeat: int  # get / mixed repeats
    mp_ops: int  # ops per process in the 4-process mix
    mp_repeat: int
    open_repeat: int
    n_big: int
    big_repeat: int
    warmup: int


def timed_loop(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    bad = fn()
    return time.perf_counter() - t0, bad


def bench_set(lib: str, flavor: str, cfg: Cfg, tmproot: str, **settings: Any) -> tuple[Cell, Any, str | None]:
    """Insert n_keys into a fresh cache, `repeat` times (fresh dir each). Returns the last cache, open."""
    keys = [key(i) for i in range(cfg.n_keys)]
    rates, failed = [], 0
    cache, directory = None, None
    for r in range(cfg.set_repeat):
        if cache is not None:
            close_quietly(cache)
            shutil.rmtree(directory, ignore_errors=True)
        directory = tempfile.mkdtemp(prefix=f"{lib}-{flavor}-set{r}-", dir=tmproot)
        cache = open_cache(lib, flavor, directory, **settings)
        for i in range(cfg.warmup):
            cache.set(f"warm-{i}", value(-1, i))
        for i in range(cfg.warmup):
            cache.delete(f"warm-{i}")
        vals = [value(r, i) for i in range(cfg.n_keys)]

        def run() -> int:
            bad = 0
            s = cache.set
            for k, v in zip(keys, vals):
                if s(k, v) is False:
                    bad += 1
            return bad

        dt, bad = timed_loop(run)
        failed += bad
        rates.append(cfg.n_keys / dt)
    cell = Cell(statistics.median(rates))
    if failed:
        cell.notes.append(f"{failed} set() returned False")
    return cell, cache, directory


def bench_durable_set(lib: str, flavor: str, cfg: Cfg, tmproot: str) -> Cell:
    """Sets with ``durable=True`` (each flushed to stable storage before it returns); fewer keys,
    since each costs a flush of the disk."""
    small = Cfg(**{**cfg.__dict__, "n_keys": min(cfg.n_keys, 2000), "set_repeat": min(cfg.set_repeat, 3)})
    cell, cache, directory = bench_set(lib, flavor, small, tmproot, durable=True)
    close_quietly(cache)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
    return cell


def bench_get(cache: Any, cfg: Cfg, expect_round: int) -> Cell:
    order = list(range(cfg.n_keys))
    random.Random(7).shuffle(order)
    keys = [key(i) for i in order]
    for k in keys[: cfg.warmup]:
        cache.get(k)
    # verify once, outside the timing: every key holds the value of the last set round
    wrong = sum(1 for i in range(0, cfg.n_keys, max(1, cfg.n_keys // 500)) if cache.get(key(i)) != value(expect_round, i))
    rates, misses = [], 0

    def run() -> int:
        g = cache.get
        m = 0
        for k in keys:
            if g(k) is None:
                m += 1
        return m

    for _ in range(cfg.repeat):
        dt, m = timed_loop(run)
        misses += m
        rates.append(cfg.n_keys / dt)
    cell = Cell(statistics.median(rates))
    if misses:
        cell.notes.append(f"{misses} misses")
    if wrong:
        cell.notes.append(f"{wrong} wrong values in a sample")
    return cell


def bench_mixed(cache: Any, cfg: Cfg) -> Cell:
    rates, misses, failed = [], 0, 0
    for r in range(cfg.repeat):
        rng = random.Random(100 + r)
        plan = mixed_plan(rng, cfg.n_keys, cfg.n_keys)
        ops = [(True, key(i), value(1000 + r, i)) if is_set else (False, key(i), None) for is_set, i in plan]
        for is_set, k, v in ops[: cfg.warmup]:
            cache.get(k)

        def run() -> int:
            g, s = cache.get, cache.set
            bad = 0
            for is_set, k, v in ops:
                if is_set:
                    if s(k, v) is False:
                        bad += 1
                elif g(k) is None:
                    bad += 1 << 32
            return bad

        dt, bad = timed_loop(run)
        failed += bad & 0xFFFFFFFF
        misses += bad >> 32
        rates.append(len(ops) / dt)
    cell = Cell(statistics.median(rates))
    if misses:
        cell.notes.append(f"{misses} get misses")
    if failed:
        cell.notes.append(f"{failed} set() returned False")
    return cell


# --------------------------------------------------------------------------- child processes


def _open_worker(lib: str, flavor: str, directory: str, probe: str, q: Any) -> None:
    try:
        cache_class(lib, flavor)  # the import is not timed
        gc.collect()
        t0 = time.perf_counter()
        cache = open_cache(lib, flavor, directory)
        v = cache.get(probe)
        dt = time.perf_counter() - t0
        close_quietly(cache)
        q.put((dt, v is not None, None))
    except BaseException as e:  # noqa: BLE001
        q.put((None, None, f"{type(e).__name__}: {e}"))


def _mixed_worker(
    lib: str, flavor: str, directory: str, wid: int, n_keys: int, n_ops: int, seed: int, warmup: int,
    set_share: float, start: Any, done: Any, q: Any,
) -> None:
    try:
        cache = open_cache(lib, flavor, directory)
        rng = random.Random(seed * 1000 + wid)
        own = list(range(wid, n_keys, NPROC))  # each process writes only its own keys
        plan = mixed_plan(rng, n_ops, n_keys, own, set_share)
        tag = 10_000 * seed + wid
        ops = [(True, i, key(i), seq) if is_set else (False, i, key(i), -1) for seq, (is_set, i) in enumerate(plan)]
        vals = {seq: value(tag, seq) for is_set, _, _, seq in ops if is_set}
        for i in range(warmup):
            cache.get(key(rng.randrange(n_keys)))
        last: dict[int, int] = {}  # key index -> seq of its last acknowledged write
        failed = 0
        start.wait(CHILD_TIMEOUT)
        took = [0] * len(ops)  # ns per operation: under contention, mostly lock waiting
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        g, s = cache.get, cache.set
        for n, (is_set, i, k, seq) in enumerate(ops):
            a = clock()
            if is_set:
                if s(k, vals[seq]) is False:
                    failed += 1
                else:
                    last[i] = seq
            else:
                g(k)
            took[n] = clock() - a
        t1 = time.perf_counter()
        done.wait(CHILD_TIMEOUT)  # everyone has finished writing: now check our own last writes
        lost = sum(1 for i, seq in last.items() if cache.get(key(i)) != vals[seq])
        close_quietly(cache)
        q.put((wid, t0, t1, len(ops), lost, failed, (tag, sorted(last.items())), took, None))
    except BaseException as e:  # noqa: BLE001
        start.abort()  # release the others at once instead of letting them wait out the timeout
        done.abort()
        q.put((wid, None, None, 0, None, None, None, None, f"{type(e).__name__}: {e}"))


def _collect(procs: list[Any], q: Any, n: int) -> list[tuple]:
    out = []
    deadline = time.monotonic() + CHILD_TIMEOUT + 30
    for _ in range(n):
        try:
            out.append(q.get(timeout=max(1.0, deadline - time.monotonic())))
        except Exception:
            break
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(5)
    if len(out) < n:
        raise TimeoutError(f"{n - len(out)} of {n} child processes gave no answer")
    return out


def bench_open(lib: str, flavor: str, directory: str, cfg: Cfg, ctx: Any) -> Cell:
    times, misses = [], 0
    for _ in range(cfg.open_repeat):
        q = ctx.Queue()
        p = ctx.Process(target=_open_worker, args=(lib, flavor, directory, key(cfg.n_keys // 2), q))
        p.start()
        ((dt, hit, err),) = _collect([p], q, 1)
        if err:
            raise RuntimeError(err)
        times.append(dt * 1000)
        misses += not hit
    cell = Cell(statistics.median(times))
    if misses:
        cell.notes.append(f"first get missed {misses}/{cfg.open_repeat}")
    return cell


def bench_multiprocess(
    lib: str, flavor: str, directory: str, cfg: Cfg, ctx: Any, set_share: float = 0.1,
) -> tuple[Cell, Cell, Cell]:
    """Aggregate ops/s, lost values, and per-operation time (median, with p99 as a note)."""
    rates, lost, failed, run_errors, unseen, reader_errors = [], 0, 0, [], 0, []
    took: list[int] = []
    for r in range(cfg.mp_repeat):
        start, done, q = ctx.Barrier(NPROC), ctx.Barrier(NPROC), ctx.Queue()
        procs = [
            ctx.Process(target=_mixed_worker,
                        args=(lib, flavor, directory, w, cfg.n_keys, cfg.mp_ops, r + 1, cfg.warmup, set_share,
                              start, done, q))
            for w in range(NPROC)
        ]
        for p in procs:
            p.start()
        res = _collect(procs, q, NPROC)
        errs = [e for *_, e in res if e]
        if errs:  # keep the first real failure, not the broken barriers it caused in the others
            errs.sort(key=lambda e: e.startswith("BrokenBarrierError"))
            run_errors.append(errs[0])
            continue
        t0 = min(x[1] for x in res)
        t1 = max(x[2] for x in res)
        rates.append(sum(x[3] for x in res) / (t1 - t0))
        lost += sum(x[4] for x in res)
        failed += sum(x[5] for x in res)
        for x in res:
            took.extend(x[7])
        try:  # and a new Cache object, opened after all processes closed theirs, sees them too
            reader = open_cache(lib, flavor, directory)
            try:
                for _, _, _, _, _, _, (tag, last), _, _ in res:
                    unseen += sum(1 for i, seq in last if reader.get(key(i)) != value(tag, seq))
            finally:
                close_quietly(reader)
        except Exception as e:
            reader_errors.append(f"{type(e).__name__}: {e}")
    if not rates:
        raise RuntimeError(f"all {cfg.mp_repeat} runs failed: {run_errors[0]}")
    rate = Cell(statistics.median(rates))
    lost_cell = Cell(float(lost))
    if run_errors:
        msg = run_errors[0] if len(run_errors[0]) <= 90 else run_errors[0][:87] + "..."
        rate.notes.append(f"{len(run_errors)}/{cfg.mp_repeat} runs failed, e.g. {msg}")
        lost_cell.notes.append(f"from {len(rates)}/{cfg.mp_repeat} runs")
    if unseen:
        lost_cell.notes.append(f"{unseen} not seen by a new reader")
    if reader_errors:
        lost_cell.notes.append(f"new reader failed: {reader_errors[0][:60]}")
    if failed:
        lost_cell.notes.append(f"+{failed} set() returned False")
    took.sort()
    latency = Cell(took[len(took) // 2] / 1000)
    latency.notes.append(f"p99 {took[len(took) * 99 // 100] / 1000:,.0f} µs")
    return rate, lost_cell, latency


def bench_big(lib: str, cfg: Cfg, tmproot: str) -> tuple[Cell, Cell]:
    directory = tempfile.mkdtemp(prefix=f"{lib}-big-", dir=tmproot)
    cache = open_cache(lib, "Cache", directory)
    try:
        for i in range(2):
            cache.set(f"warm-{i}", value(-1, i, BIG_SIZE))
            cache.get(f"warm-{i}")
        set_rates, get_rates, failed, wrong = [], [], 0, 0
        for r in range(cfg.big_repeat):
            keys = [f"big-{r}-{i}" for i in range(cfg.n_big)]
            vals = [value(r, i, BIG_SIZE) for i in range(cfg.n_big)]

            def run_set() -> int:
                return sum(1 for k, v in zip(keys, vals) if cache.set(k, v) is False)

            dt, bad = timed_loop(run_set)
            failed += bad
            set_rates.append(cfg.n_big / dt)
            order = keys[:]
            random.Random(r).shuffle(order)

            def run_get() -> int:
                return sum(1 for k in order if cache.get(k) is None)

            dt, bad = timed_loop(run_get)
            wrong += bad
            get_rates.append(cfg.n_big / dt)
            wrong += sum(1 for k, v in zip(keys, vals) if cache.get(k) != v) - bad
        s, g = Cell(statistics.median(set_rates)), Cell(statistics.median(get_rates))
        if failed:
            s.notes.append(f"{failed} set() returned False")
        if wrong:
            g.notes.append(f"{wrong} misses/wrong")
        return s, g
    finally:
        close_quietly(cache)
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- driver


def run_flavor(lib: str, flavor: str, cfg: Cfg, tmproot: str, ctx: Any) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    p = flavor + ":"
    try:
        cache_class(lib, flavor)
    except NotAvailable as e:
        print(f"  {lib} {flavor}: n/a ({e})", file=sys.stderr)
        return cells
    cache = directory = None
    try:
        try:
            cells[p + "set"], cache, directory = bench_set(lib, flavor, cfg, tmproot)
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            cells[p + "set"] = error_cell(e)
            for rid in ("get", "mixed", "open", "mp", "lost", "lat", "mpw", "lostw", "latw"):  # need the filled dir
                cells[p + rid] = Cell(text="n/a (set failed)")
            return cells
        cells[p + "get"] = guarded(lambda: bench_get(cache, cfg, cfg.set_repeat - 1))
        cells[p + "mixed"] = guarded(lambda: bench_mixed(cache, cfg))
        close_quietly(cache)
        cache = None
        cells[p + "open"] = guarded(lambda: bench_open(lib, flavor, directory, cfg, ctx))
        mixes = [("", 0.1), ("w", 0.5)]
        if lib == SUBJECT:
            mixes.append(("wpoll", 0.5))
        for suffix, share in mixes:
            polling = suffix == "wpoll"
            if polling:  # the lock waits of earlier releases, for comparison in the same run
                os.environ["CANDLECACHE_LOCK_POLL"] = "1"
            try:
                cells[p + "mp" + suffix], cells[p + "lost" + suffix], cells[p + "lat" + suffix] = (
                    bench_multiprocess(lib, flavor, directory, cfg, ctx, share)
                )
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                cells[p + "mp" + suffix] = error_cell(e)
                cells[p + "lost" + suffix] = cells[p + "lat" + suffix] = Cell(text="n/a")
            finally:
                if polling:
                    os.environ.pop("CANDLECACHE_LOCK_POLL", None)
        if lib == SUBJECT and flavor == "Cache":
            cells[p + "durable"] = guarded(lambda: bench_durable_set(lib, flavor, cfg, tmproot))
        return cells
    finally:
        if cache is not None:
            close_quietly(cache)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def run_lib(lib: str, cfg: Cfg, tmproot: str, ctx: Any) -> dict[str, Cell]:
    t0 = time.perf_counter()
    cells: dict[str, Cell] = {}
    cells.update(run_flavor(lib, "Cache", cfg, tmproot, ctx))
    if "Cache:set" in cells:
        try:
            cells["Cache:bigset"], cells["Cache:bigget"] = bench_big(lib, cfg, tmproot)
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            cells["Cache:bigset"] = cells["Cache:bigget"] = error_cell(e)
    cells.update(run_flavor(lib, "FanoutCache", cfg, tmproot, ctx))
    print(f"  {lib}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return cells


def ops(x: float) -> str:
    return f"{x:,.0f}"


def ms(x: float) -> str:
    return f"{x:,.1f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def us(x: float) -> str:
    return f"{x:,.1f}"


# row id suffix -> (label, formatter, higher_is_better, target factor or None, target text); the
# FanoutCache rows take their factor from FANOUT_TARGETS where it differs. A row compares the
# candlecache cell with the other libraries' cell of the same id, or of BASELINE_ROW's.
ROWS: list[tuple[str, str, Callable[[float], str], bool, float | None, str]] = [
    ("get", "get hit (ops/s)", ops, True, 6.0, "≥ 6× diskcache"),
    ("set", "set, insert into empty cache (ops/s)", ops, True, 15.0, "≥ 15× diskcache"),
    ("durable", "set with durable=True, vs diskcache's set (no fsync) (ops/s)", ops, True, None, "printed"),
    ("mixed", "mixed 90% get / 10% set (ops/s)", ops, True, 8.0, "≥ 8× diskcache"),
    ("mp", f"{NPROC} processes, 90% get / 10% set, one dir (aggregate ops/s)", ops, True, 8.0, "≥ 8× diskcache"),
    ("lost", f"{NPROC} processes: lost values (count)", count, False, None, "0 lost"),
    ("lat", f"{NPROC} processes, 90/10: time per operation, median (µs)", us, False, None, "printed (p99 in brackets)"),
    ("mpw", f"{NPROC} processes, 50% get / 50% set, one dir (aggregate ops/s)", ops, True, 8.0, "≥ 8× diskcache"),
    ("lostw", f"{NPROC} processes, 50/50: lost values (count)", count, False, None, "0 lost"),
    ("latw", f"{NPROC} processes, 50/50: time per operation, median (µs)", us, False, None, "printed (p99 in brackets)"),
    ("mpwpoll", f"{NPROC} processes, 50/50, lock waits polling as before (aggregate ops/s)", ops, True, None,
     "the same run's polling"),
    ("latwpoll", f"{NPROC} processes, 50/50, polling: time per operation, median (µs)", us, False, None,
     "printed (p99 in brackets)"),
    ("open", "open dir with {n} entries + first get, new process (ms)", ms, False, 1.0, "no slower than diskcache"),
    ("bigset", "set 1 MiB values (ops/s = MiB/s)", ops, True, 1.0, "no slower than diskcache"),
    ("bigget", "get 1 MiB values (ops/s = MiB/s)", ops, True, 1.0, "no slower than diskcache"),
]
FANOUT_TARGETS = {"get": (5.0, "≥ 5× diskcache")}
BASELINE_ROW = {"durable": "set", "mpwpoll": "mpw", "latwpoll": "latw"}
CACHE_ONLY = ("bigset", "bigget", "durable")


def ratio(a: Cell | None, b: Cell | None, higher_is_better: bool) -> float | None:
    if a is None or b is None or a.value is None or b.value is None:
        return None
    if higher_is_better:
        return a.value / b.value if b.value else None
    return b.value / a.value if a.value else None  # time rows: speedup


def version(lib: str) -> str:
    try:
        return importlib.metadata.version(LIBS[lib][1])
    except Exception:
        return "not installed"


def print_table(results: dict[str, dict[str, Cell]], cfg: Cfg, libs: list[str]) -> None:
    names = ["candlecache", "diskcache", "diskcache-rs"]
    head = ["operation", *names, "candlecache/diskcache", "candlecache/diskcache-rs", "target (candlecache vs diskcache)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * 5 + ["---"]) + "|")
    for flavor, title in (("Cache", "Cache(dir)"), ("FanoutCache", f"FanoutCache(dir, shards={SHARDS})")):
        for rid, label, fmt, hib, factor, target in ROWS:
            if flavor == "FanoutCache" and rid in CACHE_ONLY:
                continue
            if flavor == "FanoutCache" and rid in FANOUT_TARGETS:
                factor, target = FANOUT_TARGETS[rid]
            k = f"{flavor}:{rid}"
            base = f"{flavor}:{BASELINE_ROW.get(rid, rid)}"
            cells = {n: results.get(n, {}).get(k if n == SUBJECT else base) for n in names}
            row = [f"{title}: {label.format(n=f'{cfg.n_keys:,}')}"]
            for n in names:
                c = cells[n]
                row.append(c.render(fmt) if c is not None else "n/a")
            for other in ("diskcache", "diskcache-rs"):
                if rid.startswith("lost"):
                    row.append("")
                    continue
                x = ratio(cells["candlecache"], cells[other], hib)
                row.append(f"{x:.2f}×" if x is not None else "n/a")
            cc = cells["candlecache"]
            if rid.startswith("lost"):
                met = None if cc is None or cc.value is None else cc.value == 0
            elif factor is None:
                met = None
            else:
                x = ratio(cc, cells["diskcache"], hib)
                met = None if x is None else x >= factor
            # misses, failed sets or failed runs; for the lost row a set() that returned False is no loss
            # (diskcache's FanoutCache does that by design when a shard is busy past its timeout)
            if met and cc is not None and any(
                not (rid.startswith("lost") and n.startswith("+")) for n in cc.notes
            ):
                met = False
            mark = {None: "—", True: "✓", False: "✗"}[met]
            row.append(f"{target} {mark}")
            print("| " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (fewer keys and repeats)")
    ap.add_argument("--keys", type=int, help="number of 1 KiB keys (default 20000; 2000 with --quick)")
    ap.add_argument("--repeat", type=int, help="repeats per single-process measurement (median is shown)")
    ap.add_argument("--libs", default=",".join(LIBS), help="comma-separated subset of " + ",".join(LIBS))
    ap.add_argument("--frames", action="store_true",
                    help="only the DataFrame section (1M x 6 polars and pandas frames; see kv_frames.py)")
    args = ap.parse_args()
    if args.frames:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import kv_frames

        libs = [x.strip() for x in args.libs.split(",") if x.strip()]
        kv_frames.run(libs, args.repeat or (3 if args.quick else 7))
        return

    if args.quick:
        cfg = Cfg(n_keys=2000, set_repeat=1, repeat=2, mp_ops=1000, mp_repeat=1, open_repeat=2, n_big=8, big_repeat=1, warmup=50)
    else:
        cfg = Cfg(n_keys=20_000, set_repeat=5, repeat=7, mp_ops=5000, mp_repeat=5, open_repeat=7, n_big=64, big_repeat=5, warmup=500)
    if args.keys:
        cfg.n_keys = args.keys
    if args.repeat:
        cfg.repeat = cfg.set_repeat = cfg.mp_repeat = cfg.big_repeat = args.repeat
        cfg.open_repeat = max(args.repeat, 2)
    libs = [x.strip() for x in args.libs.split(",") if x.strip()]
    for lib in libs:
        if lib not in LIBS:
            ap.error(f"unknown library {lib!r}")

    ctx = mp.get_context("spawn")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results: dict[str, dict[str, Cell]] = {}
    tmproot = tempfile.mkdtemp(prefix="kvbench-")
    try:
        for lib in libs:
            print(f"running {lib} ...", file=sys.stderr)
            results[lib] = run_lib(lib, cfg, tmproot, ctx)
    finally:
        shutil.rmtree(tmproot, ignore_errors=True)
    total = time.perf_counter() - t0

    print(
        f"{cfg.n_keys:,} string keys, {VALUE_SIZE} B bytes values; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        + ", ".join(f"{lib} {version(lib)}" for lib in LIBS)
    )
    print(
        f"medians of {cfg.set_repeat} (set), {cfg.repeat} (get, mixed), {cfg.mp_repeat} ({NPROC} processes x {cfg.mp_ops:,} ops), "
        f"{cfg.open_repeat} (open), {cfg.big_repeat} x {cfg.n_big} (1 MiB); run took {total:.0f}s; "
        f"load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after"
        + (" [--quick]" if args.quick else "")
    )
    print()
    print_table(results, cfg, libs)
    print()
    print("Ratios are speedups of candlecache (> 1× = candlecache faster; for the open row: diskcache ms / candlecache ms).")
    print(f"Lost values: after all {NPROC} processes finish writing, each re-reads the keys it wrote (each process "
          "writes only its own quarter of the keys); a key not holding its last acknowledged write counts as lost. "
          "A new Cache object opened afterwards re-checks them all (noted when it disagrees).")
    for lib in LIBS:
        try:
            cache_class(lib, "Cache")
        except NotAvailable as e:
            print(f"{lib}: n/a ({e})")


if __name__ == "__main__":
    main()
