"""The ``candlecache`` command (also ``python -m candlecache``): one verb per public function.

Each verb parses its arguments, calls the function of the same behaviour and prints the result:
a table by default, JSON with ``--json``. Exit status: 0 success, 1 the work ran but something
failed (a file, a hole left, the file system), 2 a usage error (bad arguments, or a
``ValueError``/``TypeError`` from the library).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._times import describe_ms, to_ms
from .exceptions import CandlecacheError

__all__ = ["main"]

_DAY_MS = 86_400_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FILE_DATE = re.compile(r"(\d{4}-\d{2}(?:-\d{2})?)\.zip$")

_TIMES = "Times: 2024-01-01, an ISO time (2024-01-01T12:00:00Z) or epoch ms; --end DATE means through that day."
_EXIT = "Exit status: 0 success, 1 the work ran but something failed, 2 usage error."


def _time_arg(text: str) -> int:
    try:
        return to_ms("time", text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _end_arg(text: str) -> int:
    """A bare date means through that day: its last millisecond."""
    ms = _time_arg(text)
    return ms + _DAY_MS - 1 if _DATE.fullmatch(text.strip()) else ms


def _list_arg(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. BTC/USDT,ETH/USDT")
    return items


def _periods_arg(text: str) -> list[str]:
    from .ohlcv import PERIODS

    items = _list_arg(text)
    for p in items:
        if p not in PERIODS:
            raise argparse.ArgumentTypeError(f"unknown period {p!r}; expected one of {' '.join(PERIODS)}")
    return items


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _iso(ms: int | None) -> str:
    return "-" if ms is None else describe_ms(ms)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> None:
    """Print ``rows`` under ``headers``, columns padded; the column indices in ``right`` right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    print(line(headers))
    for r in cells:
        print(line(r))


def _json(obj: object) -> None:
    """A list prints one element a line, a mapping one key a line: readable, and one document."""
    if isinstance(obj, list):
        print("[" + ",".join("\n  " + json.dumps(x) for x in obj) + ("\n]" if obj else "]"))
    elif isinstance(obj, dict):
        print("{" + ",".join(f"\n  {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()) + "\n}")
    else:
        print(json.dumps(obj))


def _progress() -> bool | None:
    """Progress bars only when stderr is a terminal (the library then decides by size)."""
    return None if sys.stderr is not None and sys.stderr.isatty() else False


def _existing_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such cache directory", str(path))
    return path


def _vision(name: str) -> Callable[..., Any]:
    import candlecache

    fn = getattr(candlecache, name, None)
    if fn is None:
        raise CandlecacheError(f"this build of candlecache has no {name}; rebuild the extension")
    return fn  # type: ignore[no-any-return]


# -- backfill and failures ------------------------------------------------------------------

_REPORT_HEADERS = ("symbol", "period", "market", "planned", "downloaded", "skipped", "verified",
                   "missing", "failed", "rows", "holes left", "size", "seconds", "status")


def _report_dict(report: Any) -> dict[str, Any]:
    is_instance = dataclasses.is_dataclass(report) and not isinstance(report, type)
    d = dataclasses.asdict(report) if is_instance else dict(vars(report))
    d["ok"] = bool(report.ok)
    return d


def _print_reports(reports: list[Any], as_json: bool, printed: int, symbols: Sequence[str]) -> None:
    """Print the reports not printed yet (the human table prints one line as each finishes)."""
    if as_json:
        return
    widths = [len(h) for h in _REPORT_HEADERS]
    widths[0] = max(widths[0], *map(len, symbols))
    widths[2], widths[11] = 16, 9
    if printed == 0:
        print("  ".join(h.ljust(w) if i < 3 or i == 13 else h.rjust(w)
                        for i, (h, w) in enumerate(zip(_REPORT_HEADERS, widths))))
    for r in reports[printed:]:
        cells = (r.symbol, r.period, f"{r.market}:{r.market_id}", r.files_planned, r.files_downloaded,
                 r.files_skipped, r.files_verified, len(r.files_missing), len(r.failures), r.rows_written,
                 len(r.holes_left), _size(r.bytes_downloaded), f"{r.seconds:.1f}", "ok" if r.ok else "FAILED")
        print("  ".join(str(c).rjust(w) if isinstance(c, int) or i in (11, 12) else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(cells, widths))).rstrip(), flush=True)
        for path, reason in r.failures:
            print(f"    failed: {path}: {reason}")
        for a, b in r.holes_left:
            print(f"    hole left: {_iso(a)} until {_iso(b)}")


