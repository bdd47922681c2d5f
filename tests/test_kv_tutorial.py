"""python-diskcache 5.6.3's tutorial (docs/tutorial.rst), run as a doctest against candlecache.

``tests/upstream/diskcache_tutorial.rst`` is python-diskcache 5.6.3's ``docs/tutorial.rst`` (tag
v5.6.3, commit 323787f5), Copyright 2016-2022 Grant Jenks, licensed under the Apache License,
Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0). Upstream runs it with plain doctest,
``doctest.testfile('../docs/tutorial.rst')`` in its tests/test_doctest.py (and again through
pytest's ``--doctest-glob="*.rst"``); so does ``test_tutorial`` below, with every example of the
file run and none skipped (upstream skips none either: its Django settings, JSONDisk and asyncio
snippets are ``code-block``/``::`` text without ``>>>`` prompts, so doctest never runs them, here
as there).

Changes to the upstream text, and nothing else:
- an RST comment at the top (invisible to doctest) names the source, the copyright and the
  licence, and points here, as the Apache License asks of a modified file;
- the five ``>>> from diskcache import X`` lines (``Cache``, ``FanoutCache`` twice, ``Deque``,
  ``Index``) import from ``candlecache`` instead: that is what is being tested;
- the cull example (section "Cache") stores ``os.urandom(1000)`` instead of ``b'A' * 1000``, with
  an ``>>> import os`` line added before its loop. This is the one allowed difference: candlecache
  LZ4-compresses values of more than 512 bytes, so a thousand ``b'A' * 1000`` values take about
  100 kB on disk instead of over 1 MB; ``cache.volume() > int(1e6)`` would print ``False`` and
  ``cache.cull() > 0`` then has nothing to cull. With values that do not compress, every output
  line of the example stays upstream's, and the example still shows ``cull`` bringing the volume
  back under ``size_limit``. ``test_tutorial_cull_example_as_upstream`` below runs the upstream
  values and pins the difference.

The tutorial makes its caches in temporary directories (``Cache()``, ``FanoutCache()``,
``Deque(...)``, ``Index(...)``) and leaves most of them behind; the test points ``tempfile`` at
pytest's ``tmp_path`` (and runs there) so they are removed with it. No path in the text changes.

``CANDLECACHE_TEST_IMPL=diskcache`` runs the same file against python-diskcache (``candlecache``
is then python-diskcache in ``sys.modules`` for the run): it checks the test itself.
"""

# ruff: noqa
# mypy: ignore-errors

import doctest
import importlib
import os
import pathlib
import sys
import tempfile

import pytest

IMPL = os.environ.get('CANDLECACHE_TEST_IMPL', 'candlecache')
TUTORIAL = pathlib.Path(__file__).parent / 'upstream' / 'diskcache_tutorial.rst'
# Upstream's file has 137 examples; the added ``>>> import os`` makes 138. Counted exactly, so
# the test cannot pass by running fewer (a broken file, a lost prompt).
EXAMPLES = 138


def test_tutorial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    if IMPL != 'candlecache':
        monkeypatch.setitem(sys.modules, 'candlecache', importlib.import_module(IMPL))
    failures, attempted = doctest.testfile(str(TUTORIAL), module_relative=False)
    assert failures == 0  # doctest's report of each failure is in the captured stdout
    assert attempted == EXAMPLES


def test_tutorial_cull_example_as_upstream(tmp_path):
    """Not upstream: the tutorial's cull example with its own values, ``b'A' * 1000``.

    python-diskcache's volume goes over the 1 MB ``size_limit`` and ``cull`` removes items;
    candlecache stores the thousand values LZ4-compressed, stays far under the limit, and ``cull``
    has nothing to remove. ``size`` (the metadata attribute, read by ``reset('size')``) is
    ``volume()`` in candlecache (so an empty cache's is a few hundred bytes, not 0); in
    python-diskcache it is the total size of the values kept in files (0 here: values under
    ``disk_min_file_size`` live in its SQLite database, whose pages ``volume()`` adds).
    """
    diskcache = pytest.importorskip('diskcache')
    import candlecache

    results = {}
    for impl in (diskcache, candlecache):
        directory = str(tmp_path / impl.__name__)
        with impl.Cache(directory, size_limit=int(1e6), cull_limit=0) as cache:
            opened = (cache.count, cache.size)
            for count in range(1000):
                cache[count] = b'A' * 1000
            assert (cache.count, cache.size) == opened  # stale until reset, in both
            assert cache.reset('count') == cache.count == 1000
            volume = cache.volume()
            results[impl.__name__] = (volume, cache.reset('size'), cache.cull(), len(cache))

    assert results['diskcache'][0] > int(1e6)
    assert results['diskcache'][1] == 0
    assert results['diskcache'][2] > 0
    volume, size, culled, length = results['candlecache']
    assert volume < int(1e6) // 5
    assert size == volume
    assert (culled, length) == (0, 1000)
