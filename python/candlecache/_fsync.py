"""Flushing folders, for ``durable=True``: a file's own flush does not make the names that lead
to it durable, so the folders that name a new file (and the folders made for it) are flushed
too."""

from __future__ import annotations

import os
import os.path as op


def fsync_dir(path: str) -> None:
    """fsync a folder, so that a rename or a new entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_parents(directory: str, relative_dir: str) -> None:
    """fsync the folders above ``directory/relative_dir`` up to ``directory`` itself (``ab`` and
    the cache directory for ``ab/cd``): the ones that name folders just made."""
    parts = relative_dir.split(os.sep)
    for depth in range(len(parts) - 1, -1, -1):
        fsync_dir(op.join(directory, *parts[:depth]))
