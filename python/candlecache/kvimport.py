"""Importing a python-diskcache directory: ``import_diskcache`` and ``candlecache kv-import``.

``cache.db`` is read read-only with the standard library's ``sqlite3`` (python-diskcache itself
is not needed) inside one read transaction, so the import sees one consistent state; value
files are copied byte for byte and nothing is unpickled. The source is never written, and a
writer that changes it during the import (its database file or write-ahead log) makes the
import fail rather than miss what it wrote.
"""

from __future__ import annotations

import os
import os.path as op
import shutil
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

from .core import DBNAME, MODE_RAW, Cache
from .exceptions import CandlecacheError

__all__ = ["import_diskcache"]

# The settings python-diskcache keeps in its Settings table that mean the same here.
_SETTINGS = ("statistics", "tag_index", "eviction_policy", "size_limit", "cull_limit",
             "disk_min_file_size", "disk_pickle_protocol")
_COLUMNS = ("key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, "
            "filename, value")


def _layout(src: Path) -> list[Path]:
    """The cache.db directories of ``src``: itself (a Cache), or its shards (a FanoutCache)."""
    if (src / DBNAME).is_file():
        return [src]
    shards = sorted(p for p in src.iterdir() if p.is_dir() and p.name.isdigit() and (p / DBNAME).is_file())
    if not shards or [p.name for p in shards] != ["%03d" % i for i in range(len(shards))]:
        raise CandlecacheError(
            f"{src} is not a python-diskcache directory: no {DBNAME} in it, nor in shard folders 000, 001, ..."
        )
    return shards


def _stamp(db: Path) -> tuple:
    """What a writer changes: the database file, and its write-ahead log."""
    wal = db.with_name(db.name + "-wal")
    st = db.stat()
    return st.st_mtime_ns, st.st_size, wal.stat().st_size if wal.exists() else None


def _connect(db: Path) -> sqlite3.Connection:
    """A read-only connection that creates no file beside ``db``.

    Without a write-ahead log holding data, the database is opened immutable (SQLite then
    makes no -wal or -shm file); with one, it is opened read-only the usual way, since the
    newest entries are in that log.
    """
    wal = db.with_name(db.name + "-wal")
    immutable = "" if wal.exists() and wal.stat().st_size > 0 else "&immutable=1"
    uri = f"file:{urllib.parse.quote(str(db))}?mode=ro{immutable}"
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)


def _read_shard(directory: Path, now: float) -> tuple[sqlite3.Connection, tuple, dict[str, Any], list[tuple]]:
    """An open connection, the database's stamp, the settings and the live rows of one cache.db."""
    db = directory / DBNAME
    con = None
    try:
        stamp = _stamp(db)
        con = _connect(db)
        con.execute("BEGIN")  # one snapshot for settings and rows
        settings = dict(con.execute("SELECT key, value FROM Settings").fetchall())
        rows = con.execute(f"SELECT {_COLUMNS} FROM Cache ORDER BY rowid").fetchall()
        con.execute("COMMIT")
    except (sqlite3.DatabaseError, OSError) as e:
        if con is not None:
            con.close()
        raise CandlecacheError(
            f"cannot read {db}: {e}. If another process is writing it, stop it and try again; "
            f"if the file is damaged, python-diskcache's Cache.check() may repair it. "
            f"Nothing was written."
        ) from None
    live = [r for r in rows if r[3] is None or r[3] > now]
    return con, stamp, settings, live


def import_diskcache(
    src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None, *, progress: bool | None = None
) -> int:
    """Copy every live entry of the python-diskcache directory ``src`` into a candlecache
    directory ``dst``; returns how many entries were imported.

    Keys keep their types, values their mode (raw, binary, text, pickle: bytes copied as they
    are, never unpickled), with expire time, tag, store and access times, access counts and
    the settings (``size_limit``, ``eviction_policy``, ``cull_limit``, ``statistics``,
    ``tag_index``, ``disk_*``). Expired entries are skipped. A FanoutCache directory (shards
    ``000``, ``001``, ...) becomes a FanoutCache directory with as many shards.

    ``dst=None`` converts in place: the new cache is built beside ``src``, then ``src`` moves
    aside to ``<src>.diskcache-<time>`` (kept: delete it once satisfied) and the new cache takes
    its name. ``src`` is read in one read-only transaction and never written; a ``cache.db``
    that cannot be read (damaged, or locked by a writer) raises ``CandlecacheError`` before
    anything is written.

    >>> candlecache.import_diskcache("~/.cache/app", "~/.cache/app-cc")  # doctest: +SKIP
    1532
    """
    source = Path(src).expanduser()
    if not source.is_dir():
        raise CandlecacheError(f"{source} is not a directory")
    shards = _layout(source)
    in_place = dst is None
    target = Path(f"{source}.importing") if in_place else Path(dst).expanduser()  # type: ignore[arg-type]
    if not in_place and target.exists() and any(target.iterdir()):
        raise CandlecacheError(f"{target} is not empty: import into a new or empty directory")
    now = time.time()
    opened: list[tuple[sqlite3.Connection, tuple, dict[str, Any], list[tuple]]] = []
    try:
        for shard in shards:
            opened.append(_read_shard(shard, now))
        if in_place and target.exists():
            shutil.rmtree(target)  # an earlier in-place import that did not finish: ours
        done = _write_all(source, shards, opened, target, progress)
        moved = [s for s, (_, stamp, _, _) in zip(shards, opened) if _stamp(s / DBNAME) != stamp]
    finally:
        for con, *_ in opened:
            con.close()
    if moved:
        shutil.rmtree(target, ignore_errors=True)
        raise CandlecacheError(
            f"{', '.join(str(s / DBNAME) for s in moved)} changed during the import (another process "
            f"is using the cache): stop it and import again. {source} is untouched; the partial "
            f"copy was removed."
        )
    if in_place:
        aside = Path(f"{source}.diskcache-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(source, aside)
        os.replace(target, source)
    return done


def _write_all(source: Path, shards: list[Path], opened: list, target: Path, progress: bool | None) -> int:
    from .ohlcv import _Progress

    total = sum(len(rows) for *_, rows in opened)
    bar = _Progress(progress, f"import {source.name}", unit="entry", min_total=1000, verb="imported")
    done = 0
    try:
        for i, (shard, (_, _, settings, rows)) in enumerate(zip(shards, opened)):
            directory = target if len(shards) == 1 else target / ("%03d" % i)
            wanted = {k: settings[k] for k in _SETTINGS if k in settings}
            with Cache(directory, **wanted) as cache:
                for row in rows:
                    _put(cache, shard, row)
                    done += 1
                    if done % 256 == 0:
                        bar(done, total)
        bar(total, total)
    finally:
        bar.close()
    return done


def _put(cache: Cache, shard: Path, row: tuple) -> None:
    key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value = row
    if filename is not None:
        with open(shard / filename, "rb") as f:
            data = f.read()
        disk = cache.disk
        name, full_path = disk._checked_filename(None, None, data)
        disk._write(full_path, (data,), "xb")
        filename, size = name, len(data)
    elif mode == MODE_RAW and isinstance(value, memoryview):
        value = bytes(value)
    cache._store.put(
        key, bool(raw), store_time, expire_time, access_time, access_count, tag, size, mode,
        filename, value, 0, cache.size_limit, cache.eviction_policy,
    )
