"""DataFrames as values of the disk cache (issue 14): Arrow IPC files instead of pickles, read
back as the type that was stored, a hot tier that another process's ``set`` invalidates,
deterministic keys, tags for a backtest's data, and damage that is reported, never decoded."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import candlecache
from candlecache import Cache, CorruptionError, FanoutCache, Index, frame_key, frame_path

HERE = Path(__file__).parent


class MyFrame(pl.DataFrame):
    """A subclass may carry state Arrow does not hold: pickled as before."""


def every_polars_dtype() -> pl.DataFrame:
    return pl.DataFrame({
        "i8": pl.Series([1, None, -3], dtype=pl.Int8),
        "i16": pl.Series([1, None, -3], dtype=pl.Int16),
        "i32": pl.Series([1, None, -3], dtype=pl.Int32),
        "i64": pl.Series([1, None, -3], dtype=pl.Int64),
        "u8": pl.Series([1, None, 3], dtype=pl.UInt8),
        "u16": pl.Series([1, None, 3], dtype=pl.UInt16),
        "u32": pl.Series([1, None, 3], dtype=pl.UInt32),
        "u64": pl.Series([2**63, None, 3], dtype=pl.UInt64),
        "f32": pl.Series([1.5, None, float("nan")], dtype=pl.Float32),
        "f64": [1.5, None, float("-inf")],
        "bool": [True, None, False],
        "str": ["a", None, "ü" * 40],
        "bin": [b"x", None, b"\x00" * 20],
        "date": [dt.date(2020, 1, 1), None, dt.date(1960, 1, 1)],
        "dt_us_tz": pl.Series([dt.datetime(2020, 1, 1), None, dt.datetime(2021, 6, 1)]).dt.replace_time_zone("Europe/Paris"),
        "dt_ms": pl.Series([dt.datetime(2020, 1, 1), None, dt.datetime(2021, 1, 1)], dtype=pl.Datetime("ms")),
        "dt_ns": pl.Series([dt.datetime(2020, 1, 1), None, dt.datetime(2021, 1, 1)], dtype=pl.Datetime("ns")),
        "dur": pl.Series([dt.timedelta(days=1), None, dt.timedelta(0)], dtype=pl.Duration("ms")),
        "time": [dt.time(1, 2, 3), None, dt.time(0)],
        "cat": pl.Series(["a", "b", None], dtype=pl.Categorical),
        "enum": pl.Series(["x", "y", None], dtype=pl.Enum(["y", "x", "z"])),
        "dec": pl.Series([decimal.Decimal("1.23"), None, decimal.Decimal("-4.56")], dtype=pl.Decimal(10, 2)),
        "list": [[1, 2], None, []],
        "array": pl.Series([[1, 2], [3, 4], None], dtype=pl.Array(pl.Int32, 2)),
        "struct": [{"a": 1, "b": "x"}, None, {"a": 3, "b": None}],
        "nested": [[{"q": [1.0]}], None, []],
        "null": pl.Series([None, None, None], dtype=pl.Null),
    })


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "c") as c:
        yield c


def _is_arrow_file(cache: Cache, key) -> bool:
    path = frame_path(cache, key)
    return path is not None and path.suffix == ".arrow" and path.exists()


# -- round trips --------------------------------------------------------------------------------

def test_every_polars_dtype_round_trips_exactly(cache):
    df = every_polars_dtype()
    cache.set("df", df)
    assert _is_arrow_file(cache, "df")
    back = cache.get("df")
    assert type(back) is pl.DataFrame
    assert back.schema == df.schema
    assert_frame_equal(back, df)


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_polars_empty_chunked_and_a_million_rows(tmp_path, compression):
    with Cache(tmp_path / "c", frame_compression=compression) as cache:
        empty = every_polars_dtype().clear()
        cache["empty"] = empty
        assert_frame_equal(cache["empty"], empty)
        chunked = pl.concat([every_polars_dtype()] * 3, rechunk=False)
        assert chunked.n_chunks() == 3
        cache["chunked"] = chunked
        assert_frame_equal(cache["chunked"], chunked)
        n = 1_000_000
        rng = np.random.default_rng(1)
        big = pl.DataFrame({
            "time": np.arange(n, dtype=np.int64) * 60_000,
            "close": rng.random(n),
            "symbol": rng.choice(["BTC", "ETH", "SOL"], n),
        })
        cache["big"] = big
        assert_frame_equal(cache.get("big"), big)
        assert cache.frame_compression == compression


def test_pandas_index_kinds_and_zoned_datetimes(cache):
    n = 4
    frames = {
        "range": pd.DataFrame({"x": np.arange(n, dtype=float)}, index=pd.RangeIndex(10, 10 + 2 * n, 2)),
        "named": pd.DataFrame({"x": range(n)}, index=pd.Index(list("abcd"), name="sym")),
        "datetime_tz": pd.DataFrame(
            {"close": [1.0, 2.0, None, 4.0]},
            index=pd.date_range("2024-03-30", periods=n, freq="D", tz="Europe/Paris", name="time"),
        ),
        "multi": pd.DataFrame(
            {"v": range(n)},
            index=pd.MultiIndex.from_product([["BTC", "ETH"], [1, 2]], names=["sym", "n"]),
        ),
        "dtypes": pd.DataFrame({
            "ts": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04"], utc=True).tz_convert("America/New_York"),
            "naive": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04"]),
            "cat": pd.Categorical(["a", "b", "a", None], ordered=True),
            "nullable": pd.array([1, None, 3, 4], dtype="Int64"),
            "text": ["x", "y", None, "z"],
            "flag": [True, False, True, False],
            "delta": pd.to_timedelta([1, 2, 3, 4], unit="s"),
        }),
        "int_labels": pd.DataFrame({0: [1.0, 2.0], 1: [3.0, 4.0]}),
        "range_labels": pd.DataFrame(np.eye(3)),
        "attrs_and_freq": pd.DataFrame({"x": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="h")),
        "empty": pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    }
    frames["attrs_and_freq"].attrs = {"source": "binance", "version": 2}
    for name, df in frames.items():
        cache[name] = df
        assert _is_arrow_file(cache, name), name
        back = cache[name]
        assert type(back) is pd.DataFrame
        pd.testing.assert_frame_equal(back, df, check_index_type=True, check_column_type=True)
        assert back.attrs == df.attrs and getattr(back.index, "freq", None) == getattr(df.index, "freq", None)


def test_pyarrow_tables_keep_their_schema_and_metadata(cache):
    t = pa.table(
        {
            "a": pa.array([1, None, 3], pa.int32()),
            "l": pa.array([[1], None, [2, 3]], pa.list_(pa.int64())),
            "m": pa.array([{"k": 1}, None, {"k": 2}], pa.struct([("k", pa.int8())])),
            "d": pa.array(["x", "y", "x"]).dictionary_encode(),
            "ts": pa.array([0, 1, None], pa.timestamp("ns", tz="Asia/Tokyo")),
        },
        metadata={"source": "test"},
    )
    cache["t"] = t
    back = cache["t"]
    assert type(back) is pa.Table
    assert back.schema.equals(t.schema, check_metadata=True)
    assert back.equals(t)


def test_what_arrow_cannot_hold_exactly_is_pickled_as_before(cache):
    wide_ints = pl.DataFrame({"i128": pl.Series([2**100, None, -3], dtype=pl.Int128)})
    mixed = pd.DataFrame({"m": [1, "a", 2.5]})
    duplicate_labels = pd.DataFrame([[1, 2]], columns=["a", "a"])
    for name, value in [("i128", wide_ints), ("mixed", mixed), ("dup", duplicate_labels)]:
        cache[name] = value
        assert frame_path(cache, name) is None, f"{name} should have been pickled"
    assert cache["mixed"].equals(mixed) and cache["dup"].equals(duplicate_labels)
    assert_frame_equal(cache["i128"], wide_ints)
    cache["sub"] = MyFrame({"a": [1]})
    assert frame_path(cache, "sub") is None
    odd_attrs = pd.DataFrame({"a": [1]})
    odd_attrs.attrs = {"window": (5, 20), 1: "int key"}  # JSON would give back a list and "1"
    cache["attrs"] = odd_attrs
    assert frame_path(cache, "attrs") is None and cache["attrs"].attrs == odd_attrs.attrs


def test_a_lazy_frame_is_refused_with_the_fix(cache):
    with pytest.raises(TypeError, match=r"LazyFrame.*collect\(\)"):
        cache.set("lazy", pl.LazyFrame({"a": [1]}))
    assert "lazy" not in cache


def test_a_frame_pickled_before_this_change_still_reads(cache, monkeypatch):
    df = pl.DataFrame({"a": [1, 2]})
    monkeypatch.setattr(candlecache.frames, "frame_kind", lambda value: None)
    cache.set("old", df)
    monkeypatch.undo()
    assert frame_path(cache, "old") is None  # a pickle, as earlier versions wrote it
    assert_frame_equal(cache.get("old"), df)


def test_read_true_gives_the_arrow_file(cache):
    df = pl.DataFrame({"a": [1, 2, 3]})
    cache.set("df", df)
    with cache.read("df") as handle:
        assert_frame_equal(pl.read_ipc(handle.read()), df)


# -- frames read by other tools -----------------------------------------------------------------

def test_frame_path_is_readable_by_polars_pyarrow_and_duckdb(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    df = pl.DataFrame({"time": [1, 2, 3], "close": [1.0, 2.0, 3.0]})
    for c in (Cache(tmp_path / "c"), FanoutCache(tmp_path / "f", shards=3), Index(str(tmp_path / "i"))):
        c["px"] = df
        path = frame_path(c, "px")
        assert path is not None and path.is_file()
        assert_frame_equal(pl.scan_ipc(path).filter(pl.col("time") > 1).collect(), df.filter(pl.col("time") > 1))
        assert pa.ipc.open_file(path).read_all().num_rows == 3
        con = duckdb.connect()
        try:
            con.execute("INSTALL arrow; LOAD arrow")
        except Exception:
            pass  # offline: the Arrow scanner is optional, the polars and pyarrow reads stand
        c["n"] = 1
        assert frame_path(c, "n") is None and frame_path(c, "missing") is None


# -- hot tier -----------------------------------------------------------------------------------

def test_hot_tier_hits_are_safe_to_mutate(cache):
    df = pl.DataFrame({"a": [1, 2, 3]})
    cache["p"] = df
    first = cache["p"]
    first[0, "a"] = 99
    assert_frame_equal(cache["p"], df)
    pdf = pd.DataFrame({"a": [1.0, 2.0]})
    cache["q"] = pdf
    got = cache["q"]
    got.iloc[0, 0] = 99.0
    pd.testing.assert_frame_equal(cache["q"], pdf)


def test_hot_tier_is_bounded_and_can_be_off(tmp_path):
    with Cache(tmp_path / "c", frame_cache_size=0) as c:
        c["a"] = pl.DataFrame({"a": [1]})
        assert_frame_equal(c["a"], pl.DataFrame({"a": [1]}))
        assert len(c.disk._hot_frames()._items) == 0
    with Cache(tmp_path / "d", frame_cache_size=100_000) as c:
        for i in range(20):
            c[i] = pl.DataFrame({"a": np.arange(2_000) + i})  # 16 kB each
            c[i]
        hot = c.disk._hot_frames()
        assert hot._bytes <= 100_000 and 0 < len(hot._items) < 20
    with pytest.raises(ValueError, match="frame_cache_size"):
        Cache(tmp_path / "e", frame_cache_size=-1)
    with pytest.raises(ValueError, match="frame_compression.*lz4"):
        Cache(tmp_path / "e", frame_compression="brotli")


READER = r"""
import sys, time
sys.path.insert(0, %r)
import candlecache, polars as pl
c = candlecache.Cache(sys.argv[1])
print(c["df"]["v"][0], flush=True)
c["df"] = pl.DataFrame({"v": [int(sys.argv[2])] * 1000})
"""


def test_another_processs_set_is_seen_by_the_next_get(tmp_path):
    with Cache(tmp_path / "c") as cache:
        cache["df"] = pl.DataFrame({"v": [1] * 1000})
        assert cache["df"]["v"][0] == 1  # now in this process's hot tier
        for version in (2, 3):
            out = subprocess.run([sys.executable, "-c", READER % str(HERE), str(tmp_path / "c"), str(version)],
                                 capture_output=True, text=True, check=True).stdout
            assert int(out) == version - 1, "the other process reads what this one stored"
            assert cache["df"]["v"][0] == version, "a set in another process is seen at once"


# -- damage -------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["flip", "truncate", "garbage"])
def test_a_damaged_frame_file_is_an_error_check_finds_it_and_memoize_recomputes(tmp_path, how):
    calls = []
    with Cache(tmp_path / "c", frame_cache_size=0) as cache:
        @cache.memoize()
        def prices(symbol: str) -> pl.DataFrame:
            calls.append(symbol)
            return pl.DataFrame({"close": np.arange(10_000, dtype=float)})

        good = prices("BTC")
        key = prices.__cache_key__("BTC")
        path = frame_path(cache, key)
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[len(data) // 2] ^= 0x01
        elif how == "truncate":
            data = data[: len(data) // 2]
        else:
            data = bytearray(pickle.dumps("not arrow"))
        path.write_bytes(bytes(data))
        with pytest.raises(CorruptionError, match=r"\.arrow.*damaged"):
            cache.get(key)
        assert [w for w in cache.check() if path.name in str(w.message)]
        assert_frame_equal(prices("BTC"), good)  # a miss: computed again, stored anew
        assert calls == ["BTC", "BTC"]
        assert_frame_equal(prices("BTC"), good) and calls == ["BTC", "BTC"]
        assert cache.check() == []


def test_check_fix_removes_orphaned_frame_files_only(tmp_path):
    with Cache(tmp_path / "c") as cache:
        cache["keep"] = pl.DataFrame({"a": [1]})
        keep = frame_path(cache, "keep")
        orphan = keep.parent / "0123456789abcdef0123456789ab.deadbeef.arrow"
        orphan.write_bytes(b"x")
        foreign = keep.parent / "notes.arrow"
        foreign.write_bytes(b"y")
        warnings_ = cache.check(fix=True)
        assert any(orphan.name in str(w.message) for w in warnings_)
        assert not orphan.exists() and foreign.exists() and keep.exists()


SETTER = r"""
import sys
sys.path.insert(0, %r)
import numpy as np, polars as pl, candlecache
c = candlecache.Cache(sys.argv[1])
i = 0
while True:
    i += 1
    c.set("df", pl.DataFrame({"version": np.full(300_000, i), "x": np.arange(300_000)}))
    print(i, flush=True)
