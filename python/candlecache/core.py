"""Core disk and file backed cache API: ``Cache``, ``Disk``, ``JSONDisk``.

Adapted from python-diskcache 5.6.3 (Grant Jenks, Apache-2.0). The public API and the
``Disk`` serialization are diskcache's; the storage underneath is candlecache's file-based
engine (``candlecache._core.KvStore``, see ``src/kv``) instead of SQLite.
"""

from __future__ import annotations

import codecs
import contextlib as cl
import errno
import functools as ft
import hashlib
import hmac
import io
import json
import os
import os.path as op
import pickle
import pickletools
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Container, Iterator
from typing import Any, BinaryIO, ParamSpec, Self, TypeVar

from . import _core, frames
from ._fsync import fsync_dir, fsync_parents
from .exceptions import CandlecacheError, CorruptionError, SigningKeyError, Timeout  # Timeout: diskcache's

_P = ParamSpec('_P')
_R = TypeVar('_R')


class _ValueFileGone(FileNotFoundError):
    """A value file vanished between being written and its row being stored."""


class _BadSignature(CorruptionError):
    """A pickled key or value whose signature is missing or wrong (or a pickle where the Disk
    reads none): it is not unpickled, and reads as absent."""


def full_name(func: Callable[..., Any]) -> str:
    """Return full name of `func` by adding the module and function name."""
    return func.__module__ + '.' + func.__qualname__


class Constant(tuple):
    """Pretty display of immutable constant."""

    def __new__(cls, name: str) -> Constant:
        return tuple.__new__(cls, (name,))

    def __repr__(self) -> str:
        return '%s' % self[0]


DBNAME = 'cache.db'
ENOVAL = Constant('ENOVAL')
UNKNOWN = Constant('UNKNOWN')

MODE_NONE = 0
MODE_RAW = 1
MODE_BINARY = 2
MODE_TEXT = 3
MODE_PICKLE = 4
# Not diskcache's: a polars/pandas DataFrame or a pyarrow Table stored as an Arrow IPC file
# (see frames.py).
MODE_FRAME = 5

DEFAULT_SETTINGS: dict[str, Any] = {
    'statistics': 0,  # False
    'tag_index': 0,  # False
    'eviction_policy': 'least-recently-stored',
    'size_limit': 2**30,  # 1gb
    'cull_limit': 10,
    'sqlite_auto_vacuum': 1,  # FULL
    'sqlite_cache_size': 2**13,  # 8,192 pages
    'sqlite_journal_mode': 'wal',
    'sqlite_mmap_size': 2**26,  # 64mb
    'sqlite_synchronous': 1,  # NORMAL
    'disk_min_file_size': 2**15,  # 32kb
    'disk_pickle_protocol': pickle.HIGHEST_PROTOCOL,
    # Not diskcache's: pickles are signed and checked before unpickling (see Cache's
    # signing_key). Only this flag is kept in the directory, never the key.
    'signed_pickles': 0,  # False
    # Not diskcache's: frames stored as Arrow files (frames.py).
    'frame_compression': 'none',  # or 'lz4', 'zstd' (smaller files, slower sets and gets)
    'frame_cache_size': 2**28,  # 256mb of recently read frames kept per process
    # Not diskcache's: every acknowledged write is on stable storage before it returns.
    'durable': 0,  # False
}

METADATA: dict[str, int] = {
    'count': 0,
    'size': 0,
    'hits': 0,
    'misses': 0,
}

EVICTION_POLICY: dict[str, dict[str, str | None]] = {
    'none': {
        'init': None,
        'get': None,
        'cull': None,
    },
    'least-recently-stored': {
        'init': (
            'CREATE INDEX IF NOT EXISTS Cache_store_time ON'
            ' Cache (store_time)'
        ),
        'get': None,
        'cull': 'SELECT {fields} FROM Cache ORDER BY store_time LIMIT ?',
    },
    'least-recently-used': {
        'init': (
            'CREATE INDEX IF NOT EXISTS Cache_access_time ON'
            ' Cache (access_time)'
        ),
        'get': 'access_time = {now}',
        'cull': 'SELECT {fields} FROM Cache ORDER BY access_time LIMIT ?',
    },
    'least-frequently-used': {
        'init': (
            'CREATE INDEX IF NOT EXISTS Cache_access_count ON'
            ' Cache (access_count)'
        ),
        'get': 'access_count = access_count + 1',
        'cull': 'SELECT {fields} FROM Cache ORDER BY access_count LIMIT ?',
    },
}


# Signed pickles (Cache's ``signing_key``): the pickle's bytes, then the 32-byte
# HMAC-SHA256 of those bytes, then ``_SIG_MARK``. The HMAC key is derived from the secret
# (HMAC-SHA256(secret, _SIG_CONTEXT)), so the secret itself is used for nothing else.
SIGNING_KEY_ENV = 'CANDLECACHE_SIGNING_KEY'
_SIG_MARK = b'ccs1'
_SIG_LEN = hashlib.sha256().digest_size + len(_SIG_MARK)
_SIG_CONTEXT = b'candlecache signed pickles v1'
_UNSIGNED = 'no signature'
_WRONG = 'a wrong signature'
_NOT_READ = 'not read'


def _signing_subkey(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode('utf-8')
    elif isinstance(secret, (bytes, bytearray, memoryview)):
        secret = bytes(secret)
    else:
        raise SigningKeyError('signing_key must be str or bytes, not %s' % type(secret).__name__)
    if not secret:
        raise SigningKeyError('signing_key is empty')
    return hmac.new(secret, _SIG_CONTEXT, hashlib.sha256).digest()


def _needs_key(directory: str) -> str:
    return (
        '%s requires signed pickles (its setting signed_pickles is on): open it with '
        'signing_key=<the secret its writers use>, or set the environment variable %s. '
        'candlecache never reads or writes unsigned pickles there.' % (directory, SIGNING_KEY_ENV)
    )


def _signing_of(directory, signing_key, requested, stored):
    """The secret a cache opened with these arguments signs with (None: it does not sign).

    A key turns signing on, whatever the directory says: anyone who can write the directory
    can change its settings, so the flag kept there only makes openers without a key fail.
    """
    explicit = signing_key is not None
    if not explicit:
        signing_key = os.environ.get(SIGNING_KEY_ENV) or None
    if signing_key is not None:
        _signing_subkey(signing_key)  # a bad key fails here
    if requested is not None and not requested and signing_key is not None:
        if stored:
            raise SigningKeyError(
                '%s requires signed pickles: signed_pickles cannot be turned off '
                '(use a new directory for unsigned pickles)' % directory
            )
        if explicit:
            raise SigningKeyError('signed_pickles=False contradicts signing_key: give one or the other')
        return None  # the environment's key, declined for this unsigned directory
    if signing_key is None and (stored or requested):
        raise SigningKeyError(_needs_key(directory))
    return signing_key


def _pickle_problem(disk, data):
    """None when `disk` may unpickle `data` (a pickled key or value as stored), else
    ``(kind, words)``. Never unpickles."""
    if not getattr(disk, '_reads_pickles', True):
        return _NOT_READ, 'is a pickle, and %s reads none' % type(disk).__name__
    key = getattr(disk, '_signing_key', None)
    if key is None:
        return None
    if type(data) is not bytes:  # pylint: disable=unidiomatic-typecheck
        data = bytes(data)
    if len(data) < _SIG_LEN or not data.endswith(_SIG_MARK):
        return _UNSIGNED, 'has no signature (written without the signing key)'
    body = memoryview(data)[:-_SIG_LEN]
    tag = data[-_SIG_LEN:-len(_SIG_MARK)]
    if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), tag):
        return _WRONG, 'has a wrong signature (changed since it was written, or written with another key)'
    return None


