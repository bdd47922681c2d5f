"""The ``candlecache`` command, run as a user runs it: ``python -m candlecache VERB ...`` in a
subprocess. Exit status 0 success, 1 the work ran but something failed, 2 usage error;
``--json`` prints one parseable document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import candlecache
from memory_exchange import DAY, HOUR, T0, MemoryExchange

PYTHON_DIR = Path(candlecache.__file__).resolve().parents[1]
VERBS = ["backfill", "failures", "info", "stats", "verify", "clear", "gaps", "forget", "scan", "vacuum",
         "compact-tiers", "kv-import"]
BTC = "BTC/USDT"

# The archive backfill needs the extension built with src/vision (the lead creates
# /tmp/vision/READY once it is); until then only its usage errors are tested.
needs_vision = pytest.mark.skipif(
    not hasattr(candlecache._core, "vision_backfill"),
    reason="candlecache._core has no vision_backfill yet (extension not rebuilt)",
)


def cli(*args: object, check: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    r = subprocess.run(
        [sys.executable, "-m", "candlecache", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def cli_json(*args: object, check: int = 0) -> object:
    r = cli(*args, "--json", check=check)
    return json.loads(r.stdout)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """BTC/USDT 1h: Jan 1 (05:00-08:00 answered empty) and Jan 3 cached, Jan 2 not;
    ETH/USDT 1M: Jan-Jun 2024, listed in March (Jan and Feb answered empty)."""
    ex = MemoryExchange(gaps=[(T0 + 5 * HOUR, T0 + 8 * HOUR)])
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", T0 + 2 * DAY, 24, ex.fetch_ohlcv)
    late = MemoryExchange(listed=T0 + 33 * DAY)
    candlecache.get_ohlcv_with_cache(tmp_path, "ETH/USDT", "1M", T0, 6, late.fetch_ohlcv)
    return tmp_path


MAR_1 = 1_709_251_200_000
JUL_1 = 1_719_792_000_000


# ---------------------------------------------------------------------------------- help

def test_help_lists_the_verbs_and_exit_codes():
    r = cli("--help", check=0)
    for verb in VERBS:
        assert verb in r.stdout
    assert "Exit status" in r.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_examples(verb):
    r = cli(verb, "--help", check=0)
    assert f"candlecache {verb}" in r.stdout
    assert "examples:" in r.stdout
    assert "--json" in r.stdout


def test_usage_errors_exit_2():
    assert cli(check=2).stderr.startswith("usage:")
    cli("nosuchverb", check=2)
    cli("info", check=2)  # DIR missing
    cli("--version", check=0)


# ---------------------------------------------------------------------------------- stats

def test_stats_adds_up_every_process(cache):
    candlecache.market.default_cache(cache).close()  # saves this process's counts
    data = cli_json("stats", cache)
    assert (data["hits"], data["misses"], data["requests"]) == (0, 3, 3)
    assert data["entries"] == 2 and data["bytes_on_disk"] > 0
    assert data["days"][-1]["misses"] == 3
    table = cli("stats", cache, check=0).stdout
    assert "hit_rate" in table and "misses" in table
    candlecache.get_ohlcv_with_cache(cache, BTC, "1h", T0, 24, MemoryExchange().fetch_ohlcv)
    candlecache.market.default_cache(cache).close()
    assert cli_json("stats", cache, "--reset")["hits"] == 1
    assert cli_json("stats", cache)["hits"] == 0


def test_verify_and_clear(cache):
    assert cli_json("verify", cache) == []
    f = cache / "BTC_USDT_1h" / "2024.parquet"
    f.write_bytes(f.read_bytes()[:-64] + b"\x00" * 64)
    r = cli("verify", cache, check=1)
    assert "2024.parquet" in r.stdout and "no" in r.stdout
    fixed = cli_json("verify", cache, "--repair", check=0)
    assert [x["repaired"] for x in fixed] == [True]
    assert cli_json("verify", cache) == []
    assert cli_json("clear", cache, "--symbol", "ETH/USDT", "--period", "1M") == {"candles_removed": 4}
    assert cli("clear", cache, "--period", "7m", check=2).returncode == 2
    cli("clear", cache, "--run", "bt-1", "--symbol", "BTC/USDT", check=2)


def test_clear_a_run(cache):
    with candlecache.MarketCache(cache) as mc:
        used = mc.read(BTC, "1h", run_id="bt-1").height
    assert used > 0
    assert cli_json("clear", cache, "--run", "bt-1") == {"candles_removed": used}
    assert cli_json("clear", cache, "--run", "bt-1") == {"candles_removed": 0}


# ---------------------------------------------------------------------------------- info

def test_info_table_and_json(cache):
    r = cli("info", cache, check=0)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["symbol", "period", "first", "last"]
    assert any(line.split()[:4] == ["BTC_USDT", "1h", "2024-01-01T00:00:00Z", "2024-01-03T23:00:00Z"] for line in lines)
    rows = cli_json("info", cache)
    assert isinstance(rows, list)
    by = {(r["symbol"], r["period"]): r for r in rows}
    assert set(by) == {("BTC_USDT", "1h"), ("ETH_USDT", "1M")}
    btc = by["BTC_USDT", "1h"]
    assert (btc["first"], btc["last"], btc["rows"], btc["holes"]) == (T0, T0 + 71 * HOUR, 45, 1)
    assert btc["files"] >= 1 and btc["bytes"] > 0
    eth = by["ETH_USDT", "1M"]
    assert (eth["first"], eth["rows"], eth["holes"]) == (MAR_1, 4, 0)


def test_inventory_function(cache):
    df = candlecache.inventory(cache)
    assert df.columns == ["symbol", "period", "first", "last", "rows", "files", "bytes", "holes", "path"]
    assert df.get_column("symbol").to_list() == ["BTC_USDT", "ETH_USDT"]
    (cache / "not_a_cache").mkdir()  # a folder without candles is not listed
    (cache / "BTC_USDT_2x").mkdir()
    assert candlecache.inventory(cache).height == 2
    assert candlecache.inventory(cache / "not_a_cache").height == 0
    with pytest.raises(FileNotFoundError):
        candlecache.inventory(cache / "nope")


def test_info_of_an_empty_or_missing_directory(tmp_path):
    assert "no cached candles" in cli("info", tmp_path, check=0).stdout
    assert cli_json("info", tmp_path) == []
    r = cli("info", tmp_path / "nope", check=1)
    assert "nope" in r.stderr and r.stdout == ""


# ---------------------------------------------------------------------------------- gaps

def test_gaps_json_lists_holes_and_ranges_covered_empty(cache):
    out = cli_json("gaps", cache, BTC, "1h")
    assert out["holes"] == [[T0 + DAY, T0 + 2 * DAY]]
    assert out["covered_empty"] == [[T0 + 5 * HOUR, T0 + 8 * HOUR]]
    assert (out["start"], out["end"]) == (T0, T0 + 3 * DAY - 1)
    # --end DATE means through that day; the folder name works as the symbol
    out = cli_json("gaps", cache, "BTC_USDT", "1h", "--start", "2024-01-01T06:00:00Z", "--end", "2024-01-04")
    assert out["holes"] == [[T0 + DAY, T0 + 2 * DAY], [T0 + 3 * DAY, T0 + 4 * DAY]]
    assert out["covered_empty"] == [[T0 + 6 * HOUR, T0 + 8 * HOUR]]


def test_gaps_human_output(cache):
    r = cli("gaps", cache, BTC, "1h", check=0)
    assert "1 not cached, 1 covered without candles" in r.stdout
    assert "2024-01-02T00:00:00Z  2024-01-03T00:00:00Z" in r.stdout
    assert "nothing cached" in cli("gaps", cache, "SOL/USDT", "1h", check=0).stdout


def test_gaps_by_calendar_month(cache):
    out = cli_json("gaps", cache, "ETH/USDT", "1M", "--start", str(T0))
    assert out["holes"] == []
    assert out["covered_empty"] == [[T0, MAR_1]]
    assert candlecache.covered_empty(cache, "ETH/USDT", "1M") == [(T0, MAR_1)]
    assert candlecache.covered_empty(cache, "ETH/USDT", "1M", MAR_1, JUL_1) == []
    assert candlecache.covered_empty(cache, "ETH/USDT", "1M", "2024-02-01", "2024-02-20") == [(T0 + 31 * DAY, MAR_1)]
    assert candlecache.covered_empty(cache, "ETH/USDT", "1M", "2024-02-15", "2024-02-20") == []  # no candle opens there


def test_gaps_usage_errors_exit_2(cache):
    cli("gaps", cache, BTC, "2x", check=2)  # unknown period (argparse)
    r = cli("gaps", cache, BTC, "1h", "--start", "1704067200", check=2)  # seconds, not ms
    assert "1704067200000" in r.stderr
    cli("gaps", cache, BTC, "1h", "--start", "yesterday", check=2)
    r = cli("gaps", cache, BTC, "1h", "--start", "2024-01-05", "--end", "2024-01-01", check=2)  # the library's ValueError
    assert "before" in r.stderr and r.stdout == ""
    cli("gaps", cache / "nope", BTC, "1h", check=1)


# ---------------------------------------------------------------------------------- forget

def test_forget_coverage_then_rows(cache):
    out = cli_json("forget", cache, BTC, "1h", "--start", "2024-01-03T00:00:00Z", "--end", "2024-01-03T05:00:00Z")
    assert out["rows_removed"] == 0 and out["drop_rows"] is False
    assert cli_json("gaps", cache, BTC, "1h", "--start", "2024-01-03", "--end", "2024-01-03")["holes"] == [
        [T0 + 2 * DAY, T0 + 2 * DAY + 6 * HOUR]
    ]
    assert candlecache.read_cached(cache, BTC, "1h", T0 + 2 * DAY, T0 + 3 * DAY).height == 24
    r = cli("forget", cache, BTC, "1h", "--start", "2024-01-03", "--end", "2024-01-03", "--drop-rows", check=0)
    assert "24 candles removed" in r.stdout
    assert candlecache.read_cached(cache, BTC, "1h", T0 + 2 * DAY, T0 + 3 * DAY).height == 0
    r = cli("forget", cache, "ETH/USDT", "1M", check=0)
    assert "forgot everything" in r.stdout
    assert candlecache.coverage(cache, "ETH/USDT", "1M") == []


def test_forget_usage_errors(cache):
    cli("forget", cache, BTC, check=2)  # PERIOD missing
    cli("forget", cache, BTC, "1h", "--start", "2024-13-01", check=2)
    cli("forget", cache, BTC, "1h", "--start", "2024-01-03", "--end", "2024-01-02", check=2)
    assert candlecache.read_cached(cache, BTC, "1h").height == 45  # nothing happened


# ---------------------------------------------------------------------------------- backfill: usage

def test_backfill_usage_errors_exit_2(tmp_path):
    base = ["backfill", tmp_path]
    cli(*base, "--periods", "1h", "--start", "2024-01-01", check=2)  # --symbols missing
    cli(*base, "--symbols", BTC, "--periods", "1h", check=2)  # --start missing
    r = cli(*base, "--symbols", BTC, "--periods", "1h,2x", "--start", "2024-01-01", check=2)
    assert "2x" in r.stderr
    cli(*base, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-01", "--market", "usdm", check=2)
    cli(*base, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-01", "--workers", "0", check=2)
    cli(*base, "--symbols", ",", "--periods", "1h", "--start", "2024-01-01", check=2)
    r = cli(*base, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-05", "--end", "2024-01-01", check=2)
    assert "before" in r.stderr
    cli("failures", tmp_path, "--retry", "--clear", check=2)  # mutually exclusive
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- backfill: archive

@pytest.fixture
def archive():
    import fake_binance as fb

    server = fb.FakeBinance().start()
    try:
        yield server
    finally:
        server.stop()


def backfill(tmp_path, archive, *args, check=None):
    return cli("backfill", tmp_path, "--base-url", archive.url, "--workers", "2", *args, check=check)


@needs_vision
def test_backfill_two_symbols_json(tmp_path, archive):
    r = backfill(tmp_path, archive, "--symbols", "BTC/USDT,ETH/USDT", "--periods", "1h,1d",
                 "--start", "2024-01-01", "--end", "2024-01-03", "--json", check=0)
    reports = json.loads(r.stdout)
    assert [(x["symbol"], x["period"]) for x in reports] == [
        ("BTC/USDT", "1h"), ("BTC/USDT", "1d"), ("ETH/USDT", "1h"), ("ETH/USDT", "1d")
    ]
    assert all(x["ok"] and not x["failures"] and not x["holes_left"] for x in reports)
    assert [x["rows_written"] for x in reports] == [72, 3, 72, 3]
    assert reports[0]["market"] == "spot" and reports[0]["market_id"] == "BTCUSDT"
    info = {(x["symbol"], x["period"]): x for x in cli_json("info", tmp_path)}
    assert info["BTC_USDT", "1h"]["last"] == T0 + 71 * HOUR  # --end 2024-01-03: through that day
    assert info["BTC_USDT", "1h"]["holes"] == 0


@needs_vision
def test_backfill_human_table_and_a_second_run(tmp_path, archive):
    args = ("--symbols", "BTC/USDT:USDT", "--periods", "1h", "--start", "2024-01-01", "--end", "2024-01-02")
    r = backfill(tmp_path, archive, *args, check=0)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("symbol")
    assert lines[1].split()[:3] == ["BTC/USDT:USDT", "1h", "um:BTCUSDT"] and lines[1].endswith("ok")
    again = json.loads(backfill(tmp_path, archive, *args, "--json", check=0).stdout)
    assert again[0]["files_downloaded"] == 0 and again[0]["rows_written"] == 0


@needs_vision
def test_backfill_library_value_error_exits_2(tmp_path, archive):
    r = backfill(tmp_path, archive, "--symbols", "BTC/USDT:USDT", "--periods", "1s", "--start", "2024-01-01", check=2)
    assert "1s" in r.stderr


@needs_vision
def test_backfill_hole_left_exits_1(tmp_path, archive):
    import fake_archive

    archive.archive_404(fake_archive.daily_path(BTC, "1h", "2024-01-02"))
    r = backfill(tmp_path, archive, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-01",
                 "--end", "2024-01-03", "--json", check=1)
    (report,) = json.loads(r.stdout)
    assert report["holes_left"] == [[T0 + DAY, T0 + 2 * DAY]] and not report["failures"]
    assert report["ok"] is False


@needs_vision
def test_failures_list_summary_detail_retry_clear(tmp_path, archive):
    import fake_archive

    bad = fake_archive.daily_path(BTC, "1h", "2024-01-02")
    archive.archive_wrong_checksum(bad)
    r = backfill(tmp_path, archive, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-01",
                 "--end", "2024-01-03", check=1)
    assert "FAILED" in r.stdout and bad in r.stdout

    rows = cli_json("failures", tmp_path)
    assert [(x["file"], x["symbol"], x["period"]) for x in rows] == [(bad, BTC, "1h")]
    assert bad in cli("failures", tmp_path, check=0).stdout
    (summary,) = cli_json("failures", tmp_path, "--summary")
    assert (summary["symbol"], summary["period"], summary["files"]) == (BTC, "1h", 1)
    detail = cli("failures", tmp_path, "--detail", BTC, check=0).stdout
    assert fake_archive.wrong_sha(bad) in detail and archive.archive_sha256(bad) in detail
    assert cli_json("failures", tmp_path, "--detail", "ETH/USDT") == []

    archive.archive_clear_faults()
    (report,) = cli_json("failures", tmp_path, "--retry")
    assert report["ok"] and report["files_verified"] >= 1
    assert cli_json("failures", tmp_path) == []
    assert candlecache.read_cached(tmp_path, BTC, "1h").height == 72

    out = cli_json("failures", tmp_path, "--clear")
    assert out["backup"] is None or Path(out["backup"]).exists()
    assert "no failures" in cli("failures", tmp_path, check=0).stdout


@needs_vision
def test_failures_retry_that_still_fails_exits_1(tmp_path, archive):
    import fake_archive

    bad = fake_archive.daily_path(BTC, "1h", "2024-01-02")
    archive.archive_wrong_checksum(bad)
    backfill(tmp_path, archive, "--symbols", BTC, "--periods", "1h", "--start", "2024-01-01",
             "--end", "2024-01-03", check=1)
    r = cli("failures", tmp_path, "--retry", check=1)
    assert "FAILED" in r.stdout
    out = cli_json("failures", tmp_path, "--clear")
    assert Path(out["backup"]).exists()
    assert cli_json("failures", tmp_path) == []
