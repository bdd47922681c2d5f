"""``candlecache.backfill_binance_vision`` against a fake data.binance.vision.

The archive mirror lives in the same fake server as the REST API (tests/fake_archive.py mixed
into tests/fake_binance.py): zipped CSVs of the very candles ``/api/v3/klines`` answers, with
SHA-256 ``.CHECKSUM`` sidecars and switchable faults. Ground truth is
``fake_binance.expected_frame`` (a pure function of symbol, interval and open time), never what
the server sent; the server's archive log counts the downloads.

In-process tests run at a fixed "now" (``time.time`` monkeypatched, ``server.now_ms`` set);
the subprocess tests (kill -9, four processes) use dates of 2024 so the real clock works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import candlecache

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import fake_archive as fa  # noqa: E402
import fake_binance as fb  # noqa: E402
from fake_binance import BTC_GAP, DAY, MINUTE, OLD_DELISTED, ms  # noqa: E402

pytestmark = [
    pytest.mark.skipif(
        not hasattr(candlecache, "backfill_binance_vision") or not hasattr(candlecache._core, "vision_backfill"),
        reason="candlecache has no backfill_binance_vision yet (extension not rebuilt)",
    ),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

NOW = ms(2025, 3, 1)  # the fake "now" of in-process tests (and of the server's archive)
COLS = ["time", "open", "high", "low", "close", "volume"]
BTC, ETH, OLD = "BTC/USDT", "ETH/USDT", "OLD/USDT"
UM, CM = "BTC/USDT:USDT", "BTC/USD:BTC"
PYTHON_DIR = Path(candlecache.__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    """The fake Binance server (REST + archive), archive clock at NOW."""
    s = fb.FakeBinance().start()
    s.now_ms = NOW
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def clock(monkeypatch):
    """time.time fixed at NOW for candlecache (and ccxt) in this process."""
    monkeypatch.setattr(time, "time", lambda: NOW / 1000.0)
    return NOW


@pytest.fixture
def exchange(server, clock):
    """A real ccxt.binance pointed at the fake server, markets loaded, logs cleared."""
    ex = fb.make_exchange(server)
    server.reset_log()
    return ex


def backfill(base, server, symbol, period, start, end, **kw):
    kw.setdefault("workers", 4)
    return candlecache.backfill_binance_vision(base, symbol, period, start, end, base_url=server.url, **kw)


def truth(symbol, period, start, end):
    return fb.expected_frame(symbol, period, start, end, NOW)


def read(base, symbol, period, start, end):
    return candlecache.read_cached(base, symbol, period, start, end)


def check_equal(df, exp):
    assert df.columns == COLS
    assert df.get_column("time").is_unique().all(), "duplicate candle times stored"
    assert_frame_equal(df, exp)


def without(frame, a, b):
    """Ground truth minus the candles with a <= time < b."""
    return frame.filter((pl.col("time") < a) | (pl.col("time") >= b))


def day_paths(symbol, period, first_day, last_day):
    """Daily zip paths of the days first_day..last_day (epoch ms of midnights, inclusive)."""
    return [fa.daily_path(symbol, period, d) for d in range(first_day, last_day + 1, DAY)]


def downloads(server):
    """Counter of zip paths answered 200 since the last reset_log()."""
    return Counter(server.archive_downloads())


def rest_klines(server):
    return server.klines_count(ok_only=False)


# ------------------------------------------------------------------------------------------
# the fake archive itself (no candlecache involved)
# ------------------------------------------------------------------------------------------


def test_fake_archive_serves_rest_rows_with_checksums(server):
    import hashlib
    import io
    import urllib.request
    import zipfile

    def get(path):
        with urllib.request.urlopen(f"{server.url}/{path}") as r:
            return r.read()

    p = fa.daily_path(BTC, "1h", "2024-01-05")
    z, c = get(p), get(p + ".CHECKSUM").decode()
    assert c == f"{hashlib.sha256(z).hexdigest()}  BTCUSDT-1h-2024-01-05.zip"  # no trailing newline
    with zipfile.ZipFile(io.BytesIO(z)) as zf:
        assert zf.namelist() == ["BTCUSDT-1h-2024-01-05.csv"]
        lines = zf.read(zf.namelist()[0]).decode().splitlines()
    rest = json.loads(get(f"api/v3/klines?symbol=BTCUSDT&interval=1h&startTime={ms(2024, 1, 5)}&limit=24"))
    assert lines == [",".join(map(str, r)) for r in rest]  # archive rows == REST rows
    assert [int(x.split(",")[0]) for x in lines] == truth(BTC, "1h", ms(2024, 1, 5), ms(2024, 1, 5, 23))["time"].to_list()
    # formats: µs spot from 2025, um header from 2022, cm always a header, 1mo in paths
    first = server.archive_csv(fa.daily_path(BTC, "1m", "2025-01-01")).splitlines()[0].split(",")
    assert (first[0], first[6]) == (str(ms(2025, 1, 1) * 1000), str(ms(2025, 1, 1, 0, 1) * 1000 - 1))
    assert server.archive_csv(fa.daily_path(UM, "1h", "2021-12-31"))[0].isdigit()
    assert server.archive_csv(fa.daily_path(UM, "1h", "2022-01-01")).startswith("open_time,open,high")
    assert server.archive_csv(fa.monthly_path(CM, "1d", "2021-03")).startswith("open_time,")
    assert fa.monthly_path(BTC, "1M", "2024-01") == "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip"
    assert fa.daily_path(CM, "1m", "2024-01-01").startswith("data/futures/cm/daily/klines/BTCUSD_PERP/1m/")
    assert server.archive_log(kind="zip")[0]["status"] == 200


# ------------------------------------------------------------------------------------------
# plans and formats
# ------------------------------------------------------------------------------------------


def test_spot_1m_two_months_monthly_plus_daily_then_cache_serves_it(tmp_path, server, exchange):
    start, end = ms(2024, 1, 20), ms(2024, 3, 5, 23, 59)
    r = backfill(tmp_path, server, BTC, "1m", start, end)
    planned = (
        day_paths(BTC, "1m", ms(2024, 1, 20), ms(2024, 1, 31))
        + [fa.monthly_path(BTC, "1m", "2024-02")]
        + day_paths(BTC, "1m", ms(2024, 3, 1), ms(2024, 3, 5))
    )
    got = downloads(server)
    assert got == Counter(planned), f"downloaded {sorted(got)}"
    exp = truth(BTC, "1m", start, end)
    assert r.ok, r
    assert (r.symbol, r.period, r.market, r.market_id) == (BTC, "1m", "spot", "BTCUSDT")
    assert (r.files_planned, r.files_downloaded, r.files_verified, r.files_unverified) == (18, 18, 18, 0)
    assert r.files_missing == [] and r.failures == [] and r.holes_left == [] and r.holes_fetched == []
    assert r.rows_written == exp.height == 46 * 1440
    zip_bytes = sum(e["bytes"] for e in server.archive_log(ok_only=True, kind="zip"))
    assert r.bytes_downloaded >= zip_bytes
    check_equal(read(tmp_path, BTC, "1m", start, end), exp)
    assert candlecache.coverage(tmp_path, BTC, "1m") == [(start, end + MINUTE)]

    # the cache now answers get_ohlcv_with_cache without a single REST request
    server.reset_log()
    df = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1m", start, fetch_callback=exchange.fetch_ohlcv, end_time=end)
    check_equal(df, exp)
    assert rest_klines(server) == 0

    # a repeat backfill downloads nothing at all
    again = backfill(tmp_path, server, BTC, "1m", start, end)
    assert server.archive_log() == []
    assert (again.files_downloaded, again.files_planned, again.rows_written) == (0, 0, 0)
    assert again.files_skipped > 0 and again.ok


def test_spot_microsecond_files_from_2025_and_a_1s_day(tmp_path, server, clock):
    start, end = ms(2024, 12, 31), ms(2025, 1, 1, 23, 59)  # one ms file, one µs file
    r = backfill(tmp_path, server, BTC, "1m", start, end)
    assert r.ok, r
    assert downloads(server) == Counter(day_paths(BTC, "1m", ms(2024, 12, 31), ms(2025, 1, 1)))
    check_equal(read(tmp_path, BTC, "1m", start, end), truth(BTC, "1m", start, end))

    day = ms(2025, 1, 2)
    server.reset_log()
    r = backfill(tmp_path, server, BTC, "1s", day, day + DAY - 1000)
    assert r.ok, r
    assert list(downloads(server)) == [fa.daily_path(BTC, "1s", "2025-01-02")]
    assert r.rows_written == 86_400
    df = read(tmp_path, BTC, "1s", day, day + DAY - 1000)
    assert df.height == 86_400 and df["time"][0] == day and df["time"][-1] == day + DAY - 1000
    check_equal(df, truth(BTC, "1s", day, day + DAY - 1000))


def test_um_files_with_and_without_header(tmp_path, server, clock):
    start, end = ms(2021, 12, 30), ms(2022, 1, 2, 23)
    r = backfill(tmp_path, server, UM, "1h", start, end)
    assert r.ok, r
    assert (r.market, r.market_id) == ("um", "BTCUSDT")
    assert downloads(server) == Counter(day_paths(UM, "1h", ms(2021, 12, 30), ms(2022, 1, 2)))
    exp = truth(UM, "1h", start, end)
    assert not exp.equals(truth(BTC, "1h", start, end))  # um candles differ from spot ones
    check_equal(read(tmp_path, UM, "1h", start, end), exp)
    assert read(tmp_path, BTC, "1h", start, end).height == 0  # nothing under the spot symbol


def test_cm_monthly_files_with_header(tmp_path, server, clock):
    start, end = ms(2023, 1, 1), ms(2023, 3, 31)
    r = backfill(tmp_path, server, CM, "1d", start, end)
    assert r.ok, r
    assert (r.market, r.market_id) == ("cm", "BTCUSD_PERP")
    assert downloads(server) == Counter(fa.monthly_path(CM, "1d", f"2023-0{m}") for m in (1, 2, 3))
    check_equal(read(tmp_path, CM, "1d", start, end), truth(CM, "1d", start, end))


def test_3d_and_1M_come_from_monthly_files_only(tmp_path, server, clock):
    start, end = ms(2023, 1, 1), ms(2023, 6, 30)
    r = backfill(tmp_path, server, BTC, "3d", start, end)
    assert r.ok, r
    assert downloads(server) == Counter(fa.monthly_path(BTC, "3d", f"2023-0{m}") for m in range(1, 7))
    check_equal(read(tmp_path, BTC, "3d", start, end), truth(BTC, "3d", start, end))

    server.reset_log()
    start, end = ms(2022, 1, 1), ms(2023, 12, 1)
    r = backfill(tmp_path, server, BTC, "1M", start, end)
    assert r.ok, r
    got = downloads(server)
    assert got == Counter(fa.monthly_path(BTC, "1M", f"{y}-{m:02d}") for y in (2022, 2023) for m in range(1, 13))
    assert all("/1mo/" in p for p in got)
    check_equal(read(tmp_path, BTC, "1M", start, end), truth(BTC, "1M", start, end))


def test_end_none_stops_at_the_publication_lag(tmp_path, server, monkeypatch):
    now = ms(2024, 3, 10, 12)
    monkeypatch.setattr(time, "time", lambda: now / 1000.0)
    server.now_ms = now  # the archive has every day through Mar 9
    r = backfill(tmp_path, server, BTC, "1h", ms(2024, 3, 3), None)
    assert r.failures == [], r
    assert downloads(server) == Counter(day_paths(BTC, "1h", ms(2024, 3, 3), ms(2024, 3, 7)))
    exp = fb.expected_frame(BTC, "1h", ms(2024, 3, 3), ms(2024, 3, 7, 23), now)
    check_equal(read(tmp_path, BTC, "1h", ms(2024, 3, 3), ms(2024, 3, 9, 23)), exp)

    server.reset_log()
    r = backfill(tmp_path, server, BTC, "1h", ms(2024, 3, 3), None, publication_lag=timedelta(0))
    assert downloads(server) == Counter(day_paths(BTC, "1h", ms(2024, 3, 8), ms(2024, 3, 9)))
    exp = fb.expected_frame(BTC, "1h", ms(2024, 3, 3), ms(2024, 3, 9, 23), now)
    check_equal(read(tmp_path, BTC, "1h", ms(2024, 3, 3), ms(2024, 3, 9, 23)), exp)


def test_1w_monthly_files(tmp_path, server, clock):
    start, end = ms(2023, 1, 1), ms(2023, 6, 30)
    r = backfill(tmp_path, server, BTC, "1w", start, end)
    assert r.ok, r
    assert downloads(server) == Counter(fa.monthly_path(BTC, "1w", f"2023-0{m}") for m in range(1, 7))
    check_equal(read(tmp_path, BTC, "1w", start, end), truth(BTC, "1w", start, end))


def test_times_as_datetime_iso_and_date(tmp_path, server, clock):
    r = backfill(tmp_path, server, BTC, "1h", datetime(2024, 1, 10, tzinfo=timezone.utc), "2024-01-11T23:00:00Z")
    assert r.ok, r
    check_equal(read(tmp_path, BTC, "1h", ms(2024, 1, 10), ms(2024, 1, 11, 23)),
                truth(BTC, "1h", ms(2024, 1, 10), ms(2024, 1, 11, 23)))
    # a date as the end means that instant: the last candle is 2024-01-13 00:00, so that day's file is needed
    server.reset_log()
    r = backfill(tmp_path, server, BTC, "1h", "2024-01-12", "2024-01-13")
    assert r.ok, r
    assert downloads(server) == Counter(day_paths(BTC, "1h", ms(2024, 1, 12), ms(2024, 1, 13)))


def test_market_id_override_for_a_renamed_symbol(tmp_path, server, clock):
    start, end = ms(2024, 1, 10), ms(2024, 1, 11, 23)
    r = backfill(tmp_path, server, "ETHX/USDT", "1h", start, end, market_id="ETHUSDT")
    assert r.ok, r
    assert (r.market, r.market_id) == ("spot", "ETHUSDT")
    assert downloads(server) == Counter(day_paths(ETH, "1h", start, ms(2024, 1, 11)))
    check_equal(read(tmp_path, "ETHX/USDT", "1h", start, end), truth(ETH, "1h", start, end))


def test_what_rest_already_cached_is_skipped_and_overlaps_merge(tmp_path, server, exchange):
    start, end = ms(2024, 1, 10), ms(2024, 1, 14, 23)
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", ms(2024, 1, 11), 12, exchange.fetch_ohlcv)  # half a day
    candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1h", ms(2024, 1, 13), 24, exchange.fetch_ohlcv)  # a whole day
    server.reset_log()
    r = backfill(tmp_path, server, BTC, "1h", start, end)
    assert r.ok, r
    assert downloads(server) == Counter(day_paths(BTC, "1h", start, end)) - Counter([fa.daily_path(BTC, "1h", "2024-01-13")])
    assert r.files_skipped == 1
    check_equal(read(tmp_path, BTC, "1h", start, end), truth(BTC, "1h", start, end))


def test_monthly_404_falls_back_to_daily_files(tmp_path, server, clock):
    start, end = ms(2024, 2, 1), ms(2024, 2, 29, 23)
    month = fa.monthly_path(BTC, "1h", "2024-02")
    server.archive_404_monthly()
    r = backfill(tmp_path, server, BTC, "1h", start, end)
    assert r.holes_left == [] and r.failures == []
    assert downloads(server) == Counter(day_paths(BTC, "1h", start, ms(2024, 2, 29)))
    assert sum(1 for e in server.archive_log() if e["path"] == month) == 1  # asked once, 404
    check_equal(read(tmp_path, BTC, "1h", start, end), truth(BTC, "1h", start, end))
    # SPEC: files_missing lists 404s of daily files, or of monthly files of monthly-only periods
    assert r.files_missing == [], r.files_missing
    assert r.ok, r


def test_monthly_404_of_a_monthly_only_period_is_missing_and_a_hole(tmp_path, server, clock):
    start, end = ms(2023, 1, 1), ms(2023, 3, 31)
    gone = fa.monthly_path(BTC, "1w", "2023-02")
    server.archive_404_monthly([gone])
    r = backfill(tmp_path, server, BTC, "1w", start, end)
    assert r.files_missing == [gone] and r.failures == []
    feb = truth(BTC, "1w", ms(2023, 2, 1), ms(2023, 2, 28))["time"].to_list()
    assert r.holes_left == [(feb[0], feb[-1] + 7 * DAY)]
    check_equal(read(tmp_path, BTC, "1w", start, end), without(truth(BTC, "1w", start, end), feb[0], feb[-1] + 1))


def test_failed_monthly_file_falls_back_to_daily_and_stays_registered(tmp_path, server, clock):
    start, end = ms(2024, 2, 1), ms(2024, 2, 29, 23)
    month = fa.monthly_path(BTC, "1h", "2024-02")
    server.archive_wrong_checksum(month)
    r = backfill(tmp_path, server, BTC, "1h", start, end)
    assert [p for p, _ in r.failures] == [month]
    assert r.holes_left == []
    assert downloads(server) == Counter({month: 2, **Counter(day_paths(BTC, "1h", start, ms(2024, 2, 29)))})
    check_equal(read(tmp_path, BTC, "1h", start, end), truth(BTC, "1h", start, end))
    assert candlecache.vision_failures(tmp_path)["file"].to_list() == [month]


def test_days_before_a_listing_are_missing(tmp_path, server, clock):
    start, end = ms(2024, 2, 27), ms(2024, 3, 2, 23)
    r = backfill(tmp_path, server, "NEW/USDT", "1h", start, end)
    assert sorted(r.files_missing) == day_paths("NEW/USDT", "1h", start, ms(2024, 2, 29))
    assert r.failures == []
    assert r.holes_left == [(start, ms(2024, 3, 1))]  # the listing day's file covers its morning
    check_equal(read(tmp_path, "NEW/USDT", "1h", start, end), truth("NEW/USDT", "1h", start, end))


# ------------------------------------------------------------------------------------------
# files that are short, duplicated, or have gaps
# ------------------------------------------------------------------------------------------


def test_short_monthly_file_falls_back_to_daily_files(tmp_path, server, clock):
    start, end = ms(2023, 6, 1), ms(2023, 6, 30, 23)
    month = fa.monthly_path(BTC, "1h", "2023-06")
    server.archive_short(month, days=7)  # checksum matches, only Jun 1-7 inside
    r = backfill(tmp_path, server, BTC, "1h", start, end)
    assert r.ok, r
    assert downloads(server) == Counter([month] + day_paths(BTC, "1h", ms(2023, 6, 8), ms(2023, 6, 30)))
    check_equal(read(tmp_path, BTC, "1h", start, end), truth(BTC, "1h", start, end))
    assert candlecache.holes(tmp_path, BTC, "1h", start, end) == []


def test_duplicate_rows_are_stored_once(tmp_path, server, clock):
    start, end = ms(2024, 1, 10), ms(2024, 1, 11, 23, 59)
    server.archive_duplicates(fa.daily_path(BTC, "1m", "2024-01-10"), every=5, copies=3)
    assert len(server.archive_csv(fa.daily_path(BTC, "1m", "2024-01-10")).splitlines()) > 1440
    r = backfill(tmp_path, server, BTC, "1m", start, end)
    assert r.ok, r
    assert r.rows_written == 2 * 1440
    check_equal(read(tmp_path, BTC, "1m", start, end), truth(BTC, "1m", start, end))


def test_maintenance_gap_inside_a_file_is_covered_empty(tmp_path, server, exchange):
    start, end = ms(2023, 3, 23), ms(2023, 3, 25, 23, 59)
    r = backfill(tmp_path, server, BTC, "1m", start, end)
    assert r.ok, r
    exp = truth(BTC, "1m", start, end)
    assert exp.height == 3 * 1440 - (BTC_GAP[1] - BTC_GAP[0]) // MINUTE
    check_equal(read(tmp_path, BTC, "1m", start, end), exp)
    assert candlecache.coverage(tmp_path, BTC, "1m") == [(start, end + MINUTE)]
    server.reset_log()
    df = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1m", start, fetch_callback=exchange.fetch_ohlcv, end_time=end)
    check_equal(df, exp)
    assert rest_klines(server) == 0


def test_delisted_symbol_leaves_holes_only_after_delisting(tmp_path, server, clock):
    start, end = ms(2024, 1, 28), ms(2024, 2, 4, 23)
    r = backfill(tmp_path, server, OLD, "1h", start, end)
    gone = day_paths(OLD, "1h", ms(2024, 2, 2), ms(2024, 2, 4))
    assert sorted(r.files_missing) == sorted(gone)
    assert r.failures == []
    assert r.holes_left == [(OLD_DELISTED, ms(2024, 2, 5))]
    assert not r.ok
    assert downloads(server) == Counter(day_paths(OLD, "1h", ms(2024, 1, 28), ms(2024, 2, 1)))
    check_equal(read(tmp_path, OLD, "1h", start, end), truth(OLD, "1h", start, end))
    assert candlecache.vision_failures(tmp_path).height == 0


# ------------------------------------------------------------------------------------------
# holes: a day the archive lacks
# ------------------------------------------------------------------------------------------

H0, H1 = ms(2024, 1, 12), ms(2024, 1, 13)  # the missing day


def test_missing_day_without_callback_is_a_hole_not_a_failure(tmp_path, server, clock):
    start, end = ms(2024, 1, 10), ms(2024, 1, 14, 23)
    hole = fa.daily_path(BTC, "1h", H0)
    server.archive_404(hole)
    r = backfill(tmp_path, server, BTC, "1h", start, end)
    assert r.files_missing == [hole]
    assert r.failures == []
    assert r.holes_left == [(H0, H1)] and r.holes_fetched == []
    assert not r.ok
    check_equal(read(tmp_path, BTC, "1h", start, end), without(truth(BTC, "1h", start, end), H0, H1))
    assert candlecache.holes(tmp_path, BTC, "1h", start, end) == [(H0, H1)]
    assert candlecache.vision_failures(tmp_path).height == 0
    assert rest_klines(server) == 0


def test_missing_day_is_fetched_through_a_real_ccxt_binance(tmp_path, server, exchange):
    start, end = ms(2024, 1, 11), ms(2024, 1, 13, 23, 59)
    hole = fa.daily_path(BTC, "1m", H0)
    server.archive_404(hole)
    r = backfill(tmp_path, server, BTC, "1m", start, end, fetch_callback=exchange.fetch_ohlcv)
    assert r.ok, r
    assert r.files_missing == [hole]
    assert r.holes_fetched == [(H0, H1)] and r.holes_left == []
    exp = truth(BTC, "1m", start, end)
    check_equal(read(tmp_path, BTC, "1m", start, end), exp)
    starts = [int(q["params"]["startTime"]) for q in server.klines_log()]
    assert starts and starts[0] == H0 and all(H0 <= s < H1 for s in starts), starts  # only the hole
    assert server.klines_count() == 2  # 1440 candles, 1000 a request
    server.reset_log()
    df = candlecache.get_ohlcv_with_cache(tmp_path, BTC, "1m", start, fetch_callback=exchange.fetch_ohlcv, end_time=end)
    check_equal(df, exp)
    assert rest_klines(server) == 0


def test_a_callback_that_fails_on_a_hole_is_reported_and_the_archive_rows_are_kept(tmp_path, server, clock):
    start, end = ms(2024, 1, 11), ms(2024, 1, 13, 23, 59)
    server.archive_404(fa.daily_path(BTC, "1m", H0))

    def down(symbol, period, since, limit):
        raise ConnectionError("exchange unreachable")

    r = backfill(tmp_path, server, BTC, "1m", start, end, fetch_callback=down)
    assert not r.ok
    assert r.holes_fetched == [] and r.holes_left == [(H0, H1)]
    assert len(r.failures) == 1 and "ConnectionError: exchange unreachable" in r.failures[0][1]
    assert r.failures[0][0].startswith("fetch_callback 2024-01-12")
    assert read(tmp_path, BTC, "1m", start, end).height == 2 * 1440
    assert candlecache.vision_failures(tmp_path).height == 0  # not an archive file


# ------------------------------------------------------------------------------------------
# integrity: checksums, truncation, bad zips, the failure registry
# ------------------------------------------------------------------------------------------

S0, S1 = ms(2024, 1, 10), ms(2024, 1, 14, 23)  # 5 daily 1h files; the bad one is Jan 12


def test_wrong_checksum_is_registered_and_nothing_is_stored(tmp_path, server, clock):
    bad = fa.daily_path(BTC, "1h", H0)
    server.archive_wrong_checksum(bad)
    r = backfill(tmp_path, server, BTC, "1h", S0, S1)
    assert [p for p, _ in r.failures] == [bad]
    assert r.failures[0][1]  # a reason
    assert not r.ok
    assert r.holes_left == [(H0, H1)]
    assert r.files_verified == 4 and r.files_unverified == 0
    assert downloads(server)[bad] == 2  # downloaded once more, then given up
    check_equal(read(tmp_path, BTC, "1h", S0, S1), without(truth(BTC, "1h", S0, S1), H0, H1))
    assert read(tmp_path, BTC, "1h", H0, H1 - 1).height == 0

    f = candlecache.vision_failures(tmp_path)
    assert f.height == 1
    row = f.row(0, named=True)
    assert row["file"] == bad
    assert row["url"] == f"{server.url}/{bad}"
    assert (row["symbol"], row["period"], row["market"], row["market_id"]) == (BTC, "1h", "spot", "BTCUSDT")
    assert row["expected"] == fa.wrong_sha(bad)
    assert row["actual"] == server.archive_sha256(bad)
    assert row["attempts"] >= 1 and row["reason"]
    when = datetime.fromisoformat(row["when"].replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert (tmp_path / "vision_failures.jsonl").is_file()

    # fixed upstream: retry_failed downloads it even though it lies outside the range asked for
    server.archive_clear_faults()
    server.reset_log()
    r = backfill(tmp_path, server, BTC, "1h", ms(2024, 1, 14), S1, retry_failed=True)
    assert r.ok, r
    assert downloads(server) == Counter([bad])
    assert r.files_verified == 1
    assert candlecache.vision_failures(tmp_path).height == 0
    check_equal(read(tmp_path, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))


def test_proceed_on_failure_stores_and_still_registers(tmp_path, server, clock):
    bad = fa.daily_path(BTC, "1h", H0)
    server.archive_wrong_checksum(bad)
    r = backfill(tmp_path, server, BTC, "1h", S0, S1, proceed_on_failure=True)
    assert [p for p, _ in r.failures] == [bad]
    assert r.files_unverified == 1 and r.files_verified == 4
    assert r.holes_left == []
    check_equal(read(tmp_path, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))
    assert candlecache.vision_failures(tmp_path)["file"].to_list() == [bad]

    # a plain rerun: covered, nothing to download; the registry keeps the file
    server.reset_log()
    backfill(tmp_path, server, BTC, "1h", S0, S1)
    assert downloads(server) == Counter()
    assert candlecache.vision_failures(tmp_path)["file"].to_list() == [bad]

    # retry_failed downloads it again although it is covered, and resolves it
    server.archive_clear_faults()
    r = backfill(tmp_path, server, BTC, "1h", S0, S1, retry_failed=True)
    assert r.ok, r
    assert downloads(server) == Counter([bad]) and r.files_verified == 1
    assert candlecache.vision_failures(tmp_path).height == 0
    check_equal(read(tmp_path, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))


def test_missing_checksum_is_a_failure_unless_not_verifying(tmp_path, server, clock):
    bad = fa.daily_path(BTC, "1h", H0)
    server.archive_missing_checksum(bad)
    base = tmp_path / "verified"
    r = backfill(base, server, BTC, "1h", S0, S1)
    assert [p for p, _ in r.failures] == [bad]
    assert r.holes_left == [(H0, H1)]
    assert candlecache.vision_failures(base)["file"].to_list() == [bad]
    check_equal(read(base, BTC, "1h", S0, S1), without(truth(BTC, "1h", S0, S1), H0, H1))

    other = tmp_path / "unverified"
    r = backfill(other, server, BTC, "1h", S0, S1, verify_checksum=False)
    assert r.ok, r
    assert r.files_unverified == 5 and r.files_verified == 0
    check_equal(read(other, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))


@pytest.mark.parametrize("lying_length", [False, True], ids=["short-body", "lying-content-length"])
def test_truncated_zip(tmp_path, server, clock, lying_length):
    bad = fa.daily_path(BTC, "1h", H0)
    # once: the retry gets the whole file
    server.archive_truncate(bad, keep=0.5, lying_length=lying_length, times=1)
    r = backfill(tmp_path / "once", server, BTC, "1h", S0, S1)
    assert r.ok, r
    assert r.files_verified == 5 and r.files_downloaded == 5
    check_equal(read(tmp_path / "once", BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))
    assert candlecache.vision_failures(tmp_path / "once").height == 0

    # always: retried, then a failure; nothing of it stored
    server.archive_clear_faults()
    server.reset_log()
    server.archive_truncate(bad, keep=0.5, lying_length=lying_length)
    r = backfill(tmp_path / "always", server, BTC, "1h", S0, S1)
    assert [p for p, _ in r.failures] == [bad]
    assert r.holes_left == [(H0, H1)]
    assert sum(1 for e in server.archive_log(kind="zip") if e["path"] == bad) >= 2  # retried
    check_equal(read(tmp_path / "always", BTC, "1h", S0, S1), without(truth(BTC, "1h", S0, S1), H0, H1))
    assert candlecache.vision_failures(tmp_path / "always")["file"].to_list() == [bad]


@pytest.mark.parametrize("fault", ["garbage", "no_csv"])
def test_bad_zip_is_a_failure(tmp_path, server, clock, fault):
    bad = fa.daily_path(BTC, "1h", H0)
    getattr(server, f"archive_{fault}")(bad)  # checksum matches the bad file: the zip itself is bad
    a, b = tmp_path / "permanent", tmp_path / "transient"
    r = backfill(a, server, BTC, "1h", S0, S1)
    assert [p for p, _ in r.failures] == [bad]
    assert r.holes_left == [(H0, H1)]
    assert r.files_verified == 4
    check_equal(read(a, BTC, "1h", S0, S1), without(truth(BTC, "1h", S0, S1), H0, H1))
    assert candlecache.vision_failures(a)["file"].to_list() == [bad]

    # transient (transport damage): the retry succeeds
    server.archive_clear_faults()
    getattr(server, f"archive_{fault}")(bad, times=1)
    r = backfill(b, server, BTC, "1h", S0, S1)
    assert r.ok, r
    check_equal(read(b, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))


def test_429_and_503_are_retried(tmp_path, server, clock):
    server.archive_fail_next(2, 429, retry_after=1)
    server.archive_fail_next(2, 503)
    r = backfill(tmp_path, server, BTC, "1h", S0, S1, workers=2)
    assert r.ok, r
    assert r.seconds >= 1.0  # Retry-After: 1 was honoured
    statuses = Counter(e["status"] for e in server.archive_log())
    assert statuses[429] == 2 and statuses[503] == 2
    assert r.files_downloaded == 5 and r.files_verified == 5
    assert downloads(server) == Counter(day_paths(BTC, "1h", S0, ms(2024, 1, 14)))
    check_equal(read(tmp_path, BTC, "1h", S0, S1), truth(BTC, "1h", S0, S1))


def test_clear_vision_failures_returns_a_backup(tmp_path, server, clock):
    assert candlecache.clear_vision_failures(tmp_path) is None  # no registry yet
    bad = fa.daily_path(BTC, "1h", H0)
    server.archive_wrong_checksum(bad)
    backfill(tmp_path, server, BTC, "1h", S0, S1)
    assert candlecache.vision_failures(tmp_path).height == 1
    backup = candlecache.clear_vision_failures(tmp_path)
    assert isinstance(backup, Path) and backup.is_file()
    assert backup.parent == tmp_path
    assert bad in backup.read_text()
    assert candlecache.vision_failures(tmp_path).height == 0
    assert candlecache.vision_failures(tmp_path).columns == [
        "file", "url", "symbol", "period", "market", "market_id", "reason", "expected", "actual", "when", "attempts",
    ]


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------

BAD_INPUT = [
    ("unknown-period", dict(period="7m"), ValueError, ["7m", "1m", "1d"]),
    ("1s-on-um", dict(symbol=UM, period="1s"), ValueError, ["1s"]),
    ("1s-on-cm", dict(symbol=CM, period="1s"), ValueError, ["1s"]),
    ("bad-market", dict(market="options"), ValueError, ["options"]),
    ("period-type", dict(period=60), TypeError, ["period"]),
    ("symbol-type", dict(symbol=123), TypeError, ["symbol"]),
    ("start-type", dict(start=[2024]), TypeError, ["start_time"]),
    ("start-in-seconds", dict(start=1704067200), ValueError, ["1704067200000"]),
    ("end-before-start", dict(end=ms(2023, 1, 1)), ValueError, ["before"]),
    ("workers-type", dict(workers="8"), TypeError, ["workers"]),
    ("market-type", dict(market=1), TypeError, ["market"]),
    ("callback-type", dict(fetch_callback=42), TypeError, ["fetch_callback"]),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_raises_and_creates_nothing(tmp_path, server, clock, case):
    _, change, exc, words = case
    args = dict(symbol=BTC, period="1h", start=ms(2024, 1, 1), end=ms(2024, 1, 2))
    kw = {k: v for k, v in change.items() if k not in args}
    args.update({k: v for k, v in change.items() if k in args})
    base = tmp_path / "cache"
    with pytest.raises(exc) as info:
        candlecache.backfill_binance_vision(
            base, args["symbol"], args["period"], args["start"], args["end"], base_url=server.url, **kw
        )
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert not base.exists()
    assert list(tmp_path.iterdir()) == []
    assert server.archive_log() == []


# ------------------------------------------------------------------------------------------
# processes: kill -9 and four at once (real clock; 2024 dates are long published)
# ------------------------------------------------------------------------------------------

CHILD = r"""
import json, os, sys, time
import candlecache
url, base, symbol, period, start, end, workers, out, ready, go = sys.argv[1:]
if ready != "-":
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("barrier timeout")
        time.sleep(0.002)