class Disk:
    """Cache key and value serialization for SQLite database and files.

    With a signing key (see :class:`Cache`), every pickle it writes (keys that are not
    ``bytes``/``str``/``int``/``float``, and values that are pickled) carries an HMAC-SHA256
    signature, and every pickle it reads is checked before it is unpickled: one whose
    signature is missing or wrong reads as absent. ``signed_pickles`` tells whether it signs.
    """

    #: True when pickles are signed and checked (a signing key was given); set by Cache.
    signed_pickles: bool = False
    _signing_key: bytes | None = None
    #: False in a Disk that unpickles nothing it reads (JSONDisk).
    _reads_pickles: bool = True

    def __init__(self, directory: str, min_file_size: int = 0, pickle_protocol: int = 0) -> None:
        """Initialize disk instance.

        :param str directory: directory path
        :param int min_file_size: minimum size for file use
        :param int pickle_protocol: pickle protocol for serialization

        """
        self._directory = directory
        self.min_file_size = min_file_size
        self.pickle_protocol = pickle_protocol
        self.frame_compression = DEFAULT_SETTINGS['frame_compression']
        self.durable = False
        self._frames = frames.HotFrames(DEFAULT_SETTINGS['frame_cache_size'])

    def _set_signing_key(self, secret: str | bytes | None) -> None:
        """Sign and check pickles with `secret` (None: do not)."""
        self._signing_key = None if secret is None else _signing_subkey(secret)
        self.signed_pickles = secret is not None

    def _sign(self, data: bytes) -> bytes:
        key = self._signing_key
        if key is None:
            return data
        return data + hmac.new(key, data, hashlib.sha256).digest() + _SIG_MARK

    def _verified(self, data: Any, what: str) -> Any:
        """The pickle in `data` once its signature checks; raises _BadSignature otherwise."""
        problem = _pickle_problem(self, data)
        if problem is not None:
            raise _BadSignature(
                '%s in %s %s: it was not unpickled, and reads as absent; '
                'Cache.check(fix=True) removes it' % (what, self._directory, problem[1])
            )
        if self._signing_key is None:
            return data
        return memoryview(data)[:-_SIG_LEN]

    def _hot_frames(self) -> frames.HotFrames:
        # A subclass's __init__ may not call this one's.
        hot = self.__dict__.get('_frames')
        if hot is None:
            hot = self._frames = frames.HotFrames(DEFAULT_SETTINGS['frame_cache_size'])
        return hot

    def hash(self, key: Any) -> int:
        """Compute portable hash for `key`.

        :param key: key to hash
        :return: hash value

        """
        mask = 0xFFFFFFFF
        disk_key, _ = self.put(key)
        type_disk_key = type(disk_key)

        if type_disk_key in (bytes, memoryview, bytearray):
            return zlib.adler32(disk_key) & mask
        elif type_disk_key is str:
            return zlib.adler32(disk_key.encode('utf-8')) & mask  # noqa
        elif type_disk_key is int:
            return disk_key % mask
        else:
            assert type_disk_key is float
            return zlib.adler32(struct.pack('!d', disk_key)) & mask

    def put(self, key: Any) -> tuple[Any, bool]:
        """Convert `key` to fields key and raw for Cache table.

        :param key: key to convert
        :return: (database key, raw boolean) pair

        """
        # pylint: disable=unidiomatic-typecheck
        type_key = type(key)

        if type_key is bytes:
            return bytes(key), True
        elif (
            (type_key is str)
            or (
                type_key is int
                and -9223372036854775808 <= key <= 9223372036854775807
            )
            or (type_key is float)
        ):
            return key, True
        else:
            data = pickle.dumps(key, protocol=self.pickle_protocol)
            result = pickletools.optimize(data)
            return self._sign(result), False

    def get(self, key: Any, raw: bool) -> Any:
        """Convert fields `key` and `raw` from Cache table to key.

        :param key: database key to convert
        :param bool raw: flag indicating raw database storage
        :return: corresponding Python key

        """
        # pylint: disable=unidiomatic-typecheck
        if raw:
            return bytes(key) if type(key) in (memoryview, bytearray) else key
        else:
            return pickle.load(io.BytesIO(self._verified(key, 'a pickled key')))

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        """Convert `value` to fields size, mode, filename, and value for Cache
        table.

        :param value: value to convert
        :param bool read: True when value is file-like object
        :param key: key for item (default UNKNOWN)
        :return: (size, mode, filename, value) tuple for Cache table

        """
        # pylint: disable=unidiomatic-typecheck
        type_value = type(value)
        min_file_size = self.min_file_size

        if (
            (type_value is str and len(value) < min_file_size)
            or (
                type_value is int
                and -9223372036854775808 <= value <= 9223372036854775807
            )
            or (type_value is float)
        ):
            return 0, MODE_RAW, None, value
        elif type_value is bytes:
            if len(value) < min_file_size:
                return 0, MODE_RAW, None, value
            else:
                filename, full_path = self._checked_filename(key, value, value)
                self._write(full_path, (value,), 'xb')
                return len(value), MODE_BINARY, filename, None
        elif type_value is str:
            data = value.encode('UTF-8')
            filename, full_path = self._checked_filename(key, value, data)
            self._write(full_path, (data,), 'xb')
            size = op.getsize(full_path)
            return size, MODE_TEXT, filename, None
        elif read:
            reader = ft.partial(value.read, 2**22)
            filename, full_path = self.filename(key, value)
            iterator = iter(reader, b'')
            size = self._write(full_path, iterator, 'xb')
            return size, MODE_BINARY, filename, None
        else:
            kind = frames.frame_kind(value)
            if kind is not None:
                stored = self._store_frame(value, kind, key)
                if stored is not None:
                    return stored
            result = self._sign(pickle.dumps(value, protocol=self.pickle_protocol))

            if len(result) < min_file_size:
                return 0, MODE_PICKLE, None, result
            else:
                filename, full_path = self._checked_filename(key, value, result)
                self._write(full_path, (result,), 'xb')
                return len(result), MODE_PICKLE, filename, None

    def _store_frame(self, value, kind, key):
        """Write a frame as an Arrow file; None if Arrow cannot hold it exactly (pickle it)."""
        filename, _ = self.filename(key, value)
        relative_dir, name = op.split(filename)
        stem = name[:-4] if name.endswith('.val') else name
        compression = getattr(self, 'frame_compression', DEFAULT_SETTINGS['frame_compression'])
        durable = getattr(self, 'durable', False)
        written = frames.write(self._directory, relative_dir, stem, value, kind, compression, durable)
        if written is None:
            return None
        filename, size = written
        return size, MODE_FRAME, filename, None

    def _fetch_frame(self, filename):
        hot = self._hot_frames()
        value = hot.get(filename)
        if value is not None:
            return value
        value, nbytes = frames.read(op.join(self._directory, filename))
        return hot.put(filename, value, nbytes)

    def _checked_filename(self, key, value, data):
        """A filename from :meth:`filename` that also carries the CRC-32 of `data`.

        ``ab/cd/<hex>.val`` becomes ``ab/cd/<hex>.<crc32>.val``, so :meth:`fetch` can tell a
        damaged value file from a good one without any other metadata.
        """
        filename, full_path = self.filename(key, value)
        if not filename.endswith('.val'):
            return filename, full_path
        tag = '.%08x.val' % _core.crc32(data)
        return filename[:-4] + tag, full_path[:-4] + tag

    def _read_checked(self, filename):
        """The bytes of a value file, verified against the CRC-32 in its name if it has one."""
        with open(op.join(self._directory, filename), 'rb') as reader:
            data = reader.read()
        expected = _crc_of(filename)
        if expected is not None and _core.crc32(data) != expected:
            raise CorruptionError(
                'value file %s is damaged (checksum mismatch); Cache.check(fix=True) removes it'
                % op.join(self._directory, filename)
            )
        return data

    def _write(self, full_path, iterator, mode, encoding=None):
        # Written to a temp name and renamed, so a process killed mid-write never leaves a
        # partial value under the final name. With the cache's `durable` setting on, the file
        # and the folders that name it are flushed before the row that points at it is written.
        full_dir, name = op.split(full_path)
        tmp_path = op.join(full_dir, '.' + name + '.tmp')
        durable = getattr(self, 'durable', False)

        for count in range(1, 11):
            created = durable and not op.isdir(full_dir)
            with cl.suppress(OSError):
                os.makedirs(full_dir)

            try:
                # Another cache may have deleted the directory before
                # the file could be opened.
                writer = open(tmp_path, mode, encoding=encoding)
            except OSError:
                if count == 10:
                    # Give up after 10 tries to open the file.
                    raise
                continue

            try:
                with writer:
                    size = 0
                    for chunk in iterator:
                        size += len(chunk)
                        writer.write(chunk)
                    if durable:
                        writer.flush()
                        os.fsync(writer.fileno())
                os.replace(tmp_path, full_path)
                if durable:
                    fsync_dir(full_dir)
                    if created:
                        fsync_parents(self._directory, op.relpath(full_dir, self._directory))
            except BaseException:
                with cl.suppress(OSError):
                    os.remove(tmp_path)
                raise
            return size

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Convert fields `mode`, `filename`, and `value` from Cache table to
        value.

        :param int mode: value mode raw, binary, text, or pickle
        :param str filename: filename of corresponding value
        :param value: database value
        :param bool read: when True, return an open file handle
        :return: corresponding Python value
        :raises: IOError if the value cannot be read

        """
        # pylint: disable=unidiomatic-typecheck,consider-using-with
        if mode == MODE_RAW:
            return bytes(value) if type(value) in (memoryview, bytearray) else value
        elif mode == MODE_BINARY:
            if read:
                return open(op.join(self._directory, filename), 'rb')  # type: ignore[arg-type]
            else:
                return self._read_checked(filename)
        elif mode == MODE_TEXT:
            return self._read_checked(filename).decode('UTF-8')
        elif mode == MODE_PICKLE:
            if value is None:
                data = self._read_checked(filename)
                return pickle.loads(self._verified(data, 'value file %s' % filename))
            else:
                return pickle.load(io.BytesIO(self._verified(value, 'a pickled value')))
        elif mode == MODE_FRAME:
            if read:
                return open(op.join(self._directory, filename), 'rb')  # type: ignore[arg-type]
            return self._fetch_frame(filename)

    def filename(self, key: Any = UNKNOWN, value: Any = UNKNOWN) -> tuple[str, str]:
        """Return filename and full-path tuple for file storage.

        Filename will be a randomly generated 28 character hexadecimal string
        with ".val" suffixed. Two levels of sub-directories will be used to
        reduce the size of directories. On older filesystems, lookups in
        directories with many files may be slow.

        The default implementation ignores the `key` and `value` parameters.

        In some scenarios, for example :meth:`Cache.push
        <diskcache.Cache.push>`, the `key` or `value` may not be known when the
        item is stored in the cache.

        :param key: key for item (default UNKNOWN)
        :param value: value for item (default UNKNOWN)

        """
        # pylint: disable=unused-argument
        hex_name = codecs.encode(os.urandom(16), 'hex').decode('utf-8')
        sub_dir = op.join(hex_name[:2], hex_name[2:4])
        name = hex_name[4:] + '.val'
        filename = op.join(sub_dir, name)
        full_path = op.join(self._directory, filename)
        return filename, full_path

    def remove(self, file_path: str) -> None:
        """Remove a file given by `file_path`.

        This method is cross-thread and cross-process safe. If an OSError
        occurs, it is suppressed.

        :param str file_path: relative path to file

        """
        full_path = op.join(self._directory, file_path)
        full_dir, _ = op.split(full_path)
        if file_path.endswith('.arrow'):
            self._hot_frames().discard(file_path)

        # Suppress OSError that may occur if two caches attempt to delete the
        # same file or directory at the same time.

        with cl.suppress(OSError):
            os.remove(full_path)

        with cl.suppress(OSError):
            os.removedirs(full_dir)


class JSONDisk(Disk):
    """Cache key and value using JSON serialization with zlib compression.

    The pickle-free choice: keys and values are JSON (so only what JSON holds: ``dict`` with
    ``str`` keys, ``list``, ``str``, numbers, ``True``/``False``/``None``; tuples come back as
    lists), and nothing read from the directory is ever unpickled, even without a signing
    key: a pickled key or value another writer put there reads as absent. For a directory
    other users or machines can write (``Cache(directory, disk=JSONDisk)``).
    """

    _reads_pickles = False

    def __init__(self, directory: str, compress_level: int = 1, **kwargs: Any) -> None:
        """Initialize JSON disk instance.

        Keys and values are compressed using the zlib library. The
        `compress_level` is an integer from 0 to 9 controlling the level of
        compression; 1 is fastest and produces the least compression, 9 is
        slowest and produces the most compression, and 0 is no compression.

        :param str directory: directory path
        :param int compress_level: zlib compression level (default 1)
        :param kwargs: super class arguments

        """
        self.compress_level = compress_level
        super().__init__(directory, **kwargs)

    def put(self, key: Any) -> tuple[Any, bool]:
        json_bytes = json.dumps(key).encode('utf-8')
        data = zlib.compress(json_bytes, self.compress_level)
        return super().put(data)

    def get(self, key: Any, raw: bool) -> Any:
        data = super().get(key, raw)
        return json.loads(zlib.decompress(data).decode('utf-8'))

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        if not read:
            json_bytes = json.dumps(value).encode('utf-8')
            value = zlib.compress(json_bytes, self.compress_level)
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        data = super().fetch(mode, filename, value, read)
        if not read:
            data = json.loads(zlib.decompress(data).decode('utf-8'))
        return data




class UnknownFileWarning(UserWarning):
    """Warning used by Cache.check for unknown files."""


class EmptyDirWarning(UserWarning):
    """Warning used by Cache.check for empty directories."""


class SignatureWarning(UserWarning):
    """Warning used by Cache.check for a pickled key or value that is not unpickled: its
    signature is missing or wrong (a cache with a signing key), or the Disk reads no pickles
    (JSONDisk)."""


def _own_value_file(directory, filename):
    """Whether `filename` (as a row names it) is a value file of ours inside `directory`."""
    root = op.normpath(directory)
    full_path = op.normpath(op.join(root, filename))
    inside = full_path.startswith(root + os.sep)
    return inside and (filename.endswith('.val') or _is_frame_file(filename))


def _crc_of(filename):
    """The CRC-32 a value file's name carries (``<hex>.<crc32>.val`` or ``.arrow``), or None."""
    parts = op.basename(filename).split('.')
    if len(parts) == 3 and parts[0] and parts[2] in ('val', 'arrow') and len(parts[1]) == 8:
        try:
            return int(parts[1], 16)
        except ValueError:
            return None
    return None


