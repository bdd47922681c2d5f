"""DataFrames as values of the disk cache: Arrow IPC files instead of pickles.

``Cache.set`` (and ``FanoutCache``, ``Index``, ``memoize``) given a polars ``DataFrame``, a
pandas ``DataFrame`` or a pyarrow ``Table`` writes it as an Arrow IPC file with the CRC-32
of its bytes in its name (``ab/cd/<hex>.<crc32>.arrow``; its buffers uncompressed, or LZ4 or
Zstandard with the ``frame_compression`` setting); ``get`` reads the file,
checks it, and hands the Arrow buffers to polars without another copy, giving back the type
that was stored. Recently read frames stay in a per-process hot tier (``frame_cache_size``
bytes per cache), keyed by the value file, which a ``set`` from any process replaces: the next
``get`` sees it. pandas and pyarrow are imported only when a value is one of theirs.

``frame_key`` makes deterministic keys for frames of market data, ``frame_path`` gives the
Arrow file of a stored frame to polars, DuckDB or pyarrow (read-only).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import os.path as op
import sys
from collections import OrderedDict
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core
from ._fsync import fsync_parents
from ._times import to_ms

if TYPE_CHECKING:
    from .core import Cache
    from .fanout import FanoutCache
    from .persistent import Index

__all__ = ["frame_key", "frame_path", "FRAME_COMPRESSIONS"]

#: Codecs for the buffers of frame files (the ``frame_compression`` setting).
FRAME_COMPRESSIONS = ("none", "lz4", "zstd")

_LAZY_HINT = (
    "a polars LazyFrame is a query, not data: store its result, e.g. cache.set(key, lf.collect())"
)


def frame_kind(value: Any) -> str | None:
    """``'polars'``, ``'pandas'`` or ``'pyarrow'`` if ``value`` is stored as an Arrow file.

    Exact types only: a subclass may carry state Arrow does not hold, so it is pickled as
    before. A polars ``LazyFrame`` is refused rather than pickled.
    """
    cls = type(value)
    module = cls.__module__
    if module.startswith("polars"):
        pl = sys.modules.get("polars")
        if pl is not None:
            if cls is pl.DataFrame:
                return "polars"
            if cls is pl.LazyFrame:
                raise TypeError(_LAZY_HINT)
    elif module.startswith("pandas"):
        pd = sys.modules.get("pandas")
        if pd is not None and cls is pd.DataFrame:
            return "pandas"
    elif module.startswith("pyarrow"):
        pa = sys.modules.get("pyarrow")
        if pa is not None and cls is pa.Table:
            return "pyarrow"
    return None


_KIND = "candlecache.frame"
_POLARS_NULL = "candlecache.polars.null"
_PANDAS_FREQ = "candlecache.pandas.freq"
_PANDAS_ATTRS = "candlecache.pandas.attrs"
_PANDAS_COLUMNS = "candlecache.pandas.range_columns"


def _arrow_of(value: Any, kind: str) -> tuple[Any, list[tuple[str, str]]] | None:
    """What exports ``value`` as an Arrow stream and the footer metadata that completes it, or
    None when Arrow cannot hold it exactly (then it is pickled, as python-diskcache would)."""
    meta = [(_KIND, kind)]
    if kind == "polars":
        pl = sys.modules["polars"]
        if any(dtype == pl.Object for dtype in value.dtypes):
            return None  # Python objects: only pickle keeps them
        nulls = [name for name, dtype in value.schema.items() if dtype == pl.Null]
        if nulls:
            # polars exports Null columns in a form arrow-rs rejects; all-null booleans travel.
            value = value.with_columns(pl.col(nulls).cast(pl.Boolean))
            meta.append((_POLARS_NULL, json.dumps(nulls)))
        return value, meta
    if kind == "pyarrow":
        return value, meta
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
    except ImportError:
        return None
    if not value.columns.is_unique:
        return None
    freq = getattr(value.index, "freqstr", None)
    if freq is not None and not hasattr(value.index, "to_timestamp"):  # PeriodIndex keeps its own
        meta.append((_PANDAS_FREQ, freq))
    columns = value.columns
    if type(columns).__name__ == "RangeIndex" and columns.name is None:
        # pyarrow gives labels 0..n back as a plain Index
        meta.append((_PANDAS_COLUMNS, json.dumps([columns.start, columns.stop, columns.step])))
    if value.attrs:
        try:
            attrs = json.dumps(value.attrs)
        except (TypeError, ValueError):
            return None
        if json.loads(attrs) != value.attrs:
            return None  # tuples, non-str keys...: JSON would not give them back as they are
        meta.append((_PANDAS_ATTRS, attrs))
    try:
        # pyarrow keeps the index, dtypes and column labels in the schema's "pandas" metadata.
        return pa.Table.from_pandas(value), meta
    except (pa.ArrowException, TypeError, ValueError):
        return None  # e.g. an object column of mixed types


def write(
    directory: str, relative_dir: str, stem: str, value: Any, kind: str, compression: str, durable: bool = False,
) -> tuple[str, int] | None:
    """Write ``value`` as ``relative_dir/<stem>.<crc32>.arrow`` under ``directory``; returns
    (relative name, size), or None if it must be pickled instead. ``durable``: flushed to
    stable storage, with the directories that name it, before returning."""
    exported = _arrow_of(value, kind)
    if exported is None:
        return None
    table, meta = exported
    full_dir = op.join(directory, relative_dir)
    for count in range(1, 11):
        try:
            created = _makedirs(full_dir)
            name, size = _core.write_frame(full_dir, stem, table, meta, compression, durable)
            if durable and created:
                fsync_parents(directory, relative_dir)
        except FileNotFoundError:
            # Another process removed the emptied directory in between (as Disk._write).
            if count == 10:
                raise
            continue
        except TypeError:
            # A column Arrow cannot carry (polars Int128, nested nulls): only pickle keeps it.
            return None
        return op.join(relative_dir, name), size
    raise AssertionError("unreachable")


def _makedirs(full_dir: str) -> bool:
    """``os.makedirs(full_dir, exist_ok=True)``; whether it created anything."""
    if op.isdir(full_dir):
        return False
    os.makedirs(full_dir, exist_ok=True)
    return True


def read(path: str) -> tuple[Any, int]:
    """The frame in the file at ``path`` and the bytes its arrays use."""
    stream, meta, nbytes = _core.read_frame(path)
    kind = meta.get(_KIND, "pyarrow")
    if kind == "polars":
        from .ohlcv import _frame  # polars' own capsule import, as the candle API uses

        df = _frame(stream)
        nulls = meta.get(_POLARS_NULL)
        if nulls:
            pl = sys.modules["polars"]
            df = df.with_columns(pl.col(json.loads(nulls)).cast(pl.Null))
        return df, nbytes
    import pyarrow as pa  # type: ignore[import-untyped]

    table = pa.table(stream)
    if kind != "pandas":
        return table, nbytes
    df = table.to_pandas(split_blocks=True)  # one block per column: no consolidating copy
    if _PANDAS_FREQ in meta:
        df.index.freq = meta[_PANDAS_FREQ]
    if _PANDAS_ATTRS in meta:
        df.attrs = json.loads(meta[_PANDAS_ATTRS])
    if _PANDAS_COLUMNS in meta:
        import pandas as pd  # type: ignore[import-untyped]

        df.columns = pd.RangeIndex(*json.loads(meta[_PANDAS_COLUMNS]))
    return df, nbytes


def _pandas_copies_on_write() -> bool:
    pd = sys.modules["pandas"]
    if int(pd.__version__.split(".")[0]) >= 3:
        return True  # always on from pandas 3 (and its option deprecated)
    return pd.options.mode.copy_on_write is True


def _shared(value: Any) -> Any:
    """What a hot-tier hit returns: a value whose mutation cannot reach the tier's copy."""
    kind = type(value).__module__.partition(".")[0]
    if kind == "polars":
        return value.clone()  # shares the buffers; writes to the clone copy them first
    if kind == "pandas":
        return value.copy(deep=not _pandas_copies_on_write())
    return value  # a pyarrow Table is immutable


