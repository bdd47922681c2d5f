"""Compatibility package: the original ``cache_tool`` module paths, backed by candlecache.

Existing code keeps working unchanged::

    from cache_tool.entry import get_ohlcv_with_cache
"""

from candlecache import get_ohlcv_with_cache

__all__ = ["get_ohlcv_with_cache"]
