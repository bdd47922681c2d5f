"""A user's script that uses the diskcache API type-checks cleanly under ``mypy --strict`` and
pyright (through basedpyright, in pyright's "standard" mode), as it does with python-diskcache.

Each checker also runs on a script with a deliberate type error, so the test cannot pass
because a checker saw nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SAMPLE = textwrap.dedent(
    '''\
    """Cache results of slow lookups across processes, as a candlecache user would."""

    from __future__ import annotations

    import tempfile
    from pathlib import Path

    from candlecache import Cache, Deque, FanoutCache, Index, Lock, barrier, memoize_stampede, throttle

    root = Path(tempfile.mkdtemp())
    cache = Cache(root / "cache", timeout=5, size_limit=2**20, eviction_policy="least-recently-used")
    fanout = FanoutCache(str(root / "fanout"), shards=4, timeout=1.0, statistics=1)

    stored: bool = cache.set("greeting", "hello", expire=60, tag="demo")
    greeting = cache.get("greeting", default="")
    assert isinstance(greeting, str)
    print(greeting.upper())
    hits: int = cache.incr("hits", delta=2)
    hits = cache.decr("hits")
    touched: bool = cache.touch("greeting", expire=120)
    deleted: bool = cache.delete("missing")
    popped = cache.pop("greeting", default=None)
    removed: int = cache.expire()
    with cache.transact():
        cache["a"] = 1
        cache["b"] = cache["a"] + 1
    found: bool = "a" in cache
    n_hits, n_misses = cache.stats()
    size: int = cache.volume() + len(cache)
    keys = list(cache.iterkeys())


    @cache.memoize(expire=60, tag="fmt")
    def describe(x: int, unit: str = "ms") -> str:
        return f"{x} {unit}"


    label: str = describe(1, unit="s")
    print(label.title())


    @fanout.memoize(typed=True)
    def square(x: float) -> float:
        return x * x


    area: float = square(3.0) + 1.5
    fanout.set(("user", 1), {"name": "ada"}, expire=30)
    user = fanout.get(("user", 1))
    counter: int | None = fanout.incr("counter")
    with fanout.transact():
        fanout["x"] = 1
    was_deleted: bool = fanout.delete("x")
    cleared: int = fanout.clear()

    deque = Deque(directory=str(root / "deque"), maxlen=10)
    deque.append(1)
    deque.appendleft(0)
    first = deque.popleft()
    length: int = len(deque)

    index = Index(str(root / "index"))
    index["k"] = {"v": 1}
    entry = index["k"]
    names = [str(key) for key in index]

    with Lock(cache, "report", expire=10):
        pass


    @throttle(cache, 2, 1)
    def ping(host: str) -> bool:
        return bool(host)


    up: bool = ping("localhost")


    @barrier(cache, Lock)
    @memoize_stampede(cache, expire=30)
    def render(page: int) -> bytes:
        return b"page %d" % page


    body: bytes = render(2)
    print(stored, hits, touched, deleted, popped, removed, found, n_hits, n_misses, size, keys)
    print(area, user, counter, was_deleted, cleared, first, length, entry, names, up, body)
    cache.close()
    fanout.close()
    '''
)

BROKEN = 'x: int = "a"\n'


def _mypy(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(script.parent / ".mypy_cache"), script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
    )


def _pyright(script: Path) -> subprocess.CompletedProcess[str]:
    # pythonPath: the interpreter running the tests, so its site-packages (candlecache) is seen.
    return subprocess.run(
        [sys.executable, "-m", "basedpyright", "--pythonpath", sys.executable, "--outputjson", script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
    )


def _mypy_errors(r: subprocess.CompletedProcess[str]) -> int:
    if r.returncode not in (0, 1):
        pytest.fail("mypy failed to run:\n" + r.stdout + r.stderr)
    return sum(1 for line in r.stdout.splitlines() if re.search(r": error: ", line))


def _pyright_errors(r: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail("basedpyright failed to run:\n" + r.stdout + r.stderr)
    diagnostics = report["generalDiagnostics"]
    errors = [d for d in diagnostics if d["severity"] == "error"]
    text = "\n".join(f"{d['range']['start']['line'] + 1}: {d['message']}" for d in errors)
    return report["summary"]["errorCount"], text


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # "standard" is plain pyright's default mode; basedpyright's own default is stricter.
    config = {"typeCheckingMode": "standard", "pythonVersion": "3.11"}
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    return tmp_path


def test_user_script_passes_mypy_strict(workdir: Path) -> None:
    pytest.importorskip("mypy")
    sample = workdir / "user_script.py"
    sample.write_text(SAMPLE)
    broken = workdir / "broken.py"
    broken.write_text(BROKEN)

    r = _mypy(broken)
    assert _mypy_errors(r) >= 1, r.stdout + r.stderr

    r = _mypy(sample)
    assert _mypy_errors(r) == 0 and r.returncode == 0, r.stdout + r.stderr


def test_user_script_passes_pyright(workdir: Path) -> None:
    pytest.importorskip("basedpyright")
    sample = workdir / "user_script.py"
    sample.write_text(SAMPLE)
    broken = workdir / "broken.py"
    broken.write_text(BROKEN)

    count, text = _pyright_errors(_pyright(broken))
    assert count >= 1, text

    count, text = _pyright_errors(_pyright(sample))
    assert count == 0, text