def _refuse_foreign(directory):
    """A python-diskcache directory (its ``cache.db``) is not opened: candlecache would show it
    empty, and ``check(fix=True)`` would remove its value files as unknown."""
    db = op.join(directory, DBNAME)
    if op.exists(db):
        raise CandlecacheError(
            '%s holds a python-diskcache database (%s): candlecache stores entries its own way '
            'and will not open it, so as not to hide or remove its entries. To bring them over, '
            'candlecache.import_diskcache(%r) converts it in place (keeping the old files aside), '
            'or `candlecache kv-import SRC DST` copies it to a new directory.'
            % (directory, DBNAME, directory)
        )


def _is_frame_file(filename):
    return filename.endswith('.arrow') and _crc_of(filename) is not None


def args_to_key(
    base: tuple[Any, ...],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    typed: bool,
    ignore: Container[int | str],
) -> tuple[Any, ...]:
    """Create cache key out of function arguments.

    :param tuple base: base of key
    :param tuple args: function arguments
    :param dict kwargs: function keyword arguments
    :param bool typed: include types in cache key
    :param set ignore: positional or keyword args to ignore
    :return: cache key tuple

    """
    args = tuple(arg for index, arg in enumerate(args) if index not in ignore)
    key = base + args + (None,)

    if kwargs:
        kwargs = {key: val for key, val in kwargs.items() if key not in ignore}
        sorted_items = sorted(kwargs.items())

        for item in sorted_items:
            key += item

    if typed:
        key += tuple(type(arg) for arg in args)

        if kwargs:
            key += tuple(type(value) for _, value in sorted_items)

    return key