def _download_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="archive mirror (default https://data.binance.vision)")
    p.add_argument("--skip-checksum", action="store_true", help="store files without verifying their SHA-256")
    p.add_argument("--proceed-on-failure", action="store_true",
                   help="store a file whose checksum does not match (it stays in the failure registry)")
    p.add_argument("--workers", type=_positive_int, default=8, help="parallel downloads (default 8)")


def _download_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "verify_checksum": not args.skip_checksum,
        "proceed_on_failure": args.proceed_on_failure,
        "workers": args.workers,
        "progress": _progress(),
    }
    if args.base_url:
        kw["base_url"] = args.base_url
    return kw


def _cmd_backfill(args: argparse.Namespace) -> int:
    backfill = _vision("backfill_binance_vision")
    kw = _download_kwargs(args)
    if args.market:
        kw["market"] = args.market
    reports: list[Any] = []
    for symbol in args.symbols:
        for period in args.periods:
            reports.append(backfill(args.dir, symbol, period, args.start, args.end,
                                    retry_failed=args.retry_failed, **kw))
            _print_reports(reports, args.json, len(reports) - 1, args.symbols)
    if args.json:
        _json([_report_dict(r) for r in reports])
    return 0 if all(r.ok for r in reports) else 1


def _file_span(file: str) -> tuple[int, int] | None:
    """First and last millisecond of an archive file, from its name (``…-2024-01-05.zip``)."""
    m = _FILE_DATE.search(file)
    if not m:
        return None
    if len(m[1]) == 10:  # a day
        start = to_ms("file", m[1])
        return start, start + _DAY_MS - 1
    year, month = int(m[1][:4]), int(m[1][5:])
    nxt = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
    return to_ms("file", m[1] + "-01"), to_ms("file", nxt) - 1


def _cmd_failures(args: argparse.Namespace) -> int:
    base = _existing_dir(args.dir)
    if args.clear:
        backup = _vision("clear_vision_failures")(base)
        if args.json:
            _json({"backup": None if backup is None else str(backup)})
        else:
            print(f"failure registry moved to {backup}" if backup else f"no failure registry in {base}")
        return 0
    df = _vision("vision_failures")(base)
    if args.retry:
        return _retry(args, base, df)
    if args.detail:
        df = df.filter((df["symbol"] == args.detail) | (df["market_id"] == args.detail))
    if args.summary:
        import polars as pl

        df = df.group_by("symbol", "period", "market", "market_id", maintain_order=True).agg(
            files=pl.len(),
            reasons=pl.col("reason").unique(maintain_order=True).str.join("; "),
            first_date=pl.col("file").str.extract(_FILE_DATE.pattern).min(),
            last_date=pl.col("file").str.extract(_FILE_DATE.pattern).max(),
            last_attempt=pl.col("when").max(),
        )
    if args.json:
        _json(df.to_dicts())
    elif df.height == 0:
        print(f"no failures recorded in {base}" + (f" for {args.detail}" if args.detail else ""))
    elif args.summary:
        _table(("symbol", "period", "market", "files", "from", "through", "last attempt", "reasons"),
               [(r["symbol"], r["period"], f"{r['market']}:{r['market_id']}", r["files"], r["first_date"] or "-",
                 r["last_date"] or "-", r["last_attempt"], r["reasons"]) for r in df.iter_rows(named=True)],
               right=(3,))
    elif args.detail:
        for r in df.iter_rows(named=True):
            for key in ("file", "url", "symbol", "period", "market", "market_id", "reason", "expected",
                        "actual", "when", "attempts"):
                print(f"{key:>10}: {'-' if r.get(key) is None else r[key]}")
            print()
    else:
        _table(("symbol", "period", "file", "attempts", "when", "reason"),
               [(r["symbol"], r["period"], r["file"], r["attempts"], r["when"], r["reason"])
                for r in df.iter_rows(named=True)], right=(3,))
    return 0


