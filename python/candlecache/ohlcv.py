"""``get_ohlcv_with_cache``: OHLCV candles from a local Parquet cache, fetched only where missing."""

from __future__ import annotations

import inspect
import logging
import operator
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from . import _core
from ._times import describe_ms, to_ms
from .exceptions import CorruptionError

#: What ``start_time``/``end_time`` accept: epoch ms, ``datetime`` (naive = UTC; a
#: ``pandas.Timestamp`` is one), ``date`` or an ISO-8601 string; ``numpy.datetime64`` works too.
TimeLike = int | float | str | date

__all__ = [
    "get_ohlcv_with_cache",
    "read_cached",
    "repair_cache",
    "forget",
    "coverage",
    "holes",
    "covered_empty",
    "data_dir",
    "period_to_ms",
    "PERIODS",
    "DEFAULT_LOCK_TIMEOUT",
]

PERIODS: tuple[str, ...] = tuple(_core.PERIODS)
#: The columns every stored candle has (other numeric columns a callback returned may follow).
_CANDLE_SCHEMA: dict[str, Any] = {"time": pl.Int64, **dict.fromkeys(("open", "high", "low", "close", "volume"), pl.Float64)}

#: Seconds to wait for another process that is fetching the same symbol and period.
DEFAULT_LOCK_TIMEOUT = 600.0

#: Show a progress bar (when ``progress=None``) for fetches of at least this many candles.
_PROGRESS_MIN_SLOTS = 20_000

#: INFO: each request to the exchange and a summary of each call that fetched; DEBUG: calls
#: served from the cache. Silent unless the application configures logging.
_log = logging.getLogger("candlecache")


def period_to_ms(period: str) -> int:
    """Length of ``period`` in milliseconds (``1M`` counts 30 days, as ccxt's ``parse_timeframe``).

    >>> period_to_ms("15m")
    900000
    """
    return _core.period_ms(_check_period(period))


def data_dir(base_dir: str | os.PathLike[str], symbol: str, period: str, *, namespace: str | None = None) -> Path:
    """The folder holding one symbol and period: ``base_dir/{symbol with / and : as _}_{period}``,
    or ``base_dir/{namespace}/...`` in a namespace.

    >>> data_dir("cache", "BTC/USDT:USDT", "1h").as_posix()
    'cache/BTC_USDT_USDT_1h'
    >>> data_dir("cache", "BTC/USDT", "1h", namespace="okx").as_posix()
    'cache/okx/BTC_USDT_1h'
    """
    base = Path(base_dir).expanduser()
    return base / _folder_name(symbol, period, namespace)


def _folder_name(symbol: str, period: str, namespace: str | None = None) -> str:
    """``data_dir`` below its root, with ``/`` between namespace and folder."""
    safe = symbol.replace("/", "_").replace(":", "_")
    if namespace is not None:
        return f"{_namespace(namespace)}/{safe}_{period}"
    return f"{safe}_{period}"


_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _namespace(namespace: object, fetch_callback: object = None) -> str | None:
    """The folder name of a namespace: None (the drop-in layout), a checked name, or for
    ``"auto"`` the id of the ccxt exchange whose bound method ``fetch_callback`` is."""
    if namespace is None:
        return None
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str or None, got {type(namespace).__name__}")
    if namespace == "auto":
        exchange_id = getattr(getattr(fetch_callback, "__self__", None), "id", None)
        if not isinstance(exchange_id, str) or not exchange_id:
            raise ValueError(
                "namespace='auto' takes the exchange id from a ccxt exchange's bound method "
                f"(pass exchange.fetch_ohlcv); this callback is a {type(fetch_callback).__name__} without one: "
                "give the namespace by name, e.g. namespace='binance'"
            )
        namespace = exchange_id
    if not _NAMESPACE_RE.fullmatch(namespace) or namespace.rpartition("_")[2] in PERIODS:
        raise ValueError(
            f"namespace must be a plain folder name (letters, digits, '.', '_' and '-', at most 64, "
            f"not ending in _<period>), got {namespace!r}"
        )
    return namespace


