"""candlecache: OHLCV candles from a local Parquet cache, fetched only where missing, and a
file-based drop-in for python-diskcache.

Candles
    ``get_ohlcv_with_cache(base_dir, symbol, period, start_time, count, fetch_callback)``
    returns a polars DataFrame (``time`` in epoch ms, ``open high low close volume``), reading
    what ``base_dir`` holds and calling ``fetch_callback`` (e.g. a ccxt exchange's
    ``fetch_ohlcv``) only for what is missing. Times may be epoch ms, datetimes, dates or ISO
    strings; ``end_time=`` replaces ``count``. ``get_ohlcv_with_cache_async`` is the same for
    ccxt's async client. ``read_cached`` reads without fetching; ``coverage`` and ``holes``
    tell what is cached; ``forget`` makes a range be fetched again; ``repair_cache`` moves
    damaged files aside. Log lines go to ``logging.getLogger("candlecache")``.

Disk cache
    ``Cache``, ``FanoutCache``, ``Deque``, ``Index`` and the recipes (``memoize_stampede``,
    ``Lock``, ``throttle``, ...) follow python-diskcache 5.6's API without SQLite:
    ``import candlecache as diskcache`` runs code written for it.

Errors
    ``CandlecacheError`` is the base of ``CallbackError``, ``Timeout`` and ``CorruptionError``;
    bad arguments raise ``ValueError``/``TypeError``, the file system ``OSError``.

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
from .aio import get_ohlcv_with_cache_async
from .ohlcv import (
    DEFAULT_LOCK_TIMEOUT,
    PERIODS,
    coverage,
    data_dir,
    forget,
    holes,
    get_ohlcv_with_cache,
    period_to_ms,
    read_cached,
    repair_cache,
)

__version__: str = _core.__version__

__all__ = [
    "get_ohlcv_with_cache",
    "get_ohlcv_with_cache_async",
    "read_cached",
    "repair_cache",
    "forget",
    "coverage",
    "holes",
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
