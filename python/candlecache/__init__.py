"""candlecache: OHLCV candles from a local Parquet cache, fetched only where missing, and a
file-based drop-in for python-diskcache.

Candles
    ``get_ohlcv_with_cache(base_dir, symbol, period, start_time, count, fetch_callback)``
    returns a polars DataFrame (``time`` in epoch ms, ``open high low close volume``), reading
    what ``base_dir`` holds and calling ``fetch_callback`` (e.g. a ccxt exchange's
    ``fetch_ohlcv``) only for what is missing. Times may be epoch ms, datetimes, dates or ISO
    strings; ``end_time=`` replaces ``count``. ``get_ohlcv_with_cache_async`` is the same for
    ccxt's async client. ``read_cached`` reads without fetching; ``coverage``, ``holes``,
    ``covered_empty`` and ``inventory`` tell what is cached; ``forget`` makes a range be
    fetched again; ``repair_cache`` moves damaged files aside. The ``candlecache`` command
    (``python -m candlecache --help``) does the same from a shell. Log lines go to ``logging.getLogger("candlecache")``.

Archive backfill
    ``backfill_binance_vision(base_dir, symbol, period, start_time, end_time)`` fills the
    same cache from Binance's public archive (daily and monthly zips, SHA-256 verified);
    ``vision_failures`` lists the files that failed.

Disk cache
    ``Cache``, ``FanoutCache``, ``Deque``, ``Index`` and the recipes (``memoize_stampede``,
    ``Lock``, ``throttle``, ...) follow python-diskcache 5.6's API without SQLite:
    ``import candlecache as diskcache`` runs code written for it.

    A polars or pandas DataFrame or a pyarrow Table set as a value is stored as an Arrow
    file, not pickled, and read back without a copy; ``frame_key`` makes deterministic keys
    for frames of market data, ``frame_path`` gives a frame's file to other readers.
    ``DjangoCache`` is a Django cache backend over ``FanoutCache`` (diskcache's settings).
    ``import_diskcache`` brings a python-diskcache directory over (``cache.db`` is read with
    ``sqlite3``; nothing is unpickled).

    A directory others can write: ``Cache(directory, signing_key=...)`` (or the
    ``CANDLECACHE_SIGNING_KEY`` environment variable) signs pickles and never unpickles one
    without a good signature; ``disk=JSONDisk`` unpickles nothing at all.

Errors
    ``CandlecacheError`` is the base of ``CallbackError``, ``Timeout``, ``CorruptionError``
    and ``SigningKeyError``;
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
    SignatureWarning,
    UnknownFileWarning,
)
from .exceptions import (
    CallbackError,
    CandlecacheError,
    CorruptionError,
    ObjectStoreError,
    SigningKeyError,
    StoreRefusedError,
    Timeout,
)
from .fanout import FanoutCache
from .djangocache import DjangoCache
from .frames import frame_key, frame_path
from .kvimport import import_diskcache
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
    covered_empty,
    data_dir,
    forget,
    holes,
    get_ohlcv_with_cache,
    period_to_ms,
    read_cached,
    repair_cache,
)
from .inventory import inventory
from .market import MarketCache
from .resample import resample
from .scan import scan_ohlcv
from .vision import BackfillReport, backfill_binance_vision, clear_vision_failures, vision_failures

__version__: str = _core.__version__

__all__ = [
    "get_ohlcv_with_cache",
    "get_ohlcv_with_cache_async",
    "read_cached",
    "repair_cache",
    "forget",
    "coverage",
    "holes",
    "covered_empty",
    "inventory",
    "MarketCache",
    "resample",
    "scan_ohlcv",
    "backfill_binance_vision",
    "BackfillReport",
    "vision_failures",
    "clear_vision_failures",
    "data_dir",
    "period_to_ms",
    "PERIODS",
    "DEFAULT_LOCK_TIMEOUT",
    "CandlecacheError",
    "Timeout",
    "CorruptionError",
    "CallbackError",
    "SigningKeyError",
    "StoreRefusedError",
    "ObjectStoreError",
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
    "SignatureWarning",
    "FanoutCache",
    "DjangoCache",
    "frame_key",
    "frame_path",
    "import_diskcache",
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