r = candlecache.backfill_binance_vision(base, symbol, period, int(start), int(end), base_url=url,
                                        workers=int(workers), lock_timeout=120)
with open(out, "w") as f:
    json.dump({"ok": r.ok, "files_downloaded": r.files_downloaded, "rows_written": r.rows_written,
               "failures": r.failures, "holes_left": r.holes_left, "pid": os.getpid()}, f)
"""


def spawn(tmp_path, name, server, base, symbol, period, start, end, workers, ready="-", go="-"):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    err = open(tmp_path / f"{name}.stderr", "wb")  # a file, not a pipe: a killed child never blocks
    try:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, server.url, str(base), symbol, period, str(start), str(end),
             str(workers), str(tmp_path / f"{name}.json"), str(ready), str(go)],
            env=env, stderr=err, cwd=tmp_path,
        )
    finally:
        err.close()


def stderr_of(tmp_path, name):
    p = tmp_path / f"{name}.stderr"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def test_kill_9_mid_backfill_then_rerun_downloads_only_the_rest(tmp_path, server):
    base = tmp_path / "cache"
    start, end = ms(2024, 1, 1), ms(2024, 1, 20, 23)
    all_days = day_paths(BTC, "1h", start, ms(2024, 1, 20))
    server.archive_delay = 0.25
    p = spawn(tmp_path, "victim", server, base, BTC, "1h", start, end, workers=1)
    deadline = time.monotonic() + 60
    try:
        while len(server.archive_downloads()) < 6:
            if p.poll() is not None:
                pytest.fail(f"backfill exited early ({p.returncode}):\n{stderr_of(tmp_path, 'victim')}")
            assert time.monotonic() < deadline, "the backfill never downloaded 6 files"
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        rc = p.wait(timeout=30)
    assert rc == -signal.SIGKILL, "the backfill finished before it was killed: raise archive_delay"
    before = candlecache.coverage(base, BTC, "1h")
    assert before, "nothing stored after 6 downloads"
    assert len(server.archive_downloads()) < len(all_days)

    def covered(path):
        d0 = ms(*map(int, path.rsplit("-1h-", 1)[1][:-4].split("-")))
        return any(a <= d0 and d0 + DAY <= b for a, b in before)

    stored = [d for d in all_days if covered(d)]
    assert stored
    server.archive_delay = 0.0
    server.reset_log()
    r = candlecache.backfill_binance_vision(base, BTC, "1h", start, end, base_url=server.url, workers=4)
    assert r.ok, r
    again = downloads(server)
    assert not set(again) & set(stored), f"downloaded again: {sorted(set(again) & set(stored))}"
    assert set(again) | set(stored) == set(all_days)
    check_equal(read(base, BTC, "1h", start, end), truth(BTC, "1h", start, end))


def test_four_processes_backfilling_one_symbol_store_one_copy(tmp_path, server):
    base = tmp_path / "cache"
    start, end = ms(2024, 2, 1), ms(2024, 2, 10, 23)
    files = day_paths(BTC, "1h", start, ms(2024, 2, 10))
    server.archive_delay = 0.05
    go = tmp_path / "go"
    procs = [spawn(tmp_path, f"w{i}", server, base, BTC, "1h", start, end, 2, tmp_path / f"ready{i}", go)
             for i in range(4)]
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    pytest.fail(f"worker {i} exited with {p.returncode}:\n{stderr_of(tmp_path, f'w{i}')}")
            assert time.monotonic() < deadline, "workers never got ready"
            time.sleep(0.01)
        go.touch()
        for i, p in enumerate(procs):
            assert p.wait(timeout=120) == 0, stderr_of(tmp_path, f"w{i}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(4)]
    assert all(r["ok"] for r in reports), reports
    assert downloads(server) == Counter(files)  # every file exactly once
    assert sum(r["files_downloaded"] for r in reports) == len(files)
    assert sum(r["rows_written"] for r in reports) == 240
    check_equal(read(base, BTC, "1h", start, end), truth(BTC, "1h", start, end))


def test_an_async_callback_is_refused_with_what_to_do_instead(tmp_path, server):
    async def fetch(symbol, period, since, limit):
        return []

    with pytest.raises(TypeError, match=r"asynchronous.*synchronous client.*get_ohlcv_with_cache_async"):
        candlecache.backfill_binance_vision(tmp_path, BTC, "1h", ms(2024, 1, 1), ms(2024, 1, 2),
                                            base_url=server.url, fetch_callback=fetch)
    assert list(tmp_path.iterdir()) == []


def test_namespace_auto_names_the_ccxt_exchange_of_the_market(tmp_path, server, clock):
    start, end = ms(2021, 12, 30), ms(2022, 1, 2, 23)
    r = backfill(tmp_path, server, UM, "1h", start, end, namespace="auto")
    assert r.ok, r
    assert (tmp_path / "binanceusdm" / "BTC_USDT_USDT_1h").is_dir()
    got = candlecache.read_cached(tmp_path, UM, "1h", start, end, namespace="binanceusdm")
    check_equal(got, truth(UM, "1h", start, end))
    r = backfill(tmp_path, server, BTC, "1d", ms(2023, 1, 1), ms(2023, 1, 31), namespace="spot-archive")
    assert r.ok and (tmp_path / "spot-archive" / "BTC_USDT_1d").is_dir()
    with pytest.raises(ValueError, match="namespace"):
        backfill(tmp_path, server, BTC, "1d", ms(2023, 1, 1), ms(2023, 1, 31), namespace="../up")


def test_backfill_into_a_bucket_then_the_cache_serves_it(tmp_path, server, exchange, s3_bucket, monkeypatch):
    """An object store root: each archive file is committed to the bucket's log as it is
    stored; the failure registry stays on this machine."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    opts = s3_bucket.storage_options
    start, end = ms(2024, 1, 28), ms(2024, 2, 2, 23, 59)
    r = backfill(s3_bucket.url, server, BTC, "1m", start, end, storage_options=opts)
    exp = truth(BTC, "1m", start, end)
    assert r.ok, r
    assert r.rows_written == exp.height == 6 * 1440
    check_equal(candlecache.read_cached(s3_bucket.url, BTC, "1m", start, end, storage_options=opts), exp)
    assert not list(tmp_path.glob("BTC_USDT_1m")), "nothing written locally"
    server.reset_log()
    df = candlecache.get_ohlcv_with_cache(
        s3_bucket.url, BTC, "1m", start, fetch_callback=exchange.fetch_ohlcv, end_time=end, storage_options=opts
    )
    check_equal(df, exp)
    assert rest_klines(server) == 0
    again = backfill(s3_bucket.url, server, BTC, "1m", start, end, storage_options=opts)
    assert server.archive_log() == []
    assert (again.files_downloaded, again.rows_written) == (0, 0) and again.ok
    assert candlecache.vision_failures(s3_bucket.url).height == 0
    with pytest.raises(TypeError, match="storage_options"):
        backfill(tmp_path, server, BTC, "1m", start, end, storage_options=opts)
