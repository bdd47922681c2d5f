"""``backfill_binance_vision``: years of candles from Binance's public archive
(https://data.binance.vision), verified against its SHA-256 checksums, into the same cache that
``get_ohlcv_with_cache`` reads."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from . import _core
from ._times import describe_ms, to_ms
from .ohlcv import (
    _check_base_dir,
    _check_int,
    _check_period,
    _folder_name,
    _namespace,
    _Progress,
    _slots,
    coverage,
    get_ohlcv_with_cache,
    TimeLike,
)

__all__ = ["backfill_binance_vision", "BackfillReport", "vision_failures", "clear_vision_failures"]

DEFAULT_BASE_URL = "https://data.binance.vision"

#: The archive publishes a day's file the next day and a month's within days of its end; a
#: file is asked for only once its period is this long over.
DEFAULT_PUBLICATION_LAG = timedelta(days=2)

#: Show a progress bar (when ``progress=None``) for runs of at least this many files.
_PROGRESS_MIN_FILES = 20

_log = logging.getLogger("candlecache")


@dataclass(frozen=True)
class BackfillReport:
    """What one ``backfill_binance_vision`` call did. Ranges are half-open ``(start_ms, end_ms)``."""

    symbol: str
    period: str
    market: str
    market_id: str
    #: Archive files the run decided to download.
    files_planned: int
    #: Zips received (a file downloaded twice after a bad checksum counts once).
    files_downloaded: int
    #: Files of the range not needed: what they hold was already covered.
    files_skipped: int
    #: Files stored with a SHA-256 matching their ``.CHECKSUM``.
    files_verified: int
    #: Files stored without a verified checksum (``verify_checksum=False``, or
    #: ``proceed_on_failure=True`` on a bad one).
    files_unverified: int
    #: Archive paths the archive does not have (HTTP 404).
    files_missing: list[str] = field(default_factory=list)
    #: ``(archive path, reason)`` of files that failed (they are in ``vision_failures``), and
    #: ``("fetch_callback <range>", error)`` for a hole the callback failed to fill.
    failures: list[tuple[str, str]] = field(default_factory=list)
    rows_written: int = 0
    #: Ranges the archive lacked that were fetched through ``fetch_callback``.
    holes_fetched: list[tuple[int, int]] = field(default_factory=list)
    #: Ranges of the request still not covered.
    holes_left: list[tuple[int, int]] = field(default_factory=list)
    bytes_downloaded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No failure and nothing left uncovered."""
        return not self.failures and not self.holes_left

    def __repr__(self) -> str:
        lines = [
            f"BackfillReport({self.symbol} {self.period} from {self.market}/{self.market_id}: "
            + ("ok" if self.ok else "INCOMPLETE"),
            f"  files: {self.files_planned} planned, {self.files_downloaded} downloaded, "
            f"{self.files_verified} verified, {self.files_unverified} unverified, "
            f"{self.files_skipped} skipped as covered, {len(self.files_missing)} not in the archive, "
            f"{len(self.failures)} failed",
            f"  {self.rows_written:,} candles written, {self.bytes_downloaded / 1e6:.1f} MB in {self.seconds:.1f} s",
        ]
        for path, reason in self.failures[:5]:
            lines.append(f"  failed: {path}: {reason}")
        if len(self.failures) > 5:
            lines.append(f"  ... and {len(self.failures) - 5} more failures (see candlecache.vision_failures)")
        for what, ranges in (("fetched through the callback", self.holes_fetched), ("left", self.holes_left)):
            if ranges:
                shown = ", ".join(f"{describe_ms(a)} .. {describe_ms(b)}" for a, b in ranges[:3])
                more = f" and {len(ranges) - 3} more" if len(ranges) > 3 else ""
                lines.append(f"  holes {what}: {shown}{more}")
        return "\n".join(lines) + ")"


def _lag_ms(publication_lag: object) -> int:
    if isinstance(publication_lag, timedelta):
        seconds = publication_lag.total_seconds()
    elif isinstance(publication_lag, (int, float)) and not isinstance(publication_lag, bool):
        seconds = float(publication_lag)
    else:
        raise TypeError(f"publication_lag must be a timedelta or seconds, got {type(publication_lag).__name__}")
    if seconds < 0:
        raise ValueError(f"publication_lag must not be negative, got {publication_lag!r}")
    return int(seconds * 1000)