# The engine's fast path (Cache with the default Disk): a row it leaves to Disk.fetch, and
# its answer when a call is the Python path's (a key that needs pickling, a value file).
_Deferred = _core.Deferred
_SLOW = _core.KV_SLOW

# Columns of a row as the engine returns it.
_ROWID, _KEY, _RAW, _STORE, _EXPIRE, _ACCESS_TIME, _ACCESS_COUNT, _TAG, _SIZE, _MODE, _FILE, _VALUE = range(12)


class Cache:
    """Disk and file backed cache.

    >>> cache = Cache()
    >>> cache.set('key', 'value')
    True
    >>> cache.get('key')
    'value'
    """

    # Settings (DEFAULT_SETTINGS), set as attributes by `reset`.
    statistics: int
    tag_index: int
    eviction_policy: str
    size_limit: int
    cull_limit: int
    sqlite_auto_vacuum: int
    sqlite_cache_size: int
    sqlite_journal_mode: str
    sqlite_mmap_size: int
    sqlite_synchronous: int
    disk_min_file_size: int
    disk_pickle_protocol: int
    signed_pickles: int
    frame_compression: str
    frame_cache_size: int
    durable: int

    def __init__(
        self,
        directory: os.PathLike[str] | str | None = None,
        timeout: float = 60,
        disk: type[Disk] = Disk,
        *,
        signing_key: str | bytes | None = None,
        **settings: Any,
    ) -> None:
        """Initialize cache instance.

        With a signing key (`signing_key`, else the environment variable
        ``CANDLECACHE_SIGNING_KEY``), pickled keys and values are signed with HMAC-SHA256
        and checked before they are unpickled: a pickle whose signature is missing or wrong
        (written by someone without the key) reads as absent and is never unpickled. The
        directory then keeps the setting ``signed_pickles`` (never the key), and opening it
        without a key raises :exc:`SigningKeyError`. The key is not pickled with the cache.

        :param str directory: cache directory (default: a new temporary directory)
        :param float timeout: seconds to wait for another process's lock
        :param disk: Disk type or subclass for serialization
        :param signing_key: secret (str or bytes) to sign and check pickles with
        :param settings: any of DEFAULT_SETTINGS (``sqlite_*`` ones are accepted and ignored)
        :raises SigningKeyError: the directory requires signed pickles and no key was given

        """
        try:
            assert issubclass(disk, Disk)
        except (TypeError, AssertionError):
            raise ValueError('disk must subclass diskcache.Disk') from None

        if directory is None:
            directory = tempfile.mkdtemp(prefix='diskcache-')
        directory = os.fspath(directory)
        directory = op.expanduser(directory)
        directory = op.expandvars(directory)

        self._directory = directory
        self._timeout = timeout
        self._txn_id = None
        self._txn_depth = 0
        self._engine = None

        if not op.isdir(directory):
            try:
                os.makedirs(directory, 0o755)
            except OSError as error:
                if error.errno != errno.EEXIST:
                    raise EnvironmentError(
                        error.errno,
                        'Cache directory "%s" does not exist'
                        ' and could not be created' % self._directory,
                    ) from None

        _refuse_foreign(directory)
        # As diskcache does, initialization waits for other processes however long it takes;
        # the timeout applies from then on.
        store = self._engine = _core.KvStore(directory, None)
        current_settings = store.settings()
        sets = DEFAULT_SETTINGS.copy()
        sets.update(current_settings)
        sets.update(settings)

        for key in METADATA:
            sets.pop(key, None)

        try:
            secret = _signing_of(
                directory, signing_key, settings.get('signed_pickles'),
                current_settings.get('signed_pickles', 0),
            )
        except BaseException:
            store.close()
            raise
        sets['signed_pickles'] = int(secret is not None)

        kwargs = {key[5:]: value for key, value in sets.items() if key.startswith('disk_')}
        self._disk = disk(directory, **kwargs)
        self._disk._set_signing_key(secret)
        # get/set/incr/delete/in go to the engine in one call when the engine can do exactly
        # what Disk does; a subclass's methods are its own, so it keeps the Python path (as
        # does a disk swapped in later, which `_fast` no longer names), and signed pickles
        # are checked by Python.
        eligible = type(self._disk) is Disk and not self._disk.signed_pickles
        self._fast = self._disk if eligible else None

        for key, value in sets.items():
            self.reset(key, value, update=current_settings.get(key, ENOVAL) != value)

        store.set_timeout(timeout)
        # diskcache's metadata attributes, read at open and stale until reset(name). Cheap: an
        # exact count reads only the snapshot buckets that records after it touched.
        for key in METADATA:
            self.reset(key)

    @property
    def directory(self) -> str:
        """Cache directory."""
        return self._directory

    @property
    def timeout(self) -> float:
        """Seconds to wait for a lock held by another process."""
        return self._timeout

    @property
    def disk(self) -> Disk:
        """Disk used for serialization."""
        return self._disk

    @property
    def _store(self):
        engine = self._engine
        if engine is None:
            engine = self._engine = _core.KvStore(self._directory, self._timeout)
        return engine

    def _call(self, retry, method, *args):
        """Call the engine, retrying on lock timeouts when asked to."""
        while True:
            try:
                return method(*args)
            except Timeout:
                if not retry:
                    raise

    @cl.contextmanager
    def transact(self, retry: bool = False) -> Iterator[None]:
        """Context manager to perform a transaction by locking the cache.

        While the cache is locked, no other write operation is permitted.
        Transactions should therefore be as short as possible. Read and write
        operations performed in a transaction are atomic: they are written
        together when the block ends, or not at all if it raises.

        Transactions may be nested and may not be shared between threads.

        Raises :exc:`Timeout` error when the lock is not acquired in time and
        `retry` is `False` (default).

        >>> cache = Cache()
        >>> with cache.transact():  # Atomically increment two keys.
        ...     _ = cache.incr('total', 123.4)
        ...     _ = cache.incr('count', 1)
        >>> with cache.transact():  # Atomically calculate average.
        ...     average = cache['total'] / cache['count']
        >>> average
        123.4

        """
        with self._transact(retry=retry):
            yield

    @cl.contextmanager
    def _transact(self, retry=False, filename=None):
        filenames = []
        _disk_remove = self._disk.remove
        store = self._store
        tid = threading.get_ident()

        if self._txn_id == tid:
            begin = False
        else:
            try:
                self._call(retry, store.begin)
            except Timeout:
                if filename is not None:
                    _disk_remove(filename)
                raise
            begin = True
            self._txn_id = tid

        try:
            yield filenames.append
        except BaseException:
            if begin:
                self._txn_id = None
                store.end(False)
            raise
        else:
            if begin:
                self._txn_id = None
                store.end(True)
            for name in filenames:
                if name is not None:
                    _disk_remove(name)

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

        :param key: key for item
        :param value: value for item
        :param float expire: seconds until item expires (default None, no expiry)
        :param bool read: read value as bytes from file (default False)
        :param str tag: text to associate with key (default None)
        :param bool retry: retry if the lock is not acquired in time (default False)
        :return: True if item was set
        :raises Timeout: if the lock is not acquired in time

        """
        if self._disk is self._fast and not read:
            disk = self._disk
            done = (self._engine or self._store).set_value(
                key, value, expire, tag, retry, disk.min_file_size, disk.pickle_protocol,
                self.cull_limit, self.size_limit, self.eviction_policy,
            )
            if done is True:
                return True
        now = time.time()
        db_key, raw = self._disk.put(key)
        expire_time = None if expire is None else now + expire
        for attempt in range(10):
            size, mode, filename, db_value = self._disk.store(value, read, key=key)
            columns = (expire_time, tag, size, mode, filename, db_value)
            try:
                # As diskcache does, the replaced and culled value files go right away.
                self._call(retry, self._put, db_key, raw, now, columns, self._disk.remove)
            except _ValueFileGone:
                if read or attempt == 9:  # a stream cannot be read twice
                    raise
                continue  # write the value file again
            except BaseException:
                if filename is not None:
                    self._disk.remove(filename)
                raise
            return True
        raise AssertionError('unreachable')

    def __setitem__(self, key: Any, value: Any) -> None:
        """Set corresponding `value` for `key` in cache."""
        self.set(key, value, retry=True)

    def _put(self, db_key, raw, now, columns, cleanup):
        """Store a row (culling as diskcache's writes do); hand the value files it replaced or
        culled to `cleanup`. Returns the replaced row or None."""
        filename = columns[4]
        if filename is None:
            return self._put_row(db_key, raw, now, columns, cleanup)
        # A value file is written before the lock is taken, so until its row exists another
        # process's check(fix=True) sees an unreferenced file and removes it. Under the lock,
        # make sure it is still there: a row must never point at a file that is gone.
        nested = self._txn_id == threading.get_ident()
        with self._transact() as after_commit:
            if not nested:
                # Files this put replaces go once it has committed, not before: until then
                # readers in other processes still see the rows that name them.
                cleanup = after_commit
            full_path = op.join(self._directory, filename)
            if not op.exists(full_path):
                raise _ValueFileGone(
                    errno.ENOENT,
                    'the value file was removed before its row was written (by check(fix=True) '
                    'in another process?); nothing was stored, set the value again',
                    full_path,
                )
            return self._put_row(db_key, raw, now, columns, cleanup)

    def _put_row(self, db_key, raw, now, columns, cleanup):
        expire_time, tag, size, mode, filename, value = columns
        old, (_, culled) = self._store.put(
            db_key, raw, now, expire_time, now, 0, tag, size, mode, filename, value,
            self.cull_limit, self.size_limit, self.eviction_policy,
        )
        for name in culled:
            cleanup(name)
        if old is not None and old[_FILE] is not None:
            cleanup(old[_FILE])
        return old

    def touch(self, key: Any, expire: float | None = None, retry: bool = False) -> bool:
        """Touch `key` in cache and update `expire` time.

        :return: True if key was touched
        :raises Timeout: if the lock is not acquired in time

        """
        now = time.time()
        db_key, raw = self._disk.put(key)
        expire_time = None if expire is None else now + expire
        return self._call(retry, self._store.touch, db_key, raw, now, expire_time)

    def add(
        self,
        key: Any,
        value: Any,
        expire: float | None = None,
        read: bool = False,
        tag: str | None = None,
        retry: bool = False,
    ) -> bool:
        """Add `key` and `value` item to cache, only if `key` is not present.

        Operation is atomic. Only one concurrent add operation for a given key
        will succeed.

        :return: True if item was added
        :raises Timeout: if the lock is not acquired in time

        """
        now = time.time()
        db_key, raw = self._disk.put(key)
        expire_time = None if expire is None else now + expire
        size, mode, filename, db_value = self._disk.store(value, read, key=key)
        columns = (expire_time, tag, size, mode, filename, db_value)

        with self._transact(retry, filename) as cleanup:
            row = self._store.row(db_key, raw)
            if row is not None and (row[_EXPIRE] is None or row[_EXPIRE] > now):
                cleanup(filename)
                return False
            self._put(db_key, raw, now, columns, cleanup)
            return True

    def incr(self, key: Any, delta: int = 1, default: int | None = 0, retry: bool = False) -> int:
        """Increment value by delta for item with key.

        If key is missing and default is None then raise KeyError. Else if key
        is missing and default is not None then use default for value.

        Operation is atomic. All concurrent increment operations will be
        counted individually.

        :return: new value for item
        :raises KeyError: if key is not found and default is None
        :raises Timeout: if the lock is not acquired in time

        """
        if self._disk is self._fast:
            value = self._store.incr_value(
                key, delta, default, retry, self.cull_limit, self.size_limit, self.eviction_policy,
            )
            if value is not _SLOW:
                return value
        now = time.time()
        db_key, raw = self._disk.put(key)

        with self._transact(retry) as cleanup:
            row = self._store.row(db_key, raw)
            if row is None or (row[_EXPIRE] is not None and row[_EXPIRE] < now):
                if default is None:
                    raise KeyError(key)
                value = default + delta
                columns = (None, None) + self._disk.store(value, False, key=key)
                self._put(db_key, raw, now, columns, cleanup)
                return value

            value = row[_VALUE]
            value += delta
            access_time, access_count = row[_ACCESS_TIME], row[_ACCESS_COUNT]
            if self.eviction_policy == 'least-recently-used':
                access_time = now
            elif self.eviction_policy == 'least-frequently-used':
                access_count += 1
            self._store.put(
                db_key, raw, now, row[_EXPIRE], access_time, access_count,
                row[_TAG], row[_SIZE], row[_MODE], row[_FILE], value,
            )
            return value

    def decr(self, key: Any, delta: int = 1, default: int | None = 0, retry: bool = False) -> int:
        """Decrement value by delta for item with key (see :meth:`incr`)."""
        return self.incr(key, -delta, default, retry)

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

        :param key: key for item
        :param default: value to return if key is missing (default None)
        :param bool read: if True, return file handle to value (default False)
        :param bool expire_time: if True, return expire_time in tuple (default False)
        :param bool tag: if True, return tag in tuple (default False)
        :param bool retry: retry if the lock is not acquired in time (default False)
        :return: value for item or default if key not found
        :raises Timeout: if the lock is not acquired in time

        """
        if self._disk is self._fast and not (read or expire_time or tag):
            value = (self._engine or self._store).get_value(
                key, default, self.eviction_policy, self.statistics, retry,
            )
            if type(value) is not _Deferred:
                return value
            if value is not _SLOW:
                try:
                    return self._disk.fetch(value.mode, value.filename, value.value, False)
                except IOError:
                    pass  # the value file was replaced since: read the row again below
        db_key, raw = self._disk.put(key)

        if expire_time and tag:
            default = (default, None, None)
        elif expire_time or tag:
            default = (default, None)

        for attempt in range(100):
            row = self._call(
                retry, self._store.lookup, db_key, raw, time.time(),
                self.eviction_policy, bool(self.statistics),
            )
            if row is None:
                return default
            try:
                value = self._disk.fetch(row[_MODE], row[_FILE], row[_VALUE], read)
                break
            except _BadSignature:
                return default
            except IOError:
                # Another process replaced or deleted the value file after the row was read:
                # read the row again, so a key that is present never reads as missing.
                continue
        else:
            return default

        if expire_time and tag:
            return (value, row[_EXPIRE], row[_TAG])
        elif expire_time:
            return (value, row[_EXPIRE])
        elif tag:
            return (value, row[_TAG])
        else:
            return value

    def __getitem__(self, key: Any) -> Any:
        """Return corresponding value for `key` from cache."""
        value = self.get(key, default=ENOVAL, retry=True)
        if value is ENOVAL:
            raise KeyError(key)
        return value

    def read(self, key: Any, retry: bool = False) -> BinaryIO:
        """Return file handle value corresponding to `key` from cache."""
        handle = self.get(key, default=ENOVAL, read=True, retry=retry)
        if handle is ENOVAL:
            raise KeyError(key)
        return handle

    def __contains__(self, key: Any) -> bool:
        """Return `True` if `key` matching item is found in cache."""
        if self._disk is self._fast:
            found = (self._engine or self._store).contains(key)
            if found is not _SLOW:
                return found
        db_key, raw = self._disk.put(key)
        return self._store.lookup(db_key, raw, time.time(), 'none', False) is not None

    def pop(
        self,
        key: Any,
        default: Any = None,
        expire_time: bool = False,
        tag: bool = False,
        retry: bool = False,
    ) -> Any:
        """Remove corresponding item for `key` from cache and return value.

        If `key` is missing, return `default`. Operation is atomic.

        """
        db_key, raw = self._disk.put(key)

        if expire_time and tag:
            default = default, None, None
        elif expire_time or tag:
            default = default, None

        with self._transact(retry):
            row = self._store.lookup(db_key, raw, time.time(), 'none', False)
            if row is None:
                return default
            self._store.delete(db_key, raw)

        mode, filename, db_value = row[_MODE], row[_FILE], row[_VALUE]
        try:
            value = self._disk.fetch(mode, filename, db_value, False)
        except (IOError, _BadSignature):
            # Key was deleted before we could retrieve result, or its pickle is not signed.
            return default
        finally:
            if filename is not None:
                self._disk.remove(filename)

        if expire_time and tag:
            return value, row[_EXPIRE], row[_TAG]
        elif expire_time:
            return value, row[_EXPIRE]
        elif tag:
            return value, row[_TAG]
        else:
            return value

    def __delitem__(self, key: Any, retry: bool = True) -> bool:
        """Delete corresponding item for `key` from cache.

        :raises KeyError: if key is not found

        """
        if self._disk is self._fast:
            deleted = self._store.delete_value(key, retry)
            if deleted is True:
                return True
            if deleted is False:
                raise KeyError(key)
        db_key, raw = self._disk.put(key)

        with self._transact(retry) as cleanup:
            row = self._store.lookup(db_key, raw, time.time(), 'none', False)
            if row is None:
                raise KeyError(key)
            self._store.delete(db_key, raw)
            cleanup(row[_FILE])
            return True

    def delete(self, key: Any, retry: bool = False) -> bool:
        """Delete corresponding item for `key` from cache. Missing keys are ignored."""
        # pylint: disable=unnecessary-dunder-call
        try:
            return self.__delitem__(key, retry=retry)  # type: ignore[call-arg]  # mypy: dunder args are positional
        except KeyError:
            return False

    def push(
        self,
        value: Any,
        prefix: str | None = None,
        side: str = 'back',
        expire: float | None = None,
        read: bool = False,
        tag: str | None = None,
        retry: bool = False,
    ) -> Any:
        """Push `value` onto `side` of queue identified by `prefix` in cache.

        When prefix is None, integer keys are used. Otherwise, string keys are
        used in the format "prefix-integer". Integer starts at 500 trillion.

        >>> cache = Cache()
        >>> print(cache.push('first value'))
        500000000000000

        """
        if prefix is None:
            min_key: int | str = 0
            max_key: int | str = 999999999999999
        else:
            min_key = prefix + '-000000000000000'
            max_key = prefix + '-999999999999999'

        now = time.time()
        raw = True
        expire_time = None if expire is None else now + expire
        size, mode, filename, db_value = self._disk.store(value, read)
        columns = (expire_time, tag, size, mode, filename, db_value)

        with self._transact(retry, filename) as cleanup:
            row = self._store.end_in_range(min_key, max_key, side == 'back')
            if row is not None:
                key = row[_KEY]
                if prefix is not None:
                    num = int(key[(key.rfind('-') + 1) :])
                else:
                    num = key
                if side == 'back':
                    num += 1
                else:
                    assert side == 'front'
                    num -= 1
            else:
                num = 500000000000000

            if prefix is not None:
                db_key: int | str = '{0}-{1:015d}'.format(prefix, num)
            else:
                db_key = num

            if self._store.row(db_key, raw) is not None:
                # The queue ran into a key outside its range. diskcache's INSERT fails here
                # with sqlite3.IntegrityError; code written for it catches that class.
                if filename is not None:
                    self._disk.remove(filename)
                import sqlite3

                raise sqlite3.IntegrityError('UNIQUE constraint failed: push would overwrite key %r' % (db_key,))

            self._put(db_key, raw, now, columns, cleanup)
            return db_key

    def _queue_end(self, prefix, side, delete, retry):
        if prefix is None:
            min_key = 0
            max_key = 999999999999999
        else:
            min_key = prefix + '-000000000000000'
            max_key = prefix + '-999999999999999'

        while True:
            while True:
                with self._transact(retry) as cleanup:
                    row = self._store.end_in_range(min_key, max_key, side == 'back')
                    if row is None:
                        return None
                    expired = row[_EXPIRE] is not None and row[_EXPIRE] < time.time()
                    if delete or expired:
                        self._store.delete(row[_KEY], True)
                    if expired:
                        cleanup(row[_FILE])
                    else:
                        break
            try:
                value = self._disk.fetch(row[_MODE], row[_FILE], row[_VALUE], False)
            except _BadSignature:
                if delete:
                    continue  # pulled, and absent: as pop, the next one
                raise  # as a damaged value file: check(fix=True) removes it
            except IOError:
                # Key was deleted before we could retrieve result, or its value file is gone.
                if not delete:
                    self._drop_if_file_lost(row)
                continue
            finally:
                if delete and row[_FILE] is not None:
                    self._disk.remove(row[_FILE])
            return row, value

    def _drop_if_file_lost(self, row):
        """Delete a row whose value file no longer exists (nothing can be read for it)."""
        with self._transact() as cleanup:
            current = self._store.row(row[_KEY], bool(row[_RAW]))
            if current is not None and current[_FILE] == row[_FILE] and row[_FILE] is not None:
                if not op.exists(op.join(self._directory, row[_FILE])):
                    self._store.delete(row[_KEY], bool(row[_RAW]))
                    cleanup(row[_FILE])

    @staticmethod
    def _shape(item, row, default, expire_time, tag):
        if row is None:
            if expire_time and tag:
                return default, None, None
            elif expire_time or tag:
                return default, None
            return default
        if expire_time and tag:
            return item, row[_EXPIRE], row[_TAG]
        elif expire_time:
            return item, row[_EXPIRE]
        elif tag:
            return item, row[_TAG]
        return item

    def pull(
        self,
        prefix: str | None = None,
        default: Any = (None, None),
        side: str = 'front',
        expire_time: bool = False,
        tag: bool = False,
        retry: bool = False,
    ) -> Any:
        """Pull key and value item pair from `side` of queue in cache.

        If queue is empty, return default.

        >>> cache = Cache()
        >>> cache.pull()
        (None, None)

        """
        found = self._queue_end(prefix, side, True, retry)
        if found is None:
            return self._shape(None, None, default, expire_time, tag)
        row, value = found
        return self._shape((row[_KEY], value), row, default, expire_time, tag)

    def peek(
        self,
        prefix: str | None = None,
        default: Any = (None, None),
        side: str = 'front',
        expire_time: bool = False,
        tag: bool = False,
        retry: bool = False,
    ) -> Any:
        """Peek at key and value item pair from `side` of queue in cache.

        If queue is empty, return default. Expired items are deleted from cache.

        """
        found = self._queue_end(prefix, side, False, retry)
        if found is None:
            return self._shape(None, None, default, expire_time, tag)
        row, value = found
        return self._shape((row[_KEY], value), row, default, expire_time, tag)

    def peekitem(
        self, last: bool = True, expire_time: bool = False, tag: bool = False, retry: bool = False
    ) -> tuple[Any, ...]:
        """Peek at key and value item pair in cache based on iteration order.

        Expired items are deleted from cache.

        :raises KeyError: if cache is empty

        """
        while True:
            while True:
                with self._transact(retry) as cleanup:
                    row = self._store.end_row(bool(last))
                    if row is None:
                        raise KeyError('dictionary is empty')
                    if row[_EXPIRE] is not None and row[_EXPIRE] < time.time():
                        self._store.delete(row[_KEY], bool(row[_RAW]))
                        cleanup(row[_FILE])
                    else:
                        break
            key = self._disk.get(row[_KEY], row[_RAW])
            try:
                value = self._disk.fetch(row[_MODE], row[_FILE], row[_VALUE], False)
            except IOError:
                # Key was deleted before we could retrieve result, or its value file is gone.
                self._drop_if_file_lost(row)
                continue
            break

        return self._shape((key, value), row, None, expire_time, tag)

    def memoize(
        self,
        name: str | None = None,
        typed: bool = False,
        expire: float | None = None,
        tag: str | None = None,
        ignore: Container[int | str] = (),
    ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
        """Memoizing cache decorator.

        Repeated calls with the same arguments will lookup result in cache and
        avoid function evaluation. When expire is set to zero, function results
        will not be set in the cache.

        >>> cache = Cache()
        >>> @cache.memoize()
        ... def fibonacci(number):
        ...     return number if number < 2 else fibonacci(number - 1) + fibonacci(number - 2)
        >>> print(fibonacci(100))
        354224848179261915075

        """
        # Caution: Nearly identical code exists in DjangoCache.memoize
        if callable(name):
            raise TypeError('name cannot be callable')

        def decorator(func):
            """Decorator created by memoize() for callable `func`."""
            base = (full_name(func),) if name is None else (name,)

            @ft.wraps(func)
            def wrapper(*args, **kwargs):
                """Wrapper for callable to cache arguments and return values."""
                key = wrapper.__cache_key__(*args, **kwargs)
                try:
                    result = self.get(key, default=ENOVAL, retry=True)
                except CorruptionError:
                    result = ENOVAL  # computed again, and the damaged value replaced

                if result is ENOVAL:
                    result = func(*args, **kwargs)
                    if expire is None or expire > 0:
                        self.set(key, result, expire, tag=tag, retry=True)

                return result

            def __cache_key__(*args, **kwargs):
                """Make key for cache given function arguments."""
                return args_to_key(base, args, kwargs, typed, ignore)

            wrapper.__cache_key__ = __cache_key__
            return wrapper

        return decorator

    def check(self, fix: bool = False, retry: bool = False) -> list[warnings.WarningMessage]:
        """Check database and file system consistency.

        Damaged log records, rows whose value file is missing, files no row
        refers to and empty directories are reported as warnings (and returned);
        with `fix`, they are repaired.

        With a signing key (or a :class:`JSONDisk`), a row whose pickled key or value is
        not unpickled (signature missing or wrong) is reported as a
        :class:`SignatureWarning`; `fix` removes the row and its value file. If no pickled
        entry checks and some have a wrong signature, the key is more likely wrong than the
        entries: that is reported, and `fix` keeps them.

        :return: list of warnings
        :raises Timeout: if the lock is not acquired in time

        """
        # pylint: disable=access-member-before-definition,W0201
        # As python-diskcache does, the caller's filters apply: under
        # ``simplefilter('error')`` the first problem raises.
        with warnings.catch_warnings(record=True) as warns:
            for message in self._call(retry, self._store.check, fix):
                warnings.warn(message)

            with self._transact(retry):
                referenced = set()
                disk = self._disk
                unsigned = []  # rows whose pickles are not unpickled: (key, raw, file, kind)
                verified = 0  # rows whose pickles all check
                for key, raw in self._store.keys():
                    row = self._store.row(key, raw)
                    if row is None:
                        continue
                    data = None
                    if row[_FILE] is not None:
                        full_path = op.join(self._directory, row[_FILE])
                        if not op.exists(full_path):
                            message = 'row %s partial commit %s' % (row[_ROWID], full_path)
                            warnings.warn(message, UnknownFileWarning)
                            if fix:
                                self._store.delete(key, raw)
                            continue
                        referenced.add(op.normpath(full_path))
                        try:
                            data = disk._read_checked(row[_FILE])
                        except (CorruptionError, OSError) as error:
                            warnings.warn(str(error), UnknownFileWarning)
                            if fix:
                                self._store.delete(key, raw)
                                os.remove(full_path)
                                referenced.discard(op.normpath(full_path))
                            continue

                    pickled = [] if raw else [('its pickled key', key)]
                    if row[_MODE] == MODE_PICKLE:
                        if row[_FILE] is None:
                            pickled.append(('its pickled value', row[_VALUE]))
                        else:
                            pickled.append(('its value file %s' % full_path, data))
                    found = None
                    for what, blob in pickled:
                        problem = _pickle_problem(disk, blob)
                        if problem is not None:
                            found = problem[0], 'row %s: %s %s' % (row[_ROWID], what, problem[1])
                            break
                    if found is None:
                        verified += bool(pickled)
                        continue
                    warnings.warn(found[1] + ': it is not unpickled, and reads as absent', SignatureWarning)
                    unsigned.append((key, raw, row[_FILE], found[0]))

                wrong = sum(1 for *_, kind in unsigned if kind == _WRONG)
                keep_wrong = wrong and not verified
                if keep_wrong:
                    # Likely the wrong key rather than so many forgeries: removing would empty
                    # the cache.
                    message = (
                        'no pickled entry in %s checks with this signing key and %d have a wrong '
                        'signature: is it the key its writers use?%s'
                        % (self._directory, wrong, ' Those entries were kept.' if fix else '')
                    )
                    warnings.warn(message, SignatureWarning)
                if fix:
                    for key, raw, filename, kind in unsigned:
                        if keep_wrong and kind == _WRONG:
                            continue
                        self._store.delete(key, raw)
                        if filename is not None and _own_value_file(self._directory, filename):
                            full_path = op.normpath(op.join(self._directory, filename))
                            with cl.suppress(FileNotFoundError):
                                os.remove(full_path)
                            referenced.discard(full_path)

                for dirpath, _, files in os.walk(self._directory):
                    for filename in files:
                        if not (filename.endswith('.val') or _is_frame_file(filename)):
                            continue
                        full_path = op.normpath(op.join(dirpath, filename))
                        if full_path in referenced:
                            continue
                        message = 'unknown file: %s' % full_path
                        warnings.warn(message, UnknownFileWarning)
                        if fix:
                            with cl.suppress(FileNotFoundError):
                                os.remove(full_path)

                # Bottom-up, so a directory emptied by removing its children counts too.
                for dirpath, _, _ in os.walk(self._directory, topdown=False):
                    if op.normpath(dirpath) == op.normpath(self._directory) or os.listdir(dirpath):
                        continue
                    message = 'empty directory: %s' % dirpath
                    warnings.warn(message, EmptyDirWarning)
                    if fix:
                        # A writer in another process may have put a value file there since:
                        # its files are written before it takes the lock.
                        with cl.suppress(OSError):
                            os.rmdir(dirpath)

            return warns

    def create_tag_index(self) -> None:
        """Create tag index on cache database (tags are always indexed here)."""
        self.reset('tag_index', 1)

    def drop_tag_index(self) -> None:
        """Drop tag index on cache database."""
        self.reset('tag_index', 0)

    def _bulk_delete(self, retry, method, *args):
        with self._transact(retry) as cleanup:
            count, names = method(*args)
            for name in names:
                cleanup(name)
        return count

    def evict(self, tag: str, retry: bool = False) -> int:
        """Remove items with matching `tag` from cache.

        :return: count of rows removed
        :raises Timeout: if the lock is not acquired in time

        """
        return self._bulk_delete(retry, self._store.evict, tag)

    def expire(self, now: float | None = None, retry: bool = False) -> int:
        """Remove expired items from cache.

        :param float now: current time (default None, ``time.time()`` used)
        :return: count of items removed
        :raises Timeout: if the lock is not acquired in time

        """
        return self._bulk_delete(retry, self._store.expire, time.time() if now is None else now)

    def cull(self, retry: bool = False) -> int:
        """Cull items from cache until volume is less than size limit.

        Removes expired items first, then items by the eviction policy.

        :return: count of items removed
        :raises Timeout: if the lock is not acquired in time

        """
        now = time.time()

        # Remove expired items.
        count = self.expire(now)

        # Remove items by policy.
        if self.eviction_policy == 'none':
            return count
        while self.volume() > self.size_limit:
            removed = self._bulk_delete(retry, self._store.cull, now, 10, self.size_limit, self.eviction_policy)
            if not removed:
                break
            count += removed
        return count

    def clear(self, retry: bool = False) -> int:
        """Remove all items from cache.

        :return: count of rows removed
        :raises Timeout: if the lock is not acquired in time

        """
        return self._bulk_delete(retry, self._store.clear)

    def iterkeys(self, reverse: bool = False) -> Iterator[Any]:
        """Iterate Cache keys in database sort order.

        >>> cache = Cache()
        >>> for key in [4, 1, 3, 0, 2]:
        ...     cache[key] = key
        >>> list(cache.iterkeys())
        [0, 1, 2, 3, 4]

        """
        _disk_get = self._disk.get
        for key, raw in self._store.keys(True, bool(reverse)):
            try:
                item = _disk_get(key, raw)
            except _BadSignature:
                continue  # a pickled key not signed with this cache's key: absent
            yield item

    def _iter(self, ascending=True):
        _disk_get = self._disk.get
        for key, raw in self._store.keys(False, not ascending):
            try:
                item = _disk_get(key, raw)
            except _BadSignature:
                continue  # a pickled key not signed with this cache's key: absent
            yield item

    def __iter__(self) -> Iterator[Any]:
        """Iterate keys in cache including expired items."""
        return self._iter()

    def __reversed__(self) -> Iterator[Any]:
        """Reverse iterate keys in cache including expired items."""
        return self._iter(ascending=False)

    def stats(self, enable: bool = True, reset: bool = False) -> tuple[int, int]:
        """Return cache statistics hits and misses.

        :param bool enable: enable collecting statistics (default True)
        :param bool reset: reset hits and misses to 0 (default False)
        :return: (hits, misses)

        """
        # pylint: disable=E0203,W0201
        result = self._store.stats()
        if reset:
            self._store.reset_stats()
        self.reset('statistics', enable)
        return result

    def volume(self) -> int:
        """Return estimated total size of cache on disk: the log plus value files."""
        return self._store.volume()

    def close(self) -> None:
        """Close the cache's files; the next operation opens them again."""
        engine = self._engine
        if engine is not None:
            engine.close()

    def __enter__(self) -> Self:
        self._store  # pylint: disable=pointless-statement
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Count of items in cache including expired items."""
        return self._store.count()

    # diskcache's metadata attributes: read at open, stale until reset(name), as diskcache's.
    @property
    def count(self) -> int:
        """Number of items when the cache was opened or ``reset('count')`` last ran."""
        return self._metadata_value('count')

    @property
    def size(self) -> int:
        """Bytes on disk (as ``volume()``) when opened or ``reset('size')`` last ran."""
        return self._metadata_value('size')

    @property
    def hits(self) -> int:
        """Hits counted with ``statistics`` on, when opened or ``reset('hits')`` last ran."""
        return self._metadata_value('hits')

    @property
    def misses(self) -> int:
        """Misses counted with ``statistics`` on, when opened or ``reset('misses')`` last ran."""
        return self._metadata_value('misses')

    def _metadata_value(self, name: str) -> int:
        known = self.__dict__.setdefault('_metadata', {})
        if name not in known:
            self.reset(name)
        return known[name]

    def _remember(self, key: str, value: Any) -> None:
        if key in METADATA:
            self.__dict__.setdefault('_metadata', {})[key] = value
        else:
            setattr(self, key, value)

    def __getstate__(self):
        return (self.directory, self.timeout, type(self.disk))

    def __setstate__(self, state):
        self.__init__(*state)

    def reset(self, key: str, value: Any = ENOVAL, update: bool = True) -> Any:
        """Reset `key` and `value` item from Settings table.

        If `value` is not given, it is reloaded from the stored settings.
        Otherwise, the stored settings are updated (unless `update` is False).
        Settings with the ``disk_`` prefix correspond to Disk attributes.
        Settings with the ``sqlite_`` prefix are kept for compatibility and
        otherwise ignored.

        :return: updated value for item

        """
        if value is ENOVAL:
            if key == 'count':
                value = self._store.count()
            elif key in ('hits', 'misses'):
                hits, misses = self._store.stats()
                value = hits if key == 'hits' else misses
            elif key == 'size':
                value = self._store.volume()
            else:
                value = self._store.settings()[key]
                self._apply_to_disk(key, value)
            self._remember(key, value)
            return value

        if key in ('hits', 'misses'):
            if value == 0:
                self._store.reset_stats()
            self._remember(key, value)
            return value

        if key == 'eviction_policy' and value not in EVICTION_POLICY:
            raise ValueError('unknown eviction policy %r' % (value,))
        if key == 'frame_compression' and value not in frames.FRAME_COMPRESSIONS:
            raise ValueError(
                'frame_compression must be one of %s, got %r' % (', '.join(frames.FRAME_COMPRESSIONS), value)
            )
        if key == 'signed_pickles':
            value = int(bool(value))
            if value and not self._disk.signed_pickles:
                raise SigningKeyError(_needs_key(self._directory))
            if not value and self._disk.signed_pickles:
                raise SigningKeyError(
                    '%s signs pickles: signed_pickles cannot be turned off '
                    '(use a new directory for unsigned pickles)' % self._directory
                )
        if key == 'frame_cache_size' and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError('frame_cache_size must be a number of bytes >= 0, got %r' % (value,))

        if update:
            self._store.set_setting(key, value)

        self._apply_to_disk(key, value)
        self._remember(key, value)
        return value

    def _apply_to_disk(self, key: str, value: Any) -> None:
        if key.startswith('disk_'):
            setattr(self._disk, key[5:], value)
        elif key == 'durable':
            self._disk.durable = bool(value)
        elif key == 'frame_compression':
            self._disk.frame_compression = value
        elif key == 'frame_cache_size':
            self._disk._hot_frames().resize(value)

    def _frame_path(self, key: Any) -> str | None:
        """The frame file of `key`'s value, if it is a frame (no statistics, no access update)."""
        db_key, raw = self._disk.put(key)
        row = self._call(True, self._store.lookup, db_key, raw, time.time(), 'none', False)
        if row is None or row[_MODE] != MODE_FRAME:
            return None
        return op.join(self._directory, row[_FILE])
