"""Partition configuration, as in the original ``cache_tool.config``."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from candlecache import PERIODS, _core

#: How many candles share a file, per period: ``month``, ``year`` or ``decade``.
PARTITION_CONFIG: dict[str, str] = {p: _core.partition_window(p) for p in PERIODS}


def get_partition_key(timestamp_ms: int, period: str) -> str:
    """The partition (file stem) a candle belongs to, e.g. ``"2024-01"``, ``"2024"``, ``"2020s"``.

    >>> get_partition_key(1704067200000, "1m")
    '2024-01'
    """
    if period in PARTITION_CONFIG:
        return _core.partition_key(int(timestamp_ms), period)
    # The original tool put any other period in yearly files.
    return str(datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc).year)


def get_data_dir(base_dir: str | os.PathLike[str], symbol: str, period: str) -> Path:
    """``base_dir / "{symbol with / and : replaced by _}_{period}"``.

    >>> get_data_dir(Path("cache"), "BTC/USDT", "1m").as_posix()
    'cache/BTC_USDT_1m'
    """
    safe_symbol = symbol.replace("/", "_").replace(":", "_")
    return Path(base_dir) / f"{safe_symbol}_{period}"