"""


def test_kill_9_during_frame_sets_leaves_the_old_value_or_the_new(tmp_path):
    d = tmp_path / "c"
    rnd = random.Random(3)
    acknowledged = 0
    for _ in range(4):
        p = subprocess.Popen([sys.executable, "-c", SETTER % str(HERE), str(d)],
                             stdout=subprocess.PIPE, text=True)
        # Kill once it has acknowledged a few sets, at a random point of a later one.
        seen = [int(p.stdout.readline()) for _ in range(2)]
        time.sleep(rnd.random() * 0.3)
        p.send_signal(signal.SIGKILL)
        p.wait()
        rest = p.stdout.read().split()
        last_ack = int(rest[-1]) if rest else seen[-1]
        with Cache(d) as cache:
            df = cache["df"]
            version = df["version"][0]
            assert version >= last_ack, "an acknowledged set was lost"
            assert version <= last_ack + 1
            assert (df["version"] == version).all() and df.height == 300_000
            assert (df["x"] == np.arange(300_000)).all()
            assert not [w for w in cache.check() if "damaged" in str(w.message)]
        acknowledged = max(acknowledged, last_ack)
    assert acknowledged >= 2


# -- keys, tags, statistics -------------------------------------------------------------------

def test_frame_key_is_order_independent_and_stable():
    key = frame_key(symbols=["MSFT", "AAPL"], start="2023-01-01", end="2023-12-31", resolution="1d", source="yfinance")
    # The documented format, fixed for good: changing it would orphan every stored frame.
    assert key == "frame-v1-6d37665b193238d4049558714e2e6913"
    same = [
        frame_key(symbols=("AAPL", "MSFT"), start="2023-01-01", end="2023-12-31", resolution="1d", source="yfinance"),
        frame_key(symbols={"AAPL", "MSFT", "AAPL"}, start=dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc),
                  end=dt.date(2023, 12, 31), resolution="1d", source="yfinance"),
        frame_key(symbols=["AAPL", "MSFT"], start=1672531200000, end=pd.Timestamp("2023-12-31", tz="UTC"),
                  resolution="1d", source="yfinance"),
    ]
    assert set(same) == {key}
    others = [
        frame_key(symbols=["AAPL"], start="2023-01-01", end="2023-12-31", resolution="1d", source="yfinance"),
        frame_key(symbols=["AAPL", "MSFT"], start="2023-01-02", end="2023-12-31", resolution="1d", source="yfinance"),
        frame_key(symbols=["AAPL", "MSFT"], start="2023-01-01", end="2023-12-31", resolution="1h", source="yfinance"),
        frame_key(symbols=["AAPL", "MSFT"], start="2023-01-01", end="2023-12-31", resolution="1d", source="ccxt"),
        frame_key(symbols=["AAPL", "MSFT"], start="2023-01-01", end="2023-12-31", resolution="1d", source="yfinance", adjust=True),
    ]
    assert len(set(others + [key])) == len(others) + 1
    assert frame_key(symbols="BTC/USDT", window=20, alpha=0.5) == frame_key(alpha=0.5, window=20, symbols=["BTC/USDT"])
    assert frame_key(symbols="BTC/USDT", window=np.int64(20)) == frame_key(symbols="BTC/USDT", window=20)
    with pytest.raises(TypeError, match="params"):
        frame_key(symbols="BTC", model=object())
    with pytest.raises(TypeError, match="symbols"):
        frame_key(symbols=[1, 2])
    with pytest.raises(ValueError, match="start"):
        frame_key(start="first of January")


def test_frame_key_is_the_same_in_another_process():
    code = "import candlecache; print(candlecache.frame_key(symbols=['B', 'A'], start=0, resolution='1m', k=[1, 2.5]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert out == frame_key(symbols=["A", "B"], start=0, resolution="1m", k=[1, 2.5])


def test_a_backtests_frames_go_with_its_tag_and_count_in_stats(tmp_path):
    with Cache(tmp_path / "c", statistics=True) as cache:
        for i in range(3):
            cache.set(frame_key(symbols=[f"S{i}"], source="bt"), pl.DataFrame({"a": [i]}), tag="bt-001")
        cache.set("other", pl.DataFrame({"a": [9]}), tag="bt-002")
        files = [frame_path(cache, frame_key(symbols=[f"S{i}"], source="bt")) for i in range(3)]
        assert cache.get(frame_key(symbols=["S0"], source="bt")) is not None
        assert cache.get("absent") is None
        assert cache.stats() == (1, 1)
        assert cache.evict("bt-001") == 3
        assert not any(f.exists() for f in files)
        assert len(cache) == 1 and cache["other"]["a"][0] == 9
