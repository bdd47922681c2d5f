"""The Rust extension behind candlecache. Public names live in ``candlecache``; these are
the building blocks it uses."""

import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, final

__all__ = ["ArrowStream", "KvStore", "Deferred", "KV_SLOW", "KeyHasher", "crc32", "write_frame", "read_frame", "GRACE_MS", "PERIODS", "__version__", "coverage", "forget", "get_ohlcv", "hold_lock", "log_append", "log_compact", "log_entries", "partition_key", "partition_window", "period_add", "period_floor", "period_ms", "ranges_missing", "ranges_union", "read_range", "rebuild_log", "repair", "write_rows", "HotTier", "find_corrupt", "live_files", "check_codec", "check_nested", "compact_tier", "resample", "vision_backfill", "vision_clear_failures", "vision_failures", "vision_target", "ObjectRoot", "is_object_url", "shared_get_ohlcv", "shared_read_range", "shared_coverage", "shared_folders"]

__version__: str
PERIODS: list[str]
GRACE_MS: int

@final
class ArrowStream:
    """Result rows, consumed once through the Arrow C stream interface (``polars.DataFrame(s)``)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...
    @property
    def time_span(self) -> tuple[int, int] | None: ...

_Row = tuple[int, Any, int, float, float | None, float, int, Any, int, int, str | None, Any]

@final
class Deferred:
    """A row the fast path leaves to ``Disk.fetch`` (a value file, a frame)."""

    @property
    def mode(self) -> int: ...
    @property
    def filename(self) -> str | None: ...
    @property
    def value(self) -> Any: ...

KV_SLOW: Deferred

@final
class KeyHasher:
    """``Disk.hash`` for raw keys, computed in the engine; other keys go to ``fallback``."""

    def __new__(cls, fallback: Callable[[Any], int]) -> KeyHasher: ...
    def __call__(self, key: Any) -> int: ...

@final
class KvStore:
    """The file-based key-value engine of one cache directory (see ``src/kv``)."""

    def __new__(cls, directory: str | os.PathLike[str], timeout: float | None = None) -> KvStore: ...
    @property
    def directory(self) -> pathlib.Path: ...
    def set_timeout(self, timeout: float | None) -> None: ...
    def begin(self) -> None: ...
    def end(self, commit: bool = True) -> None: ...
    def close(self) -> None: ...
    def row(self, key: Any, raw: bool) -> _Row | None: ...
    def lookup(self, key: Any, raw: bool, now: float, policy_name: str, stats: bool) -> _Row | None: ...
    def put(
        self,
        key: Any,
        raw: bool,
        store_time: float,
        expire_time: float | None,
        access_time: float,
        access_count: int,
        tag: Any,
        size: int,
        mode: int,
        filename: str | None,
        value: Any,
        cull_limit: int = 0,
        size_limit: float = 0.0,
        policy_name: str = "none",
    ) -> tuple[_Row | None, tuple[int, list[str]]]: ...
    def delete(self, key: Any, raw: bool) -> _Row | None: ...
    def touch(self, key: Any, raw: bool, now: float, expire_time: float | None) -> bool: ...
    def expire(self, now: float, limit: int | None = None) -> tuple[int, list[str]]: ...
    def evict(self, tag: Any) -> tuple[int, list[str]]: ...
    def clear(self) -> tuple[int, list[str]]: ...
    def cull(self, now: float, limit: int, size_limit: float, policy_name: str) -> tuple[int, list[str]]: ...
    def count(self) -> int: ...
    def volume(self) -> int: ...
    def stats(self) -> tuple[int, int]: ...
    def reset_stats(self) -> None: ...
    def settings(self) -> dict[str, Any]: ...
    def set_setting(self, name: str, value: Any) -> None: ...
    def keys(self, by_key: bool = False, reverse: bool = False) -> list[tuple[Any, bool]]: ...
    def end_row(self, last: bool) -> _Row | None: ...
    def end_in_range(self, lo: Any, hi: Any, last: bool) -> _Row | None: ...
    def check(self, fix: bool = False) -> list[str]: ...
    def compact(self) -> None: ...
    def get_value(self, key: Any, default: Any, policy_name: str, statistics: Any, retry: bool = False) -> Any: ...
    def set_value(
        self,
        key: Any,
        value: Any,
        expire: float | None,
        tag: Any,
        retry: bool,
        min_file_size: float,
        pickle_protocol: int,
        cull_limit: int,
        size_limit: float,
        policy_name: str,
    ) -> Any: ...
    def contains(self, key: Any) -> Any: ...
    def delete_value(self, key: Any, retry: bool = False) -> Any: ...
    def incr_value(
        self,
        key: Any,
        delta: Any,
        default: Any,
        retry: bool,
        cull_limit: int,
        size_limit: float,
        policy_name: str,
    ) -> Any: ...

def crc32(data: bytes, value: int = 0) -> int: ...
def write_frame(
    dir: str | os.PathLike[str],
    stem: str,
    table: object,
    meta: list[tuple[str, str]],
    compression: str = "none",
    durable: bool = False,
) -> tuple[str, int]: ...
def read_frame(path: str | os.PathLike[str]) -> tuple[ArrowStream, dict[str, str], int]: ...
def get_ohlcv(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period_name: str,
    start_time: int,
    count: int,
    fetch_callback: Callable[..., Any],
    fetch_callback_params: Mapping[str, Any] | None,
    enable_cache: bool,
    now_ms: int,
    lock_timeout: float | None,
    durable: bool,
    adapt: Callable[[Any], Any],
    progress: Callable[[int, int], None] | None = None,
    hot: HotTier | None = None,
    verify: str = "fast",
    compression: tuple[str, int | None] = ...,
) -> ArrowStream: ...
def read_range(
    data_dir: str | os.PathLike[str],
    start: int | None = None,
    end: int | None = None,
    hot: HotTier | None = None,
    verify: str = "fast",
) -> ArrowStream: ...
def write_rows(
    data_dir: str | os.PathLike[str],
    period_name: str,
    data: Any,
    durable: bool = False,
    lock: bool = True,
    lock_timeout: float | None = None,
) -> int: ...
def log_entries(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]: ...
def log_append(
    data_dir: str | os.PathLike[str],
    data_start: int,
    data_end: int,
    count: int,
    source: str,
    now_ms: int,
    durable: bool = False,
) -> None: ...
def log_compact(
    data_dir: str | os.PathLike[str],
    period_name: str,
    durable: bool = False,
    lock: bool = True,
    lock_timeout: float | None = None,
) -> None: ...
def coverage(data_dir: str | os.PathLike[str], period_name: str) -> list[tuple[int, int]]: ...
def rebuild_log(
    data_dir: str | os.PathLike[str],
    period_name: str,
    now_ms: int,
    durable: bool = False,
    lock: bool = True,
    lock_timeout: float | None = None,
) -> int: ...
def repair(
    data_dir: str | os.PathLike[str],
    period_name: str,
    durable: bool = False,
    lock_timeout: float | None = None,
) -> tuple[list[pathlib.Path], list[pathlib.Path], list[pathlib.Path]]: ...
def forget(
    data_dir: str | os.PathLike[str],
    period_name: str,
    lo: int,
    hi: int,
    drop_rows: bool = False,
    durable: bool = False,
    lock_timeout: float | None = None,
) -> int: ...
def hold_lock(data_dir: str | os.PathLike[str], seconds: float, lock_timeout: float | None = None) -> None: ...
def ranges_missing(covered: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]: ...
def ranges_union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]: ...
def period_ms(period_name: str) -> int: ...
def period_floor(period_name: str, t: int) -> int: ...
def period_add(period_name: str, t: int, n: int) -> int: ...
def partition_key(t: int, period_name: str) -> str: ...
def partition_window(period_name: str) -> str: ...

def vision_target(symbol: str, market: str | None = None, market_id: str | None = None) -> tuple[str, str]: ...
def vision_backfill(
    base_dir: str | os.PathLike[str],
    symbol: str,
    period_name: str,
    market: str | None,
    market_id: str | None,
    base_url: str,
    start_ms: int,
    end_ms: int | None,
    verify: bool,
    proceed_on_failure: bool,
    retry: list[str],
    workers: int,
    lock_timeout: float | None,
    durable: bool,
    lag_ms: int,
    now_ms: int,
    progress: Callable[[int, int], object] | None = None,
    root: ObjectRoot | None = None,
    folder: str | None = None,
) -> dict[str, Any]: ...
def vision_failures(base_dir: str | os.PathLike[str]) -> list[dict[str, Any]]: ...
def vision_clear_failures(base_dir: str | os.PathLike[str], stamp: str) -> str | None: ...

@final
class HotTier:
    """Decoded partition files kept in memory, bounded by bytes (a ``MarketCache``'s hot tier)."""
    def __new__(cls, budget_bytes: int) -> HotTier: ...
    @property
    def budget(self) -> int: ...
    @property
    def decodes(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def reset_stats(self) -> None: ...
    def clear(self) -> None: ...
def check_nested(fine: str, coarse: str) -> None: ...
def compact_tier(
    fine_dir: str | os.PathLike[str],
    fine: str,
    coarse_dir: str | os.PathLike[str],
    coarse: str,
    cutoff: int,
    now_ms: int,
    durable: bool = False,
    lock_timeout: float | None = None,
) -> tuple[int, int]: ...
def live_files(data_dir: str | os.PathLike[str]) -> list[pathlib.Path]: ...
def check_codec(name: str, level: int | None = None) -> None: ...
def resample(
    data: object,
    period_name: str,
    from_period: str | None = None,
    covered: list[tuple[int, int]] | None = None,
    until: int = ...,
) -> ArrowStream: ...
def find_corrupt(
    data_dir: str | os.PathLike[str], period_name: str, lock_timeout: float | None = None
) -> list[tuple[pathlib.Path, str, str]]: ...

@final
class ObjectRoot:
    """A cache root on object storage, checked once per process to honour create-if-absent."""
    def __new__(cls, url: str, options: Mapping[str, str] | None = None) -> ObjectRoot: ...
    @property
    def url(self) -> str: ...

def is_object_url(s: str) -> bool: ...
def shared_get_ohlcv(
    root: ObjectRoot,
    folder: str,
    symbol: str,
    period_name: str,
    start_time: int,
    count: int,
    fetch_callback: Callable[..., Any],
    fetch_callback_params: Mapping[str, Any] | None,
    enable_cache: bool,
    now_ms: int,
    lock_timeout: float | None,
    adapt: Callable[[Any], Any],
    progress: Callable[[int, int], None] | None = None,
    hot: HotTier | None = None,
    compression: tuple[str, int | None] = ...,
    lease: float = 60.0,
) -> ArrowStream: ...
def shared_read_range(
    root: ObjectRoot,
    folder: str,
    period_name: str,
    start: int | None = None,
    end: int | None = None,
    hot: HotTier | None = None,
) -> ArrowStream: ...
def shared_coverage(root: ObjectRoot, folder: str, period_name: str) -> list[tuple[int, int]]: ...
def shared_folders(root: ObjectRoot, sub: str = "") -> list[str]: ...
