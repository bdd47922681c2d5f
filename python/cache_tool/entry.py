"""The entry point, as in the original ``cache_tool.entry``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

import candlecache
from candlecache import period_to_ms
from candlecache.ohlcv import DEFAULT_LOCK_TIMEOUT, TimeLike

from .config import PARTITION_CONFIG, get_data_dir
from .continuity import check_continuity, find_missing_ranges
from .log_manager import append_log, compact_log
from .storage import read_ohlcv, save_ohlcv


def get_ohlcv_with_cache(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike,
    count: int,
    fetch_callback: Callable[..., Any],
    fetch_callback_params: Mapping[str, Any] | None = {},  # noqa: B006 - the original signature
    enable_cache: bool = True,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    durable: bool = False,
    progress: bool | None = None,
) -> pl.DataFrame:
    """The original tool's signature exactly (``count`` and ``fetch_callback`` required); see
    :func:`candlecache.get_ohlcv_with_cache`, which also takes ``end_time`` instead of ``count``."""
    return candlecache.get_ohlcv_with_cache(
        base_dir,
        symbol,
        period,
        start_time,
        count,
        fetch_callback,
        fetch_callback_params,
        enable_cache,
        lock_timeout=lock_timeout,
        durable=durable,
        progress=progress,
    )


__all__ = [
    "get_ohlcv_with_cache",
    "period_to_ms",
    "PARTITION_CONFIG",
    "get_data_dir",
    "read_ohlcv",
    "save_ohlcv",
    "append_log",
    "compact_log",
    "check_continuity",
    "find_missing_ranges",
]