def _check_period(period: object) -> str:
    if not isinstance(period, str):
        raise TypeError(f"period must be a str such as '1m', got {type(period).__name__}")
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; expected one of {' '.join(PERIODS)}")
    return period


_symbols_checked: set[tuple[str, str]] = set()


def _warn_if_exchange_id(base: Path, symbol: str) -> None:
    """Warn once when ``symbol`` looks like an exchange's market id (``BTCUSDT``) while the
    same market's unified symbol (``BTC/USDT``) is cached in ``base``: the two would be cached
    apart, each fetched in full."""
    if not symbol.isalnum() or (str(base), symbol) in _symbols_checked:
        return
    _symbols_checked.add((str(base), symbol))
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in sorted(names):
        parts = name.rsplit("_", 1)[0].split("_")
        if len(parts) >= 2 and (parts[0] + parts[1]).upper() == symbol.upper():
            unified = f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) > 2 else "")
            warnings.warn(
                f"symbol {symbol!r} looks like an exchange's market id, and this cache also holds "
                f"{unified!r} ({name}); the two are cached apart. Pass ccxt's unified symbol "
                f"(market['symbol'], e.g. {unified!r}) to share one cache.",
                stacklevel=3,
            )
            return


def _slots(period: str, start: int, end: int) -> tuple[int, int]:
    """The first candle time at or after ``start`` and the number of candles up to ``end``
    (inclusive): ``end_time`` as the ``count`` the cache works with."""
    first = _core.period_floor(period, start)
    if first < start:
        first = _core.period_add(period, first, 1)
    last = _core.period_floor(period, end)
    if last < first:
        return first, 0
    if period == "1M":
        a, b = (datetime.fromtimestamp(t / 1000, timezone.utc) for t in (first, last))
        return first, (b.year - a.year) * 12 + b.month - a.month + 1
    return first, (last - first) // _core.period_ms(period) + 1


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _check_base_dir(base_dir: object) -> Path:
    if not isinstance(base_dir, (str, os.PathLike)):
        raise TypeError(f"base_dir must be a str or os.PathLike, got {type(base_dir).__name__}")
    path = Path(base_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            20, "base_dir is a file, not a folder: pass the folder that holds (or will hold) the cache", str(path)
        )
    return path


_ASYNC_HINT = (
    "fetch_callback is asynchronous (e.g. a ccxt.async_support exchange's fetch_ohlcv); "
    "use `await candlecache.get_ohlcv_with_cache_async(...)`, which takes the same arguments"
)


def _adapt(obj: Any) -> Any:
    """What a callback returned, as a list of rows or an object with ``__arrow_c_stream__``."""
    if isinstance(obj, (list, tuple, pl.DataFrame)):
        return obj
    if inspect.isawaitable(obj):
        if inspect.iscoroutine(obj):
            obj.close()  # not awaited by anyone: close it rather than leave a warning
        raise TypeError(_ASYNC_HINT)
    if isinstance(obj, pl.LazyFrame):
        return obj.collect()
    module = type(obj).__module__ or ""
    if module.startswith("pandas") and type(obj).__name__ == "DataFrame":
        try:
            return pl.from_pandas(obj)
        except Exception:  # pandas without pyarrow for some dtypes: go through numpy
            return pl.DataFrame({str(c): obj[c].to_numpy() for c in obj.columns})
    if module.startswith("numpy") and type(obj).__name__ == "ndarray" and getattr(obj, "ndim", 0) == 2:
        return obj.tolist()
    if hasattr(obj, "__arrow_c_stream__"):
        return obj
    raise TypeError(
        f"fetch_callback returned {type(obj).__name__}"
        + (f" ({obj!r})" if obj is None or isinstance(obj, (str, bytes, int, float, dict)) else "")
        + "; expected a list of [timestamp_ms, open, high, low, close, volume] rows, "
        "a polars or pandas DataFrame, or a pyarrow Table"
    )


_warned_no_tqdm = False


