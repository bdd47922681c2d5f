"""The fetch log, as in the original ``cache_tool.log_manager``.

Lines keep the original fields (``fetch_time``, ``data_start``, ``data_end``, ``count``,
``source``); ``data_start..data_end`` is the inclusive range of candle open times asked and
answered (``count`` 0 means answered empty).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

from candlecache import _core

from ._period import period_of

__all__ = ["get_log_path", "append_log", "read_log", "compact_log", "rebuild_log_from_data"]


def get_log_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "fetch_log.jsonl"


def append_log(
    data_dir: str | os.PathLike[str],
    data_start: int,
    data_end: int,
    count: int,
    source: str = "api",
) -> None:
    """Append one line; a torn last line left by a crash is kept apart, never merged into it."""
    _core.log_append(Path(data_dir), int(data_start), int(data_end), int(count), str(source), int(time.time() * 1000))


def read_log(data_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """The log as a DataFrame sorted by ``data_start``; unreadable lines are skipped."""
    entries = _core.log_entries(Path(data_dir))
    if not entries:
        return pl.DataFrame()
    return pl.DataFrame(entries).sort("data_start")


def compact_log(data_dir: str | os.PathLike[str]) -> None:
    """Merge overlapping and adjacent lines into one per covered range (atomic rewrite).

    Like the original, this takes no lock (the original's entry point calls it under ``.lock``).
    """
    _core.log_compact(Path(data_dir), period_of(data_dir), lock=False)


def rebuild_log_from_data(data_dir: str | os.PathLike[str], period_ms: int) -> None:
    """Replace the log with one line per run of consecutive stored candles (takes no lock)."""
    _core.rebuild_log(Path(data_dir), period_of(data_dir, period_ms), int(time.time() * 1000), lock=False)