def _retry(args: argparse.Namespace, base: Path, df: Any) -> int:
    backfill = _vision("backfill_binance_vision")
    reports: list[Any] = []
    unreadable: list[str] = []
    groups = df.group_by("symbol", "period", "market", "market_id", maintain_order=True)
    for (symbol, period, market, market_id), rows in groups:
        spans = [s for s in map(_file_span, rows["file"].to_list()) if s is not None]
        unreadable += [f for f in rows["file"].to_list() if _file_span(f) is None]
        if not spans:
            continue
        kw = _download_kwargs(args)
        url = str(rows["url"][0] or "")
        if "base_url" not in kw and "/data/" in url:
            kw["base_url"] = url[: url.index("/data/")]
        reports.append(backfill(base, symbol, period, min(a for a, _ in spans), max(b for _, b in spans),
                                market=market, market_id=market_id, retry_failed=True, **kw))
        _print_reports(reports, args.json, len(reports) - 1, df["symbol"].to_list())
    for f in unreadable:
        print(f"candlecache failures: cannot tell the dates of {f}; not retried", file=sys.stderr)
    if args.json:
        _json([_report_dict(r) for r in reports])
    elif not reports and not unreadable:
        print(f"no failures recorded in {base}")
    return 0 if all(r.ok for r in reports) and not unreadable else 1


# -- info, gaps, forget ---------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    from .inventory import inventory

    df = inventory(_existing_dir(args.dir))
    if args.json:
        _json(df.to_dicts())
    elif df.height == 0:
        print(f"no cached candles in {args.dir}")
    else:
        _table(("symbol", "period", "first", "last", "rows", "files", "size", "holes"),
               [(r["symbol"], r["period"], _iso(r["first"]), _iso(r["last"]), r["rows"], r["files"],
                 _size(r["bytes"]), r["holes"]) for r in df.iter_rows(named=True)], right=(4, 5, 6, 7))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    import polars as pl

    from .scan import scan_ohlcv

    lf = scan_ohlcv(_existing_dir(args.dir), symbols=args.symbol, periods=args.period, namespace=args.namespace)
    out = None if args.out is None else Path(args.out)
    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out must end in .parquet or .csv, got {out.name!r}")
    try:
        if args.sql:
            lf = pl.SQLContext(candles=lf, eager=False).execute(args.sql)
        if out is not None:
            lf.sink_parquet(out) if out.suffix == ".parquet" else lf.sink_csv(out)
            print(f"wrote {out}", file=sys.stderr)
            return 0
        df = lf.collect()
    except pl.exceptions.PolarsError as e:
        # A query that does not fit the table: a usage error, said plainly.
        raise ValueError(
            f"{'--sql' if args.sql else 'scan'}: {e} (the table is `candles`, with columns namespace, symbol, "
            "period, time, open, high, low, close, volume)"
        ) from None
    if args.json:
        _json(df.to_dicts())
    else:
        _table(df.columns, df.rows())
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .market import MarketCache

    cache = MarketCache(_existing_dir(args.dir), hot_cache_mb=0)
    counts = cache.stats(reset=args.reset)
    counts = {k: v for k, v in counts.items() if not k.startswith("hot_")}  # this process's only
    history = cache.stats_history()
    if args.json:
        days = [{**d, "day": d["day"].isoformat()} for d in history.to_dicts()]
        _json({**counts, "days": days})
        return 0
    _table(("statistic", "value"), [(k, f"{v:.1%}" if k == "hit_rate" else (_size(v) if k == "bytes_on_disk" else v))
                                    for k, v in counts.items()], right=(1,))
    if history.height:
        print()
        _table(("day", "hits", "misses", "size"),
               [(d["day"].isoformat(), d["hits"], d["misses"], "-" if d["size"] is None else _size(d["size"]))
                for d in history.to_dicts()], right=(1, 2, 3))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .market import MarketCache

    report = MarketCache(_existing_dir(args.dir), hot_cache_mb=0).verify(repair=args.repair)
    if args.json:
        _json(report.to_dicts())
    elif report.height == 0:
        print(f"every file in {args.dir} decodes and matches its recorded checksum")
    else:
        _table(("symbol", "period", "file", "fault", "repaired", "reason"),
               [(r["symbol"], r["period"], Path(r["file"]).name, r["fault"], "yes" if r["repaired"] else "no",
                 r["reason"])
                for r in report.iter_rows(named=True)])
    # Damage that was repaired is fixed; damage only reported is a failure to act on.
    return 0 if report.filter(~report["repaired"]).height == 0 else 1


