"""``scan_ohlcv`` (issue 11, part 5): every candle of a cache directory as one LazyFrame,
live files only, with folder-skipping filters."""

from __future__ import annotations

import shutil

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import candlecache
from memory_exchange import DAY, HOUR, MINUTE, T0, MemoryExchange

KEYS = ["namespace", "symbol", "period", "time"]


def fill(base, ex):
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT:USDT"):
        candlecache.get_ohlcv_with_cache(base, symbol, "1h", T0 - 24 * HOUR, 72, ex.fetch_ohlcv)
        for i in range(12):  # appends: delta files, then a compaction
            candlecache.get_ohlcv_with_cache(base, symbol, "1h", T0, 48 + i, ex.fetch_ohlcv)
    candlecache.get_ohlcv_with_cache(base, "BTC/USDT", "1m", T0, 600, ex.fetch_ohlcv)


def union_of_reads(base) -> pl.DataFrame:
    frames = []
    for row in candlecache.inventory(base).iter_rows(named=True):
        df = candlecache.read_cached(base, row["symbol"], row["period"])
        frames.append(df.select(pl.lit(None, pl.String).alias("namespace"), pl.lit(row["symbol"]).alias("symbol"),
                                pl.lit(row["period"]).alias("period"), pl.all()))
    return pl.concat(frames).sort(KEYS)


def test_the_scan_equals_every_folder_read_with_leftovers_and_damaged_files_present(tmp_path):
    ex = MemoryExchange()
    fill(tmp_path, ex)
    folder = candlecache.data_dir(tmp_path, "BTC/USDT", "1h")
    # A superseded leftover: a delta whose rows a compaction folded into the main file, put
    # back as if the process died before removing it (its rows are also in the main file).
    main = folder / "2024.parquet"
    assert pl.read_parquet(main).height > 48
    leftover = folder / "2024.d000001.parquet"
    pl.read_parquet(main).tail(3).write_parquet(leftover)
    assert leftover not in candlecache._core.live_files(folder), "the leftover must be superseded"
    # A damaged file moved aside, holding rows of its own.
    pl.read_parquet(main).head(5).with_columns(pl.col("close") * 0).write_parquet(folder / "2024.parquet.corrupt")
    got = candlecache.scan_ohlcv(tmp_path).collect().sort(KEYS)
    assert got.select(pl.struct(KEYS).is_unique().all()).item(), "a row twice"
    assert_frame_equal(got, union_of_reads(tmp_path))
    assert got.height == 3 * (24 + 59) + 600


def test_filters_skip_folders_before_opening_them(tmp_path):
    ex = MemoryExchange()
    fill(tmp_path, ex)
    # Any read of ETH's folder would fail now.
    (candlecache.data_dir(tmp_path, "ETH/USDT", "1h") / "2024.parquet").write_bytes(b"not parquet")
    lf = candlecache.scan_ohlcv(tmp_path)
    btc = lf.filter((pl.col("symbol") == "BTC_USDT") & (pl.col("period") == "1h") & (pl.col("time") >= T0)).collect()
    assert_frame_equal(btc.drop("namespace", "symbol", "period"),
                       ex.truth("BTC/USDT", "1h", T0, 48 + 11))
    assert lf.filter(pl.col("period") == "1m").select(pl.len()).collect().item() == 600
    assert candlecache.scan_ohlcv(tmp_path, symbols=["BTC/USDT"], periods="1m").collect().height == 600
    assert candlecache.scan_ohlcv(tmp_path, symbols="SOL/USDT:USDT").collect()["symbol"].unique().to_list() == ["SOL_USDT_USDT"]
    with pytest.raises(Exception):
        lf.collect()


def test_namespaces_projection_head_and_duckdb(tmp_path):
    ex = MemoryExchange()
    candlecache.get_ohlcv_with_cache(tmp_path, "BTC/USDT", "1d", T0, 30, ex.fetch_ohlcv)
    candlecache.get_ohlcv_with_cache(tmp_path / "okx", "BTC/USDT", "1d", T0, 10, ex.fetch_ohlcv)
    lf = candlecache.scan_ohlcv(tmp_path)
    counts = lf.group_by("namespace").len().sort("namespace", nulls_last=True).collect().rows()
    assert counts == [("okx", 10), (None, 30)]
    assert candlecache.scan_ohlcv(tmp_path, namespace="okx").collect().height == 10
    assert lf.select("time").head(7).collect().height == 7
    assert lf.select(pl.col("volume").sum()).collect().item() == pytest.approx(
        ex.truth("BTC/USDT", "1d", T0, 30)["volume"].sum() + ex.truth("BTC/USDT", "1d", T0, 10)["volume"].sum())
    rows = duckdb.sql("select coalesce(namespace, '-') as ns, count(*) as n from lf group by 1 order by 1").fetchall()
    assert rows == [("-", 30), ("okx", 10)]


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        candlecache.scan_ohlcv(tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown period"):
        candlecache.scan_ohlcv(tmp_path, periods=["7m"])
    with pytest.raises(TypeError):
        candlecache.scan_ohlcv(tmp_path, symbols=[1])
    assert candlecache.scan_ohlcv(tmp_path).collect().height == 0


def test_the_cli_verb_queries_and_exports(tmp_path):
    import json
    import subprocess
    import sys

    ex = MemoryExchange()
    for symbol in ("BTC/USDT", "ETH/USDT"):
        candlecache.get_ohlcv_with_cache(tmp_path, symbol, "1d", T0, 10, ex.fetch_ohlcv)
    run = lambda *a: subprocess.run([sys.executable, "-m", "candlecache", "scan", str(tmp_path), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    out = run("--sql", "select symbol, count(*) as n from candles group by symbol order by symbol", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"symbol": "BTC_USDT", "n": 10}, {"symbol": "ETH_USDT", "n": 10}]
    target = tmp_path / "out" / "eth.parquet"
    target.parent.mkdir()
    out = run("--symbol", "ETH/USDT", "--out", str(target))
    assert out.returncode == 0, out.stderr
    assert_frame_equal(pl.read_parquet(target).drop("namespace", "symbol", "period"), ex.truth("ETH/USDT", "1d", T0, 10))
    out = run("--sql", "select nonsense from nowhere")
    assert out.returncode == 2 and "candles" in out.stderr and "Traceback" not in out.stderr
    out = run("--out", str(tmp_path / "x.txt"))
    assert out.returncode == 2 and ".parquet or .csv" in out.stderr
