"""The type stubs match the extension, and the Python packages type-check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import candlecache

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_py_typed_ships_with_the_stubs():
    pkg = Path(candlecache.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()


def test_stubs_match_the_extension():
    pytest.importorskip("mypy")
    r = run("mypy.stubtest", "candlecache._core")
    assert r.returncode == 0, r.stdout + r.stderr


def test_packages_type_check():
    pytest.importorskip("mypy")
    r = run("mypy", "--no-incremental")
    assert r.returncode == 0, r.stdout + r.stderr
