"""What the processes using a cache directory record, each in a file of its own so that no
reader or writer waits for another: statistics (``_Stats``) and when each partition was last
used and by which run (``_Usage``), plus the walks of the directory they need."""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: files of exited processes are not folded
    fcntl = None  # type: ignore[assignment]

from . import _core

_STATS_DIR = (".candlecache", "stats")
_COUNTERS = (
    "hits", "misses", "hot_hits", "cold_hits", "reads", "requests", "candles_fetched", "files_repaired",
    "partitions_evicted",
)
#: Counts are saved at most this often while a process works (and always on close and exit).
_SAVE_EVERY_S = 1.0


#: Files of processes gone (on this host) are folded into ``archive.json`` once there are
#: this many, so a directory used by thousands of short backtests keeps a handful of files.
_FOLD_AT = 8


def _write_doc(file: Path, doc: bytes) -> None:
    """Replace a process's file (``base/.candlecache/<kind>/<name>.json``) atomically. Never
    fails a read or a fetch, and never creates a cache directory that was removed."""
    folder = file.parent
    if not folder.parent.parent.is_dir():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.tmp")
        tmp.write_bytes(doc)
        os.replace(tmp, file)
    except OSError:
        pass


def _gone(name: str, host: str) -> bool:
    """Whether the file ``{host}-{pid}-{ns}.json`` belongs to a process of this host that
    has exited (a pid taken again by another process counts as alive: folded later)."""
    parts = name[: -len(".json")].rsplit("-", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _read_docs(folder: Path, own: Path, merge: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> list[dict[str, Any]]:
    """Every saved document in ``folder`` but ``own``; those of exited processes are first
    folded into ``archive.json`` with ``merge`` (under a lock; skipped if another process is
    folding, or where there is no ``fcntl``)."""
    try:
        files = [f for f in folder.glob("*.json") if f != own]
    except OSError:
        return []
    host = socket.gethostname()
    gone = [f for f in files if _gone(f.name, host)]
    if len(gone) >= _FOLD_AT and fcntl is not None:
        try:
            with open(folder / ".fold.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                docs = []
                for f in [folder / "archive.json", *gone]:
                    try:
                        docs.append(json.loads(f.read_bytes()))
                    except (OSError, ValueError):
                        continue
                tmp = folder / f".archive.{os.getpid()}.tmp"
                tmp.write_bytes(json.dumps(merge(docs)).encode())
                os.replace(tmp, folder / "archive.json")
                for f in gone:
                    f.unlink(missing_ok=True)
            files = [f for f in folder.glob("*.json") if f != own]
        except OSError:
            pass  # another process is folding, or the disk said no: read them as they are
    docs = []
    for f in files:
        try:
            docs.append(json.loads(f.read_bytes()))
        except (OSError, ValueError):
            continue  # removed by a reset or a fold meanwhile, or foreign
    return docs


def _merge_stats(docs: list[dict[str, Any]], generation: int = 0) -> dict[str, Any]:
    """The counts of ``docs`` of ``generation`` added up (older ones were reset away)."""
    counts = dict.fromkeys(_COUNTERS, 0)
    days: dict[str, dict[str, int]] = {}
    for doc in docs:
        if int(doc.get("generation", 0)) != generation:
            continue
        for k, v in doc.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + int(v)
        for day, c in doc.get("days", {}).items():
            d = days.setdefault(day, {"hits": 0, "misses": 0})
            d["hits"] += int(c.get("hits", 0))
            d["misses"] += int(c.get("misses", 0))
            if c.get("size") is not None:
                d["size"] = max(d.get("size", 0), int(c["size"]))
    return {"counts": counts, "days": days, "generation": generation}


def _merge_usage(docs: list[dict[str, Any]]) -> dict[str, Any]:
    parts: dict[str, int] = {}
    runs: dict[str, dict[str, Any]] = {}
    cleared: dict[str, int] = {}
    for doc in docs:
        for k, t in doc.get("parts", {}).items():
            parts[k] = max(parts.get(k, 0), int(t))
        for r, c in doc.get("cleared", {}).items():
            cleared[r] = max(cleared.get(r, 0), int(c))
        for r, run in doc.get("runs", {}).items():
            have = runs.setdefault(r, {"last": 0, "parts": []})
            have["last"] = max(have["last"], int(run.get("last", 0)))
            have["parts"] = sorted(set(have["parts"]) | set(run.get("parts", [])))
    return {"parts": parts, "runs": runs, "cleared": cleared}


_day_cache: tuple[int, str] = (-1, "")


def _today() -> str:
    """Today (UTC) as ``YYYY-MM-DD``, formatted once a day (it is asked on every call)."""
    global _day_cache
    day = int(time.time() // 86_400)
    if _day_cache[0] != day:
        _day_cache = (day, datetime.fromtimestamp(day * 86_400, timezone.utc).strftime("%Y-%m-%d"))
    return _day_cache[1]


class _Stats:
    """This process's counts for one directory, saved to a file of its own so that no reader
    or writer ever waits for another: ``stats()`` adds up the files of all processes.

    A reset cannot reach into other running processes, which would save their older counts
    again. So a reset raises the directory's *generation* (the ``.generation`` file); each
    saved document says which generation its counts belong to, readers add up the current
    generation only, and a process that sees a newer one starts its counts from zero."""

    def __init__(self, base: Path) -> None:
        self.dir = base.joinpath(*_STATS_DIR)
        self.lock = threading.Lock()
        self._gen_path = os.path.join(self.dir, ".generation")
        self._seen: tuple[tuple[int, int, int], int] | None = None
        self._start()

    def _start(self) -> None:
        self.pid = os.getpid()
        self.file = self.dir / f"{socket.gethostname()}-{self.pid}-{time.time_ns()}.json"
        self.generation = self._current_generation()
        self._zero()
        self.saved_at = 0.0

    def _zero(self) -> None:
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.days: dict[str, dict[str, int]] = {}
        self.dirty = False

    def _current_generation(self) -> int:
        """The directory's generation: one ``stat`` when it has not changed (asked per call;
        ``save`` creates the file, so the common case raises nothing)."""
        path = self._gen_path
        try:
            st = os.stat(path)
        except OSError:
            return 0
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen
        if seen is not None and seen[0] == key:
            return seen[1]
        try:
            with open(path, "rb") as f:
                generation = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0
        self._seen = (key, generation)
        return generation

    def _follow(self, generation: int) -> None:
        """Drop counts of a generation that was reset away (with the lock held)."""
        if generation != self.generation:
            self.generation = generation
            self._zero()

    def add(self, **counts: int) -> None:
        generation = self._current_generation()
        with self.lock:
            if os.getpid() != self.pid:  # a child of fork(): the parent's counts are not ours
                self._start()
            self._follow(generation)
            day = self.days.setdefault(_today(), {"hits": 0, "misses": 0})
            for k, v in counts.items():
                self.counts[k] += v
                if k in day:
                    day[k] += v
            self.dirty = True
            due = time.monotonic() - self.saved_at >= _SAVE_EVERY_S
        if due:
            self.save()

    def save(self, size: int | None = None) -> None:
        generation = self._current_generation()
        with self.lock:
            if os.getpid() != self.pid:
                return
            self._follow(generation)
            if not (self.dirty or size is not None):
                return
            if size is not None:
                self.days.setdefault(_today(), {"hits": 0, "misses": 0})["size"] = size
            doc = json.dumps({"counts": self.counts, "days": self.days, "generation": self.generation}).encode()
            self.dirty = False
            self.saved_at = time.monotonic()
        _write_doc(self.file, doc)
        if self._seen is None and self.file.parent.is_dir():
            try:  # generation 0, so that asking for it per call finds a file (no exception)
                fd = os.open(self._gen_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, b"0")
                os.close(fd)
            except OSError:
                pass

    def load_all(self) -> list[dict[str, Any]]:
        """Every process's saved counts of the current generation, this process's as they
        are now."""
        generation = self._current_generation()
        docs = _read_docs(self.dir, self.file, lambda found: _merge_stats(found, generation))
        docs = [d for d in docs if int(d.get("generation", 0)) == generation]
        with self.lock:
            if os.getpid() == self.pid:
                self._follow(generation)
                docs.append({"counts": dict(self.counts), "days": json.loads(json.dumps(self.days))})
        return docs

    def reset(self) -> None:
        generation = self._current_generation() + 1
        if self.dir.parent.parent.is_dir():
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                tmp = self.dir / f".generation.{os.getpid()}.tmp"
                tmp.write_text(str(generation))
                os.replace(tmp, self.dir / ".generation")
            except OSError:
                pass
        with self.lock:
            self._follow(generation)
        # The documents of the generations before are dead weight now.
        for f in self.dir.glob("*.json"):
            try:
                f.unlink()
            except OSError:
                pass


@functools.lru_cache(maxsize=4096)
def _span(key: str) -> tuple[int, int]:
    """``[start, end)`` in epoch ms of a partition key (``2024-01``, ``2024``, ``2020s``)."""
    def ms(y: int, m: int = 1) -> int:
        return int(datetime(y, m, 1, tzinfo=timezone.utc).timestamp() * 1000)

    if key.endswith("s"):
        y = int(key[:-1])
        return ms(y), ms(y + 10)
    if "-" in key:
        y, m = (int(x) for x in key.split("-"))
        return ms(y, m), ms(y + m // 12, m % 12 + 1)
    return ms(int(key)), ms(int(key) + 1)


def _keys(period: str, lo: int, hi: int) -> list[str]:
    """The partition keys holding candles with ``lo <= time <= hi``."""
    keys: list[str] = []
    t = lo
    while t <= hi and len(keys) < 100_000:
        key = _core.partition_key(t, period)
        keys.append(key)
        t = _span(key)[1]
    return keys


class _Usage:
    """When each partition was last used, and by which runs: this process's record, saved
    like the statistics (a file of its own, at most once a second, and at exit) so that the
    size limit's LRU and ``runs()`` see every process without a write per read."""

    def __init__(self, base: Path) -> None:
        self.dir = base.joinpath(".candlecache", "usage")
        self.lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self.pid = os.getpid()
        self.file = self.dir / f"{socket.gethostname()}-{self.pid}-{time.time_ns()}.json"
        self.parts: dict[str, int] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.cleared: dict[str, int] = {}
        self.last = 0
        self.dirty = False
        self.saved_at = 0.0

    def used(self, folder: str, keys: list[str], run_id: str | None) -> None:
        with self.lock:
            if os.getpid() != self.pid:
                self._start()
            # Strictly increasing within a process, so two uses in one millisecond keep order.
            now = self.last = max(int(time.time() * 1000), self.last + 1)
            for k in keys:
                self.parts[f"{folder}/{k}"] = now
            if run_id is not None:
                run = self.runs.setdefault(run_id, {"last": now, "parts": []})
                run["last"] = now
                have = set(run["parts"])
                run["parts"].extend(f"{folder}/{k}" for k in keys if f"{folder}/{k}" not in have)
            self.dirty = True
            due = time.monotonic() - self.saved_at >= _SAVE_EVERY_S
        if due:
            self.save()

    def clear_run(self, run_id: str) -> None:
        with self.lock:
            self.cleared[run_id] = int(time.time() * 1000)
            self.runs.pop(run_id, None)
            self.dirty = True
        self.save()

    def save(self) -> None:
        with self.lock:
            if os.getpid() != self.pid or not self.dirty:
                return
            doc = json.dumps({"parts": self.parts, "runs": self.runs, "cleared": self.cleared}).encode()
            self.dirty = False
            self.saved_at = time.monotonic()
        _write_doc(self.file, doc)

    def load_all(self) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
        """Last use of every partition, and every run not cleared since: over all processes."""
        docs = _read_docs(self.dir, self.file, _merge_usage)
        with self.lock:
            docs.append(json.loads(json.dumps({"parts": self.parts, "runs": self.runs, "cleared": self.cleared})))
        parts: dict[str, int] = {}
        runs: dict[str, dict[str, Any]] = {}
        cleared: dict[str, int] = {}
        for doc in docs:
            for k, t in doc.get("parts", {}).items():
                parts[k] = max(parts.get(k, 0), int(t))
            for r, c in doc.get("cleared", {}).items():
                cleared[r] = max(cleared.get(r, 0), int(c))
        for doc in docs:
            for r, run in doc.get("runs", {}).items():
                if int(run.get("last", 0)) <= cleared.get(r, -1):
                    continue
                have = runs.setdefault(r, {"last": 0, "parts": set()})
                have["last"] = max(have["last"], int(run.get("last", 0)))
                have["parts"].update(run.get("parts", []))
        return parts, runs


def _partitions(base: Path) -> tuple[int, dict[tuple[str, str], int]]:
    """Bytes of every file under ``base`` (what ``cold_cache_mb`` bounds and ``stats()``
    reports), and the bytes of each ``(folder, key)`` partition (a main file and its deltas
    count as one)."""
    total = 0
    parts: dict[tuple[str, str], int] = {}
    for root, _, files in os.walk(base):
        folder = os.path.basename(root)
        for name in files:
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
            total += size
            if not name.endswith(".parquet"):
                continue
            parent = os.path.dirname(root)
            if parent == str(base) or (os.path.dirname(parent) == str(base) and not os.path.basename(parent).startswith(".")):
                # A folder of the root, or of a namespace folder in it ("okx/BTC_USDT_1m").
                rel = folder if parent == str(base) else f"{os.path.basename(parent)}/{folder}"
                key = name[: -len(".parquet")].split(".d")[0]
                parts[(rel, key)] = parts.get((rel, key), 0) + size
    return total, parts
