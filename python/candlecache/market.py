"""``MarketCache``: one cache directory's settings, its hot in-memory tier and its statistics.

``get_ohlcv_with_cache`` and ``read_cached`` go through a shared ``MarketCache`` per directory
(:func:`default_cache`), so the drop-in functions get the hot tier and the counts too.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from . import _core
from ._times import to_ms
from ._usage import _COUNTERS, _Stats, _Usage, _keys, _partitions, _span
from .ohlcv import (
    _CANDLE_SCHEMA,
    DEFAULT_LOCK_TIMEOUT,
    PERIODS,
    TimeLike,
    _adapt,
    _check_base_dir,
    _check_int,
    _check_period,
    _frame,
    _get_ohlcv,
    _heal,
    _log,
    _log_plan,
    _namespace,
    _warn_if_exchange_id,
    data_dir,
)
from .exceptions import CorruptionError
from .resample import resample

__all__ = ["MarketCache", "default_cache", "DEFAULT_HOT_CACHE_MB"]

#: The hot tier of the shared per-directory caches behind ``get_ohlcv_with_cache`` and
#: ``read_cached``, in MiB; the environment variable ``CANDLECACHE_HOT_MB`` overrides it
#: (``0`` turns the tier off).
DEFAULT_HOT_CACHE_MB = 256

_POLICIES = ("lru", "size", "hybrid")
_VERIFY = ("fast", "full", "off")


def _env_hot_mb() -> float:
    raw = os.environ.get("CANDLECACHE_HOT_MB")
    if raw is None or raw.strip() == "":
        return DEFAULT_HOT_CACHE_MB
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"CANDLECACHE_HOT_MB must be a number of MiB (0 turns the hot tier off), got {raw!r}") from None
    if value < 0:
        raise ValueError(f"CANDLECACHE_HOT_MB must not be negative, got {raw!r}")
    return value


_live: weakref.WeakSet[MarketCache] = weakref.WeakSet()


class MarketCache:
    """One candle cache directory with a hot in-memory tier and statistics.

    Reads served by the hot tier decode nothing: recently read partitions stay in memory, as
    Arrow, and are handed to polars without a copy. They are never stale: each read checks
    the folder's files (one ``stat`` each) and decodes again whatever another process, or
    this one, or the original tool, has written since.

    Args:
        base_dir: the cache directory (the ``base_dir`` of ``get_ohlcv_with_cache``).
        hot_cache_mb: the hot tier's budget in MiB (``0`` turns it off).
        verify: how much a read checks a file before trusting it. Every file candlecache
            writes has its size, footer CRC and SHA-256 recorded (``.checksums.jsonl`` in its
            folder). ``"fast"`` (the default) compares size and footer once per file version
            and notices recorded files that are gone; ``"full"`` also hashes every file a read
            decodes (a flipped byte inside a value is caught); ``"off"`` trusts the disk.
            Files without a record (written by the original tool) are checked by decoding.
            A damaged file is moved aside and its candles fetched again within the same
            ``get_ohlcv`` call.
        compression: the Parquet codec of the files its fetches write: ``"zstd"`` (the
            default, level 1), ``"lz4"``, ``"snappy"``, ``"gzip"`` or ``"none"``;
            ``compression_level`` for zstd (1-22) and gzip (0-10). Any Parquet reader reads
            them all, and the cache reads files of any of these codecs whatever it writes.
        namespace: keep each exchange's candles apart, in ``base_dir/{namespace}/`` (``"auto"``
            takes each call's ccxt exchange id); statistics, the size limit and runs stay
            one per ``base_dir``. ``verify``, ``clear`` and ``vacuum`` act on this namespace,
            or on every one when None or ``"auto"``.
        statistics: count hits, misses, requests and candles fetched, saved in
            ``base_dir/.candlecache/stats`` (one small file per process, no lock).

    >>> import ccxt, candlecache
    >>> ex = ccxt.binance()  # doctest: +SKIP
    >>> with candlecache.MarketCache("~/.cache/candles", hot_cache_mb=512) as cache:  # doctest: +SKIP
    ...     df = cache.get_ohlcv("BTC/USDT", "1m", "2024-01-01", end_time="2024-12-31T23:59:00Z",
    ...                          fetch_callback=ex.fetch_ohlcv)
    ...     again = cache.read("BTC/USDT", "1m", "2024-06-01", "2024-06-30")   # from memory
    ...     cache.stats()["hit_rate"]
    0.5
    """

    def __new__(cls, base_dir: str | os.PathLike[str], *args: Any, **kwargs: Any) -> MarketCache:
        if cls is MarketCache and isinstance(base_dir, str) and _core.is_object_url(base_dir):
            from .objectstore import ObjectMarketCache

            return super().__new__(ObjectMarketCache)
        return super().__new__(cls)

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        hot_cache_mb: float = DEFAULT_HOT_CACHE_MB,
        cold_cache_mb: float | None = None,
        eviction_policy: str = "lru",
        verify: str = "fast",
        statistics: bool = True,
        namespace: str | None = None,
        compression: str = "zstd",
        compression_level: int | None = None,
        storage_options: Mapping[str, str] | None = None,
        lease: float = 60.0,
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"storage_options apply to object store URLs (s3://, gs://, az://, file://), not to the local path {base_dir!r}"
            )
        self.base_dir: Path = _check_base_dir(base_dir)
        self._settings(
            hot_cache_mb=hot_cache_mb, cold_cache_mb=cold_cache_mb, eviction_policy=eviction_policy, verify=verify,
            namespace=namespace, compression=compression, compression_level=compression_level,
        )
        self._usage = _Usage(self.base_dir)
        self._stats: _Stats | None = _Stats(self.base_dir) if statistics else None
        _live.add(self)

    def _settings(
        self, *, hot_cache_mb: float, cold_cache_mb: float | None, eviction_policy: str, verify: str,
        namespace: str | None, compression: str, compression_level: int | None,
    ) -> None:
        """Check and keep the settings every kind of root has."""
        if not isinstance(compression, str) or (compression_level is not None and type(compression_level) is not int):
            raise TypeError("compression must be a str and compression_level an int or None")
        _core.check_codec(compression, compression_level)
        #: The Parquet codec of the files its fetches write.
        self.compression: tuple[str, int | None] = (compression, compression_level)
        #: Where this cache's calls keep their candles by default: ``base_dir/{namespace}/``
        #: (``"auto"``: the id of each call's ccxt exchange; None: the drop-in layout).
        self.namespace: str | None = namespace if namespace == "auto" else _namespace(namespace)
        if verify not in _VERIFY:
            raise ValueError(f"verify must be one of {', '.join(map(repr, _VERIFY))}, got {verify!r}")
        self.verify_mode: str = verify
        if cold_cache_mb is not None and (
            isinstance(cold_cache_mb, bool) or not isinstance(cold_cache_mb, (int, float)) or cold_cache_mb <= 0
        ):
            raise ValueError(f"cold_cache_mb must be None (no limit) or a number of MiB > 0, got {cold_cache_mb!r}")
        if eviction_policy not in _POLICIES:
            raise ValueError(f"eviction_policy must be one of {', '.join(map(repr, _POLICIES))}, got {eviction_policy!r}")
        self.cold_cache_mb = None if cold_cache_mb is None else float(cold_cache_mb)
        self.eviction_policy = eviction_policy
        if isinstance(hot_cache_mb, bool) or not isinstance(hot_cache_mb, (int, float)) or hot_cache_mb < 0:
            raise ValueError(f"hot_cache_mb must be a number of MiB >= 0 (0 turns the hot tier off), got {hot_cache_mb!r}")
        self.hot_cache_mb = float(hot_cache_mb)
        budget = int(self.hot_cache_mb * 1024 * 1024)
        self._hot: _core.HotTier | None = _core.HotTier(budget) if budget > 0 else None
        self._closed = False
        self._dirs: dict[tuple[str, str, str | None], Path] = {}
        # What the current call of this thread did (the size limit acts after a write).
        self._call = threading.local()

    def _fetch(
        self, symbol: str, period: str, ns: str | None, start: int, count: int, callback: Callable[..., Any],
        params: dict[str, Any] | None, enable_cache: bool, now_ms: int, timeout: float | None, durable: bool,
        bar: Callable[[int, int], None] | None,
    ) -> Any:
        """The engine call of ``get_ohlcv`` (arguments checked): an Arrow stream of the rows."""
        base = self.base_dir if ns is None else self.base_dir / ns
        _warn_if_exchange_id(base, symbol)
        if enable_cache and count > 0 and _log.isEnabledFor(logging.INFO):
            _log_plan(base, symbol, period, start, count, now_ms)

        def call() -> Any:
            return _core.get_ohlcv(
                base, symbol, period, start, count, callback, params, enable_cache, now_ms, timeout, durable,
                _adapt, bar, self._hot, self.verify_mode, self.compression,
            )

        try:
            return call()
        except CorruptionError as e:
            # Heal: damaged files go aside and lose their coverage, so this call fetches them again.
            _heal(self, data_dir(base, symbol, period), symbol, period, e, durable=durable, timeout=timeout)
            return call()

    def _read_stream(self, symbol: str, period: str, ns: str | None, start: int | None, end: int | None) -> Any:
        """The engine call of ``read``: an Arrow stream of the stored rows."""
        path = self._folder(symbol, period, ns)
        try:
            return _core.read_range(path, start, end, self._hot, self.verify_mode)
        except CorruptionError as e:
            if _heal(self, path, symbol, period, e, durable=False, timeout=DEFAULT_LOCK_TIMEOUT):
                what = str(e).partition("; candlecache.repair_cache()")[0]
                raise CorruptionError(
                    f"{what}. The damaged file was moved aside (or, if gone, dropped) and its candles "
                    "are no longer covered: get_ohlcv with a fetch_callback fetches them again"
                ) from e
            return _core.read_range(path, start, end, self._hot, self.verify_mode)

    def _coverage(self, symbol: str, period: str, ns: str | None) -> list[tuple[int, int]]:
        """The merged ranges ``[start, end)`` the log of ``symbol`` and ``period`` covers."""
        return _core.coverage(self._folder(symbol, period, ns), period)

    # -- reading and fetching ---------------------------------------------------------------

    def get_ohlcv(
        self,
        symbol: str,
        period: str,
        start_time: TimeLike,
        count: int | None = None,
        fetch_callback: Callable[..., Any] | None = None,
        fetch_callback_params: Mapping[str, Any] | None = None,
        *,
        end_time: TimeLike | None = None,
        enable_cache: bool = True,
        run_id: str | None = None,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        durable: bool = False,
        progress: bool | None = None,
        from_period: str | None = None,
        partial: bool = False,
        namespace: str | None = None,
    ) -> pl.DataFrame:
        """``get_ohlcv_with_cache`` on this directory, with this cache's hot tier and counts
        (same arguments, same result, same errors; ``namespace`` defaults to the cache's). ``run_id`` (e.g. a backtest's id) records
        which partitions the run used: see ``runs()`` and ``clear(run_id=...)``.

        ``from_period="1m"`` serves ``period`` candles computed exactly from the cached 1m
        candles (see ``candlecache.resample``), fetching only the 1m candles that are missing;
        ``start_time``/``count``/``end_time`` stay in ``period``'s candles. A candle with a 1m
        slot the exchange never answered for is dropped, unless ``partial=True``; one still
        forming (its last slots are in the future) is returned, as the exchange would.

        >>> df = cache.get_ohlcv("BTC/USDT", "1h", "2024-01-01", 24, ex.fetch_ohlcv)  # doctest: +SKIP
        >>> hours = cache.get_ohlcv("BTC/USDT", "1h", "2024-01-01", 24, ex.fetch_ohlcv,
        ...                         from_period="1m")  # doctest: +SKIP
        """
        if from_period is not None:
            return self._derived(
                symbol, period, from_period, start_time, count, fetch_callback, fetch_callback_params,
                end_time=end_time, enable_cache=enable_cache, run_id=run_id, lock_timeout=lock_timeout,
                durable=durable, progress=progress, partial=partial, namespace=namespace,
            )
        self._check_open()
        self._check_run(run_id)
        self._call.fetched = False
        self._call.run_id = run_id
        self._call.keys = []
        self._call.folder = ""
        try:
            df = _get_ohlcv(
                self, None, symbol, period, start_time, count, fetch_callback,
                fetch_callback_params, enable_cache, end_time=end_time, lock_timeout=lock_timeout,
                durable=durable, progress=progress, namespace=namespace,
            )
        finally:
            self._call.run_id = None
        keys = self._call.keys
        if self.cold_cache_mb is not None and self._call.fetched:
            self._enforce_limit({(self._call.folder, k) for k in keys}, lock_timeout)
        return df


    def _derived(
        self, symbol: str, period: str, from_period: str, start_time: TimeLike, count: int | None,
        fetch_callback: Callable[..., Any] | None, fetch_callback_params: Mapping[str, Any] | None,
        *, partial: bool, end_time: TimeLike | None, **kwargs: Any,
    ) -> pl.DataFrame:
        """``period`` candles from the ``from_period`` ones (``get_ohlcv(from_period=...)``)."""
        period, fine = _check_period(period), _check_period(from_period)
        _core.check_nested(fine, period)
        start = to_ms("start_time", start_time)
        first = _core.period_floor(period, start)
        if first < start:
            first = _core.period_add(period, first, 1)
        if (count is None) == (end_time is None):
            raise TypeError("give either count (number of candles) or end_time (last candle time), not "
                            + ("both" if count is not None else "neither"))
        if count is not None:
            n = _check_int("count", count)
            if n < 0:
                raise ValueError(f"count must be >= 0, got {n}")
            stop = _core.period_add(period, first, n)
        else:
            stop = _core.period_add(period, _core.period_floor(period, to_ms("end_time", end_time)), 1)
        if stop <= first:
            return resample(pl.DataFrame(schema=_CANDLE_SCHEMA), period)
        rows = self.get_ohlcv(
            symbol, fine, first, None, fetch_callback, fetch_callback_params,
            end_time=stop - 1, **kwargs,
        )
        ns = _namespace(kwargs.get("namespace") or self.namespace, fetch_callback)
        covered = None if partial else self._coverage(symbol, fine, ns)
        until = _core.period_floor(fine, int(time.time() * 1000) - _core.GRACE_MS)
        return _frame(_core.resample(rows, period, fine, covered, until))

    async def get_ohlcv_async(
        self,
        symbol: str,
        period: str,
        start_time: TimeLike,
        count: int | None = None,
        fetch_callback: Callable[..., Any] | None = None,
        fetch_callback_params: Mapping[str, Any] | None = None,
        *,
        end_time: TimeLike | None = None,
        enable_cache: bool = True,
        run_id: str | None = None,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        durable: bool = False,
        progress: bool | None = None,
        namespace: str | None = None,
    ) -> pl.DataFrame:
        """``get_ohlcv`` for asyncio code, as ``get_ohlcv_with_cache_async``: the callback may
        be a coroutine function (``ccxt.async_support``); disk and CPU work run in a thread.

        >>> df = await cache.get_ohlcv_async("BTC/USDT", "1h", "2024-01-01", 24, ex.fetch_ohlcv)  # doctest: +SKIP
        """
        import asyncio

        from .aio import _bridge

        # "auto" needs the callback itself, not the bridge around it.
        ns = _namespace(namespace if namespace is not None else self.namespace, fetch_callback)
        call = _bridge(fetch_callback)
        return await asyncio.to_thread(
            self.get_ohlcv, symbol, period, start_time, count, call, fetch_callback_params,
            end_time=end_time, enable_cache=enable_cache, run_id=run_id, lock_timeout=lock_timeout,
            durable=durable, progress=progress, namespace=ns,
        )

    def read(
        self,
        symbol: str,
        period: str,
        start_time: TimeLike | None = None,
        end_time: TimeLike | None = None,
        *,
        run_id: str | None = None,
        namespace: str | None = None,
    ) -> pl.DataFrame:
        """The stored candles with ``start_time <= time <= end_time`` (all when omitted),
        without fetching: ``read_cached`` with this cache's hot tier. ``run_id`` as for
        ``get_ohlcv``; ``namespace`` defaults to the cache's (``"auto"`` needs a callback, so
        name it here).

        >>> cache.read("BTC/USDT", "1h", "2024-01-01", "2024-01-31").height  # doctest: +SKIP
        744
        """
        self._check_open()
        period = _check_period(period)
        if not isinstance(symbol, str) or not symbol:
            raise TypeError(f"symbol must be a non-empty str, got {symbol!r}")
        ns = _namespace(namespace if namespace is not None else self.namespace)
        start = None if start_time is None else to_ms("start_time", start_time)
        end = None if end_time is None else to_ms("end_time", end_time)
        self._check_run(run_id)
        stream = self._read_stream(symbol, period, ns, start, end)
        df = _frame(stream)
        self._used(symbol, period, stream.time_span, run_id, ns)
        if self._stats is not None:
            self._stats.add(reads=1)
        return df

    # -- statistics -------------------------------------------------------------------------

    def _decodes(self) -> int:
        return 0 if self._hot is None else self._hot.decodes

    def _used(
        self, symbol: str, period: str, span: tuple[int, int] | None, run_id: str | None = None, ns: str | None = None
    ) -> list[str]:
        """Record the partitions rows with times in ``span`` come from as used now; returns
        their keys."""
        if span is None:
            return []
        keys = _keys(period, span[0], span[1])
        self._usage.used(_rel(self._folder(symbol, period, ns), ns), keys, run_id)
        return keys

    def _folder(self, symbol: str, period: str, ns: str | None = None) -> Path:
        """``data_dir`` of this cache, remembered (pathlib costs more than the read it serves)."""
        path = self._dirs.get((symbol, period, ns))
        if path is None:
            path = self._dirs[(symbol, period, ns)] = data_dir(self.base_dir, symbol, period, namespace=ns)
        return path

    def _count_call(
        self, symbol: str, period: str, span: tuple[int, int] | None, requests: int, candles: int, *, hot: bool,
        ns: str | None = None,
    ) -> None:
        self._call.folder = self._folder_key(symbol, period, ns)
        self._call.keys = self._used(symbol, period, span, getattr(self._call, "run_id", None), ns)
        self._call.fetched = bool(requests)
        if self._stats is None:
            return
        if requests:
            self._stats.add(misses=1, requests=requests, candles_fetched=candles)
        else:
            self._stats.add(hits=1, **({"hot_hits": 1} if hot else {"cold_hits": 1}))

    def _check_run(self, run_id: object) -> None:
        _check_run_id(run_id)

    def _folder_key(self, symbol: str, period: str, ns: str | None) -> str:
        """The folder of ``symbol`` and ``period`` relative to the root, as usage records name it."""
        return _rel(self._folder(symbol, period, ns), ns)

    def _count_repaired(self, files: int) -> None:
        if self._stats is not None:
            self._stats.add(files_repaired=files)

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Counts over every process that used this directory (since the last reset):

        - ``hits``: ``get_ohlcv`` calls served wholly from the cache (``hot_hits`` without
          decoding anything, ``cold_hits`` reading some file from disk), ``misses``: calls
          that fetched; ``hit_rate`` = hits / (hits + misses);
        - ``reads``: ``read``/``read_cached`` calls; ``requests`` and ``candles_fetched``:
          callback calls and the candles they returned; ``files_repaired``: damaged files
          moved aside (and fetched again) by ``get_ohlcv`` or ``verify(repair=True)``;
        - ``bytes_on_disk`` and ``entries`` (partition files) of the directory now;
        - ``hot_bytes``, ``hot_entries``, ``hot_budget``, ``hot_file_hits``,
          ``hot_decodes``, ``hot_evictions``: this process's hot tier.

        ``reset=True`` returns the counts, then starts them again from zero for every
        process: others that keep running drop what they counted before the reset (they
        notice it on their next call) instead of saving it again.

        >>> cache.stats()["hits"]  # doctest: +SKIP
        12
        """
        out: dict[str, Any] = dict.fromkeys(_COUNTERS, 0)
        if self._stats is not None:
            for doc in self._stats.load_all():
                for k in _COUNTERS:
                    out[k] += int(doc.get("counts", {}).get(k, 0))
        calls = out["hits"] + out["misses"]
        out["hit_rate"] = out["hits"] / calls if calls else 0.0
        out["bytes_on_disk"], out["entries"] = self._size()
        hot = self._hot.stats() if self._hot is not None else {}
        out["hot_bytes"] = hot.get("bytes", 0)
        out["hot_entries"] = hot.get("entries", 0)
        out["hot_budget"] = hot.get("budget", 0)
        out["hot_file_hits"] = hot.get("hits", 0)
        out["hot_decodes"] = hot.get("decodes", 0)
        out["hot_evictions"] = hot.get("evictions", 0)
        if reset:
            if self._stats is not None:
                self._stats.reset()
            if self._hot is not None:
                self._hot.reset_stats()
        return out

    def _size(self) -> tuple[int | None, int | None]:
        """Bytes and partition files of the directory now."""
        total, parts = _partitions(self.base_dir)
        return total, len(parts)

    def stats_history(self, start: TimeLike | None = None, end: TimeLike | None = None) -> pl.DataFrame:
        """Counts per UTC day, over every process: ``day`` (``Date``), ``hits``, ``misses``
        and ``size`` (bytes on disk, as last recorded that day; null if not recorded),
        kept without being asked for. ``start``/``end`` bound the days (inclusive).

        >>> cache.stats_history()  # doctest: +SKIP
        shape: (3, 4)
        """
        days: dict[str, dict[str, int | None]] = {}
        if self._stats is not None:
            for doc in self._stats.load_all():
                for day, c in doc.get("days", {}).items():
                    d = days.setdefault(day, {"hits": 0, "misses": 0, "size": None})
                    d["hits"] = int(d["hits"] or 0) + int(c.get("hits", 0))
                    d["misses"] = int(d["misses"] or 0) + int(c.get("misses", 0))
                    if c.get("size") is not None:
                        d["size"] = max(int(d["size"] or 0), int(c["size"]))
        frame = pl.DataFrame(
            {
                "day": [datetime.strptime(k, "%Y-%m-%d").date() for k in sorted(days)],
                "hits": [days[k]["hits"] for k in sorted(days)],
                "misses": [days[k]["misses"] for k in sorted(days)],
                "size": [days[k]["size"] for k in sorted(days)],
            },
            schema={"day": pl.Date, "hits": pl.Int64, "misses": pl.Int64, "size": pl.Int64},
        )
        if start is not None:
            lo = datetime.fromtimestamp(to_ms("start", start) / 1000, timezone.utc).date()
            frame = frame.filter(pl.col("day") >= lo)
        if end is not None:
            hi = datetime.fromtimestamp(to_ms("end", end) / 1000, timezone.utc).date()
            frame = frame.filter(pl.col("day") <= hi)
        return frame

    # -- integrity and housekeeping ---------------------------------------------------------

    def _clear_run(self, run_id: str, lock_timeout: float | None) -> int:
        _check_run_id(run_id)
        _, runs = self._usage.load_all()
        mine = runs.get(run_id)
        if mine is None:
            return 0
        others: set[str] = set().union(*(r["parts"] for k, r in runs.items() if k != run_id))
        timeout = None if lock_timeout is None else float(lock_timeout)
        removed = 0
        for part in sorted(mine["parts"] - others):
            folder, _, key = part.rpartition("/")
            lo, hi = _span(key)
            removed += _core.forget(self.base_dir / folder, folder.rpartition("_")[2], lo, hi, True, False, timeout)
        self._usage.clear_run(run_id)
        if self._hot is not None:
            self._hot.clear()
        return removed

    def _folders(self, symbol: str | None = None, period: str | None = None) -> list[tuple[str, str, Path]]:
        """Folders of ``symbol`` and ``period`` (all when None) in this cache's namespace, or
        in every namespace when it has none (or ``"auto"``)."""
        from .scan import _folders

        if not self.base_dir.is_dir():
            return []
        want = None if symbol is None else data_dir(self.base_dir, symbol, period or "1m").name.rpartition("_")[0]
        only = None if self.namespace in (None, "auto") else self.namespace
        return [
            (s, p, path)
            for ns, s, p, path in _folders(self.base_dir)
            if (want is None or s == want) and (period is None or p == period) and (only is None or ns == only)
        ]

    def verify(self, repair: bool = False, *, lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT) -> pl.DataFrame:
        """Check every file of the directory and report the damaged ones: one row per file
        (``symbol`` as its folder writes it, ``period``, ``file``, ``fault``, ``reason``,
        ``repaired``). ``fault`` is ``undecodable`` (Parquet cannot read it), ``mismatch``
        (it reads, but its SHA-256 is not the one recorded when candlecache wrote it) or
        ``missing`` (recorded, and gone). Each folder is checked under its lock, so the
        answer is exact even while other processes write. With ``repair=True`` damaged
        files are moved aside (``*.corrupt``, nothing is deleted) and, like missing ones,
        their coverage forgotten, so the next ``get_ohlcv`` fetches them again.

        >>> cache.verify(repair=True)  # doctest: +SKIP
        shape: (0, 6)
        """
        self._check_open()
        rows = []
        timeout = None if lock_timeout is None else float(lock_timeout)
        for symbol, period, path in self._folders():
            bad = _core.find_corrupt(path, period, timeout)
            if not bad:
                continue
            fixed: set[str] = set()
            if repair:
                moved, missing, _ = _core.repair(path, period, False, timeout)
                fixed = {Path(p).name.split(".parquet")[0] + ".parquet" for p in (*moved, *missing)}
                if self._stats is not None and fixed:
                    self._stats.add(files_repaired=len(fixed))
            for file, fault, reason in bad:
                rows.append({"symbol": symbol, "period": period, "file": str(file), "fault": fault,
                             "reason": reason, "repaired": Path(file).name in fixed})
        schema = {"symbol": pl.String, "period": pl.String, "file": pl.String, "fault": pl.String,
                  "reason": pl.String, "repaired": pl.Boolean}
        return pl.DataFrame(rows, schema=schema)

    def clear(
        self,
        symbol: str | None = None,
        period: str | None = None,
        *,
        run_id: str | None = None,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> int:
        """Remove the candles and coverage of ``symbol`` (all symbols when None) and
        ``period`` (all periods when None), crash-safely under each folder's lock; returns the
        candles removed. What is cleared is fetched again when asked for. With ``run_id``,
        only the partitions that run used and no other recorded run did (and the run's record).

        >>> cache.clear("BTC/USDT", "1m")  # doctest: +SKIP
        527040
        >>> cache.clear(run_id="bt-001")  # doctest: +SKIP
        8760
        """
        self._check_open()
        if run_id is not None:
            return self._clear_run(run_id, lock_timeout)
        return self._forget_each(symbol, period, lock_timeout, lambda p: 2**63 - 1)

    def _forget_each(
        self, symbol: str | None, period: str | None, lock_timeout: float | None, before: Callable[[str], int]
    ) -> int:
        """Drop the candles (and coverage) before ``before(period)`` of each folder of
        ``symbol`` and ``period`` (all when None), under each folder's lock."""
        if period is not None:
            period = _check_period(period)
        if symbol is not None and (not isinstance(symbol, str) or not symbol):
            raise TypeError(f"symbol must be a non-empty str or None, got {symbol!r}")
        timeout = None if lock_timeout is None else float(lock_timeout)
        removed = 0
        for _, p, path in self._folders(symbol, period):
            removed += _core.forget(path, p, -(2**63), before(p), True, False, timeout)
        if removed and self._hot is not None:
            self._hot.clear()
        return removed

    def vacuum(
        self,
        keep: str | timedelta | None = None,
        keep_since: TimeLike | None = None,
        symbol: str | None = None,
        period: str | None = None,
        *,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> int:
        """Retention: remove the candles that open before ``now - keep`` (``keep`` a
        ``timedelta`` or a string such as ``"90d"``, ``"12h"``, ``"2w"``) or before
        ``keep_since`` (a time), of ``symbol`` and ``period`` (all when None). Returns the
        candles removed.

        Partitions wholly before the cutoff are removed, the one straddling it is rewritten
        without the older candles; their coverage goes first (a crash in between leaves rows
        that are simply fetched over), so the removed range reads as missing and is fetched
        again if asked for. Each folder is done under its lock.

        >>> cache.vacuum(keep="90d")  # doctest: +SKIP
        1843200
        """
        self._check_open()
        if (keep is None) == (keep_since is None):
            raise TypeError("give either keep (an age such as '90d') or keep_since (a time), not "
                            + ("both" if keep is not None else "neither"))
        cutoff = int(time.time() * 1000) - _age_ms(keep) if keep is not None else to_ms("keep_since", keep_since)

        def first_kept(p: str) -> int:
            t = _core.period_floor(p, cutoff)
            return t if t >= cutoff else _core.period_add(p, t, 1)

        return self._forget_each(symbol, period, lock_timeout, first_kept)

    def compact_tiers(
        self,
        tiers: Sequence[tuple[str | timedelta, str]],
        symbol: str | None = None,
        period: str | None = None,
        *,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> int:
        """Tiered downsampling: with ``tiers=[("30d", "5m"), ("365d", "1h")]``, candles older
        than 30 days are aggregated exactly into the 5m folder of their symbol and removed from
        the finer folder, and 5m candles older than 365 days into 1h, and so on: each tier's
        period must be made of whole candles of the one before (see ``resample``). Applies to
        the folders of ``symbol`` and ``period`` (all when None) finer than a tier's period.
        Returns the fine candles moved.

        Only coarse candles whose every fine slot is covered move (a slot the exchange answered
        empty counts as covered); the rest stays where it is. Coarse rows and coverage are
        written before the fine ones go, so a crash loses nothing and counts nothing twice, and
        running it again changes nothing.

        >>> cache.compact_tiers([("30d", "5m"), ("365d", "1h")])  # doctest: +SKIP
        1296000
        """
        self._check_open()
        steps = _check_tiers(tiers)
        if period is not None:
            period = _check_period(period)
        if symbol is not None and (not isinstance(symbol, str) or not symbol):
            raise TypeError(f"symbol must be a non-empty str or None, got {symbol!r}")
        now = int(time.time() * 1000)
        timeout = None if lock_timeout is None else float(lock_timeout)
        order = {p: i for i, p in enumerate(PERIODS)}
        moved = 0
        for _, p, path in sorted(self._folders(symbol, period), key=lambda f: order[f[1]]):
            source, folder = p, path
            for age_ms, target in steps:
                if order[target] <= order[source]:
                    continue
                try:
                    _core.check_nested(source, target)
                except ValueError:
                    break  # e.g. 3d candles do not make weeks: this folder has no such tier
                coarse = folder.parent / f"{folder.name.rpartition('_')[0]}_{target}"
                moved += _core.compact_tier(folder, source, coarse, target, now - age_ms, now, False, timeout)[1]
                source, folder = target, coarse
        if moved and self._hot is not None:
            self._hot.clear()
        return moved

    def _enforce_limit(self, protect: set[tuple[str, str]], lock_timeout: float | None) -> None:
        """Evict whole partitions (file and coverage together, crash-safely: coverage goes
        first) until the directory is back under ``cold_cache_mb``; never those in ``protect``
        (the request being served). Files moved aside as ``*.corrupt`` are removed first."""
        assert self.cold_cache_mb is not None
        limit = int(self.cold_cache_mb * 1024 * 1024)
        total, parts = _partitions(self.base_dir)
        if total <= limit:
            return
        # Damaged files moved aside are kept for inspection, but not at the price of live
        # candles: under a size limit they go first, oldest first.
        aside = []
        for f in self.base_dir.glob("*/*.corrupt"):
            try:
                st = f.stat()
            except OSError:
                continue
            aside.append((st.st_mtime, st.st_size, f))
        for _, size, f in sorted(aside, key=lambda x: (x[0], str(x[2]))):
            if total <= limit:
                return
            f.unlink(missing_ok=True)
            total -= size
        last, _ = self._usage.load_all()
        now = int(time.time() * 1000)

        def order(item: tuple[tuple[str, str], int]) -> tuple[float, str, str]:
            (folder, key), size = item
            used = last.get(f"{folder}/{key}", 0)
            if self.eviction_policy == "size":
                return (-size, folder, key)
            if self.eviction_policy == "hybrid":
                return (-size * max(now - used, 1), folder, key)
            return (used, folder, key)

        timeout = None if lock_timeout is None else float(lock_timeout)
        evicted = 0
        for (folder, key), size in sorted(parts.items(), key=order):
            if total <= limit:
                break
            if (folder, key) in protect or size == 0:
                continue
            period = folder.rpartition("_")[2]
            lo, hi = _span(key)
            _core.forget(self.base_dir / folder, period, lo, hi, True, False, timeout)
            after = sum(f.stat().st_size for f in (self.base_dir / folder).glob(f"{key}*.parquet"))
            total -= size - after
            evicted += 1
        if evicted:
            if self._hot is not None:
                self._hot.clear()
            if self._stats is not None:
                self._stats.add(partitions_evicted=evicted)

    def runs(self) -> pl.DataFrame:
        """The runs recorded with ``run_id=``: one row per run, folder (symbol as its folder
        writes it) and period, with the partitions it used, when it last used them, and the
        folder's namespace (null in the drop-in layout).

        >>> cache.runs()  # doctest: +SKIP
        shape: (2, 8)
        """
        _, runs = self._usage.load_all()
        rows = []
        for run_id, run in sorted(runs.items()):
            by_folder: dict[str, list[str]] = {}
            for part in run["parts"]:
                folder, _, key = part.rpartition("/")
                by_folder.setdefault(folder, []).append(key)
            for folder, keys in sorted(by_folder.items()):
                ns, _, name = folder.rpartition("/")
                symbol, _, period = name.rpartition("_")
                spans = [_span(k) for k in keys]
                rows.append({
                    "run_id": run_id, "symbol": symbol, "period": period, "partitions": len(keys),
                    "start": min(a for a, _ in spans), "end": max(b for _, b in spans),
                    "last_used": datetime.fromtimestamp(run["last"] / 1000, timezone.utc),
                    "namespace": ns or None,
                })
        schema: dict[str, pl.DataType | type[pl.DataType]] = {
            "run_id": pl.String, "symbol": pl.String, "period": pl.String, "partitions": pl.Int64,
            "start": pl.Int64, "end": pl.Int64, "last_used": pl.Datetime("ms", "UTC"), "namespace": pl.String,
        }
        return pl.DataFrame(rows, schema=schema)

    # -- life cycle -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed")

    def close(self) -> None:
        """Save the counts (with today's size on disk) and drop the hot tier. Idempotent."""
        if self._closed:
            return
        self._save(with_size=True)
        if self._hot is not None:
            self._hot.clear()
        self._closed = True

    def _save(self, with_size: bool = False) -> None:
        self._usage.save()
        if self._stats is not None:
            self._stats.save(size=_partitions(self.base_dir)[0] if with_size else None)

    def __enter__(self) -> MarketCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        if self._hot is None:
            hot = "hot tier off"
        else:
            h = self._hot.stats()
            hot = f"hot {h['bytes'] / 2**20:.1f} of {h['budget'] / 2**20:.0f} MiB in {h['entries']} files"
        return f"MarketCache({str(self.base_dir)!r}, {hot}, {state})"


_AGE_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def _age_ms(age: object) -> int:
    """``timedelta(days=90)`` or ``"90d"`` (units s, m, h, d, w) as milliseconds."""
    if isinstance(age, timedelta):
        ms = int(age.total_seconds() * 1000)
    elif isinstance(age, str) and age.strip()[:-1].strip().isdigit() and age.strip()[-1:] in _AGE_UNITS:
        text = age.strip()
        ms = int(text[:-1]) * _AGE_UNITS[text[-1]]
    else:
        raise ValueError(f"keep must be a timedelta or an age such as '90d', '12h', '30m' or '2w', got {age!r}")
    if ms < 0:
        raise ValueError(f"keep must not be negative, got {age!r}")
    return ms


def _check_tiers(tiers: object) -> list[tuple[int, str]]:
    """``[(age, period), ...]`` as ``[(age_ms, period)]``, ages and periods increasing, each
    period made of whole candles of the one before."""
    if isinstance(tiers, (str, bytes)) or not isinstance(tiers, Sequence) or not tiers:
        raise TypeError('tiers must be a list of (age, period) pairs such as [("30d", "5m"), ("365d", "1h")]')
    out: list[tuple[int, str]] = []
    for tier in tiers:
        if not isinstance(tier, (tuple, list)) or len(tier) != 2:
            raise TypeError(f"each tier must be an (age, period) pair, got {tier!r}")
        age, period = _age_ms(tier[0]), _check_period(tier[1])
        if out:
            if age <= out[-1][0]:
                raise ValueError(f"tier ages must increase: {tier[0]!r} comes after {out[-1][0]} ms")
            _core.check_nested(out[-1][1], period)
        out.append((age, period))
    return out


def _rel(folder: Path, ns: str | None) -> str:
    """A folder's name relative to the cache root, as usage records and the size limit key it."""
    return folder.name if ns is None else f"{ns}/{folder.name}"


def _check_run_id(run_id: object) -> None:
    if run_id is not None and (not isinstance(run_id, str) or not run_id):
        raise TypeError(f"run_id must be a non-empty str or None, got {run_id!r}")


_defaults: dict[str, MarketCache] = {}
_defaults_by_arg: dict[str, MarketCache] = {}
_defaults_lock = threading.Lock()


def default_cache(base_dir: str | os.PathLike[str], storage_options: Mapping[str, str] | None = None) -> MarketCache:
    """The shared ``MarketCache`` of a directory that ``get_ohlcv_with_cache`` and
    ``read_cached`` use: its hot tier is ``CANDLECACHE_HOT_MB`` MiB (default 256; ``0`` off)."""
    if isinstance(base_dir, str) and _core.is_object_url(base_dir):
        return _default_for_url(base_dir, storage_options)
    if storage_options is not None:
        raise TypeError(
            f"storage_options apply to object store URLs (s3://, gs://, az://, file://), not to the local path {base_dir!r}"
        )
    # An absolute path seen before skips the checks below (a stat or two and pathlib cost a
    # third of a hot read): a relative one depends on the working directory, `~` on HOME.
    raw = base_dir if isinstance(base_dir, str) else os.fspath(base_dir) if isinstance(base_dir, os.PathLike) else None
    fast = isinstance(raw, str) and os.path.isabs(raw)
    if fast:
        cache = _defaults_by_arg.get(raw)  # type: ignore[arg-type]
        if cache is not None and not cache._closed:
            return cache
    base = _check_base_dir(base_dir)
    key = os.path.abspath(base)
    cache = _defaults.get(key)
    if cache is None or cache._closed:
        with _defaults_lock:
            cache = _defaults.get(key)
            if cache is None or cache._closed:
                cache = MarketCache(base, hot_cache_mb=_env_hot_mb())
                _defaults[key] = cache
    if fast:
        _defaults_by_arg[raw] = cache  # type: ignore[index]
    return cache


_defaults_by_url: dict[tuple[str, tuple[tuple[str, str], ...]], MarketCache] = {}


def _default_for_url(url: str, storage_options: Mapping[str, str] | None) -> MarketCache:
    """``default_cache`` of an object store root: one per URL and options."""
    from .objectstore import _check_storage_options

    options = _check_storage_options(storage_options)
    key = (url.rstrip("/"), tuple(sorted(options.items())))
    cache = _defaults_by_url.get(key)
    if cache is None or cache._closed:
        with _defaults_lock:
            cache = _defaults_by_url.get(key)
            if cache is None or cache._closed:
                cache = MarketCache(url, storage_options=options, hot_cache_mb=_env_hot_mb())
                _defaults_by_url[key] = cache
    return cache


@atexit.register
def _save_all() -> None:
    for cache in list(_live):
        if not cache._closed:
            cache._save(with_size=True)
