"""``get_ohlcv_with_cache_async``: the candle cache for asyncio code (ccxt's ``async_support``)."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from .ohlcv import DEFAULT_LOCK_TIMEOUT, TimeLike, _namespace, get_ohlcv_with_cache

__all__ = ["get_ohlcv_with_cache_async"]


async def get_ohlcv_with_cache_async(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike,
    count: int | None = None,
    fetch_callback: Callable[..., Any] | None = None,
    fetch_callback_params: Mapping[str, Any] | None = None,
    enable_cache: bool = True,
    *,
    end_time: TimeLike | None = None,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    durable: bool = False,
    progress: bool | None = None,
    namespace: str | None = None,
) -> pl.DataFrame:
    """:func:`candlecache.get_ohlcv_with_cache` for asyncio code: the same arguments and result,
    with a callback that may be a coroutine function, such as the ``fetch_ohlcv`` of a
    ``ccxt.async_support`` exchange.

    Reading and writing the cache runs in a worker thread, so the event loop keeps running;
    each call of the callback is awaited on the caller's event loop (where a ccxt async
    exchange's session lives). A plain function works too; it is called in the worker thread.
    Cancelling the awaiting task does not stop a fetch already under way: it finishes (and
    keeps what it fetched) in the background.

    >>> import ccxt.async_support as ccxt, candlecache
    >>> async def main():
    ...     ex = ccxt.binance()
    ...     try:
    ...         return await candlecache.get_ohlcv_with_cache_async(
    ...             "~/.cache/candles", "BTC/USDT", "1h", "2024-01-01", 24, ex.fetch_ohlcv
    ...         )
    ...     finally:
    ...         await ex.close()
    >>> df = asyncio.run(main())  # doctest: +SKIP
    """
    call = _bridge(fetch_callback)
    return await asyncio.to_thread(
        get_ohlcv_with_cache,
        base_dir,
        symbol,
        period,
        start_time,
        count,
        call,
        {} if fetch_callback_params is None else fetch_callback_params,
        enable_cache,
        end_time=end_time,
        lock_timeout=lock_timeout,
        durable=durable,
        progress=progress,
        namespace=_namespace(namespace, fetch_callback),  # "auto" needs the callback itself
    )


def _bridge(fetch_callback: Callable[..., Any] | None) -> Callable[..., Any]:
    """The callback as a plain function for a worker thread: a coroutine it returns is
    awaited on the caller's event loop (where a ccxt async exchange's session lives)."""
    if fetch_callback is None:
        raise TypeError("fetch_callback is required: (symbol, period, since_ms, limit, **params) -> rows")
    if not callable(fetch_callback):
        raise TypeError(f"fetch_callback must be callable, got {type(fetch_callback).__name__}")
    loop = asyncio.get_running_loop()
    callback = fetch_callback

    def call(*args: Any, **kwargs: Any) -> Any:
        result = callback(*args, **kwargs)
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
        return result

    return call


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
