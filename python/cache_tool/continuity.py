"""Coverage checks, as in the original ``cache_tool.continuity``.

Coverage comes from the fetch log, with exact interval arithmetic: ranges answered empty
count as covered, and candles still forming when fetched do not.
"""

from __future__ import annotations

import os
from pathlib import Path

from candlecache import _core

from ._period import period_of
from .log_manager import compact_log, read_log

__all__ = ["check_continuity", "get_data_range", "find_missing_ranges", "read_log", "compact_log"]


def _covered(data_dir: str | os.PathLike[str]) -> tuple[str, list[tuple[int, int]]]:
    period = period_of(data_dir)
    return period, _core.coverage(Path(data_dir), period)


def check_continuity(data_dir: str | os.PathLike[str]) -> list[dict]:
    """Gaps between covered ranges.

    Each gap: ``gap_after`` the last covered candle before it, ``gap_before`` the first after it,
    and the missing candles ``missing_from <= time < missing_to``.
    """
    period, covered = _covered(data_dir)
    gaps = []
    for (_, end), (start, _) in zip(covered, covered[1:]):
        gaps.append(
            {
                "gap_after": _core.period_add(period, end, -1),
                "gap_before": start,
                "missing_from": end,
                "missing_to": start,
            }
        )
    return gaps


def get_data_range(data_dir: str | os.PathLike[str]) -> dict | None:
    """``{"start": first covered candle, "end": last covered candle}``, or None if nothing is."""
    period, covered = _covered(data_dir)
    if not covered:
        return None
    return {"start": covered[0][0], "end": _core.period_add(period, covered[-1][1], -1)}


def find_missing_ranges(
    data_dir: str | os.PathLike[str],
    target_start: int,
    target_end: int,
) -> list[dict]:
    """Candle ranges in ``[target_start, target_end]`` not covered: ``{"start", "end"}`` inclusive."""
    period, covered = _covered(data_dir)
    first = _core.period_floor(period, int(target_start))
    if first < target_start:
        first = _core.period_add(period, first, 1)
    end = _core.period_add(period, _core.period_floor(period, int(target_end)), 1)
    return [
        {"start": a, "end": _core.period_add(period, b, -1)}
        for a, b in _core.ranges_missing(covered, first, end)
    ]
