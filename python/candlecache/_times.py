"""Times as users write them, turned into the epoch milliseconds the cache works in.

Accepted: epoch ms as ``int`` or ``float`` (a fraction of a millisecond is dropped),
``datetime`` (naive means UTC), ``date`` (midnight UTC), ISO-8601 strings
(``"2024-01-01"``, ``"2024-01-01T12:00:00Z"``, ``"2024-01-01 12:00+08:00"``),
``numpy.datetime64`` and ``pandas.Timestamp`` (neither is imported). Numbers that are far more
plausible as seconds, microseconds or nanoseconds than as milliseconds are refused with the
millisecond value meant, rather than read as 1970 or as the year 50,000.
"""

from __future__ import annotations

import math
import operator
from datetime import date, datetime, timedelta, timezone

__all__ = ["to_ms", "describe_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)

# Seconds since the epoch for 1998-07 .. 2128: as milliseconds these would be January and
# February 1970, when nothing traded.
_SECONDS = (900_000_000, 5_000_000_000)
# 10**14 ms is the year 5138: anything from there on is a finer unit.
_TOO_FINE = 10**14


def describe_ms(ms: int) -> str:
    """``1704067200000`` -> ``'2024-01-01T00:00:00Z'`` (or the bare number outside datetime's range)."""
    try:
        text = (_EPOCH + ms * _MS).isoformat(timespec="milliseconds")
    except OverflowError:
        return str(ms)
    return text.replace("+00:00", "Z").replace(".000Z", "Z")


def _from_number(name: str, ms: int) -> int:
    if _SECONDS[0] <= ms < _SECONDS[1]:
        meant = ms * 1000
        raise ValueError(
            f"{name}={ms} looks like seconds ({describe_ms(meant)}); times are epoch milliseconds: "
            f"pass {meant}, or a datetime or an ISO string such as '{describe_ms(meant)}'"
        )
    if abs(ms) >= _TOO_FINE:
        unit, divisor = ("microseconds", 1000) if abs(ms) < _TOO_FINE * 1000 else ("nanoseconds", 10**6)
        meant = ms // divisor
        raise ValueError(
            f"{name}={ms} looks like {unit} ({describe_ms(meant)}); times are epoch milliseconds: "
            f"pass {meant}"
        )
    return ms


def _from_datetime(name: str, value: datetime) -> int:
    if value != value:  # pandas.NaT is a datetime that equals nothing
        raise ValueError(f"{name} is NaT (not a time)")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=timezone.utc)  # naive datetimes are UTC
    # Exact integer arithmetic (a float timestamp loses the millisecond for some values).
    return (value - _EPOCH) // _MS


def to_ms(name: str, value: object) -> int:
    """``value`` as epoch milliseconds, or a ``TypeError``/``ValueError`` naming ``name``.

    >>> to_ms("start_time", "2024-01-01")
    1704067200000
    >>> to_ms("start_time", 1704067200000.0)
    1704067200000
    """
    if type(value) is int:  # the common case first: this runs twice a call
        return _from_number(name, value)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a time (epoch ms, datetime, date or ISO string), got bool")
    if isinstance(value, datetime):  # pandas.Timestamp is a datetime
        return _from_datetime(name, value)
    if isinstance(value, date):
        return _from_datetime(name, datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            if text.lstrip("-").isdigit():
                return _from_number(name, int(text))
            raise ValueError(
                f"{name}={value!r} is not an ISO-8601 time; pass e.g. '2024-01-01', "
                "'2024-01-01T12:30:00Z' or epoch milliseconds"
            ) from None
        return _from_datetime(name, parsed)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite time, got {value}")
        return _from_number(name, math.floor(value))
    cls = type(value)
    if cls.__name__ == "datetime64" and (cls.__module__ or "").startswith("numpy"):
        if value != value:  # NaT
            raise ValueError(f"{name} is NaT (not a time)")
        return int(value.astype("datetime64[ms]").astype("int64"))  # type: ignore[attr-defined]
    try:
        ms = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} must be a time: epoch ms (int), datetime, date, ISO-8601 str, "
            f"numpy.datetime64 or pandas.Timestamp; got {cls.__name__}"
        ) from None
    return _from_number(name, ms)