def _cmd_clear(args: argparse.Namespace) -> int:
    from .market import MarketCache

    cache = MarketCache(_existing_dir(args.dir), hot_cache_mb=0)
    if args.run is not None:
        if args.symbol or args.period:
            raise ValueError("--run clears what that run alone used; give it without --symbol/--period")
        removed = cache.clear(run_id=args.run)
    else:
        removed = cache.clear(args.symbol, args.period)
    if args.json:
        _json({"candles_removed": removed})
    else:
        print(f"{removed:,} candles removed")
    return 0


def _cmd_vacuum(args: argparse.Namespace) -> int:
    from .market import MarketCache

    if (args.keep is None) == (args.keep_since is None):
        raise ValueError("give --keep (an age such as 90d) or --keep-since (a date), one of them")
    cache = MarketCache(_existing_dir(args.dir), hot_cache_mb=0)
    removed = cache.vacuum(args.keep, args.keep_since, args.symbol, args.period)
    if args.json:
        _json({"candles_removed": removed})
    else:
        print(f"{removed:,} candles removed")
    return 0


def _cmd_compact_tiers(args: argparse.Namespace) -> int:
    from .market import MarketCache

    tiers = []
    for spec in args.tier:
        age, sep, period = spec.partition(":")
        if not sep:
            raise ValueError(f"--tier takes AGE:PERIOD such as 30d:5m, got {spec!r}")
        tiers.append((age, period))
    cache = MarketCache(_existing_dir(args.dir), hot_cache_mb=0)
    moved = cache.compact_tiers(tiers, args.symbol, args.period)
    if args.json:
        _json({"candles_moved": moved})
    else:
        print(f"{moved:,} candles moved to coarser periods")
    return 0


def _cmd_gaps(args: argparse.Namespace) -> int:
    from . import _core
    from .ohlcv import coverage, covered_empty, holes

    base = _existing_dir(args.dir)
    covered = coverage(base, args.symbol, args.period)
    start = args.start if args.start is not None else (covered[0][0] if covered else None)
    end = args.end if args.end is not None else (covered[-1][1] - 1 if covered else None)
    missing: list[tuple[int, int]] = []
    empty: list[tuple[int, int]] = []
    if start is not None and end is not None:
        missing = holes(base, args.symbol, args.period, start, end)
        empty = covered_empty(base, args.symbol, args.period, start, end)
    if args.json:
        _json({"symbol": args.symbol, "period": args.period, "start": start, "end": end,
               "holes": [list(r) for r in missing], "covered_empty": [list(r) for r in empty]})
        return 0
    if start is None or end is None:
        print(f"{args.symbol} {args.period}: nothing cached in {base}; give --start and --end")
        return 0
    last = _core.period_floor(args.period, end)
    print(f"{args.symbol} {args.period} from {_iso(start)} through {_iso(last)}: "
          f"{len(missing)} not cached, {len(empty)} covered without candles")
    rows: list[tuple[str, str, str]] = [("not cached", _iso(a), _iso(b)) for a, b in missing]
    rows += [("covered, no candles", _iso(a), _iso(b)) for a, b in empty]
    rows.sort(key=lambda r: r[1])
    if rows:
        _table(("kind", "from", "until (excluded)"), rows)
    return 0


