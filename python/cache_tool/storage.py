"""Reading and writing partitions, as in the original ``cache_tool.storage``."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from candlecache import _core

from .config import get_data_dir, get_partition_key

__all__ = ["read_ohlcv", "save_ohlcv", "save_ohlcv_with_lock", "get_data_dir", "get_partition_key"]


def read_ohlcv(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: int | None = None,
    end_time: int | None = None,
) -> pl.DataFrame:
    """Stored candles with ``start_time <= time <= end_time`` (either bound optional).

    Only the partitions that overlap the range are opened.
    """
    data_dir = get_data_dir(base_dir, symbol, period)
    return pl.DataFrame(_core.read_range(data_dir, start_time, end_time))


def save_ohlcv(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    new_data: pl.DataFrame,
) -> None:
    """Store rows by partition; a stored row with the same ``time`` is replaced by the new one.

    Every file is replaced atomically. Like the original, this takes no lock: callers that
    write from several processes hold ``.lock`` around it or use :func:`save_ohlcv_with_lock`.
    """
    _save(base_dir, symbol, period, new_data, lock=False)


def _save(base_dir, symbol, period, new_data, *, lock: bool) -> None:
    if new_data is None or len(new_data) == 0:
        return
    data_dir = get_data_dir(base_dir, symbol, period)
    _core.write_rows(Path(data_dir), period, new_data, lock=lock)


def save_ohlcv_with_lock(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    new_data: pl.DataFrame,
) -> None:
    """:func:`save_ohlcv` under the folder's exclusive lock (``.lock``)."""
    _save(base_dir, symbol, period, new_data, lock=True)
