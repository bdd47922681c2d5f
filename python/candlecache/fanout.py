"""Fanout cache: shards keys and values over several `Cache` shards.

Adapted from python-diskcache 5.6.3 ``diskcache/fanout.py``
(Copyright 2016-2023 Grant Jenks, Apache License 2.0).
The public API and semantics are unchanged; the shards are candlecache
``Cache`` instances (file-based engine, no SQLite) in subdirectories ``000``,
``001``, ... of the fanout directory, and a key lives in shard
``disk.hash(key) % shards`` as in diskcache.

>>> from candlecache import FanoutCache
>>> cache = FanoutCache(shards=4)
>>> cache.set('key', 'value')
True
>>> cache['key']
'value'
"""

from __future__ import annotations

import contextlib as cl
import functools
import itertools as it
import operator
import os
import os.path as op
import tempfile
import time
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator, ParamSpec, TypeVar

from . import _core
from .core import DEFAULT_SETTINGS, ENOVAL, Cache, Disk
from .exceptions import Timeout
from .persistent import Deque, Index

__all__ = ['FanoutCache']

_P = ParamSpec('_P')
_R = TypeVar('_R')


class FanoutCache:
    """Cache that shards keys and values."""

    def __init__(
        self,
        directory: os.PathLike[str] | str | None = None,
        shards: int = 8,
        timeout: float = 0.010,
        disk: type[Disk] = Disk,
        *,
        signing_key: str | bytes | None = None,
        **settings: Any,
    ) -> None:
        """Initialize cache instance.

        :param str directory: cache directory
        :param int shards: number of shards to distribute writes
        :param float timeout: lock timeout of each shard, in seconds
        :param disk: `Disk` type or subclass for serialization
        :param signing_key: secret to sign and check pickles with (see `Cache`); also used
            by the caches, deques and indexes this cache opens
        :param settings: any of `DEFAULT_SETTINGS`

        """
        if directory is None:
            directory = tempfile.mkdtemp(prefix='diskcache-')
        directory = str(directory)
        directory = op.expanduser(directory)
        directory = op.expandvars(directory)

        default_size_limit = DEFAULT_SETTINGS['size_limit']
        size_limit = settings.pop('size_limit', default_size_limit) / shards

        self._count = shards
        self._directory = directory
        self._disk = disk
        self._signing_key = signing_key  # not pickled with the cache (see Cache)
        self._shards = tuple(
            Cache(
                directory=op.join(directory, '%03d' % num),
                timeout=timeout,
                disk=disk,
                signing_key=signing_key,
                size_limit=size_limit,
                **settings,
            )
            for num in range(shards)
        )
        disk0 = self._shards[0].disk
        # The default Disk's hash of a str/bytes/int/float key is worked out in the engine.
        self._hash = _core.KeyHasher(disk0.hash) if type(disk0) is Disk else disk0.hash
        # One hot tier of frames for all shards, so a frame the size of the budget fits.
        shared = self._shards[0].disk._hot_frames()
        for shard in self._shards[1:]:
            shard.disk._frames = shared
        self._caches: dict = {}
        self._deques: dict = {}
        self._indexes: dict = {}

    @property
    def directory(self) -> str:
        """Cache directory."""
        return self._directory

    def __getattr__(self, name: str) -> Any:
        safe_names = {'timeout', 'disk'}
        valid_name = name in DEFAULT_SETTINGS or name in safe_names
        assert valid_name, 'cannot access {} in cache shard'.format(name)
        return getattr(self._shards[0], name)

    @cl.contextmanager
    def transact(self, retry: bool = True) -> Iterator[None]:
        """Context manager to perform a transaction by locking the cache.

        While the cache is locked, no other write operation is permitted.
        Transactions should therefore be as short as possible. Read and write
        operations performed in a transaction are atomic. Read operations may
        occur concurrent to a transaction.

        Transactions may be nested and may not be shared between threads.

        Blocks until transactions are held on all cache shards by retrying as
        necessary.

        >>> cache = FanoutCache()
        >>> with cache.transact():  # Atomically increment two keys.
        ...     _ = cache.incr('total', 123.4)
        ...     _ = cache.incr('count', 1)
        >>> with cache.transact():  # Atomically calculate average.
        ...     average = cache['total'] / cache['count']
        >>> average
        123.4

        :return: context manager for use in `with` statement

        """
        assert retry, 'retry must be True in FanoutCache'
        with cl.ExitStack() as stack:
            for shard in self._shards:
                shard_transaction = shard.transact(retry=True)
                stack.enter_context(shard_transaction)
            yield

    def set(
        self,
        key: Any,
        value: Any,
        expire: float | None = None,
        read: bool = False,
        tag: str | None = None,
        retry: bool = False,
    ) -> bool:
        """Set `key` and `value` item in cache.

        When `read` is `True`, `value` should be a file-like object opened
        for reading in binary mode.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param value: value for item
        :param float expire: seconds until the key expires
            (default None, no expiry)
        :param bool read: read value as raw bytes from file (default False)
        :param str tag: text to associate with key (default None)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: True if item was set

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.set(key, value, expire, read, tag, retry)
        except Timeout:
            return False

    def __setitem__(self, key: Any, value: Any) -> None:
        """Set `key` and `value` item in cache.

        Calls :func:`FanoutCache.set` internally with `retry` set to `True`.

        :param key: key for item
        :param value: value for item

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        shard[key] = value

    def touch(self, key: Any, expire: float | None = None, retry: bool = False) -> bool:
        """Touch `key` in cache and update `expire` time.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param float expire: seconds until the key expires
            (default None, no expiry)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: True if key was touched

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.touch(key, expire, retry)
        except Timeout:
            return False

    def add(
        self,
        key: Any,
        value: Any,
        expire: float | None = None,
        read: bool = False,
        tag: str | None = None,
        retry: bool = False,
    ) -> bool:
        """Add `key` and `value` item to cache.

        Similar to `set`, but only add to cache if key not present.

        This operation is atomic. Only one concurrent add operation for given
        key from separate threads or processes will succeed.

        When `read` is `True`, `value` should be a file-like object opened
        for reading in binary mode.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param value: value for item
        :param float expire: seconds until the key expires
            (default None, no expiry)
        :param bool read: read value as bytes from file (default False)
        :param str tag: text to associate with key (default None)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: True if item was added

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.add(key, value, expire, read, tag, retry)
        except Timeout:
            return False

    def incr(self, key: Any, delta: int = 1, default: int | None = 0, retry: bool = False) -> int | None:
        """Increment value by delta for item with key.

        If key is missing and default is None then raise KeyError. Else if key
        is missing and default is not None then use default for value.

        Operation is atomic. All concurrent increment operations will be
        counted individually.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param int delta: amount to increment (default 1)
        :param int default: value if key is missing (default 0)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: new value for item on success else None
        :raises KeyError: if key is not found and default is None

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.incr(key, delta, default, retry)
        except Timeout:
            return None

    def decr(self, key: Any, delta: int = 1, default: int | None = 0, retry: bool = False) -> int | None:
        """Decrement value by delta for item with key.

        If key is missing and default is None then raise KeyError. Else if key
        is missing and default is not None then use default for value.

        Operation is atomic. All concurrent decrement operations will be
        counted individually.

        Unlike Memcached, negative values are supported. Value may be
        decremented below zero.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param int delta: amount to decrement (default 1)
        :param int default: value if key is missing (default 0)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: new value for item on success else None
        :raises KeyError: if key is not found and default is None

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.decr(key, delta, default, retry)
        except Timeout:
            return None

    def get(
        self,
        key: Any,
        default: Any = None,
        read: bool = False,
        expire_time: bool = False,
        tag: bool = False,
        retry: bool = False,
    ) -> Any:
        """Retrieve value from cache. If `key` is missing, return `default`.

        If a lock timeout occurs then returns `default` unless `retry` is set
        to `True` (default `False`).

        :param key: key for item
        :param default: return value if key is missing (default None)
        :param bool read: if True, return file handle to value
            (default False)
        :param float expire_time: if True, return expire_time in tuple
            (default False)
        :param tag: if True, return tag in tuple (default False)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: value for item if key is found else default

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.get(key, default, read, expire_time, tag, retry)
        except Timeout:
            return default

    def __getitem__(self, key: Any) -> Any:
        """Return corresponding value for `key` from cache.

        Calls :func:`FanoutCache.get` internally with `retry` set to `True`.

        :param key: key for item
        :return: value for item
        :raises KeyError: if key is not found

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        return shard[key]

    def read(self, key: Any) -> BinaryIO:
        """Return file handle corresponding to `key` from cache.

        :param key: key for item
        :return: file open for reading in binary mode
        :raises KeyError: if key is not found

        """
        handle = self.get(key, default=ENOVAL, read=True, retry=True)
        if handle is ENOVAL:
            raise KeyError(key)
        return handle

    def __contains__(self, key: Any) -> bool:
        """Return `True` if `key` matching item is found in cache.

        :param key: key for item
        :return: True if key is found

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        return key in shard

    def pop(
        self,
        key: Any,
        default: Any = None,
        expire_time: bool = False,
        tag: bool = False,
        retry: bool = False,
    ) -> Any:
        """Remove corresponding item for `key` from cache and return value.

        If `key` is missing, return `default`.

        Operation is atomic. Concurrent operations will be serialized.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param default: return value if key is missing (default None)
        :param float expire_time: if True, return expire_time in tuple
            (default False)
        :param tag: if True, return tag in tuple (default False)
        :param bool retry: retry if lock timeout occurs (default False)
        :return: value for item if key is found else default

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.pop(key, default, expire_time, tag, retry)
        except Timeout:
            return default

    def delete(self, key: Any, retry: bool = False) -> bool:
        """Delete corresponding item for `key` from cache.

        Missing keys are ignored.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param key: key for item
        :param bool retry: retry if lock timeout occurs (default False)
        :return: True if item was deleted

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        try:
            return shard.delete(key, retry)
        except Timeout:
            return False

    def __delitem__(self, key: Any) -> None:
        """Delete corresponding item for `key` from cache.

        Calls :func:`FanoutCache.delete` internally with `retry` set to `True`.

        :param key: key for item
        :raises KeyError: if key is not found

        """
        index = self._hash(key) % self._count
        shard = self._shards[index]
        del shard[key]

    def check(self, fix: bool = False, retry: bool = False) -> list:
        """Check database and file system consistency of every shard.

        Intended for use in testing and post-mortem error analysis.

        :param bool fix: correct inconsistencies
        :param bool retry: retry if lock timeout occurs (default False)
        :return: list of warnings
        :raises Timeout: if lock timeout occurs

        """
        warnings = (shard.check(fix, retry) for shard in self._shards)
        return functools.reduce(operator.iadd, warnings, [])

    def expire(self, retry: bool = False) -> int:
        """Remove expired items from cache.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param bool retry: retry if lock timeout occurs (default False)
        :return: count of items removed

        """
        return self._remove('expire', args=(time.time(),), retry=retry)

    def create_tag_index(self) -> None:
        """Create tag index on every shard.

        Better to initialize cache with `tag_index=True` than use this.

        :raises Timeout: if lock timeout occurs

        """
        for shard in self._shards:
            shard.create_tag_index()

    def drop_tag_index(self) -> None:
        """Drop tag index on every shard.

        :raises Timeout: if lock timeout occurs

        """
        for shard in self._shards:
            shard.drop_tag_index()

    def evict(self, tag: str, retry: bool = False) -> int:
        """Remove items with matching `tag` from cache.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param str tag: tag identifying items
        :param bool retry: retry if lock timeout occurs (default False)
        :return: count of items removed

        """
        return self._remove('evict', args=(tag,), retry=retry)

    def cull(self, retry: bool = False) -> int:
        """Cull items from cache until volume is less than size limit.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param bool retry: retry if lock timeout occurs (default False)
        :return: count of items removed

        """
        return self._remove('cull', retry=retry)

    def clear(self, retry: bool = False) -> int:
        """Remove all items from cache.

        If a lock timeout occurs then fails silently unless `retry` is set to
        `True` (default `False`).

        :param bool retry: retry if lock timeout occurs (default False)
        :return: count of items removed

        """
        return self._remove('clear', retry=retry)

    def _remove(self, name, args=(), retry=False):
        total = 0
        for shard in self._shards:
            method = getattr(shard, name)
            while True:
                try:
                    count = method(*args, retry=retry)
                    total += count
                except Timeout as timeout:
                    total += timeout.args[0]
                else:
                    break
        return total

    def stats(self, enable: bool = True, reset: bool = False) -> tuple[int, int]:
        """Return cache statistics hits and misses.

        :param bool enable: enable collecting statistics (default True)
        :param bool reset: reset hits and misses to 0 (default False)
        :return: (hits, misses)

        """
        results = [shard.stats(enable, reset) for shard in self._shards]
        total_hits = sum(hits for hits, _ in results)
        total_misses = sum(misses for _, misses in results)
        return total_hits, total_misses

    def volume(self) -> int:
        """Return estimated total size of cache on disk.

        :return: size in bytes

        """
        return sum(shard.volume() for shard in self._shards)

    def close(self) -> None:
        """Close every shard."""
        for shard in self._shards:
            shard.close()
        self._caches.clear()
        self._deques.clear()
        self._indexes.clear()

    def __enter__(self) -> 'FanoutCache':
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    def __getstate__(self):
        return (self._directory, self._count, self.timeout, type(self.disk))

    def __setstate__(self, state) -> None:
        self.__init__(*state)  # type: ignore[misc]  # as diskcache: a subclass re-inits itself

    def __iter__(self) -> Iterator[Any]:
        """Iterate keys in cache including expired items."""
        iterators = (iter(shard) for shard in self._shards)
        return it.chain.from_iterable(iterators)

    def __reversed__(self) -> Iterator[Any]:
        """Reverse iterate keys in cache including expired items."""
        iterators = (reversed(shard) for shard in reversed(self._shards))
        return it.chain.from_iterable(iterators)

    def __len__(self) -> int:
        """Count of items in cache including expired items."""
        return sum(len(shard) for shard in self._shards)

    def reset(self, key: str, value: Any = ENOVAL) -> Any:
        """Reset `key` and `value` item from Settings table of every shard.

        If `value` is not given, it is reloaded from the Settings
        table. Otherwise, the Settings table is updated.

        Settings attributes on cache objects are lazy-loaded and
        read-only. Use `reset` to update the value.

        :param str key: Settings key for item
        :param value: value for item (optional)
        :return: updated value for item

        """
        for shard in self._shards:
            while True:
                try:
                    result = shard.reset(key, value)
                except Timeout:
                    pass
                else:
                    break
        return result

    def _frame_path(self, key: Any) -> str | None:
        return self._shards[self._hash(key) % self._count]._frame_path(key)

    def cache(self, name: str, timeout: float = 60, disk: type[Disk] | None = None, **settings: Any) -> Cache:
        """Return Cache with given `name` in subdirectory.

        If disk is none (default), uses the fanout cache disk.

        >>> fanout_cache = FanoutCache()
        >>> cache = fanout_cache.cache('test')
        >>> cache.set('abc', 123)
        True
        >>> cache.get('abc')
        123
        >>> len(cache)
        1
        >>> cache.delete('abc')
        True

        :param str name: subdirectory name for Cache
        :param float timeout: lock timeout, in seconds
        :param disk: Disk type or subclass for serialization
        :param settings: any of DEFAULT_SETTINGS
        :return: Cache with given name

        """
        _caches = self._caches

        try:
            return _caches[name]
        except KeyError:
            parts = name.split('/')
            directory = op.join(self._directory, 'cache', *parts)
            # diskcache 5.6.3 passes ``Disk`` here whenever ``disk`` is given,
            # ignoring the caller's type (upstream bug); use the given type.
            settings.setdefault('signing_key', self._signing_key)
            temp = Cache(
                directory=directory,
                timeout=timeout,
                disk=self._disk if disk is None else disk,
                **settings,
            )
            _caches[name] = temp
            return temp

    def deque(self, name: str, maxlen: float | None = None) -> Deque:
        """Return Deque with given `name` in subdirectory.

        >>> cache = FanoutCache()
        >>> deque = cache.deque('test')
        >>> deque.extend('abc')
        >>> deque.popleft()
        'a'
        >>> deque.pop()
        'c'
        >>> len(deque)
        1

        :param str name: subdirectory name for Deque
        :param maxlen: max length (default None, no max)
        :return: Deque with given name

        """
        _deques = self._deques

        try:
            return _deques[name]
        except KeyError:
            parts = name.split('/')
            directory = op.join(self._directory, 'deque', *parts)
            cache = Cache(
                directory=directory,
                disk=self._disk,
                signing_key=self._signing_key,
                eviction_policy='none',
            )
            deque = Deque.fromcache(cache, maxlen=maxlen)
            _deques[name] = deque
            return deque

    def index(self, name: str) -> Index:
        """Return Index with given `name` in subdirectory.

        >>> cache = FanoutCache()
        >>> index = cache.index('test')
        >>> index['abc'] = 123
        >>> index['def'] = 456
        >>> index['ghi'] = 789
        >>> index.popitem()
        ('ghi', 789)
        >>> del index['abc']
        >>> len(index)
        1
        >>> index['def']
        456

        :param str name: subdirectory name for Index
        :return: Index with given name

        """
        _indexes = self._indexes

        try:
            return _indexes[name]
        except KeyError:
            parts = name.split('/')
            directory = op.join(self._directory, 'index', *parts)
            cache = Cache(
                directory=directory,
                disk=self._disk,
                signing_key=self._signing_key,
                eviction_policy='none',
            )
            index = Index.fromcache(cache)
            _indexes[name] = index
            return index

    if TYPE_CHECKING:
        # Assigned from Cache.memoize below the class; declared here for type checkers.
        def memoize(
            self,
            name: str | None = None,
            typed: bool = False,
            expire: float | None = None,
            tag: str | None = None,
            ignore: Container[int | str] = (),
        ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...


# Cache.memoize only calls the public get/set methods, so it works unchanged
# on a FanoutCache (as in diskcache).
FanoutCache.memoize = Cache.memoize  # type: ignore[method-assign, assignment]