def backfill_binance_vision(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period: str,
    start_time: TimeLike,
    end_time: TimeLike | None = None,
    *,
    market: str | None = None,
    market_id: str | None = None,
    base_url: str = DEFAULT_BASE_URL,
    fetch_callback: Callable[..., Any] | None = None,
    fetch_callback_params: Mapping[str, Any] | None = None,
    verify_checksum: bool = True,
    proceed_on_failure: bool = False,
    retry_failed: bool = False,
    workers: int = 8,
    progress: bool | None = None,
    lock_timeout: float | None = 600.0,
    durable: bool = False,
    publication_lag: timedelta | float = DEFAULT_PUBLICATION_LAG,
    namespace: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> BackfillReport:
    """Fill ``base_dir`` with the candles of ``symbol`` from Binance's public archive.

    ``namespace`` stores them in ``base_dir/{namespace}/`` as ``get_ohlcv_with_cache(...,
    namespace=)`` does; ``"auto"`` names it after the ccxt exchange of the archive's market
    (``binance`` for spot, ``binanceusdm`` for USDⓈ-M futures, ``binancecoinm`` for COIN-M).

    Downloads monthly zips for whole months and daily zips for the rest, in ``workers``
    parallel downloads, checks each against its SHA-256 ``.CHECKSUM``, and stores the candles
    in the partitions and fetch log ``get_ohlcv_with_cache`` uses, so it then serves the range
    with no request. Only what the cache does not cover yet is downloaded; running it again
    (after an interruption, even ``kill -9``) downloads only what is missing.

    Args:
        symbol: a ccxt symbol: ``"BTC/USDT"`` (spot ``BTCUSDT``), ``"BTC/USDT:USDT"``
            (USDⓈ-M futures ``BTCUSDT``), ``"BTC/USD:BTC"`` (COIN-M ``BTCUSD_PERP``). ``market``
            (``"spot"``, ``"um"``, ``"cm"``) and ``market_id`` (the archive's id, e.g. for a
            renamed or delisted symbol) override what is inferred.
        period: ``1s`` (spot only), ``1m`` … ``1d``, ``3d``, ``1w`` or ``1M``.
        start_time, end_time: as for ``get_ohlcv_with_cache`` (epoch ms, datetime, date, ISO
            string); ``end_time`` is the open time of the last candle wanted, inclusive;
            ``None`` means up to what the archive has published (``publication_lag`` ago).
        fetch_callback: e.g. ``exchange.fetch_ohlcv``: ranges the archive lacks (a missing
            day, the days not published yet) are fetched through it, exactly those ranges.
            Without it they are listed in ``report.holes_left``.
        verify_checksum: ``False`` skips the SHA-256 check (files count as unverified).
        proceed_on_failure: store a file whose checksum fails anyway (it stays registered in
            ``vision_failures``). By default nothing from such a file is stored.
        retry_failed: also download this symbol's and period's registered failures again.
        progress: a tqdm bar over files (``None``: for long runs on a terminal).
        lock_timeout: seconds to wait for another process working on the same folder.
        durable: fsync every write (survives a power cut, slower).
        storage_options: for an object store URL (``s3://…``), as for
            ``get_ohlcv_with_cache``. Each archive file is committed as it is stored, so an
            interrupted backfill keeps what it committed. The failure registry of such a root
            is kept on this machine (see ``vision_failures``).

    Returns:
        a ``BackfillReport``; ``report.ok`` is False if a file failed or a range is left.

    Raises:
        ValueError: a period the archive does not have, ``1s`` for futures, a bad market or
            symbol id, times in the wrong unit, ``end_time`` before ``start_time``.
        TypeError: wrong argument types.
        candlecache.Timeout: another process held the folder longer than ``lock_timeout``.

    >>> import candlecache, ccxt  # doctest: +SKIP
    >>> report = candlecache.backfill_binance_vision(
    ...     "~/.cache/candles", "BTC/USDT", "1m", "2024-01-01", "2024-06-30T23:59:00Z",
    ...     fetch_callback=ccxt.binance().fetch_ohlcv,
    ... )  # doctest: +SKIP
    >>> report.ok, report.rows_written  # doctest: +SKIP
    (True, 262080)
    """
    started = time.monotonic()
    url = _object_url(base_dir, storage_options)
    base = _check_base_dir(base_dir) if url is None else _registry_dir(url)
    if not isinstance(symbol, str) or not symbol:
        raise TypeError(f"symbol must be a non-empty str, got {symbol!r}")
    period = _check_period(period)
    start = to_ms("start_time", start_time)
    end = None if end_time is None else to_ms("end_time", end_time)
    if end is not None and end < start:
        raise ValueError(f"end_time {describe_ms(end)} is before start_time {describe_ms(start)}")
    for name, value in (("market", market), ("market_id", market_id)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    workers = _check_int("workers", workers)
    if not 1 <= workers <= 64:
        raise ValueError(f"workers must be between 1 and 64, got {workers}")
    if fetch_callback is not None:
        if not callable(fetch_callback):
            raise TypeError(f"fetch_callback must be callable, got {type(fetch_callback).__name__}")
        if inspect.iscoroutinefunction(fetch_callback):
            raise TypeError(
                "fetch_callback is asynchronous (e.g. a ccxt.async_support exchange's fetch_ohlcv); "
                "backfill_binance_vision calls it synchronously: pass a synchronous client's "
                "fetch_ohlcv (ccxt.binance().fetch_ohlcv), or backfill without it and fill "
                "report.holes_left with `await candlecache.get_ohlcv_with_cache_async(...)`"
            )
    if fetch_callback_params is not None and not isinstance(fetch_callback_params, Mapping):
        raise TypeError(f"fetch_callback_params must be a mapping, got {type(fetch_callback_params).__name__}")
    if lock_timeout is not None and (not isinstance(lock_timeout, (int, float)) or lock_timeout < 0):
        raise ValueError(f"lock_timeout must be None or a number of seconds >= 0, got {lock_timeout!r}")
    lag = _lag_ms(publication_lag)
    # Resolve the archive's market and id now: a bad symbol fails before anything is created.
    market_name, archive_id = _core.vision_target(symbol, market, market_id)
    if namespace == "auto":
        namespace = {"spot": "binance", "um": "binanceusdm", "cm": "binancecoinm"}[market_name]
    ns = _namespace(namespace)
    if ns is not None:
        base = base / ns
    root = None
    if url is not None:
        from .market import default_cache

        shared = default_cache(url, storage_options)
        root = shared._root  # type: ignore[attr-defined]
    retry: list[str] = []
    if retry_failed:
        retry = [
            f["file"]
            for f in _core.vision_failures(base)
            if f["period"] == period and f["market"] == market_name and f["market_id"] == archive_id
        ]
    now_ms = int(time.time() * 1000)
    bar = _Progress(progress, f"{symbol} {period} archive", unit="file", min_total=_PROGRESS_MIN_FILES, verb="handled")
    try:
        raw = _core.vision_backfill(
            base, symbol, period, market_name, archive_id, base_url, start, end,
            bool(verify_checksum), bool(proceed_on_failure), retry, workers,
            None if lock_timeout is None else float(lock_timeout), bool(durable), lag, now_ms,
            bar if progress is not False else None, root, None if root is None else _folder_name(symbol, period, ns),
        )
    finally:
        bar.close()
    holes = [tuple(h) for h in raw["holes"]]
    fetched: list[tuple[int, int]] = []
    rest_failures: list[tuple[str, str]] = []
    if fetch_callback is not None:
        for a, b in holes:
            n = _slots(period, a, b - 1)[1]
            if n <= 0:
                continue
            _log.info("%s %s: fetching %s .. %s through the callback (not in the archive)",
                      symbol, period, describe_ms(a), describe_ms(b))
            try:
                if url is None:
                    get_ohlcv_with_cache(
                        base, symbol, period, a, n, fetch_callback, dict(fetch_callback_params or {}),
                        lock_timeout=lock_timeout, durable=durable, progress=progress,
                    )
                else:
                    get_ohlcv_with_cache(
                        url, symbol, period, a, n, fetch_callback, dict(fetch_callback_params or {}),
                        lock_timeout=lock_timeout, progress=progress, namespace=ns, storage_options=storage_options,
                    )
            except Exception as e:  # what the archive gave is stored: report, don't lose it
                _log.warning("%s %s: fetching %s .. %s through the callback failed: %r",
                             symbol, period, describe_ms(a), describe_ms(b), e)
                rest_failures.append((f"fetch_callback {describe_ms(a)} .. {describe_ms(b)}", f"{type(e).__name__}: {e}"))
                continue
            fetched.append((a, b))
        covered = coverage(base, symbol, period) if url is None else shared._coverage(symbol, period, ns)
        holes = [h for a, b in holes for h in map(tuple, _core.ranges_missing(covered, a, b))]
    report = BackfillReport(
        symbol=symbol,
        period=period,
        market=raw["market"],
        market_id=raw["market_id"],
        files_planned=raw["files_planned"],
        files_downloaded=raw["files_downloaded"],
        files_skipped=raw["files_skipped"],
        files_verified=raw["files_verified"],
        files_unverified=raw["files_unverified"],
        files_missing=list(raw["files_missing"]),
        failures=[tuple(f) for f in raw["failures"]] + rest_failures,
        rows_written=raw["rows_written"],
        holes_fetched=fetched,
        holes_left=holes,  # type: ignore[arg-type]
        bytes_downloaded=raw["bytes_downloaded"],
        seconds=time.monotonic() - started,
    )
    _log.info(
        "%s %s archive backfill: %d files downloaded (%d verified), %d candles written, %d failed, %d holes left",
        symbol, period, report.files_downloaded, report.files_verified, report.rows_written,
        len(report.failures), len(report.holes_left),
    )
    return report


_FAILURE_SCHEMA = {
    "file": pl.String,
    "url": pl.String,
    "symbol": pl.String,
    "period": pl.String,
    "market": pl.String,
    "market_id": pl.String,
    "reason": pl.String,
    "expected": pl.String,
    "actual": pl.String,
    "when": pl.String,
    "attempts": pl.Int64,
}


def _object_url(base_dir: object, storage_options: object) -> str | None:
    """``base_dir`` as an object store URL, or None for a local path."""
    if isinstance(base_dir, str) and _core.is_object_url(base_dir):
        return base_dir.rstrip("/")
    if storage_options is not None:
        raise TypeError("storage_options apply to object store URLs (s3://, gs://, az://, file://), not to local paths")
    return None


def _registry_dir(url: str) -> Path:
    """Where this machine keeps the failure registry of an object store root:
    ``$XDG_CACHE_HOME/candlecache/vision/<hash of the URL>`` (``~/.cache`` by default)."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "candlecache" / "vision" / hashlib.sha256(url.encode()).hexdigest()[:16]


def vision_failures(base_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """The archive files that failed and are not stored as verified since, one row each:
    ``file`` (archive path), ``url``, ``symbol``, ``period``, ``market``, ``market_id``,
    ``reason``, ``expected``/``actual`` (SHA-256 hex, on a checksum mismatch), ``when``
    (ISO-8601 UTC of the last attempt) and ``attempts``.

    A later backfill plans what is not covered, so a failed file's range is tried again on
    the next run; ``retry_failed=True`` also retries files stored despite a failure.

    >>> candlecache.vision_failures("~/.cache/candles")  # doctest: +SKIP
    shape: (0, 11)
    """
    url = _object_url(base_dir, None)
    rows = _core.vision_failures(_check_base_dir(base_dir) if url is None else _registry_dir(url))
    return pl.DataFrame(rows, schema=_FAILURE_SCHEMA)


def clear_vision_failures(base_dir: str | os.PathLike[str]) -> Path | None:
    """Empty the failure registry, keeping it as ``vision_failures.<time>.jsonl.bak`` in
    ``base_dir``; returns that backup (``None`` if there was no registry).

    >>> candlecache.clear_vision_failures("~/.cache/candles")  # doctest: +SKIP
    PosixPath('/home/me/.cache/candles/vision_failures.20240701T120000Z.jsonl.bak')
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    url = _object_url(base_dir, None)
    path = _core.vision_clear_failures(_check_base_dir(base_dir) if url is None else _registry_dir(url), stamp)
    return None if path is None else Path(path)
