"""python-diskcache 5.6.3's multi-process stress test of ``Index``, run on candlecache.

Adapted from python-diskcache 5.6.3 (``tests/stress_test_index_mp.py``), Copyright 2016-2023 Grant
Jenks, licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
Eight processes started with the ``fork`` method share the parent's ``Index`` object, as upstream.

Changes from upstream, and nothing else:
- ``import diskcache as dc`` becomes ``import candlecache as dc`` (``CANDLECACHE_TEST_IMPL=diskcache``
  runs it against python-diskcache);
- ``test`` becomes ``test_stress_index_mp`` and asks for the ``fork`` start method explicitly
  (upstream relies on Linux's default before Python 3.14), with a deadline so a hang fails;
- the test removes the index it made.
"""

# ruff: noqa
# mypy: ignore-errors

import importlib
import itertools as it
import multiprocessing
import os
import random
import shutil
import time

dc = importlib.import_module(os.environ.get('CANDLECACHE_TEST_IMPL', 'candlecache'))
mp = multiprocessing.get_context('fork')

KEYS = 100
OPERATIONS = 10000
SEED = 0

functions = []


def register(function):
    functions.append(function)
    return function


@register
def stress_get(index):
    key = random.randrange(KEYS)
    index.get(key, None)


@register
def stress_set(index):
    key = random.randrange(KEYS)
    value = random.random()
    index[key] = value


register(stress_set)
register(stress_set)
register(stress_set)


@register
def stress_del(index):
    key = random.randrange(KEYS)

    try:
        del index[key]
    except KeyError:
        pass


@register
def stress_pop(index):
    key = random.randrange(KEYS)
    index.pop(key, None)


@register
def stress_popitem(index):
    try:
        if random.randrange(2):
            index.popitem()
        else:
            index.popitem(last=False)
    except KeyError:
        pass


@register
def stress_iter(index):
    iterator = it.islice(index, 5)

    for key in iterator:
        pass


@register
def stress_reversed(index):
    iterator = it.islice(reversed(index), 5)

    for key in iterator:
        pass


@register
def stress_len(index):
    len(index)


def stress(seed, index):
    random.seed(seed)
    for count in range(OPERATIONS):
        function = random.choice(functions)
        function(index)


def test_stress_index_mp(status=False):
    random.seed(SEED)
    index = dc.Index(enumerate(range(KEYS)))
    processes = []

    for count in range(8):
        process = mp.Process(target=stress, args=(SEED + count, index))
        process.start()
        processes.append(process)

    for value in it.count():
        time.sleep(1)

        if status:
            print('\r', value, 's', len(index), 'keys', ' ' * 20, end='')

        if all(not process.is_alive() for process in processes):
            break

        if value > 600:
            for process in processes:
                process.kill()
            raise AssertionError('stress processes still running after 600 s')

    if status:
        print('')

    assert all(process.exitcode == 0 for process in processes)
    shutil.rmtree(index.directory, ignore_errors=True)


if __name__ == '__main__':
    test_stress_index_mp(status=True)