def _cmd_kv_import(args: argparse.Namespace) -> int:
    from .kvimport import import_diskcache

    n = import_diskcache(args.dir, args.dst, progress=args.progress)
    where = args.dst if args.dst is not None else args.dir
    if args.json:
        print(json.dumps({"imported": n, "into": str(Path(where).expanduser())}))
    else:
        print(f"imported {n} entries into {Path(where).expanduser()}")
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from .ohlcv import forget

    base = _existing_dir(args.dir)
    removed = forget(base, args.symbol, args.period, args.start, args.end, drop_rows=args.drop_rows)
    if args.json:
        _json({"symbol": args.symbol, "period": args.period, "start": args.start, "end": args.end,
               "drop_rows": args.drop_rows, "rows_removed": removed})
    else:
        span = "everything" if args.start is None and args.end is None else (
            f"from {_iso(args.start) if args.start is not None else 'the start'} "
            f"through {_iso(args.end) if args.end is not None else 'the end'}")
        print(f"{args.symbol} {args.period}: forgot {span}; {removed} candles removed"
              + ("" if args.drop_rows else " (rows kept; pass --drop-rows to remove them)"))
    return 0


# -- the parser -----------------------------------------------------------------------------

_VERBS: dict[str, tuple[str, str]] = {
    "backfill": ("download candles from the Binance public archive (data.binance.vision)", """
examples:
  candlecache backfill ~/.cache/candles --symbols BTC/USDT,ETH/USDT --periods 1m,1h --start 2024-01-01
  candlecache backfill ~/.cache/candles --symbols BTC/USDT:USDT --periods 5m --start 2024-01-01 \\
      --end 2024-06-30 --json

Symbols are ccxt's: BTC/USDT is spot, BTC/USDT:USDT USDT-margined futures (um), BTC/USD:BTC
coin-margined (cm). Without --end: up to what the archive has published. Prints one line per
symbol and period; exit 1 if any file failed or a hole is left (see `candlecache failures`)."""),
    "failures": ("list, summarize, retry or clear the archive files that failed", """
examples:
  candlecache failures ~/.cache/candles
  candlecache failures ~/.cache/candles --summary
  candlecache failures ~/.cache/candles --detail BTC/USDT
  candlecache failures ~/.cache/candles --retry
  candlecache failures ~/.cache/candles --clear

--retry downloads every registered file again (exit 1 if some still fail); --clear moves the
registry (vision_failures.jsonl) aside to a timestamped backup."""),
    "info": ("one line per cached symbol and period: first and last candle, rows, files, size, holes", """
examples:
  candlecache info ~/.cache/candles
  candlecache info ~/.cache/candles --json

A symbol shows as its folder name (BTC/USDT:USDT as BTC_USDT_USDT); the other verbs accept
either form. holes = ranges between the first and last candle that were never fetched."""),
    "stats": ("hits, misses, requests and size of a cache directory, over every process", """
examples:
  candlecache stats ~/.cache/candles
  candlecache stats ~/.cache/candles --json
  candlecache stats ~/.cache/candles --reset

Counts come from MarketCache, get_ohlcv_with_cache and read_cached in every process that used
the directory; one line per day follows. --reset prints them, then starts again from zero."""),
    "verify": ("check every file of a cache directory; report (and --repair) the damaged ones", """
examples:
  candlecache verify ~/.cache/candles
  candlecache verify ~/.cache/candles --repair --json

Each file is decoded whole, and a file candlecache wrote is hashed and compared with the
SHA-256 recorded when it was written (.checksums.jsonl in its folder); recorded files that
are gone are reported as missing. --repair moves each damaged file aside (*.corrupt, nothing
is deleted) and forgets its coverage and that of missing ones, so the next call fetches
their candles again. Exit 1 if damage is left unrepaired."""),
    "clear": ("remove the candles of a symbol, a period, or everything", """
examples:
  candlecache clear ~/.cache/candles --symbol BTC/USDT --period 1m
  candlecache clear ~/.cache/candles --period 1s
  candlecache clear ~/.cache/candles --run bt-001

Removes candles and coverage under each folder's lock; they are fetched again when asked for."""),
    "scan": ("query every candle of a cache directory (SQL), or export it", """
examples:
  candlecache scan ~/.cache/candles --sql "select symbol, period, count(*) as n from candles group by 1, 2"
  candlecache scan ~/.cache/candles --symbol BTC/USDT --period 1h --out btc-1h.parquet
  candlecache scan ~/.cache/candles --sql "select * from candles where time >= 1704067200000 limit 5" --json

The table is `candles` (namespace, symbol, period, time, open, high, low, close, volume), as
candlecache.scan_ohlcv returns it; the SQL is polars' dialect. --out writes .parquet or .csv."""),
    "vacuum": ("retention: remove candles older than an age or a date", """
examples:
  candlecache vacuum ~/.cache/candles --keep 90d
  candlecache vacuum ~/.cache/candles --keep 2w --symbol BTC/USDT --period 1m
  candlecache vacuum ~/.cache/candles --keep-since 2024-01-01 --json

Ages take the units s, m, h, d, w. Partitions wholly older are removed, the one straddling the
cutoff rewritten; their coverage is forgotten first, so they are fetched again if asked for."""),
    "compact-tiers": ("downsample old candles into coarser periods, exactly", """
examples:
  candlecache compact-tiers ~/.cache/candles --tier 30d:5m --tier 365d:1h
  candlecache compact-tiers ~/.cache/candles --tier 90d:1h --symbol BTC/USDT --period 1m --json

Candles older than each age move into that period's folder, aggregated exactly (open first,
high max, low min, close last, volume summed); only whole, covered candles move."""),
    "gaps": ("ranges not cached, and ranges cached as empty, of one symbol and period", """
examples:
  candlecache gaps ~/.cache/candles BTC/USDT 1h
  candlecache gaps ~/.cache/candles BTC/USDT 1m --start 2024-01-01 --end 2024-01-31 --json

Without --start/--end: the span the cache covers. Ranges are half-open: "until" is excluded."""),
    "kv-import": ("copy a python-diskcache directory into a candlecache one", """
examples:
  candlecache kv-import ~/.cache/app ~/.cache/app-candlecache
  candlecache kv-import ~/.cache/app            # in place: the old files move to DIR.diskcache-<time>

DIR is the python-diskcache directory (its cache.db, or shard folders 000, 001, ... of a
FanoutCache); it is only read. Expired entries are skipped; nothing is unpickled."""),
    "forget": ("forget a range so the next call fetches it again", """
examples:
  candlecache forget ~/.cache/candles BTC/USDT 1h --start 2024-03-01 --end 2024-03-02
  candlecache forget ~/.cache/candles BTC/USDT 1h --start 2024-03-01 --drop-rows

Without --start/--end: everything of that symbol and period. The candles stay readable unless
--drop-rows removes them too."""),
}


