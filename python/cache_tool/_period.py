"""The period of a data folder, recovered from its name as the original tool names it."""

from __future__ import annotations

import os
from pathlib import Path

from candlecache import PERIODS, _core


def period_of(data_dir: str | os.PathLike[str], period_ms: int | None = None) -> str:
    """``BTC_USDT_1m`` -> ``1m``; falls back to the period whose length is ``period_ms``."""
    name = Path(data_dir).name
    suffix = name.rsplit("_", 1)[-1] if "_" in name else ""
    if suffix in PERIODS:
        return suffix
    if period_ms is not None:
        for p in PERIODS:
            if _core.period_ms(p) == period_ms:
                return p
    raise ValueError(f"cannot tell the period of folder {name!r}; expected a name ending in _<period>")
