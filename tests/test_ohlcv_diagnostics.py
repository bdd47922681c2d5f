"""Seeing what candlecache does, and errors that say what to do (issue 8, "diagnostics" and
"errors"): logging, the progress summary, ``coverage``/``holes``, clearer messages."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

import candlecache
from candlecache import get_ohlcv_with_cache
from memory_exchange import HOUR, MINUTE, T0, MemoryExchange

BTC = "BTC/USDT"


def test_requests_and_results_are_logged_at_info_cached_calls_at_debug(tmp_path, caplog):
    ex = MemoryExchange()
    with caplog.at_level(logging.DEBUG, logger="candlecache"):
        get_ohlcv_with_cache(tmp_path, BTC, "1m", T0, 2500, ex.fetch_ohlcv)
        info = [r for r in caplog.records if r.levelno == logging.INFO]
        plan = [r.getMessage() for r in info if "to fetch" in r.getMessage()]
        assert plan == ["BTC/USDT 1m: not cached, to fetch: 2024-01-01T00:00:00Z .. 2024-01-02T17:40:00Z"]
        asks = [r.getMessage() for r in info if "asking from" in r.getMessage()]
        assert len(asks) == len(ex.calls) == 3
        assert asks[0] == "BTC/USDT 1m: asking from 2024-01-01T00:00:00Z for up to 2500 candles"
        assert "2500 candles returned; 3 requests answered 2500 candles" in info[-1].getMessage()
        caplog.clear()
        get_ohlcv_with_cache(tmp_path, BTC, "1m", T0, 2500, ex.fetch_ohlcv)
        assert [r.levelno for r in caplog.records] == [logging.DEBUG]
        assert "2500 candles from the cache" in caplog.records[0].getMessage()


def test_nothing_is_printed_unless_logging_is_configured(tmp_path, capfd):
    get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, MemoryExchange().fetch_ohlcv)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_the_progress_bar_leaves_a_summary_line(tmp_path, capsys):
    pytest.importorskip("tqdm")
    get_ohlcv_with_cache(tmp_path, BTC, "1m", T0, 3000, MemoryExchange().fetch_ohlcv, progress=True)
    err = capsys.readouterr().err
    assert "BTC/USDT 1m: 3,000 of 3,000 candles fetched in" in err


def test_progress_without_tqdm_warns_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    monkeypatch.setattr(candlecache.ohlcv, "_warned_no_tqdm", False)
    ex = MemoryExchange()
    with pytest.warns(UserWarning, match="pip install tqdm"):
        get_ohlcv_with_cache(tmp_path, BTC, "1m", T0, 100, ex.fetch_ohlcv, progress=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_ohlcv_with_cache(tmp_path, BTC, "1m", T0 + 100 * MINUTE, 100, ex.fetch_ohlcv, progress=True)


def test_coverage_and_holes(tmp_path):
    ex = MemoryExchange()
    get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)
    get_ohlcv_with_cache(tmp_path, BTC, "1h", T0 + 48 * HOUR, 24, ex.fetch_ohlcv)
    assert candlecache.coverage(tmp_path, BTC, "1h") == [(T0, T0 + 24 * HOUR), (T0 + 48 * HOUR, T0 + 72 * HOUR)]
    assert candlecache.holes(tmp_path, BTC, "1h", "2024-01-01", "2024-01-04T23:00:00Z") == [
        (T0 + 24 * HOUR, T0 + 48 * HOUR),
        (T0 + 72 * HOUR, T0 + 96 * HOUR),
    ]
    assert candlecache.holes(tmp_path, BTC, "1h", T0, T0 + 23 * HOUR) == []
    assert candlecache.coverage(tmp_path, BTC, "4h") == []
    assert not (tmp_path / "BTC_USDT_4h").exists()


def test_base_dir_that_is_a_file_says_so(tmp_path):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="base_dir is a file, not a folder") as info:
        get_ohlcv_with_cache(f, BTC, "1h", T0, 24, MemoryExchange().fetch_ohlcv)
    assert str(info.value).count("Errno") == 1
    assert info.value.filename == str(f)


def test_a_lock_timeout_says_how_long_and_what_to_do(tmp_path):
    folder = candlecache.data_dir(tmp_path, BTC, "1h")
    holder = threading.Thread(target=candlecache._core.hold_lock, args=(folder, 1.5))
    holder.start()
    time.sleep(0.3)
    try:
        with pytest.raises(candlecache.Timeout) as info:
            get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, MemoryExchange().fetch_ohlcv, lock_timeout=0.2)
    finally:
        holder.join()
    message = str(info.value)
    assert "after 0.2 s" in message and "wait and try again" in message, message


def test_data_dir_expands_the_home_folder():
    assert candlecache.data_dir("~/candles", BTC, "1h") == Path.home() / "candles" / "BTC_USDT_1h"


def test_an_exchange_id_beside_its_unified_symbol_warns_once(tmp_path):
    import warnings

    ex = MemoryExchange()
    get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 24, ex.fetch_ohlcv)
    with pytest.warns(UserWarning, match=r"'BTCUSDT' looks like an exchange's market id.*'BTC/USDT'"):
        get_ohlcv_with_cache(tmp_path, "BTCUSDT", "1h", T0, 24, ex.fetch_ohlcv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_ohlcv_with_cache(tmp_path, "BTCUSDT", "1h", T0, 24, ex.fetch_ohlcv)  # once
        get_ohlcv_with_cache(tmp_path, "ETHUSDT", "1h", T0, 24, ex.fetch_ohlcv)  # no unified form here
        get_ohlcv_with_cache(tmp_path, "BTC/USDT:USDT", "1h", T0, 24, ex.fetch_ohlcv)


def test_a_year_out_of_range_is_called_a_year(tmp_path):
    with pytest.raises(ValueError, match="reach past the year 5000"):
        get_ohlcv_with_cache(tmp_path, BTC, "1M", T0, 10**8, MemoryExchange().fetch_ohlcv)
    with pytest.raises(ValueError, match=r"^year \d+ is outside the supported range of dates$"):
        candlecache._core.period_add("1M", T0, 10**9)


def test_a_first_call_that_fails_leaves_nothing_on_disk(tmp_path):
    """An unknown symbol (the callback raises before anything is stored) leaves no empty
    folder with a lock file behind; the next call for a real symbol works as usual."""

    def unknown(symbol, period, since, limit):
        raise ValueError(f"binance does not have market symbol {symbol}")

    with pytest.raises(ValueError, match="does not have market symbol"):
        get_ohlcv_with_cache(tmp_path, "NOPE/USDT", "1h", T0, 5, unknown)
    assert list(tmp_path.iterdir()) == []
    ex = MemoryExchange()
    assert get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 5, ex.fetch_ohlcv).height == 5
    # A folder that already held candles is kept when a later call fails.
    with pytest.raises(ValueError):
        get_ohlcv_with_cache(tmp_path, BTC, "1h", T0 + 5 * HOUR, 5, unknown)
    assert get_ohlcv_with_cache(tmp_path, BTC, "1h", T0, 5, ex.fetch_ohlcv).height == 5