class _Progress:
    """A tqdm bar over candles fetched, opened only for long fetches; it leaves a one-line
    summary on stderr when it closes."""

    def __init__(
        self, mode: bool | None, label: str, unit: str = "candle", min_total: int = _PROGRESS_MIN_SLOTS,
        verb: str = "fetched",
    ) -> None:
        self.verb = verb
        self.mode = mode
        self.label = label
        self.unit = unit
        self.min_total = min_total
        self.bar: Any = None
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if total <= 0 or not self._wanted(total):
                return
            try:
                from tqdm.auto import tqdm  # type: ignore[import-untyped]
            except ImportError:
                global _warned_no_tqdm
                if self.mode and not _warned_no_tqdm:
                    _warned_no_tqdm = True
                    warnings.warn("progress=True needs tqdm: pip install tqdm", stacklevel=4)
                self.mode = False
                return
            self.bar = tqdm(total=total, unit=self.unit, desc=self.label, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def _wanted(self, total: int) -> bool:
        if self.mode is None:
            return total >= self.min_total and sys.stderr is not None and sys.stderr.isatty()
        return self.mode

    def close(self) -> None:
        if self.bar is not None:
            done, total = self.bar.n, self.bar.total
            self.bar.close()
            if sys.stderr is not None:
                sys.stderr.write(
                    f"{self.label}: {done:,} of {total:,} {self.unit}s {self.verb} in {time.monotonic() - self.started:.1f} s\n"
                )


class _Counted:
    """The user's callback, logging each request and counting what came back."""

    def __init__(self, callback: Callable[..., Any]) -> None:
        self.callback = callback
        self.requests = 0
        self.rows = 0

    def __call__(self, symbol: str, period: str, since: int, limit: int, **params: Any) -> Any:
        self.requests += 1
        _log.info("%s %s: asking from %s for up to %d candles", symbol, period, describe_ms(since), limit)
        rows = self.callback(symbol, period, since, limit, **params)
        try:
            self.rows += len(rows)
        except TypeError:
            pass
        return rows


def _log_plan(base: Path, symbol: str, period: str, start: int, count: int, now_ms: int) -> None:
    """INFO: the ranges a call will ask the exchange for (what the log does not cover)."""
    first = _slots(period, start, start)[0]
    stop = min(_core.period_add(period, first, count), _core.period_add(period, _core.period_floor(period, now_ms), 1))
    if stop <= first:
        return
    try:
        missing = _core.ranges_missing(_core.coverage(data_dir(base, symbol, period), period), first, stop)
    except Exception:  # the fetch itself reports an unreadable log; this line is only a hint
        return
    if missing:
        shown = ", ".join(f"{describe_ms(a)} .. {describe_ms(b)}" for a, b in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        _log.info("%s %s: not cached, to fetch: %s%s", symbol, period, shown, more)


def get_ohlcv_with_cache(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike,
    count: int | None = None,
    fetch_callback: Callable[..., Any] | None = None,
    fetch_callback_params: Mapping[str, Any] | None = {},  # noqa: B006 - the original signature
    enable_cache: bool = True,
    *,
    end_time: TimeLike | None = None,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    durable: bool = False,
    progress: bool | None = None,
    namespace: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """OHLCV candles from the cache in ``base_dir``, fetching only what it does not cover.

    Returns the candles with ``start_time <= time <= start_time + (count - 1) * period``
    (``1M`` steps by calendar month), or ``start_time <= time <= end_time`` when ``end_time``
    is given instead of ``count``, as a polars DataFrame sorted and unique on ``time``:
    ``time`` Int64 epoch ms, ``open high low close volume`` Float64, plus any other numeric
    columns the callback returned.

    The callback is called as ``fetch_callback(symbol, period, since_ms, limit,
    **fetch_callback_params)``, so ccxt's ``exchange.fetch_ohlcv`` can be passed as is. It may
    return ccxt's list of ``[ms, open, high, low, close, volume]`` rows, a polars or pandas
    DataFrame with a ``time`` column, or a pyarrow Table. It may return fewer rows than
    ``limit``: the fetch continues after the last candle returned until the range is covered
    or the callback returns nothing. Gaps before a listing or in a maintenance window are
    settled by the candles after them. A range the callback answers with nothing (after a
    delisting, or a callback returning ``[]`` on a network error) is trusted for an hour, then
    asked once more; a second empty answer is trusted for good (``forget`` undoes either at
    once). A candle still forming is returned but fetched again next time. An exception from
    the callback propagates unchanged (prefer that to returning ``[]``); what was fetched
    before it is kept.

    Args:
        base_dir: cache root (``str`` or ``pathlib.Path``); one folder per symbol and period.
            Or an object store URL shared by many machines: ``s3://bucket/prefix``,
            ``gs://…``, ``az://…``, ``file:///path`` (see the README's "Shared cache on
            object storage").
        symbol: market symbol, e.g. ``"BTC/USDT"``.
        period: one of ``1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M``.
        start_time: first candle time (need not be aligned to the period): epoch ms (``int``,
            or a ``float`` whose fraction is dropped), ``datetime`` (naive means UTC), ``date``
            (midnight UTC), an ISO-8601 string such as ``"2024-01-01T00:00:00Z"``,
            ``numpy.datetime64`` or ``pandas.Timestamp``. Numbers that look like seconds,
            microseconds or nanoseconds raise ``ValueError`` showing the milliseconds meant.
        count: number of periods from ``start_time``; or give ``end_time`` instead.
        end_time: last candle time to return (inclusive), in any form ``start_time`` takes.
        fetch_callback: ``(symbol, period, since_ms, limit, **params) -> rows``.
        fetch_callback_params: extra keyword arguments for the callback.
        enable_cache: ``False`` fetches the whole range, stores it, and returns what was fetched.
        lock_timeout: seconds to wait while another process fetches the same symbol and
            period; ``None`` waits forever. Raises ``candlecache.Timeout`` when exceeded.
        durable: fsync files and directories so the data survives a power cut (costs ~3 ms
            per write). The default survives a killed process, not a power cut.
        progress: ``True``/``False`` to force a tqdm progress bar on or off; ``None`` shows
            one for long fetches when stderr is a terminal.
        namespace: keep this exchange's candles apart: ``base_dir/{namespace}/{symbol}_{period}``
            (``BTC/USDT`` of Binance and of OKX would otherwise share a folder). ``"auto"``
            takes the id of the ccxt exchange ``fetch_callback`` belongs to. ``None`` (the
            default) is the original tool's layout.
        storage_options: for an object store URL, the store's settings as ``object_store``
            names them (``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
            ``allow_http``, …; ``max_retries``, ``retry_timeout`` seconds); credentials not
            given are read from the usual environment variables (``AWS_*``, ``GOOGLE_*``,
            ``AZURE_*``).

    Example:
        >>> import ccxt, candlecache
        >>> ex = ccxt.binance()
        >>> df = candlecache.get_ohlcv_with_cache(
        ...     "~/.cache/candles", "BTC/USDT", "1h", 1704067200000, 24 * 7, ex.fetch_ohlcv
        ... )  # doctest: +SKIP
        >>> df.columns  # doctest: +SKIP
        ['time', 'open', 'high', 'low', 'close', 'volume']
        >>> week = candlecache.get_ohlcv_with_cache(
        ...     "~/.cache/candles", "BTC/USDT", "1h", "2024-01-01",
        ...     fetch_callback=ex.fetch_ohlcv, end_time="2024-01-07T23:00:00Z",
        ... )  # doctest: +SKIP

    Raises:
        ValueError: unknown period, negative count, both or neither of ``count`` and
            ``end_time``, a time in seconds/µs/ns or an unreadable time string.
        TypeError: wrong argument types; a callback returning an unsupported type.
        candlecache.CallbackError: the callback returned rows before ``since`` or unaligned times.
        candlecache.Timeout: the folder lock was held longer than ``lock_timeout`` (on object
            storage: another machine's claim on the range, while it keeps renewing it).
        candlecache.CorruptionError: a cache file cannot be read (see ``repair_cache``).
        candlecache.StoreRefusedError: the object store does not honour create-if-absent.
        candlecache.ObjectStoreError: the object store failed (after retries).
    """
    return _get_ohlcv(
        None, base_dir, symbol, period, start_time, count, fetch_callback, fetch_callback_params,
        enable_cache, end_time=end_time, lock_timeout=lock_timeout, durable=durable, progress=progress,
        namespace=namespace, storage_options=storage_options,
    )


def _get_ohlcv(
    cache: Any,
    base_dir: str | os.PathLike[str] | None,
    symbol: str,
    period: str,
    start_time: TimeLike,
    count: int | None,
    fetch_callback: Callable[..., Any] | None,
    fetch_callback_params: Mapping[str, Any] | None,
    enable_cache: bool,
    *,
    end_time: TimeLike | None,
    lock_timeout: float | None,
    durable: bool,
    progress: bool | None,
    namespace: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The body of ``get_ohlcv_with_cache`` and ``MarketCache.get_ohlcv``: ``cache`` (a
    ``MarketCache``, or None for the directory's shared default) holds the hot tier and counts."""
    if cache is None:
        from .market import default_cache

        cache = default_cache(base_dir, storage_options)  # type: ignore[arg-type]
    ns = _namespace(namespace if namespace is not None else cache.namespace, fetch_callback)
    if not isinstance(symbol, str) or not symbol:
        raise TypeError(f"symbol must be a non-empty str, got {symbol!r}")
    period = _check_period(period)
    start_time = to_ms("start_time", start_time)
    if (count is None) == (end_time is None):
        raise TypeError(
            "give either count (number of candles) or end_time (last candle time), not "
            + ("both" if count is not None else "neither")
        )
    if count is not None:
        count = _check_int("count", count)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        last = start_time + (count - 1) * _core.period_ms(period)
        if count > 0 and abs(last) >= 10**14:
            raise ValueError(
                f"count={count} {period} candles from {describe_ms(start_time)} reach past the year 5000; "
                "ask for a smaller count"
            )
    else:
        end = to_ms("end_time", end_time)
        if end < start_time:
            raise ValueError(
                f"end_time {describe_ms(end)} is before start_time {describe_ms(start_time)}"
            )
        start_time, count = _slots(period, start_time, end)
    if fetch_callback is None:
        raise TypeError("fetch_callback is required: (symbol, period, since_ms, limit, **params) -> rows")
    if not callable(fetch_callback):
        raise TypeError(f"fetch_callback must be callable, got {type(fetch_callback).__name__}")
    if inspect.iscoroutinefunction(fetch_callback):
        raise TypeError(_ASYNC_HINT)
    if fetch_callback_params is None:
        params: dict[str, Any] | None = None
    elif isinstance(fetch_callback_params, Mapping):
        params = dict(fetch_callback_params) or None
    else:
        raise TypeError(f"fetch_callback_params must be a mapping, got {type(fetch_callback_params).__name__}")
    if lock_timeout is not None and (not isinstance(lock_timeout, (int, float)) or lock_timeout < 0):
        raise ValueError(f"lock_timeout must be None or a number of seconds >= 0, got {lock_timeout!r}")
    now_ms = int(time.time() * 1000)
    decodes = cache._decodes()
    bar = _Progress(progress, f"{symbol} {period}")
    counted = _Counted(fetch_callback)
    timeout = None if lock_timeout is None else float(lock_timeout)
    try:
        stream = cache._fetch(
            symbol, period, ns, start_time, count, counted, params, bool(enable_cache), now_ms, timeout,
            bool(durable), bar if progress is not False else None,
        )
    finally:
        bar.close()
    span = stream.time_span
    df = _frame(stream)
    cache._count_call(symbol, period, span, counted.requests, counted.rows, hot=cache._decodes() == decodes, ns=ns)
    if counted.requests:
        _log.info(
            "%s %s from %s, %d periods: %d candles returned; %d requests answered %d candles",
            symbol, period, describe_ms(start_time), count, df.height, counted.requests, counted.rows,
        )
    elif _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s %s from %s, %d periods: %d candles from the cache", symbol, period,
                   describe_ms(start_time), count, df.height)
    return df


_frame: Callable[[Any], pl.DataFrame]
try:
    # What polars.DataFrame(stream) ends up calling, without the dispatch on the argument's
    # type before it (about 20 us, a fifth of a hot 100-row read).
    from polars._utils.pycapsule import pycapsule_to_frame as _frame
except ImportError:  # pragma: no cover - another polars layout
    _frame = pl.DataFrame


def _heal(
    cache: Any, path: Path, symbol: str, period: str, err: CorruptionError, *, durable: bool, timeout: float | None
) -> list[Path]:
    """Settle, under the folder's lock, what a read found wrong: damaged files are moved aside
    (``*.corrupt``) and recorded files that are gone dropped, both with their coverage; files
    the original tool rewrote are recorded anew. Returns what was moved aside or found gone."""
    moved, missing, rerecorded = _core.repair(path, period, durable, timeout)
    lost = [Path(p) for p in (*moved, *missing)]
    if lost:
        _log.warning("%s %s: %s; moved aside: %s; gone: %s; their candles are no longer covered",
                     symbol, period, err, ", ".join(Path(p).name for p in moved) or "none",
                     ", ".join(Path(p).name for p in missing) or "none")
        cache._count_repaired(len(lost))
    elif rerecorded:
        _log.info("%s %s: recorded anew files another tool rewrote: %s", symbol, period,
                  ", ".join(Path(p).name for p in rerecorded))
    return lost


def read_cached(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike | None = None,
    end_time: TimeLike | None = None,
    *,
    namespace: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """What the cache holds for ``start_time <= time <= end_time`` (inclusive), without fetching
    (in ``namespace``, as ``get_ohlcv_with_cache`` stored it).

    Times take the forms ``get_ohlcv_with_cache`` accepts (epoch ms, ``datetime``, ISO strings…).

    >>> read_cached("cache", "BTC/USDT", "1h", 0, 0).height  # doctest: +SKIP
    0
    """
    from .market import default_cache

    return default_cache(base_dir, storage_options).read(symbol, period, start_time, end_time, namespace=namespace)


def forget(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike | None = None,
    end_time: TimeLike | None = None,
    *,
    drop_rows: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    durable: bool = False,
) -> int:
    """Forget what the cache knows of the candles with ``start_time <= time <= end_time``
    (everything when both are omitted), so the next call that asks for them fetches them again.

    Use it when the exchange (or your callback) gave a wrong answer: a callback that returned
    ``[]`` during an outage, or one that ignored ``since``. With ``drop_rows=True`` the stored
    candles of the range are removed too (otherwise they stay readable through
    ``read_cached`` and are replaced by the next fetch). Crash-safe: coverage is dropped
    before rows, so an interruption never leaves a range marked covered without its candles.
    Returns the number of candles removed (0 without ``drop_rows``).

    >>> candlecache.forget("~/.cache/candles", "BTC/USDT", "1h", "2024-03-01", "2024-03-02")  # doctest: +SKIP
    0
    """
    period = _check_period(period)
    if not isinstance(symbol, str) or not symbol:
        raise TypeError(f"symbol must be a non-empty str, got {symbol!r}")
    path = data_dir(_check_base_dir(base_dir).expanduser(), symbol, period)
    lo, hi = -(2**63), 2**63 - 1
    start = None if start_time is None else to_ms("start_time", start_time)
    if start is not None:
        lo = _slots(period, start, start)[0]  # the first candle at or after start
    if end_time is not None:
        end = to_ms("end_time", end_time)
        if start is not None and end < start:
            raise ValueError(f"end_time {describe_ms(end)} is before start_time")
        hi = _core.period_add(period, _core.period_floor(period, end), 1)
    return _core.forget(path, period, lo, hi, bool(drop_rows), bool(durable), lock_timeout)


def coverage(base_dir: str | os.PathLike[str], symbol: str, period: str) -> list[tuple[int, int]]:
    """The ranges the cache has answered, as sorted half-open ``(start_ms, end_ms)`` pairs:
    every candle opening in ``start <= time < end`` was asked of the exchange, and what it
    answered is stored (ranges answered empty included, so a covered range may hold no rows).

    >>> candlecache.coverage("~/.cache/candles", "BTC/USDT", "1h")  # doctest: +SKIP
    [(1704067200000, 1704672000000)]
    """
    period = _check_period(period)
    path = data_dir(_check_base_dir(base_dir), symbol, period)
    return [tuple(r) for r in _core.coverage(path, period)]  # type: ignore[misc]


def holes(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike,
    end_time: TimeLike,
) -> list[tuple[int, int]]:
    """The half-open ``(start_ms, end_ms)`` ranges inside ``start_time <= time <= end_time``
    that the cache has not answered: what a call for that range fetches (besides a range
    answered empty once, which is asked again an hour later to confirm it).

    >>> candlecache.holes("~/.cache/candles", "BTC/USDT", "1h", "2024-01-01", "2024-01-31")  # doctest: +SKIP
    [(1704672000000, 1706745600000)]
    """
    period = _check_period(period)
    start, end = to_ms("start_time", start_time), to_ms("end_time", end_time)
    if end < start:
        raise ValueError(f"end_time {describe_ms(end)} is before start_time {describe_ms(start)}")
    first, n = _slots(period, start, end)
    if n == 0:
        return []
    stop = _core.period_add(period, first, n)
    return [tuple(r) for r in _core.ranges_missing(coverage(base_dir, symbol, period), first, stop)]  # type: ignore[misc]


def covered_empty(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike | None = None,
    end_time: TimeLike | None = None,
) -> list[tuple[int, int]]:
    """The half-open ``(start_ms, end_ms)`` ranges inside ``start_time <= time <= end_time``
    that the cache has answered but holds no candle for: runs of covered slots without a row
    (before a listing, a maintenance window, after a delisting). ``start_time``/``end_time``
    default to the start and end of what is covered.

    >>> candlecache.covered_empty("~/.cache/candles", "BTC/USDT", "1h")  # doctest: +SKIP
    [(1704153600000, 1704157200000)]
    """
    period = _check_period(period)
    covered = coverage(base_dir, symbol, period)
    if not covered:
        return []
    lo, hi = covered[0][0], covered[-1][1]
    if start_time is not None:
        start = to_ms("start_time", start_time)
        lo = max(lo, _slots(period, start, start)[0])
    if end_time is not None:
        end = to_ms("end_time", end_time)
        if start_time is not None and end < to_ms("start_time", start_time):
            raise ValueError(f"end_time {describe_ms(end)} is before start_time")
        hi = min(hi, _core.period_add(period, _core.period_floor(period, end), 1))
    if lo >= hi:
        return []
    times = read_cached(base_dir, symbol, period, lo, hi - 1).get_column("time").unique().sort()
    if period == "1M":
        after = times.map_elements(lambda t: _core.period_add(period, t, 1), return_dtype=pl.Int64)
    else:
        after = times + _core.period_ms(period)
    # Per stored candle: the slot after it and the next stored candle (or the range end).
    frame = pl.DataFrame({"time": times, "after": after})
    out: list[tuple[int, int]] = []
    for a, b in covered:
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            continue
        inside = frame.filter((pl.col("time") >= a) & (pl.col("time") < b))
        if inside.height == 0:
            out.append((a, b))
            continue
        first = int(inside.item(0, "time"))
        if first > a:
            out.append((a, first))
        runs = inside.with_columns(next=pl.col("time").shift(-1).fill_null(b)).filter(
            pl.col("after") < pl.col("next")
        )
        out.extend((int(x), min(int(y), b)) for x, y in runs.select("after", "next").iter_rows())
    return out


def repair_cache(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    *,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> list[Path]:
    """Move damaged Parquet files aside and forget their coverage; returns the moved files.

    Damaged means: Parquet cannot decode it, or its bytes differ from the checksums recorded
    when candlecache wrote it (``.checksums.jsonl``) and no later fetch explains it. Nothing is
    deleted: a corrupted ``2024-01.parquet`` becomes ``2024-01.parquet.corrupt``. Files the
    cache wrote that are gone lose their coverage too. The next ``get_ohlcv_with_cache``
    fetches these ranges again.

    >>> repair_cache("cache", "BTC/USDT", "1m")  # doctest: +SKIP
    [PosixPath('cache/BTC_USDT_1m/2024-01.parquet.corrupt')]
    """
    _check_period(period)
    path = data_dir(_check_base_dir(base_dir).expanduser(), symbol, period)
    return [Path(p) for p in _core.repair(path, period, False, lock_timeout)[0]]
