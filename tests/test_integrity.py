"""Recorded checksums (issue 10, part 4): every file the cache writes has its size, footer CRC
and SHA-256 recorded in ``.checksums.jsonl``; reads check them as ``verify`` says, and damage
that still decodes (a flipped byte, a deleted file) heals within the call that meets it."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import candlecache
from candlecache import MarketCache
from memory_exchange import DAY, HOUR, T0, MemoryExchange, candle

sys.path.insert(0, str(Path(__file__).parent / "original"))
import orig_cache_tool.entry as o_entry  # noqa: E402

BTC = "BTC/USDT"
HERE = Path(__file__).parent


def _records(folder: Path) -> dict[str, dict]:
    """The newest record of each file the checksum file still lists."""
    out: dict[str, dict] = {}
    for line in (folder / ".checksums.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("removed"):
            out.pop(rec["file"], None)
        else:
            out[rec["file"]] = rec
    return out


def _flip(path: Path) -> None:
    """Change one byte in the middle of the data pages, keeping size and footer."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x5A
    path.write_bytes(bytes(data))


def _two_years(cache: MarketCache, ex: MemoryExchange) -> pl.DataFrame:
    return cache.get_ohlcv(BTC, "1h", T0 - 48 * HOUR, 96, ex.fetch_ohlcv)  # 2023.parquet and 2024.parquet


