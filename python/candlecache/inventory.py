"""``inventory``: what a cache directory holds, one row per symbol and period folder."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from . import _core
from .ohlcv import PERIODS

__all__ = ["inventory"]

_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "symbol": pl.String,
    "period": pl.String,
    "first": pl.Int64,
    "last": pl.Int64,
    "rows": pl.Int64,
    "files": pl.Int64,
    "bytes": pl.Int64,
    "holes": pl.Int64,
    "path": pl.String,
}


def _is_cache_folder(path: Path) -> bool:
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(n == "fetch_log.jsonl" or n.endswith(".parquet") for n in names)


def _folder_row(path: Path, symbol: str, period: str) -> dict[str, object]:
    files = 0
    size = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.endswith(".parquet") and not entry.name.startswith("."):
                files += 1
            size += entry.stat(follow_symlinks=False).st_size
    times = pl.DataFrame(_core.read_range(path)).get_column("time")
    first: int | None = None
    last: int | None = None
    holes = 0
    if times.len():
        first, last = int(times.min()), int(times.max())  # type: ignore[arg-type]
        covered = [(int(a), int(b)) for a, b in _core.coverage(path, period)]
        holes = len(_core.ranges_missing(covered, first, _core.period_add(period, last, 1)))
    return {
        "symbol": symbol,
        "period": period,
        "first": first,
        "last": last,
        "rows": times.len(),
        "files": files,
        "bytes": size,
        "holes": holes,
        "path": str(path),
    }


def cache_folders(base: Path) -> list[tuple[str, str, Path]]:
    """``(symbol as the folder writes it, period, path)`` of each cache folder of ``base``."""
    out = []
    for name in sorted(os.listdir(base)):
        symbol, sep, period = name.rpartition("_")
        if not sep or not symbol or period not in PERIODS:
            continue
        path = base / name
        if path.is_dir() and _is_cache_folder(path):
            out.append((symbol, period, path))
    return out


def inventory(base_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """One row per ``{symbol}_{period}`` folder of ``base_dir`` that holds a fetch log or
    Parquet files, sorted by symbol and period.

    Columns: ``symbol`` (the folder's symbol with ``/`` and ``:`` written ``_``, e.g.
    ``BTC_USDT_USDT``; the other functions accept it as the symbol, since they name the
    folder the same way), ``period``, ``first`` and ``last`` (open times of the first and last
    stored candle, epoch ms, null when the folder holds none), ``rows`` (stored candles),
    ``files`` (Parquet files, delta files included), ``bytes`` (size of every file in the
    folder), ``holes`` (ranges between the first and last candle the cache has not answered,
    see ``holes``) and ``path``.

    >>> candlecache.inventory("~/.cache/candles")  # doctest: +SKIP
    shape: (2, 9)
    ...

    Raises:
        FileNotFoundError: ``base_dir`` does not exist.
        NotADirectoryError: ``base_dir`` is a file.
        candlecache.CorruptionError: a Parquet file cannot be read (see ``repair_cache``).
    """
    if not isinstance(base_dir, (str, os.PathLike)):
        raise TypeError(f"base_dir must be a str or os.PathLike, got {type(base_dir).__name__}")
    base = Path(base_dir).expanduser()
    rows = [_folder_row(path, symbol, period) for symbol, period, path in cache_folders(base)]
    order = {p: i for i, p in enumerate(PERIODS)}
    rows.sort(key=lambda r: (str(r["symbol"]), order[str(r["period"])]))
    return pl.DataFrame(rows, schema=_SCHEMA) if rows else pl.DataFrame(schema=_SCHEMA)
