"""The entry point, as in the original ``cache_tool.entry``."""

from __future__ import annotations

from candlecache import get_ohlcv_with_cache, period_to_ms

from .config import PARTITION_CONFIG, get_data_dir
from .continuity import check_continuity, find_missing_ranges
from .log_manager import append_log, compact_log
from .storage import read_ohlcv, save_ohlcv

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
