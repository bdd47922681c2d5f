"""``MarketCache`` on object storage: one candle cache for a whole team.

``MarketCache("s3://bucket/prefix", storage_options={...})`` (or ``gs://``, ``az://``,
``file://``) keeps the candles in the bucket, shared by every machine that points at it. The
Rust core writes them through ``object_store`` without locks: rows go into new, immutable
Parquet objects, and each symbol and period has a log of numbered commit objects, each
written only if no object of that number exists yet. A writer that loses the race for a
number reads the log again and decides anew, so no committed candle is ever lost or
doubled. Before fetching, a writer commits a *claim* on the range, with a lease; others wait
for that claim's commit (or for the lease to lapse, if its machine died) instead of
fetching the same candles from the exchange. See the README's "Shared cache on object
storage" for the layout, the guarantees and the costs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from . import _core
from ._usage import _COUNTERS, _keys
from .market import MarketCache
from .ohlcv import _adapt, _folder_name

__all__ = ["ObjectMarketCache"]

#: How long a writer's claim on a range holds without renewal (seconds). A writer renews
#: it while it fetches, so the lease only runs out when the writer is gone; then others
#: wait at most this long before fetching the range themselves.
DEFAULT_LEASE = 60.0


def _check_storage_options(options: object) -> dict[str, str]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"storage_options must be a mapping of str to str, got {type(options).__name__}")
    out: dict[str, str] = {}
    for k, v in options.items():
        if not isinstance(k, str):
            raise TypeError(f"storage_options keys must be str, got {k!r}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        if not isinstance(v, str):
            raise TypeError(f"storage_options[{k!r}] must be a str (or a bool or number), got {type(v).__name__}")
        out[k] = v
    return out


class _Counts:
    """This process's counts (a bucket holds no per-process statistics files)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(_COUNTERS, 0)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                self.counts[k] += v

    def load_all(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"counts": dict(self.counts)}]

    def reset(self) -> None:
        with self.lock:
            self.counts = dict.fromkeys(_COUNTERS, 0)


class ObjectMarketCache(MarketCache):
    """A ``MarketCache`` whose root is an object store URL; ``MarketCache(url, ...)`` returns one.

    Same ``get_ohlcv``, ``get_ohlcv_async``, ``read`` and ``stats`` as on a local directory,
    with this process's hot tier in front of the bucket. Statistics count this process only.
    The maintenance methods that rewrite a local directory (``verify``, ``clear``,
    ``vacuum``, ``compact_tiers``, ``runs``, ``stats_history``, ``cold_cache_mb``) are not
    available on object storage yet and say so.

    Args:
        base_dir: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``
            or ``file:///absolute/path``.
        storage_options: the store's settings as the Rust ``object_store`` crate names them
            (``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
            ``allow_http``, ``service_account_path``, ``account_name``, …), plus
            ``max_retries`` and ``retry_timeout`` (seconds) for failed requests. Anything not
            given comes from the usual environment variables (``AWS_*``, ``GOOGLE_*``,
            ``AZURE_*``).
        lease: seconds a claim on a range holds without renewal (default 60).

    >>> cache = candlecache.MarketCache("s3://team-candles/binance",
    ...                                 storage_options={"region": "eu-west-1"})  # doctest: +SKIP
    >>> df = cache.get_ohlcv("BTC/USDT", "1m", "2024-01-01", 1440, ex.fetch_ohlcv)  # doctest: +SKIP
    """

    def __init__(
        self,
        base_dir: str,
        *,
        hot_cache_mb: float = 256,
        cold_cache_mb: float | None = None,
        eviction_policy: str = "lru",
        verify: str = "fast",
        statistics: bool = True,
        namespace: str | None = None,
        compression: str = "zstd",
        compression_level: int | None = None,
        storage_options: Mapping[str, str] | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if cold_cache_mb is not None:
            raise ValueError(
                "cold_cache_mb (a size limit) works on local cache directories only; on object storage, "
                "use the bucket's lifecycle rules or clear what you no longer need"
            )
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease >= 1:
            raise ValueError(f"lease must be a number of seconds >= 1, got {lease!r}")
        #: The cache's root URL.
        self.url: str = base_dir.rstrip("/")
        #: The storage options the root was opened with (secrets included: do not log them).
        self.storage_options: dict[str, str] = _check_storage_options(storage_options)
        self.lease: float = float(lease)
        self._settings(
            hot_cache_mb=hot_cache_mb, cold_cache_mb=None, eviction_policy=eviction_policy, verify=verify,
            namespace=namespace, compression=compression, compression_level=compression_level,
        )
        self._root = _core.ObjectRoot(self.url, self.storage_options)
        self._stats = _Counts() if statistics else None  # type: ignore[assignment]

    # -- the engine calls -------------------------------------------------------------------

    def _fetch(
        self, symbol: str, period: str, ns: str | None, start: int, count: int, callback: Callable[..., Any],
        params: dict[str, Any] | None, enable_cache: bool, now_ms: int, timeout: float | None, durable: bool,
        bar: Callable[[int, int], None] | None,
    ) -> Any:
        return _core.shared_get_ohlcv(
            self._root, _folder_name(symbol, period, ns), symbol, period, start, count, callback, params,
            enable_cache, now_ms, timeout, _adapt, bar, self._hot, self.compression, self.lease,
        )

    def _read_stream(self, symbol: str, period: str, ns: str | None, start: int | None, end: int | None) -> Any:
        return _core.shared_read_range(self._root, _folder_name(symbol, period, ns), period, start, end, self._hot)

    def _coverage(self, symbol: str, period: str, ns: str | None) -> list[tuple[int, int]]:
        return _core.shared_coverage(self._root, _folder_name(symbol, period, ns), period)

    def _check_run(self, run_id: object) -> None:
        if run_id is not None:
            self._local_only("get_ohlcv(run_id=...)")

    def _used(
        self, symbol: str, period: str, span: tuple[int, int] | None, run_id: str | None = None, ns: str | None = None
    ) -> list[str]:
        return [] if span is None else _keys(period, span[0], span[1])

    def _folder_key(self, symbol: str, period: str, ns: str | None) -> str:
        return _folder_name(symbol, period, ns)

    # -- statistics and life cycle ----------------------------------------------------------

    def _size(self) -> tuple[int | None, int | None]:
        # Sizing a bucket takes a listing of everything: stats() says None instead.
        return None, None

    def _local_only(self, what: str) -> Any:
        raise NotImplementedError(
            f"MarketCache.{what} works on local cache directories only; {self.url} is on object storage"
        )

    def stats_history(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        return self._local_only("stats_history")  # type: ignore[no-any-return]

    def verify(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        return self._local_only("verify")  # type: ignore[no-any-return]

    def clear(self, *args: Any, **kwargs: Any) -> int:
        return self._local_only("clear")  # type: ignore[no-any-return]

    def vacuum(self, *args: Any, **kwargs: Any) -> Any:
        return self._local_only("vacuum")

    def compact_tiers(self, *args: Any, **kwargs: Any) -> Any:
        return self._local_only("compact_tiers")

    def runs(self) -> pl.DataFrame:
        return self._local_only("runs")  # type: ignore[no-any-return]

    def _save(self, with_size: bool = False) -> None:
        pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"MarketCache({self.url!r}, object storage, {state})"

