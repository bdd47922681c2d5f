"""candlecache: OHLCV candles from a local Parquet cache, fetched only where missing.

>>> import candlecache
>>> sorted(candlecache.PERIODS)[:3]
['12h', '15m', '1M']
"""

from __future__ import annotations

from . import _core
from .core import (
    DEFAULT_SETTINGS,
    ENOVAL,
    EVICTION_POLICY,
    UNKNOWN,
    Cache,
    Disk,
    EmptyDirWarning,
    JSONDisk,
    UnknownFileWarning,
)
from .exceptions import CallbackError, CandlecacheError, CorruptionError, Timeout
from .fanout import FanoutCache
from .persistent import Deque, Index
from .recipes import (
    Averager,
    BoundedSemaphore,
    Lock,
    RLock,
    barrier,
    memoize_stampede,
    throttle,
)
from .ohlcv import (
    DEFAULT_LOCK_TIMEOUT,
    PERIODS,
    data_dir,
    forget,
    get_ohlcv_with_cache,
    period_to_ms,
    read_cached,
    repair_cache,
)

__version__: str = _core.__version__

__all__ = [
    "get_ohlcv_with_cache",
    "read_cached",
    "repair_cache",
    "forget",
    "data_dir",
    "period_to_ms",
    "PERIODS",
    "DEFAULT_LOCK_TIMEOUT",
    "CandlecacheError",
    "Timeout",
    "CorruptionError",
    "CallbackError",
    "__version__",
    "Cache",
    "Disk",
    "JSONDisk",
    "ENOVAL",
    "UNKNOWN",
    "DEFAULT_SETTINGS",
    "EVICTION_POLICY",
    "EmptyDirWarning",
    "UnknownFileWarning",
    "FanoutCache",
    "Deque",
    "Index",
    "Averager",
    "BoundedSemaphore",
    "Lock",
    "RLock",
    "barrier",
    "memoize_stampede",
    "throttle",
]
