"""The frames section of ``benches/kv.py`` (``python benches/kv.py --frames``).

A DataFrame of 1M rows x 6 columns (``time`` int64 and five float64 columns, 48 MB) stored
with ``Cache.set`` and read with ``Cache.get``: candlecache (an Arrow IPC file) against
python-diskcache 5.6.3 and diskcache-rs (both pickle it), for a polars and a pandas frame,
beside plain baselines written here (``pickle`` to a file and back; ``polars.write_ipc`` /
``read_ipc``). Rows:

- set: ``cache.set(key, df)`` of a new key;
- get, same process: the default (candlecache's hot tier serves repeated gets);
- get, hot tier off: ``frame_cache_size=0``, so every get reads and checks the file;
- cold get, another process: a new process opens the cache and gets the frame (page cache warm,
  interpreter start and imports excluded);
- peak memory of a cold get: the process's peak RSS during the cache's open and the get, less
  its RSS before them, over the frame's size (Linux: the peak is reset through
  ``/proc/self/clear_refs`` and read from ``VmHWM``).

Medians of ``repeat`` runs; nothing here gates CI.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable

N_ROWS = 1_000_000
LIB_MODULES = {"candlecache": "candlecache", "diskcache": "diskcache", "diskcache-rs": "diskcache_rs"}


def _reset_peak() -> None:
    """Start the peak RSS (VmHWM) from the current RSS (Linux >= 4.0: clear_refs, value 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss() -> int:
    """The process's resident set size now, in bytes (the base its peak grows from)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_frame(kind: str) -> Any:
    import numpy as np

    rng = np.random.default_rng(7)
    cols = {"time": np.arange(N_ROWS, dtype=np.int64) * 60_000 + 1_700_000_000_000}
    base = 100 + rng.standard_normal(N_ROWS).cumsum() * 0.1
    for name in ("open", "high", "low", "close"):
        cols[name] = np.round(base + rng.random(N_ROWS), 2)
    cols["volume"] = rng.random(N_ROWS) * 1000
    if kind == "polars":
        import polars as pl

        return pl.DataFrame(cols)
    import pandas as pd

    return pd.DataFrame(cols)


def frame_bytes(df: Any) -> int:
    return int(df.estimated_size()) if hasattr(df, "estimated_size") else int(df.memory_usage(index=True).sum())


def open_lib(lib: str, directory: str, hot: bool = True) -> Any:
    if lib == "candlecache":
        import candlecache

        return candlecache.Cache(directory) if hot else candlecache.Cache(directory, frame_cache_size=0)
    if lib == "diskcache":
        import diskcache

        return diskcache.Cache(directory)
    import diskcache_rs

    return diskcache_rs.Cache(directory)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _cold_child(lib: str, directory: str, kind: str, q: Any) -> None:
    try:
        # Imports before the clock: the library, and what the frame's type needs.
        import numpy  # noqa: F401

        importlib.import_module(LIB_MODULES[lib])
        if kind == "polars":
            import polars  # noqa: F401
        else:
            import pandas  # noqa: F401
            import pyarrow  # noqa: F401
        before = _rss()
        _reset_peak()
        t0 = time.perf_counter()
        cache = open_lib(lib, directory)
        df = cache.get("df")
        dt = time.perf_counter() - t0
        after = _peak()
        q.put((dt * 1000, after - before, df is not None and len(df) == N_ROWS))
    except BaseException as e:  # noqa: BLE001
        q.put(e)


def cold_get(lib: str, directory: str, kind: str, repeat: int) -> tuple[float, float]:
    ctx = mp.get_context("spawn")
    times, peaks = [], []
    for _ in range(repeat):
        q = ctx.Queue()
        p = ctx.Process(target=_cold_child, args=(lib, directory, kind, q))
        p.start()
        got = q.get(timeout=300)
        p.join()
        if isinstance(got, BaseException):
            raise got
        ms, peak, ok = got
        if not ok:
            raise RuntimeError(f"{lib}: the other process did not read the frame back")
        times.append(ms)
        peaks.append(peak)
    return statistics.median(times), statistics.median(peaks)


def bench_lib(lib: str, kind: str, df: Any, repeat: int, tmproot: str) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    directory = tempfile.mkdtemp(prefix=f"frames-{lib}-", dir=tmproot)
    try:
        cache = open_lib(lib, directory)
        n = [0]

        def put() -> None:
            n[0] += 1
            cache.set(f"k{n[0]}", df)

        out["set"] = best_of(put, repeat)
        cache.set("df", df)
        cache.get("df")
        out["get"] = best_of(lambda: cache.get("df"), repeat)
        if lib == "candlecache":
            cold = open_lib(lib, directory, hot=False)
            out["get_nohot"] = best_of(lambda: cold.get("df"), repeat)
        else:
            out["get_nohot"] = out["get"]  # no hot tier to turn off
        for k in range(1, n[0] + 1):
            cache.delete(f"k{k}")
        ms, peak = cold_get(lib, directory, kind, max(3, repeat // 2))
        out["cold"] = ms
        out["peak"] = peak / frame_bytes(df)
    except Exception as e:  # noqa: BLE001 - a peer's failure is a cell, not a crash
        out["error"] = f"{type(e).__name__}: {e}"[:80]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return out


def bench_baselines(kind: str, df: Any, repeat: int, tmproot: str) -> dict[str, dict[str, float]]:
    path = os.path.join(tmproot, "frame.bin")
    res: dict[str, dict[str, float]] = {}

    def pickle_set() -> None:
        with open(path, "wb") as f:
            pickle.dump(df, f, protocol=pickle.HIGHEST_PROTOCOL)

    def pickle_get() -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)

    res["pickle file"] = {"set": best_of(pickle_set, repeat), "get": best_of(pickle_get, repeat)}
    if kind == "polars":
        import polars as pl

        ipc = os.path.join(tmproot, "frame.arrow")
        res["polars write_ipc/read_ipc (lz4)"] = {
            "set": best_of(lambda: df.write_ipc(ipc, compression="lz4"), repeat),
            "get": best_of(lambda: pl.read_ipc(ipc), repeat),
        }
    return res


ROWS = [
    ("set", "set (ms)", "≥ 4×"),
    ("get", "get, same process (ms)", "≥ 10×; hot tier ≤ 0.1 ms"),
    ("get_nohot", "get, hot tier off (ms)", "≥ 10×"),
    ("cold", "cold get, another process (ms)", "≥ 3×"),
    ("peak", "peak memory of a cold get (× frame size)", "≤ 1.2×"),
]


def run(libs: list[str], repeat: int) -> None:
    tmproot = tempfile.mkdtemp(prefix="framebench-")
    t0 = time.perf_counter()
    try:
        for kind in ("polars", "pandas"):
            df = make_frame(kind)
            size = frame_bytes(df) / 1e6
            results = {lib: bench_lib(lib, kind, df, repeat, tmproot) for lib in libs}
            base = bench_baselines(kind, df, repeat, tmproot)
            print(f"\n{kind} DataFrame, {N_ROWS:,} rows x 6 columns ({size:.0f} MB); medians of {repeat}")
            print()
            head = ["", *libs, "candlecache vs diskcache", "target"]
            print("| " + " | ".join(head) + " |")
            print("|" + "|".join(["---"] + ["---:"] * (len(libs) + 1) + ["---"]) + "|")
            for key, label, target in ROWS:
                cells = []
                for lib in libs:
                    r = results[lib]
                    cells.append(r["error"] if "error" in r else f"{r[key]:,.2f}")
                c, d = results.get("candlecache", {}), results.get("diskcache", {})
                ratio = ""
                if key in c and key in d and isinstance(c[key], float) and isinstance(d[key], float) and c[key]:
                    ratio = f"{d[key] / c[key]:.1f}×" if key != "peak" else ""
                print(f"| {label} | " + " | ".join(cells) + f" | {ratio} | {target} |")
            print()
            print("Baselines in the same run: " + "; ".join(
                f"{name}: set {r['set']:,.1f} ms, get {r['get']:,.1f} ms" for name, r in base.items()))
    finally:
        shutil.rmtree(tmproot, ignore_errors=True)
    print(f"\nframes section took {time.perf_counter() - t0:.0f}s")
