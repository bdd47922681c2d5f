"""Benchmark: one year (2024) of 1m BTC/USDT into a fresh cache, three ways, from 127.0.0.1 only.

* candlecache.backfill_binance_vision(dir, "BTC/USDT", "1m", "2024-01-01", "2024-12-31T23:59:00Z",
  base_url=<local mirror>) -- its defaults: monthly zips for whole months, SHA-256 checked
  against each .CHECKSUM, workers=8.
* a straightforward Python baseline, freqtrade's approach: the 366 daily zips only, urllib.request
  in a ThreadPoolExecutor of 8, zipfile, polars.read_csv (header sniffed like freqtrade: a first
  byte that is a digit means no header), concat, one Parquet per month written by polars. No
  checksum verification; a second variant also downloads each .CHECKSUM and checks hashlib.sha256.
* REST paging: candlecache.get_ohlcv_with_cache(dir, "BTC/USDT", "1m", start, count,
  exchange.fetch_ohlcv) through a real ccxt.binance pointed at the fake REST server of
  tests/fake_binance.py (1000 candles a request). ``--rest-days N`` times the first N days and
  extrapolates linearly to the year (labelled as such).

The archive mirror is built first (not timed) with tests/fake_archive.py's own file builders, so
the bytes equal what the fake serves (ground truth: fake_binance.expected_frame), written to a
directory and served by a small static HTTP/1.1 keep-alive server (stdlib asyncio, one thread).

Each contender runs in a fresh subprocess (``--one NAME``) into a fresh cache directory: its
seconds are the timed call only, its peak RSS is the high-water mark at its end (``VmHWM``, reset
after imports and setup; ``ru_maxrss`` where there is no /proc -- on Linux ``ru_maxrss`` is
inherited from the spawning parent across exec, so it is not used there) minus the RSS after its
imports and setup. Every result is read back and compared with the ground truth (row
count and a SHA-256 of the columns). Best of ``--repeat`` runs for time, the highest peak RSS.
The servers share the machine's cores with the clients. Not a test: nothing here gates CI.

    python benches/backfill.py [--repeat N] [--rest-days N] [--workers N] [--mirror-dir DIR] [--json]

About 2 minutes on 2 cores with the defaults (--repeat 3, the whole year through REST);
``--rest-days 30`` and ``--mirror-dir`` (keeps the mirror for the next run) make it quicker.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import polars as pl

import candlecache

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
import fake_archive as fa  # noqa: E402
import fake_binance as fb  # noqa: E402

SYMBOL, MARKET_ID, PERIOD = "BTC/USDT", "BTCUSDT", "1m"
MINUTE, DAY = fb.MINUTE, fb.DAY
T0 = fb.ms(2024, 1, 1)
T_END = fb.ms(2024, 12, 31, 23, 59)  # last candle, inclusive
N_YEAR = (T_END - T0) // MINUTE + 1  # 527,040 (2024 is a leap year)
DAYS = [date(2024, 1, 1) + timedelta(days=i) for i in range(366)]
MONTHS = [f"2024-{m:02d}" for m in range(1, 13)]
NOW = fb.ms(2025, 3, 1)  # the archive's clock when the mirror is built: all of 2024 is final
COLS = ["time", "open", "high", "low", "close", "volume"]
SCHEMA = {"time": pl.Int64, **{c: pl.Float64 for c in COLS[1:]}}
MIRROR_MARK = "MIRROR_COMPLETE"

TARGETS = {"baseline": 5.0, "rest": 20.0, "rss_mb": 300.0}


# --- the mirror ----------------------------------------------------------------------------


def _write_file(root: Path, zpath: str, data: bytes) -> None:
    p = root / zpath
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    # the archive's .CHECKSUM: "<sha256 hex>  <name>.zip", no trailing newline
    (root / (zpath + ".CHECKSUM")).write_bytes(f"{hashlib.sha256(data).hexdigest()}  {p.name}".encode())


def _zip_for(zpath: str, p0: int, rows: list[list]) -> bytes:
    # what ArchiveMixin._good_zip builds: one CSV named like the zip, in a deflated zip
    return fa.make_zip({zpath.rsplit("/", 1)[1][: -len(".zip")] + ".csv": fa.render_csv("spot", p0, rows)})


def build_mirror(root: Path) -> dict:
    """All daily (366) and monthly (12) zips + .CHECKSUM of BTCUSDT 1m 2024 under root/data/..."""
    if (root / MIRROR_MARK).exists():
        return json.loads((root / MIRROR_MARK).read_text()) | {"reused": True}
    t = time.perf_counter()
    market = fb.ALL_MARKETS[SYMBOL]
    month_rows: dict[str, list[list]] = {m: [] for m in MONTHS}
    nbytes = {"daily": 0, "monthly": 0}
    for day in DAYS:
        p0 = fb.ms(day.year, day.month, day.day)
        rows = fa.file_rows(market, PERIOD, p0, p0 + DAY, NOW)
        zpath = fa.daily_path(SYMBOL, PERIOD, day)
        data = _zip_for(zpath, p0, rows)
        _write_file(root, zpath, data)
        nbytes["daily"] += len(data)
        month_rows[day.strftime("%Y-%m")].extend(rows)
    for month in MONTHS:
        p0 = fb.ms(2024, int(month[5:]), 1)
        zpath = fa.monthly_path(SYMBOL, PERIOD, month)
        data = _zip_for(zpath, p0, month_rows.pop(month))
        _write_file(root, zpath, data)
        nbytes["monthly"] += len(data)
    # Spot-check against the fake itself: a day and a month hash as the fake publishes them.
    fake = fb.FakeBinance()
    fake.now_ms = NOW
    for zpath in (fa.daily_path(SYMBOL, PERIOD, "2024-02-29"), fa.monthly_path(SYMBOL, PERIOD, "2024-02")):
        ours = hashlib.sha256((root / zpath).read_bytes()).hexdigest()
        if ours != fake.archive_sha256(zpath):
            raise SystemExit(f"mirror file differs from the fake archive's: {zpath}")
    info = {"daily_mb": nbytes["daily"] / 1e6, "monthly_mb": nbytes["monthly"] / 1e6, "build_s": time.perf_counter() - t}
    (root / MIRROR_MARK).write_text(json.dumps(info))
    return info | {"reused": False}


class StaticServer:
    """Serves the files under ``root`` (read into memory first) on 127.0.0.1, ephemeral port.

    One asyncio event loop in a background thread, HTTP/1.1 with keep-alive, GET and HEAD.
    Not http.server's ThreadingHTTPServer: a thread per connection fighting for the GIL made
    366 parallel 70 KB downloads take ~1.1 s (~0.45 s one after another); here they are
    bounded by the clients.
    """

    def __init__(self, root: Path) -> None:
        self.files = {
            "/" + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=512)
            )
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        started.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, version = head[0].split(" ", 2)
                self.requests += 1
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                data = self.files.get(unquote(urlsplit(target).path)) if method in ("GET", "HEAD") else None
                if data is None:
                    status, ctype, data = "404 Not Found", "text/plain", b""
                else:
                    status, ctype = "200 OK", "application/zip" if target.endswith(".zip") else "binary/octet-stream"
                writer.write(
                    (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                     + ("Connection: close\r\n" if close else "") + "\r\n").encode()
                )
                if method != "HEAD":
                    writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


# --- the contenders (each runs in its own subprocess) --------------------------------------


def _cc_setup(spec: dict):
    def run() -> dict:
        r = candlecache.backfill_binance_vision(
            spec["dir"], SYMBOL, PERIOD, "2024-01-01", "2024-12-31T23:59:00Z",
            base_url=spec["url"], workers=spec["workers"],
        )
        return {
            "ok": r.ok, "files_downloaded": r.files_downloaded, "files_verified": r.files_verified,
            "rows_written": r.rows_written, "mb_downloaded": r.bytes_downloaded / 1e6,
            "failures": [list(f) for f in r.failures][:3],
        }

    return run


def _baseline_one_day(url: str, day: date, verify: bool) -> pl.DataFrame:
    name = f"{MARKET_ID}-{PERIOD}-{day:%Y-%m-%d}.zip"
    file_url = f"{url}/data/spot/daily/klines/{MARKET_ID}/{PERIOD}/{name}"
    with urllib.request.urlopen(file_url, timeout=60) as resp:
        content = resp.read()
    if verify:
        with urllib.request.urlopen(file_url + ".CHECKSUM", timeout=60) as resp:
            want = resp.read().decode().split()[0]
        got = hashlib.sha256(content).hexdigest()
        if got != want:
            raise ValueError(f"{name}: sha256 {got} != {want}")
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        csv = zf.read(zf.namelist()[0])
    # freqtrade: https://github.com/binance/binance-public-data/issues/283 -- some files have a
    # header row, some do not; a first byte that is a digit means no header.
    has_header = not chr(csv[0]).isdigit()
    df = pl.read_csv(csv, has_header=has_header, columns=list(range(6)))
    df = df.rename(dict(zip(df.columns, COLS))).cast(SCHEMA)  # type: ignore[arg-type]
    # spot files from 2025 on hold microseconds (freqtrade: date > 1e13 -> // 1000)
    return df.with_columns(pl.when(pl.col("time") > 10**13).then(pl.col("time") // 1000).otherwise(pl.col("time")))


def _baseline_setup(spec: dict, verify: bool):
    def run() -> dict:
        out = Path(spec["dir"]) / "BTC_USDT_1m"
        out.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=spec["workers"]) as pool:
            frames = list(pool.map(lambda d: _baseline_one_day(spec["url"], d, verify), DAYS))
        by_month: dict[str, list[pl.DataFrame]] = {}
        for day, df in zip(DAYS, frames):
            by_month.setdefault(day.strftime("%Y-%m"), []).append(df)
        rows = 0
        for month, dfs in by_month.items():
            df = pl.concat(dfs)
            df.write_parquet(out / f"{month}.parquet")
            rows += df.height
        return {"ok": True, "rows_written": rows, "files_downloaded": len(DAYS)}

    return run


def _rest_setup(spec: dict):
    exchange = fb.make_exchange(spec["url"])  # loads markets (exchangeInfo): setup, not timed

    def run() -> dict:
        df = candlecache.get_ohlcv_with_cache(spec["dir"], SYMBOL, PERIOD, T0, spec["count"], exchange.fetch_ohlcv)
        return {"ok": df.height > 0, "rows_written": df.height}

    return run


SETUPS = {
    "candlecache": _cc_setup,
    "baseline": lambda spec: _baseline_setup(spec, verify=False),
    "baseline_sha256": lambda spec: _baseline_setup(spec, verify=True),
    "rest": _rest_setup,
}


def _proc_status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in MB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 / 1024 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def child_main(name: str, spec: dict) -> None:
    run = SETUPS[name](spec)
    # On Linux ru_maxrss survives exec: a child spawned (vfork + exec) by a parent holding
    # 400 MB starts with ru_maxrss = 400 MB. VmHWM belongs to this process's own memory map;
    # writing "5" to clear_refs resets it to the current RSS, so the peak is this run's.
    base = _proc_status_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base_maxrss = _maxrss_mb()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    extra = run()
    seconds = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    hwm, maxrss = _proc_status_mb("VmHWM"), _maxrss_mb()
    if base is None or hwm is None:  # no /proc: ru_maxrss, as good as it gets
        base, hwm = base_maxrss, maxrss
    print(json.dumps({"seconds": seconds, "rss_base_mb": base, "rss_peak_mb": hwm, "rss_mb": hwm - base,
                      "ru_maxrss_mb": maxrss,
                      "cpu_user_s": r1.ru_utime - r0.ru_utime, "cpu_sys_s": r1.ru_stime - r0.ru_stime, **extra}))


def run_child(name: str, spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--spec", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if p.returncode != 0:
        last = p.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RuntimeError(f"{name} exited {p.returncode}: {last[0]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- verification ------------------------------------------------------------------------


def digest(df: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for c in COLS:
        h.update(df[c].to_numpy().tobytes())
    return h.hexdigest()[:16]


def _no_fetch(*args, **kwargs):
    raise AssertionError(f"the cache fetched {args[2:4]} although the backfill covered it")


def read_result(name: str, cache_dir: Path, count: int) -> pl.DataFrame:
    if name.startswith("baseline"):
        files = sorted((cache_dir / "BTC_USDT_1m").glob("*.parquet"))
        return pl.read_parquet(files).sort("time")
    if name == "candlecache":
        # served from the cache alone: a callback that raises proves no request is needed
        return candlecache.get_ohlcv_with_cache(cache_dir, SYMBOL, PERIOD, T0, count, _no_fetch)
    return candlecache.read_cached(cache_dir, SYMBOL, PERIOD, T0, T0 + (count - 1) * MINUTE)


def verify(name: str, cache_dir: Path, truth: pl.DataFrame, count: int) -> str | None:
    """None if the stored candles equal the ground truth, else what differs."""
    want = truth if count == truth.height else truth.filter(pl.col("time") < T0 + count * MINUTE)
    try:
        got = read_result(name, cache_dir, count)
    except Exception as e:  # noqa: BLE001 -- reported in the table
        return f"read back failed: {e!r}"[:200]
    if not set(COLS) <= set(got.columns) or got.height != want.height:
        return f"{got.height} rows, columns {got.columns} (want {want.height} rows)"
    got = got.select(COLS)
    if got.schema != want.schema:
        return f"schema {dict(got.schema)}"
    if digest(got) != digest(want):
        bad = got.join(want, on="time", how="full", suffix="_want").filter(
            pl.any_horizontal([pl.col(c).ne_missing(pl.col(c + "_want")) for c in COLS[1:]])
        )
        return f"{bad.height} rows differ, first at {bad['time'][0] if bad.height else '?'}"
    return None


# --- the run -------------------------------------------------------------------------------


def measure(name: str, url: str, args, truth: pl.DataFrame, work: Path, count: int, reset, requests) -> dict:
    """Run ``name`` ``args.repeat`` times; ``reset()``/``requests()`` count the HTTP requests it
    made (klines requests for REST, archive requests otherwise)."""
    runs, errors = [], []
    for i in range(args.repeat):
        cache_dir = work / f"{name}-{i}"
        spec = {"dir": str(cache_dir), "url": url, "workers": args.workers, "count": count}
        print(f"  {name} run {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        reset()
        try:
            r = run_child(name, spec, timeout=args.timeout)
            r["requests"] = requests()
        except Exception as e:  # noqa: BLE001 -- reported in the table
            errors.append(str(e)[:500])
            shutil.rmtree(cache_dir, ignore_errors=True)
            continue
        problem = verify(name, cache_dir, truth, count)
        if problem is None and not r.get("ok", True):
            problem = f"report not ok: {r.get('failures')}"
        r["verified"] = problem is None
        if problem:
            errors.append(problem)
        runs.append(r)
        shutil.rmtree(cache_dir, ignore_errors=True)
    out: dict = {"name": name, "runs": runs, "errors": errors, "count": count}
    if runs:
        best = min(runs, key=lambda r: r["seconds"])
        out |= {
            "seconds": best["seconds"],
            "seconds_all": [round(r["seconds"], 3) for r in runs],
            "rss_mb": max(r["rss_mb"] for r in runs),
            "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
            "verified": all(r["verified"] for r in runs) and not errors,
            "rows": best.get("rows_written"),
            "requests": best["requests"],
        }
        out["seconds_year"] = out["seconds"] * N_YEAR / count
    return out


def ratio_text(x: float) -> str:
    if x >= 1:
        return f"{x:.1f}x slower"
    return f"{1 / x:.1f}x faster"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per contender, best time is shown (default 3)")
    ap.add_argument("--rest-days", type=int, default=366,
                    help="days of REST paging to time, extrapolated linearly to the year when < 366 (default 366)")
    ap.add_argument("--workers", type=int, default=8, help="parallel downloads, candlecache and baseline (default 8)")
    ap.add_argument("--mirror-dir", type=Path, help="keep the mirror here and reuse it on later runs (default: a temp dir)")
    ap.add_argument("--only", default="candlecache,baseline,baseline_sha256,rest", help="comma-separated contenders")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one contender run may take")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return child_main(args.one, json.loads(args.spec))
    rest_days = max(1, min(366, args.rest_days))
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="cc-backfill-bench-"))
    mirror_root = args.mirror_dir or work / "mirror"
    mirror_root.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, dict] = {}
    try:
        log(f"building the archive mirror in {mirror_root} (not timed) ...")
        mirror = build_mirror(mirror_root)
        log(f"  {mirror['daily_mb']:.1f} MB daily + {mirror['monthly_mb']:.1f} MB monthly zips"
            + (" (reused)" if mirror["reused"] else f", built in {mirror['build_s']:.1f} s"))
        t = time.perf_counter()
        truth = fb.expected_frame(SYMBOL, PERIOD, T0, T_END, now_ms=NOW)
        log(f"ground truth: {truth.height:,} rows, sha256 {digest(truth)} ({time.perf_counter() - t:.1f} s)")
        assert truth.height == N_YEAR
        static = StaticServer(mirror_root)
        try:
            for name in ("candlecache", "baseline", "baseline_sha256"):
                if name in only:
                    results[name] = measure(name, static.url, args, truth, work, N_YEAR,
                                            lambda: setattr(static, "requests", 0), lambda: static.requests)
        finally:
            static.stop()
        if "rest" in only:
            with fb.FakeBinance() as rest_server:
                results["rest"] = measure("rest", rest_server.url, args, truth, work, rest_days * 1440,
                                          rest_server.reset_log, lambda: rest_server.klines_count(ok_only=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cc = results.get("candlecache", {})
    cc_s = cc.get("seconds_year")
    labels = {
        "candlecache": f"candlecache.backfill_binance_vision ({args.workers} workers, 12 monthly zips, SHA-256 checked)",
        "baseline": f"baseline: urllib + zipfile + polars, 366 daily zips, {args.workers} threads, no checksum",
        "baseline_sha256": f"baseline + .CHECKSUM download and hashlib.sha256 check, {args.workers} threads",
        "rest": "REST paging: get_ohlcv_with_cache + ccxt.binance, 1000/request"
        + ("" if rest_days == 366 else f" ({rest_days} d timed, x{N_YEAR / (rest_days * 1440):.1f} extrapolated)"),
    }
    # the baseline target is judged against the faster baseline variant (the stricter test)
    baselines = [results[n]["seconds_year"] for n in ("baseline", "baseline_sha256") if results.get(n, {}).get("seconds_year")]
    targets = []
    if cc_s and baselines:
        x = min(baselines) / cc_s
        targets.append({"target": f">= {TARGETS['baseline']:g}x faster than the baseline", "value": f"{x:.1f}x", "met": x >= TARGETS["baseline"]})
    if cc_s and results.get("rest", {}).get("seconds_year"):
        x = results["rest"]["seconds_year"] / cc_s
        targets.append({"target": f">= {TARGETS['rest']:g}x faster than REST paging", "value": f"{x:.1f}x", "met": x >= TARGETS["rest"]})
    if "rss_mb" in cc:
        targets.append({"target": f"candlecache peak RSS <= {TARGETS['rss_mb']:g} MB", "value": f"{cc['rss_mb']:.0f} MB", "met": cc["rss_mb"] <= TARGETS["rss_mb"]})

    if args.json:
        doc = {
            "candlecache": candlecache.__version__, "polars": pl.__version__, "python": sys.version.split()[0],
            "cpus": os.cpu_count(), "repeat": args.repeat, "workers": args.workers, "rest_days": rest_days,
            "rows": N_YEAR, "truth_sha256": digest(truth), "mirror": mirror,
            "contenders": [
                {k: v for k, v in r.items() if k != "runs"} | {"label": labels[n], "runs": r["runs"],
                 "vs_candlecache": (r["seconds_year"] / cc_s) if cc_s and r.get("seconds_year") else None}
                for n, r in results.items()
            ],
            "targets": targets,
        }
        print(json.dumps(doc, indent=2))
        return

    print(f"candlecache {candlecache.__version__}, polars {pl.__version__}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; BTC/USDT 1m 2024 = {N_YEAR:,} candles from 127.0.0.1; "
          f"best of {args.repeat}, each run a fresh subprocess and cache dir")
    head = ("contender", "seconds (year)", "vs candlecache", "peak RSS MB", "HTTP requests", "rows verified")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for name, r in results.items():
        if "seconds" not in r:
            print(f"| {labels[name]} | error | | | | {'; '.join(r['errors'])[:200]} |")
            continue
        secs = f"{r['seconds_year']:.2f}" + ("" if r["count"] == N_YEAR else f" (timed {r['seconds']:.2f})")
        vs = "1.0x" if name == "candlecache" else (ratio_text(r["seconds_year"] / cc_s) if cc_s else "")
        ok = f"{r['count']:,} ok" if r["verified"] else "MISMATCH: " + "; ".join(r["errors"])[:200]
        print(f"| {labels[name]} | {secs} | {vs} | {r['rss_mb']:.0f} | {r['requests']:,} | {ok} |")
    print()
    head = ("target", "measured", "")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for t in targets:
        print(f"| {t['target']} | {t['value']} | {'met' if t['met'] else 'NOT MET'} |")
    print()
    print(f"times: the timed call only, best of {args.repeat} (all: "
          + "; ".join(f"{n} {r.get('seconds_all')}" for n, r in results.items()) + ")")
    print("peak RSS: VmHWM at the end of the run (reset after imports and setup) minus the RSS then, same subprocess")
    print("the baseline verifies no checksum; its _sha256 variant downloads each .CHECKSUM too (732 requests)")
    if "rest" in results:
        print("REST: the fake server answers on 127.0.0.1 with no latency and no rate limit; real Binance is slower")


if __name__ == "__main__":
    main()