def test_every_file_written_is_recorded_with_its_sha256(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        _two_years(cache, ex)
        cache.get_ohlcv(BTC, "1h", T0 + 48 * HOUR, 5, ex.fetch_ohlcv)  # an append: a delta file
    folder = tmp_path / "BTC_USDT_1h"
    files = sorted(p.name for p in folder.glob("*.parquet"))
    records = _records(folder)
    assert sorted(records) == files and len(files) == 3
    for name, rec in records.items():
        data = (folder / name).read_bytes()
        assert rec["size"] == len(data)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    # The original tool and glob readers see Parquet files only.
    assert pl.scan_parquet(folder / "*.parquet").collect().height == 96 + 5


def test_a_flipped_byte_heals_within_the_call_with_full_verify(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, verify="full", hot_cache_mb=0) as cache:
        good = _two_years(cache, ex)
        folder = tmp_path / "BTC_USDT_1h"
        _flip(folder / "2024.parquet")
        with pytest.raises(candlecache.CorruptionError, match=r"2024\.parquet.*fetch_callback"):
            cache.read(BTC, "1h")
        assert (folder / "2024.parquet.corrupt").exists()
        ex.calls.clear()
        again = _two_years(cache, ex)
        assert again.equals(good)
        assert ex.calls and all(since >= T0 for _, _, since, _ in ex.calls), "only 2024 is fetched again"
        assert cache.stats()["files_repaired"] == 1
        assert cache.verify().height == 0


def test_a_flipped_byte_is_healed_by_get_ohlcv_directly(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, verify="full", hot_cache_mb=0) as cache:
        good = _two_years(cache, ex)
        _flip(tmp_path / "BTC_USDT_1h" / "2023.parquet")
        ex.calls.clear()
        assert _two_years(cache, ex).equals(good)
        assert ex.calls and all(since < T0 for _, _, since, _ in ex.calls), "only 2023 is fetched again"


def test_a_write_never_merges_a_damaged_file_into_a_new_one(tmp_path):
    """A fetch whose candles a file already holds merges that file's other rows into a new
    file, which is recorded anew: the file is checked first, or its damage would come out with
    a valid record (seen once in a few runs of the kill -9 repair test below)."""
    ex = MemoryExchange()
    with MarketCache(tmp_path, verify="full", hot_cache_mb=0) as cache:
        cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv)
        _flip(tmp_path / "BTC_USDT_1h" / "2024.parquet")
        # Coverage only: the rows stay, so the next fetch of these hours merges with them.
        candlecache.forget(tmp_path, BTC, "1h", T0 + 10 * HOUR, T0 + 12 * HOUR)
        assert cache.get_ohlcv(BTC, "1h", T0 + 10 * HOUR, 3, ex.fetch_ohlcv).equals(
            ex.truth(BTC, "1h", T0 + 10 * HOUR, 3))
        assert cache.verify().height == 0
        for a, b in candlecache.coverage(tmp_path, BTC, "1h"):
            got = cache.read(BTC, "1h", a, b - HOUR)
            assert got.equals(ex.truth(BTC, "1h", a, (b - a) // HOUR)), f"covered {a}..{b} differs"
        assert cache.get_ohlcv(BTC, "1h", T0, 48, ex.fetch_ohlcv).equals(ex.truth(BTC, "1h", T0, 48))


def test_a_deleted_file_heals_with_the_default_fast_verify(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        good = _two_years(cache, ex)
        (tmp_path / "BTC_USDT_1h" / "2024.parquet").unlink()
        # A read that does not reach the lost file is unaffected.
        assert cache.read(BTC, "1h", T0 - 48 * HOUR, T0 - HOUR).height == 48
        with pytest.raises(candlecache.CorruptionError, match=r"2024\.parquet.*gone"):
            cache.read(BTC, "1h")
        ex.calls.clear()
        assert _two_years(cache, ex).equals(good)
        assert ex.calls and all(since >= T0 for _, _, since, _ in ex.calls)
        assert cache.verify().height == 0


def test_the_drop_in_function_heals_a_deleted_file_too(tmp_path):
    ex = MemoryExchange()
    good = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 48, ex.fetch_ohlcv)
    (tmp_path / "BTC_USDT_1h" / "2024.parquet").unlink()
    assert candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 48, ex.fetch_ohlcv).equals(good)


def test_verify_finds_a_flipped_byte_that_fast_reads_do_not_hash(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        good = _two_years(cache, ex)
        _flip(tmp_path / "BTC_USDT_1h" / "2023.parquet")
        report = cache.verify()
        assert report.height == 1
        assert report["file"][0].endswith("2023.parquet")
        assert report["fault"][0] in ("mismatch", "undecodable")
        assert report["repaired"].to_list() == [False]
        assert cache.verify(repair=True)["repaired"].to_list() == [True]
        assert cache.verify().height == 0
        assert _two_years(cache, ex).equals(good)


def test_verify_reports_missing_files_and_the_cli_says_so(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path) as cache:
        _two_years(cache, ex)
    (tmp_path / "BTC_USDT_1h" / "2023.parquet").unlink()
    out = subprocess.run([sys.executable, "-m", "candlecache", "verify", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    rows = json.loads(out.stdout)
    assert [(Path(r["file"]).name, r["fault"], r["repaired"]) for r in rows] == [("2023.parquet", "missing", False)]
    out = subprocess.run([sys.executable, "-m", "candlecache", "verify", str(tmp_path), "--repair"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "missing" in out.stdout
    assert candlecache.coverage(tmp_path, BTC, "1h") == [(T0, T0 + 48 * HOUR)]


def test_a_rewrite_by_the_original_tool_is_not_corruption(tmp_path):
    ex = MemoryExchange()

    def frames(symbol, period, since, limit, **params):
        rows = [candle(symbol, period, t) for t in range(since, since + limit * HOUR, HOUR)]
        return pl.DataFrame(rows, schema=["time", "open", "high", "low", "close", "volume"], orient="row")

    with MarketCache(tmp_path, verify="full") as cache:
        before = cache.get_ohlcv(BTC, "1h", T0, 24, ex.fetch_ohlcv)
        folder = tmp_path / "BTC_USDT_1h"
        recorded = _records(folder)["2024.parquet"]
        # The original tool appends a day: it rewrites 2024.parquet whole and logs its fetch.
        o_entry.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0 + 24 * HOUR, 24, frames)
        assert (folder / "2024.parquet").stat().st_size != recorded["size"]
        assert cache.verify().height == 0
        after = cache.read(BTC, "1h")
        assert after.equals(pl.concat([before, frames(BTC, "1h", T0 + 24 * HOUR, 24)]))
        assert not list(folder.glob("*.corrupt"))
        assert cache.stats()["files_repaired"] == 0
        # Recorded anew: the file now matches its record.
        data = (folder / "2024.parquet").read_bytes()
        assert _records(folder)["2024.parquet"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_files_of_the_original_tool_without_a_record_are_checked_by_decoding(tmp_path):
    ex = MemoryExchange()
    o_entry.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, lambda *a, **k: ex.truth(BTC, "1h", a[2], a[3]))
    folder = tmp_path / "BTC_USDT_1h"
    assert not (folder / ".checksums.jsonl").exists()
    with MarketCache(tmp_path, verify="full") as cache:
        assert cache.read(BTC, "1h").equals(ex.truth(BTC, "1h", T0, 24))
        assert cache.verify().height == 0
        data = (folder / "2024.parquet").read_bytes()
        (folder / "2024.parquet").write_bytes(data[: len(data) // 2])
        assert cache.verify()["fault"].to_list() == ["undecodable"]


def test_verify_off_trusts_the_disk(tmp_path):
    ex = MemoryExchange()
    with MarketCache(tmp_path, verify="off") as cache:
        _two_years(cache, ex)
        (tmp_path / "BTC_USDT_1h" / "2024.parquet").unlink()
        assert cache.read(BTC, "1h").height == 48  # trusted: no error, no repair
        assert cache.verify_mode == "off"


@pytest.mark.parametrize("bad", ["slow", "", None, 1])
def test_a_bad_verify_value_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="verify must be one of"):
        MarketCache(tmp_path, verify=bad)


REPAIRER = r"""
import random, sys
sys.path.insert(0, %r)
import candlecache
from memory_exchange import MemoryExchange, T0, DAY
from pathlib import Path
base, seed = sys.argv[1], int(sys.argv[2])
ex = MemoryExchange()
rnd = random.Random(seed)
folder = Path(base) / "BTC_USDT_1m"
with candlecache.MarketCache(base, verify="full", hot_cache_mb=0) as cache:
    while True:
        files = sorted(folder.glob("*.parquet"))
        if files:
            f = rnd.choice(files)
            try:
                data = bytearray(f.read_bytes())
                data[len(data) // 2] ^= 0xFF
                f.write_bytes(bytes(data))
            except FileNotFoundError:
                pass
        start = T0 + rnd.randrange(60) * DAY
        cache.get_ohlcv("BTC/USDT", "1m", start, 2 * 1440, ex.fetch_ohlcv)
""" % str(HERE)


def test_kill_9_during_repair_leaves_a_cache_that_reads_correctly(tmp_path):
    rnd = random.Random(11)
    ex = MemoryExchange()
    for i in range(5):
        p = subprocess.Popen([sys.executable, "-c", REPAIRER, str(tmp_path), str(i)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5 + rnd.random() * 1.5)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        # The worker may have died with damage it made not yet healed: a call with a callback
        # heals it, and everything covered then reads back exactly.
        with MarketCache(tmp_path, verify="full", hot_cache_mb=0) as cache:
            cache.verify(repair=True)
            assert cache.verify().height == 0
            for a, b in candlecache.coverage(tmp_path, BTC, "1m"):
                got = cache.read(BTC, "1m", a, b - 60_000)
                assert got.equals(ex.truth(BTC, "1m", a, (b - a) // 60_000)), f"covered {a}..{b} differs"
    with MarketCache(tmp_path, verify="full") as cache:
        df = cache.get_ohlcv(BTC, "1m", T0, 10 * 1440, ex.fetch_ohlcv)
        assert df.equals(ex.truth(BTC, "1m", T0, 10 * 1440))