class HotFrames:
    """Recently read frames of one cache, least recently used first out, bounded in bytes.

    Keyed by value file: a ``set`` writes a new file, so a row that names another file (from
    any process) is a miss here, never a stale hit.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def get(self, filename: str) -> Any | None:
        item = self._items.get(filename)
        if item is None:
            return None
        self._items.move_to_end(filename)
        return _shared(item[0])

    def put(self, filename: str, value: Any, nbytes: int) -> Any:
        if nbytes > self.budget:
            return value
        self.discard(filename)
        self._items[filename] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.budget:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size
        return _shared(value)

    def discard(self, filename: str) -> None:
        item = self._items.pop(filename, None)
        if item is not None:
            self._bytes -= item[1]

    def resize(self, budget: int) -> None:
        self.budget = budget
        while self._bytes > budget and self._items:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size


# -- deterministic keys -----------------------------------------------------------------------

_KEY_PREFIX = "frame-v1-"


def _canonical(name: str, value: Any) -> Any:
    """A JSON value that means the same for every equal input, or a TypeError naming ``name``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return repr(float(value))  # exact, and NaN/inf survive JSON
    if isinstance(value, (datetime, date)) or type(value).__name__ == "datetime64":
        return {"ms": to_ms(name, value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(name, v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(name, v) for v in value), key=_sort_key)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"frame_key: {name} has non-str keys; use str keys")
        return {k: _canonical(f"{name}[{k!r}]", v) for k, v in value.items()}
    raise TypeError(
        f"frame_key: {name} is a {type(value).__name__}; use str, int, float, bool, None, "
        "datetimes, or lists, sets and dicts of them"
    )


