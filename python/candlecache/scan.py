"""``scan_ohlcv``: everything a cache directory holds as one polars ``LazyFrame``, reading only
the live files of the folders a query can match."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from . import _core
from .inventory import _is_cache_folder, cache_folders
from .ohlcv import _CANDLE_SCHEMA, PERIODS, _check_base_dir, _frame

__all__ = ["scan_ohlcv"]

_KEYS = ("namespace", "symbol", "period")
_SCHEMA: dict[str, Any] = {**dict.fromkeys(_KEYS, pl.String), **_CANDLE_SCHEMA}


def _folders(base: Path) -> list[tuple[str | None, str, str, Path]]:
    """Cache folders of ``base`` (namespace None) and of each namespace folder in it."""
    out: list[tuple[str | None, str, str, Path]] = [(None, s, p, path) for s, p, path in cache_folders(base)]
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return out
    for name in names:
        sub = base / name
        if name.startswith(".") or not sub.is_dir() or _is_cache_folder(sub):
            continue
        out.extend((name, s, p, path) for s, p, path in cache_folders(sub))
    return out


def _conjuncts(expr: pl.Expr) -> list[pl.Expr]:
    """``a & b & c`` as ``[a, b, c]`` (anything else as itself)."""
    try:
        top = json.loads(expr.meta.serialize(format="json"))
    except Exception:  # noqa: BLE001 - a layout this polars does not serialise: keep it whole
        return [expr]
    if isinstance(top, dict) and top.get("BinaryExpr", {}).get("op") == "And":
        parts = expr.meta.pop()
        if len(parts) == 2:
            return _conjuncts(parts[0]) + _conjuncts(parts[1])
    return [expr]


def _matching(conjuncts: list[pl.Expr], folders: Sequence[tuple[str | None, str, str, PurePath]]) -> list[bool]:
    """Per folder, False when a part of the query that names only the folder keys rules it
    out (decided for all folders in one polars call per such part)."""
    keep = [True] * len(folders)
    keyed = [c for c in conjuncts if c.meta.root_names() and set(c.meta.root_names()) <= set(_KEYS)]
    if not keyed or not folders:
        return keep
    rows = pl.DataFrame([f[:3] for f in folders], schema={k: pl.String for k in _KEYS}, orient="row")
    for c in keyed:
        try:
            hits = rows.select(c.fill_null(False)).to_series().to_list()
        except Exception:  # noqa: BLE001 - not decidable on the keys alone: read the folders
            continue
        keep = [k and h is True for k, h in zip(keep, hits)]
    return keep


_DATA = tuple(_CANDLE_SCHEMA)


#: A folder's candles as a LazyFrame (None: it holds none), given the folder, its period and
#: the parts of the query on data columns (applied before the columns are cast, so they
#: reach a Parquet reader).
_Reader = Callable[[PurePath, str, list[pl.Expr]], "pl.LazyFrame | None"]


def _local_frame(path: PurePath, period: str, pre: list[pl.Expr]) -> pl.LazyFrame | None:
    files = _core.live_files(path)
    if not files:
        return None
    lf = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")
    return lf.filter(*pre) if pre else lf


def _keyed(lf: pl.LazyFrame, keys: dict[str, str | None]) -> pl.LazyFrame:
    return lf.select(
        *(pl.lit(keys[k], dtype=pl.String).alias(k) for k in _KEYS),
        pl.col("time").cast(pl.Int64),
        *(pl.col(c).cast(pl.Float64) for c in _DATA[1:]),
    )


def scan_ohlcv(
    base_dir: str | os.PathLike[str],
    symbols: Iterable[str] | None = None,
    periods: Iterable[str] | None = None,
    namespace: str | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
) -> pl.LazyFrame:
    """Every candle a cache directory holds, lazily: columns ``namespace`` (null for the
    drop-in layout), ``symbol`` (as its folder writes it, ``BTC_USDT``), ``period``, ``time``,
    ``open``, ``high``, ``low``, ``close``, ``volume``.

    Only live files are read: never a file a newer one superseded, never one moved aside as
    damaged, never a row twice. Filters push down: a condition on ``namespace``, ``symbol`` or
    ``period`` skips whole folders before any file is opened, and one on ``time`` reaches the
    Parquet reader (row groups and pages outside it are not decoded). Rows come folder by
    folder, in no promised order: sort by ``time`` if you need it.

    ``symbols`` (ccxt symbols such as ``BTC/USDT`` or folder forms), ``periods`` and
    ``namespace`` narrow the folders up front.

    >>> import candlecache, polars as pl
    >>> lf = candlecache.scan_ohlcv("~/.cache/candles")  # doctest: +SKIP
    >>> lf.filter((pl.col("symbol") == "BTC_USDT") & (pl.col("time") >= 1_704_067_200_000)).collect()  # doctest: +SKIP

    DuckDB queries the same frame: ``duckdb.sql("select symbol, count(*) from lf group by 1")``
    (DuckDB reads a polars LazyFrame or DataFrame by its variable name).

    An object store root (``s3://…`` with ``storage_options``, as for ``get_ohlcv_with_cache``)
    is scanned through its logs: each folder's live objects, merged as ``read_cached`` merges
    them. Folder filters skip folders there too; a ``time`` filter applies after reading.
    """
    want_symbols = None if symbols is None else {s.replace("/", "_").replace(":", "_") for s in _strs("symbols", symbols)}
    want_periods = None if periods is None else set(_strs("periods", periods))
    if want_periods is not None and not want_periods <= set(PERIODS):
        raise ValueError(f"unknown period(s) {sorted(want_periods - set(PERIODS))}; expected some of {' '.join(PERIODS)}")
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str or None, got {type(namespace).__name__}")
    if isinstance(base_dir, str) and _core.is_object_url(base_dir):
        return _scan_objects(base_dir, storage_options, want_symbols, want_periods, namespace)
    if storage_options is not None:
        raise TypeError("storage_options apply to object store URLs (s3://, gs://, az://, file://), not to local paths")
    base = _check_base_dir(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(2, "no cache directory here", str(base))
    folders = [
        f for f in _folders(base)
        if (want_symbols is None or f[1] in want_symbols)
        and (want_periods is None or f[2] in want_periods)
        and (namespace is None or f[0] == namespace)
    ]

    return _source(folders, _local_frame)


def _source(folders: Sequence[tuple[str | None, str, str, PurePath]], read: _Reader) -> pl.LazyFrame:
    """The LazyFrame over ``folders``, each read by ``read``."""

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        parts = [] if predicate is None else _conjuncts(predicate)
        pre = [c for c in parts if c.meta.root_names() and set(c.meta.root_names()) <= set(_DATA)]
        frames = []
        for (ns, symbol, period, path), keep in zip(folders, _matching(parts, folders)):
            if not keep:
                continue
            lf = read(path, period, pre)
            if lf is not None:
                frames.append(_keyed(lf, {"namespace": ns, "symbol": symbol, "period": period}))
        if not frames:
            return
        # One plan over every folder: polars reads them in parallel.
        lf = pl.concat(frames, how="vertical")
        if predicate is not None:
            lf = lf.filter(predicate)
        if with_columns is not None:
            lf = lf.select(with_columns)
        if n_rows is not None:
            lf = lf.head(n_rows)
        df = lf.collect()
        if df.height:
            yield df

    return register_io_source(source, schema=_SCHEMA, explain_name="candlecache.scan_ohlcv")


def _object_folders(root: _core.ObjectRoot) -> list[tuple[str | None, str, str, str]]:
    """``(namespace, symbol, period, folder)`` of the cache folders of an object store root and
    of its namespaces: one listing per level."""
    out: list[tuple[str | None, str, str, str]] = []

    def split(name: str) -> tuple[str, str] | None:
        symbol, _, period = name.rpartition("_")
        return (symbol, period) if symbol and period in PERIODS else None

    for name in _core.shared_folders(root):
        if name.startswith("_"):
            continue
        parts = split(name)
        if parts is not None:
            out.append((None, *parts, name))
            continue
        for sub in _core.shared_folders(root, name):
            parts = split(sub)
            if parts is not None:
                out.append((name, *parts, f"{name}/{sub}"))
    return out


def _scan_objects(
    url: str, storage_options: Mapping[str, str] | None, want_symbols: set[str] | None,
    want_periods: set[str] | None, namespace: str | None,
) -> pl.LazyFrame:
    from .market import default_cache

    root = default_cache(url, storage_options)._root  # type: ignore[attr-defined]
    folders = [
        f for f in _object_folders(root)
        if (want_symbols is None or f[1] in want_symbols)
        and (want_periods is None or f[2] in want_periods)
        and (namespace is None or f[0] == namespace)
    ]

    def read(folder: PurePath, period: str, pre: list[pl.Expr]) -> pl.LazyFrame | None:
        df = _frame(_core.shared_read_range(root, folder.as_posix(), period))
        if not df.height:
            return None
        return df.lazy().filter(*pre) if pre else df.lazy()

    return _source([(ns, s, p, PurePosixPath(f)) for ns, s, p, f in folders], read)


def _strs(name: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name} must be strings")
    return out