def _parser() -> argparse.ArgumentParser:
    from . import _core

    parser = argparse.ArgumentParser(
        prog="candlecache",
        description="OHLCV candle cache: backfill, inspect and repair a cache directory.",
        epilog="Run `candlecache VERB --help` for a verb's options and examples. " + _EXIT,
    )
    parser.add_argument("--version", action="version", version=f"candlecache {_core.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (times as epoch ms) instead of a table")
    p: dict[str, argparse.ArgumentParser] = {}
    for name, (summary, epilog) in _VERBS.items():
        p[name] = verbs.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                   epilog=epilog.strip() + "\n\n" + _TIMES + "\n" + _EXIT, parents=[common],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
        p[name].add_argument("dir", metavar="DIR", help="the cache directory")

    b = p["backfill"]
    b.add_argument("--symbols", type=_list_arg, required=True, help="comma-separated ccxt symbols, e.g. BTC/USDT,ETH/USDT")
    b.add_argument("--periods", type=_periods_arg, required=True, help="comma-separated periods, e.g. 1m,5m,1h")
    b.add_argument("--start", type=_time_arg, required=True, help="first candle")
    b.add_argument("--end", type=_end_arg, help="last candle (a date means through that day)")
    b.add_argument("--market", choices=("spot", "um", "cm"), help="archive market (default: from the symbol)")
    _download_options(b)
    b.add_argument("--retry-failed", action="store_true", help="also download again the files that failed before")
    b.set_defaults(func=_cmd_backfill)

    f = p["failures"]
    what = f.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true", help="one line per symbol and period")
    what.add_argument("--detail", metavar="SYMBOL", help="every field of the failures of SYMBOL (or market id)")
    what.add_argument("--retry", action="store_true", help="download the failed files again")
    what.add_argument("--clear", action="store_true", help="move the registry aside (a timestamped backup)")
    _download_options(f)
    f.set_defaults(func=_cmd_failures)

    p["info"].set_defaults(func=_cmd_info)
    p["stats"].add_argument("--reset", action="store_true", help="start the counts again from zero (after printing them)")
    p["stats"].set_defaults(func=_cmd_stats)
    p["verify"].add_argument("--repair", action="store_true", help="move damaged files aside and forget their coverage")
    p["verify"].set_defaults(func=_cmd_verify)
    p["clear"].add_argument("--symbol", help="only this symbol (e.g. BTC/USDT)")
    p["clear"].add_argument("--period", choices=_core.PERIODS, help="only this period")
    p["clear"].add_argument("--run", metavar="RUN_ID", help="what only this run (run_id=) used")
    p["clear"].set_defaults(func=_cmd_clear)

    p["scan"].add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    p["scan"].add_argument("--period", action="append", choices=_core.PERIODS, help="only this period (repeatable)")
    p["scan"].add_argument("--namespace", help="only this namespace")
    p["scan"].add_argument("--sql", help="a query over the table `candles`")
    p["scan"].add_argument("--out", metavar="FILE", help="write the rows to FILE (.parquet or .csv) instead of printing")
    p["scan"].set_defaults(func=_cmd_scan)

    p["compact-tiers"].add_argument("--tier", action="append", required=True, metavar="AGE:PERIOD",
                                    help="e.g. 30d:5m (repeat, youngest first)")
    p["compact-tiers"].add_argument("--symbol", help="only this symbol (e.g. BTC/USDT)")
    p["compact-tiers"].add_argument("--period", choices=_core.PERIODS, help="only folders of this period")
    p["compact-tiers"].set_defaults(func=_cmd_compact_tiers)

    p["vacuum"].add_argument("--keep", metavar="AGE", help="keep candles younger than this, e.g. 90d, 12h, 2w")
    p["vacuum"].add_argument("--keep-since", type=_time_arg, metavar="TIME", help="keep candles from this time on")
    p["vacuum"].add_argument("--symbol", help="only this symbol (e.g. BTC/USDT)")
    p["vacuum"].add_argument("--period", choices=_core.PERIODS, help="only this period")
    p["vacuum"].set_defaults(func=_cmd_vacuum)

    p["kv-import"].add_argument("dst", metavar="DST", nargs="?",
                                help="a new or empty directory (default: convert DIR in place)")
    p["kv-import"].add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                                help="a progress bar (default: on a terminal, for large caches)")
    p["kv-import"].set_defaults(func=_cmd_kv_import)

    for name in ("gaps", "forget"):
        p[name].add_argument("symbol", metavar="SYMBOL", help="e.g. BTC/USDT (or its folder name BTC_USDT)")
        p[name].add_argument("period", metavar="PERIOD", choices=_core.PERIODS, help="e.g. 1m, 1h, 1d, 1M")
        p[name].add_argument("--start", type=_time_arg, help="first candle")
        p[name].add_argument("--end", type=_end_arg, help="last candle (a date means through that day)")
    p["gaps"].set_defaults(func=_cmd_gaps)
    p["forget"].add_argument("--drop-rows", action="store_true", help="remove the stored candles of the range too")
    p["forget"].set_defaults(func=_cmd_forget)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except CandlecacheError as e:
        print(f"candlecache {args.verb}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:
        print(f"candlecache {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `candlecache info DIR | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"candlecache {args.verb}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"candlecache {args.verb}: interrupted", file=sys.stderr)
        return 130
