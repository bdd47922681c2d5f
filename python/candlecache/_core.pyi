"""The Rust extension behind candlecache. Public names live in ``candlecache``; these are
the building blocks it uses."""

import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, final

__all__ = ["ArrowStream", "GRACE_MS", "PERIODS", "__version__", "coverage", "get_ohlcv", "hold_lock", "log_append", "log_compact", "log_entries", "partition_key", "partition_window", "period_add", "period_floor", "period_ms", "ranges_missing", "ranges_union", "read_range", "rebuild_log", "repair", "write_rows"]

__version__: str
PERIODS: list[str]
GRACE_MS: int

@final
class ArrowStream:
    """Result rows, consumed once through the Arrow C stream interface (``polars.DataFrame(s)``)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

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
) -> ArrowStream: ...
def read_range(data_dir: str | os.PathLike[str], start: int | None = None, end: int | None = None) -> ArrowStream: ...
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
) -> list[pathlib.Path]: ...
def hold_lock(data_dir: str | os.PathLike[str], seconds: float, lock_timeout: float | None = None) -> None: ...
def ranges_missing(covered: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]: ...
def ranges_union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]: ...
def period_ms(period_name: str) -> int: ...
def period_floor(period_name: str, t: int) -> int: ...
def period_add(period_name: str, t: int, n: int) -> int: ...
def partition_key(t: int, period_name: str) -> str: ...
def partition_window(period_name: str) -> str: ...
