"""python-diskcache 5.6.3's multi-process stress test of ``Deque``, run on candlecache.

Adapted from python-diskcache 5.6.3 (``tests/stress_test_deque_mp.py``), Copyright 2016-2023 Grant
Jenks, licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
Eight processes started with the ``fork`` method share the parent's ``Deque`` object, as upstream.

Changes from upstream, and nothing else:
- ``import diskcache as dc`` becomes ``import candlecache as dc`` (``CANDLECACHE_TEST_IMPL=diskcache``
  runs it against python-diskcache);
- ``test`` becomes ``test_stress_deque_mp`` and asks for the ``fork`` start method explicitly
  (upstream relies on Linux's default before Python 3.14), with a deadline so a hang fails;
- the test removes the deque it made.
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

OPERATIONS = 1000
SEED = 0
SIZE = 10

functions = []


def register(function):
    functions.append(function)
    return function


@register
def stress_get(deque):
    index = random.randrange(max(1, len(deque)))

    try:
        deque[index]
    except IndexError:
        pass


@register
def stress_set(deque):
    index = random.randrange(max(1, len(deque)))
    value = random.random()

    try:
        deque[index] = value
    except IndexError:
        pass


@register
def stress_del(deque):
    index = random.randrange(max(1, len(deque)))

    try:
        del deque[index]
    except IndexError:
        pass


@register
def stress_iadd(deque):
    values = [random.random() for _ in range(5)]
    deque += values


@register
def stress_append(deque):
    value = random.random()
    deque.append(value)


@register
def stress_appendleft(deque):
    value = random.random()
    deque.appendleft(value)


@register
def stress_pop(deque):
    try:
        deque.pop()
    except IndexError:
        pass


@register
def stress_popleft(deque):
    try:
        deque.popleft()
    except IndexError:
        pass


@register
def stress_reverse(deque):
    deque.reverse()


@register
def stress_rotate(deque):
    steps = random.randrange(max(1, len(deque)))
    deque.rotate(steps)


def stress(seed, deque):
    random.seed(seed)
    for count in range(OPERATIONS):
        if len(deque) > 100:
            function = random.choice([stress_pop, stress_popleft])
        else:
            function = random.choice(functions)
        function(deque)


def test_stress_deque_mp(status=False):
    random.seed(SEED)
    deque = dc.Deque(range(SIZE))
    processes = []

    for count in range(8):
        process = mp.Process(target=stress, args=(SEED + count, deque))
        process.start()
        processes.append(process)

    for value in it.count():
        time.sleep(1)

        if status:
            print('\r', value, 's', len(deque), 'items', ' ' * 20, end='')

        if all(not process.is_alive() for process in processes):
            break

        if value > 600:
            for process in processes:
                process.kill()
            raise AssertionError('stress processes still running after 600 s')

    if status:
        print('')

    assert all(process.exitcode == 0 for process in processes)
    shutil.rmtree(deque.directory, ignore_errors=True)


if __name__ == '__main__':
    test_stress_deque_mp(status=True)
