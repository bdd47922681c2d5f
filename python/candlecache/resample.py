"""Exact resampling: candles aggregated into a coarser period whose candles are made of whole
finer ones, computed in Rust (``candlecache.resample``, and ``MarketCache.get_ohlcv(...,
from_period=...)`` which serves coarse candles from the finer ones it caches)."""

from __future__ import annotations

from typing import Any

import polars as pl

from . import _core
from .ohlcv import _check_period, _frame

__all__ = ["resample"]


def resample(df: Any, period: str, *, from_period: str | None = None) -> pl.DataFrame:
    """``df``'s candles aggregated into ``period``, exactly: open the first, high the max, low
    the min, close the last, ``volume`` and every other numeric column summed. Candles open on
    the period's boundaries in UTC: ``1d`` at midnight, ``1w`` on Monday, ``1M`` on the 1st.

    ``df`` is anything with a ``time`` column of epoch milliseconds (or datetimes) that
    exports Arrow: a polars DataFrame or LazyFrame, a pyarrow Table, a pandas DataFrame. Every
    candle with at least one row is returned (as polars' ``group_by_dynamic`` would); give
    ``from_period`` to check that its candles nest in ``period``'s (``1w`` candles do not make
    months). ``time`` comes back as epoch milliseconds, the cache's own layout.

    >>> import candlecache, polars as pl
    >>> m = pl.DataFrame({"time": [0, 60_000, 120_000], "open": [1.0, 2.0, 3.0], "high": [2.0, 5.0, 4.0],
    ...                   "low": [0.5, 1.5, 2.5], "close": [2.0, 3.0, 3.5], "volume": [1.0, 2.0, 3.0]})
    >>> candlecache.resample(m, "5m").row(0)
    (0, 1.0, 5.0, 0.5, 3.5, 6.0)

    Raises:
        ValueError: an unknown period, or ``from_period`` candles that do not nest in ``period``.
        TypeError: ``df`` is not a table.
    """
    period = _check_period(period)
    if from_period is not None:
        _check_period(from_period)
    if isinstance(df, pl.LazyFrame):
        df = df.collect()
    elif not hasattr(df, "__arrow_c_stream__"):
        try:  # pandas exports Arrow only through pyarrow
            df = pl.from_pandas(df) if type(df).__module__.startswith("pandas") else df
        except ImportError:
            pass
    if not hasattr(df, "__arrow_c_stream__"):
        raise TypeError(f"df must be a table (polars, pyarrow or pandas) with a time column, got {type(df).__name__}")
    if isinstance(df, pl.DataFrame) and pl.Null in df.schema.dtypes():
        # Columns of nothing but nulls (an empty frame built from no rows) export as Arrow's
        # Null type, which the Arrow reader refuses; as numbers they aggregate to nulls or 0.
        df = df.with_columns(pl.col(pl.Null).cast(pl.Float64))
    return _frame(_core.resample(df, period, from_period))