def _sort_key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def frame_key(
    *,
    symbols: str | Iterable[str] | None = None,
    start: Any = None,
    end: Any = None,
    resolution: str | None = None,
    source: str | None = None,
    **params: Any,
) -> str:
    """A deterministic cache key for a frame of market data (RustyBT's ``generate_cache_key``).

    The same arguments give the same key in every process, on every machine and in every
    version of candlecache: ``'frame-v1-'`` followed by the first 32 hex digits (128 bits) of
    the SHA-256 of a canonical JSON document. In that document:

    - ``symbols`` is a sorted list without repeats (one str counts as a list of one), so the
      order of a symbol list does not matter;
    - ``start`` and ``end`` are epoch milliseconds, from any time the candle API accepts
      (epoch ms, ``datetime``, ``date``, ISO-8601 strings, pandas/numpy timestamps): ``"2024-01-01"``,
      ``datetime(2024, 1, 1, tzinfo=timezone.utc)`` and ``1704067200000`` are one key;
    - ``resolution`` and ``source`` are kept as given;
    - every other keyword goes into ``params`` (dict keys sorted, floats by ``repr``, sets
      sorted, datetimes as epoch ms); values of other types raise ``TypeError``.

    ``memoize`` keys are python-diskcache's and unaffected.

    >>> frame_key(symbols=["MSFT", "AAPL"], start="2023-01-01", end="2023-12-31", resolution="1d", source="yfinance")
    'frame-v1-6d37665b193238d4049558714e2e6913'
    """
    if symbols is None:
        names: list[str] | None = None
    else:
        items = [symbols] if isinstance(symbols, str) else list(symbols)
        if not all(isinstance(s, str) for s in items):
            raise TypeError(f"frame_key: symbols must be str or an iterable of str, got {symbols!r}")
        names = sorted(set(items))
    for name, value in (("resolution", resolution), ("source", source)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"frame_key: {name} must be a str, got {type(value).__name__}")
    doc = {
        "symbols": names,
        "start": None if start is None else to_ms("start", start),
        "end": None if end is None else to_ms("end", end),
        "resolution": resolution,
        "source": source,
        "params": _canonical("params", params),
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _KEY_PREFIX + hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def frame_path(cache: Cache | FanoutCache | Index, key: Any) -> Path | None:
    """The Arrow IPC file holding the frame stored under ``key``, or None if ``key`` holds no
    frame. Read it with ``polars.scan_ipc``, DuckDB or pyarrow; never write to it (the cache
    checks its bytes against the checksum in its name). The file is valid while the key keeps
    this value: a later ``set`` or ``delete`` removes it.

    >>> cache.set("prices", df)  # doctest: +SKIP
    >>> polars.scan_ipc(frame_path(cache, "prices")).filter(...).collect()  # doctest: +SKIP
    """
    from .persistent import Index

    target = cache._cache if isinstance(cache, Index) else cache
    found = target._frame_path(key)
    return None if found is None else Path(found)
