"""Exceptions raised by candlecache, catchable by name.

``Timeout`` has the name and meaning of ``diskcache.Timeout``: a lock was not acquired in time.
"""

from __future__ import annotations

__all__ = [
    "CandlecacheError",
    "Timeout",
    "CorruptionError",
    "CallbackError",
    "SigningKeyError",
    "StoreRefusedError",
    "ObjectStoreError",
]


class CandlecacheError(Exception):
    """Base class of every error candlecache raises itself."""


class Timeout(CandlecacheError):
    """A folder lock was still held by another process when ``lock_timeout`` ran out."""


class CorruptionError(CandlecacheError):
    """A cache file cannot be read (truncated, overwritten, not Parquet).

    Nothing is deleted. ``candlecache.repair_cache(base_dir, symbol, period)`` moves such files
    aside (``*.parquet.corrupt``) and forgets their coverage, so the next call fetches the range
    again.
    """


class CallbackError(CandlecacheError, ValueError):
    """The fetch callback returned data that breaks its contract.

    For example rows earlier than the ``since`` it was asked for, times that are not the open
    time of a candle of the period, or a table without a ``time`` column. A callback that
    returns an unsupported *type* raises ``TypeError`` instead.
    """


class SigningKeyError(CandlecacheError, ValueError):
    """A disk cache directory requires signed pickles and no usable signing key was given.

    A directory opened once with a signing key (``Cache(directory, signing_key=...)`` or the
    ``CANDLECACHE_SIGNING_KEY`` environment variable) keeps the setting ``signed_pickles``;
    opening it again without a key raises this error rather than reading or writing unsigned
    pickles. Also raised for an empty key or one that is neither ``str`` nor ``bytes``, and
    for an attempt to turn ``signed_pickles`` off.
    """


class StoreRefusedError(CandlecacheError):
    """An object store does not honour create-if-absent writes, so candlecache will not use it.

    The shared cache on object storage commits without locks: each commit is a new object
    written only if no object of that name exists (``If-None-Match: *`` on S3). A store that
    ignores the condition would let two machines overwrite each other's commits and lose
    candles. Once per process and store, before anything is written, candlecache creates a
    probe object twice and requires the second create to fail; this error says it did not.
    AWS S3, GCS, Azure, MinIO, Cloudflare R2 and local folders (``file://``) all pass.
    """


class ObjectStoreError(CandlecacheError, OSError):
    """A request to an object store failed after its retries (a 5xx, a 429 that did not
    clear, a connection refused, an answer that is not what the protocol says).

    Nothing acknowledged is lost: commits are all-or-nothing, and a failed call leaves at
    most an unreferenced object, cleaned up later. A missing object raises
    ``FileNotFoundError`` and a credential problem ``PermissionError`` instead.
    """
