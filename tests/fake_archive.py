"""The archive half of the fake Binance server: a mirror of https://data.binance.vision.

:class:`ArchiveMixin` is mixed into ``fake_binance.FakeBinance``; the same server object answers
REST requests (``/api/v3/...``) and archive requests (``/data/...``).

Layout (as the real archive, see shared/notes/binance-archive.md)::

    /data/spot/{daily|monthly}/klines/{ID}/{interval}/{ID}-{interval}-{YYYY-MM-DD|YYYY-MM}.zip
    /data/spot/.../{same}.zip.CHECKSUM        "<sha256 hex>  <name>.zip"  (no trailing newline)
    /data/futures/um/...  and  /data/futures/cm/...  likewise

* ``interval`` is Binance's, except ``1M`` which is ``1mo`` in paths. Daily files exist for
  ``1s``..``1d`` only; ``3d 1w 1mo`` are monthly only. ``1s`` exists for spot only.
* Markets: spot ids from ``fake_binance.MARKETS`` (``BTCUSDT`` ...), um ``BTCUSDT``
  (``BTC/USDT:USDT``), cm ``BTCUSD_PERP`` (``BTC/USD:BTC``) -- ``fake_binance.ALL_MARKETS``.
* A file exists once its period is fully over (server clock ``now()``, as the REST side) and the
  market has at least one candle in it (listing, delisting and maintenance gaps as for REST).
  It holds the final candles whose open time lies in the period (a ``1w``/``3d`` candle belongs
  to the month of its open time), one CSV in a deflated zip, built on first request and cached.
* CSV rows are ``fake_binance.kline_full`` -- the very rows ``/api/v3/klines`` answers, so the
  ground truth is ``fake_binance.expected_frame``. Spot: no header; spot files of periods from
  2025-01-01 on have open_time/close_time in microseconds. um: a header row for periods from
  2022-01-01 on, none before. cm: always a header row.

Fault knobs (methods of the server; ``paths`` are zip paths such as
``"data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-12.zip"`` -- build them with
:func:`daily_path` / :func:`monthly_path`; a leading "/" or a ``.CHECKSUM`` suffix is accepted;
``times=None`` means always, an int means only the next ``times`` requests of that resource)::

    archive_wrong_checksum(paths, times=None)       .CHECKSUM names another hash (WRONG_SHA)
    archive_missing_checksum(paths)                 .CHECKSUM answers 404
    archive_truncate(paths, keep=0.5, lying_length=False, times=None)
                                                    zip body cut to `keep` (fraction or bytes);
                                                    Content-Length = the cut length, or (lying)
                                                    the full length with the body cut short
    archive_garbage(paths, times=None)              the zip is not a zip
    archive_no_csv(paths, times=None)               a valid zip holding only README.txt
        (garbage/no_csv: a permanent fault is "published": its .CHECKSUM matches the bad bytes;
         a transient one (times=N) is transport damage: .CHECKSUM is the good file's)
    archive_404(paths)                              zip and .CHECKSUM answer 404 (a hole)
    archive_404_monthly(paths=None)                 404 for the given / all (None) monthly files
    archive_short(paths, days=7)                    a monthly file holding only its first `days`
                                                    days (daily files stay whole; checksum matches)
    archive_duplicates(paths, every=7, copies=3)    every `every`-th row written `copies` times
    archive_fail_next(n, status=429, after=0, retry_after=None)
                                                    the next n archive requests (zip or checksum)
                                                    answer `status` (after `after` served ones)
    archive_clear_faults()                          all of the above off
    archive_delay = seconds                         sleep before serving each zip (slow mode)

Request log: ``archive_log(ok_only=False, kind=None)`` -> list of dicts ``{"path", "kind"
("zip"|"checksum"), "status", "bytes", "method"}`` in arrival order; ``archive_downloads()`` ->
zip paths answered 200; ``reset_log()`` (FakeBinance) clears it with the REST log. Helpers:
``archive_sha256(path)`` (hash of the published file), ``archive_csv(path)`` (its CSV text).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
import zipfile
from datetime import date, datetime, timezone

ARCHIVE_INTERVALS = ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1mo"]
DAILY_INTERVALS = ARCHIVE_INTERVALS[:13]  # 1s .. 1d
HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
KIND_PREFIX = {"spot": "data/spot", "um": "data/futures/um", "cm": "data/futures/cm"}
PREFIX_KIND = {v: k for k, v in KIND_PREFIX.items()}
WRONG_SHA_SALT = b"not the file you downloaded"

_PATH_RE = re.compile(
    r"^(?P<prefix>data/spot|data/futures/um|data/futures/cm)/(?P<freq>daily|monthly)/klines/"
    r"(?P<id>[A-Z0-9_]+)/(?P<interval>[0-9a-z]+)/(?P<fid>[A-Z0-9_]+)-(?P<finterval>[0-9a-z]+)-"
    r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip(?P<checksum>\.CHECKSUM)?$"
)


def _fb():
    import fake_binance  # lazy: fake_binance imports this module while it is being defined

    return fake_binance


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def archive_interval(interval: str) -> str:
    return "1mo" if interval == "1M" else interval


def _day_str(day) -> str:
    if isinstance(day, int):
        return datetime.fromtimestamp(day / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    if isinstance(day, (date, datetime)):
        return day.strftime("%Y-%m-%d")
    return str(day)


def _month_str(month) -> str:
    if isinstance(month, int):
        return datetime.fromtimestamp(month / 1000, tz=timezone.utc).strftime("%Y-%m")
    if isinstance(month, (date, datetime)):
        return month.strftime("%Y-%m")
    return str(month)[:7]


def archive_path(kind: str, freq: str, market_id: str, interval: str, date_str: str) -> str:
    """``data/{spot|futures/um|futures/cm}/{daily|monthly}/klines/ID/iv/ID-iv-DATE.zip``."""
    iv = archive_interval(interval)
    return f"{KIND_PREFIX[kind]}/{freq}/klines/{market_id}/{iv}/{market_id}-{iv}-{date_str}.zip"


def daily_path(symbol: str, interval: str, day) -> str:
    """Zip path of one day (``day``: "YYYY-MM-DD", date or epoch ms) of a unified symbol."""
    m = _fb().ALL_MARKETS[symbol]
    return archive_path(m.kind, "daily", m.id, interval, _day_str(day))


def monthly_path(symbol: str, interval: str, month) -> str:
    """Zip path of one month (``month``: "YYYY-MM", date or epoch ms) of a unified symbol."""
    m = _fb().ALL_MARKETS[symbol]
    return archive_path(m.kind, "monthly", m.id, interval, _month_str(month))


def _norm(path: str) -> str:
    path = path.lstrip("/")
    if path.endswith(".CHECKSUM"):
        path = path[: -len(".CHECKSUM")]
    return path


def _as_list(paths) -> list[str]:
    if isinstance(paths, str):
        paths = [paths]
    return [_norm(p) for p in paths]


# --------------------------------------------------------------------------------------------
# File contents
# --------------------------------------------------------------------------------------------


def _period_bounds(freq: str, date_str: str) -> tuple[int, int]:
    fb = _fb()
    if freq == "daily":
        y, mo, d = (int(x) for x in date_str.split("-"))
        start = fb.ms(y, mo, d)
        return start, start + fb.DAY
    y, mo = (int(x) for x in date_str.split("-"))
    start = fb.ms(y, mo, 1)
    return start, fb.next_open("1M", start)


def file_rows(market, interval: str, p0: int, p1: int, now: int) -> list[list]:
    """The 12-field rows of a file covering [p0, p1): final existing candles opening inside."""
    fb = _fb()
    out = []
    for t in fb.open_times(interval, p0, p1 - 1):
        if fb.next_open(interval, t) <= now and fb.candle_exists(market, interval, t, now):
            out.append(fb.kline_full(market.symbol, interval, t))
    return out


def render_csv(kind: str, p0: int, rows: list[list]) -> str:
    header = kind == "cm" or (kind == "um" and p0 >= _fb().ms(2022, 1, 1))
    micros = kind == "spot" and p0 >= _fb().ms(2025, 1, 1)
    lines = [HEADER] if header else []
    for r in rows:
        r = list(r)
        if micros:
            r[0] = r[0] * 1000
            r[6] = r[6] * 1000 + 999
        lines.append(",".join(str(x) for x in r))
    return "\n".join(lines) + "\n"


def make_zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, text in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return buf.getvalue()


def garbage_bytes(path: str, n: int = 2048) -> bytes:
    """Looks like the start of a zip, is not one."""
    out = bytearray(b"PK\x03\x04")
    seed = path.encode()
    while len(out) < n:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:n])


def wrong_sha(path: str) -> str:
    return hashlib.sha256(WRONG_SHA_SALT + _norm(path).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# The mixin
# --------------------------------------------------------------------------------------------


class ArchiveMixin:
    """Archive mirror state and request handling; expects ``self._lock`` and ``self.now()``."""

    def _archive_init(self):
        self.archive_requests: list[dict] = []
        self.archive_delay = 0.0
        self._arch_faults: dict[str, dict[str, dict]] = {}  # zip path -> kind -> params ("left")
        self._arch_plan: list = []  # upcoming archive requests: None (serve) or (status, retry_after)
        self._arch_monthly_404 = False
        self._arch_cache: dict[tuple, bytes] = {}  # (zip path, variant) -> zip bytes
        self._arch_cache_lock = threading.Lock()

    # ---- fault knobs ---------------------------------------------------------------------
    def _add_fault(self, kind: str, paths, times=None, **params):
        with self._lock:
            for p in _as_list(paths):
                self._arch_faults.setdefault(p, {})[kind] = {"left": times, **params}

    def archive_wrong_checksum(self, paths, times=None):
        """The .CHECKSUM of these zips names ``wrong_sha(path)`` instead of the real hash."""
        self._add_fault("wrong_checksum", paths, times)

    def archive_missing_checksum(self, paths):
        self._add_fault("missing_checksum", paths)

    def archive_truncate(self, paths, keep=0.5, lying_length=False, times=None):
        self._add_fault("truncate", paths, times, keep=keep, lying=lying_length)

    def archive_garbage(self, paths, times=None):
        self._add_fault("garbage", paths, times)

    def archive_no_csv(self, paths, times=None):
        self._add_fault("no_csv", paths, times)

    def archive_404(self, paths):
        self._add_fault("missing", paths)

    def archive_404_monthly(self, paths=None):
        if paths is None:
            with self._lock:
                self._arch_monthly_404 = True
        else:
            self._add_fault("missing", paths)

    def archive_short(self, paths, days=7):
        self._add_fault("short", paths, None, days=days)

    def archive_duplicates(self, paths, every=7, copies=3):
        self._add_fault("dup", paths, None, every=every, copies=copies)

    def archive_fail_next(self, n=1, status=429, after=0, retry_after=None):
        with self._lock:
            self._arch_plan.extend([None] * after + [(status, retry_after)] * n)

    def archive_clear_faults(self):
        with self._lock:
            self._arch_faults.clear()
            self._arch_plan.clear()
            self._arch_monthly_404 = False

    # ---- log -----------------------------------------------------------------------------
    def archive_log(self, ok_only=False, kind=None) -> list[dict]:
        with self._lock:
            return [
                dict(r)
                for r in self.archive_requests
                if (not ok_only or r["status"] == 200) and (kind is None or r["kind"] == kind)
            ]

    def archive_downloads(self) -> list[str]:
        """Zip paths answered 200 (GET), in order, repeats included."""
        return [r["path"] for r in self.archive_log(ok_only=True, kind="zip") if r["method"] == "GET"]

    # ---- contents ------------------------------------------------------------------------
    def _fault(self, path, kind, consume=False):
        """Params of an active fault (and count one use of it when ``consume``)."""
        with self._lock:
            f = self._arch_faults.get(path, {}).get(kind)
            if f is None:
                return None
            if consume and f["left"] is not None:
                f["left"] -= 1
                if f["left"] <= 0:
                    del self._arch_faults[path][kind]
            return f

    def _parse(self, path):
        """(market, kind, freq, interval, p0, p1) of a well-formed archive zip path, else None."""
        fb = _fb()
        m = _PATH_RE.match(path)
        if m is None:
            return None
        g = m.groupdict()
        kind, freq, iv = PREFIX_KIND[g["prefix"]], g["freq"], g["interval"]
        if g["fid"] != g["id"] or g["finterval"] != iv or iv not in ARCHIVE_INTERVALS:
            return None
        if freq == "daily" and (iv not in DAILY_INTERVALS or len(g["date"]) != 10):
            return None
        if freq == "monthly" and len(g["date"]) != 7:
            return None
        if iv == "1s" and kind != "spot":
            return None
        market = next((mk for mk in fb.ALL_MARKETS.values() if mk.kind == kind and mk.id == g["id"]), None)
        if market is None:
            return None
        try:
            p0, p1 = _period_bounds(freq, g["date"])
        except ValueError:
            return None
        interval = "1M" if iv == "1mo" else iv
        return market, kind, freq, interval, p0, p1

    def _good_zip(self, path, variant=("full",)):
        """Bytes of the file as built from the candles (None if the file does not exist)."""
        key = (path, variant)
        with self._arch_cache_lock:
            if key in self._arch_cache:
                return self._arch_cache[key]
        parsed = self._parse(path)
        if parsed is None:
            return None
        market, kind, freq, interval, p0, p1 = parsed
        now = self.now()
        if p1 > now:
            return None
        rows = file_rows(market, interval, p0, p1, now)
        if not rows:
            return None
        if variant[0] == "short":
            rows = [r for r in rows if r[0] < p0 + variant[1] * _fb().DAY]
        elif variant[0] == "dup":
            every, copies = variant[1], variant[2]
            rows = [r for i, r in enumerate(rows) for _ in range(copies if i % every == 0 else 1)]
        name = path.rsplit("/", 1)[1][: -len(".zip")] + ".csv"
        data = make_zip({name: render_csv(kind, p0, rows)})
        with self._arch_cache_lock:
            self._arch_cache[key] = data
        return data

    def _published(self, path):
        """Bytes of the file as the archive holds it (short/duplicated/permanently bad
        variants included); None when it does not exist."""
        short, dup = self._fault(path, "short"), self._fault(path, "dup")
        if short is not None:
            data = self._good_zip(path, ("short", short["days"]))
        elif dup is not None:
            data = self._good_zip(path, ("dup", dup["every"], dup["copies"]))
        else:
            data = self._good_zip(path)
        if data is None:
            return None
        garbage, no_csv = self._fault(path, "garbage"), self._fault(path, "no_csv")
        if garbage is not None and garbage["left"] is None:
            return garbage_bytes(path)
        if no_csv is not None and no_csv["left"] is None:
            return make_zip({"README.txt": "nothing to see here\n"})
        return data

    def _missing(self, path) -> bool:
        if self._fault(path, "missing") is not None:
            return True
        with self._lock:
            return self._arch_monthly_404 and "/monthly/" in path

    def archive_sha256(self, path) -> str:
        """SHA-256 of the published zip (what a correct .CHECKSUM names)."""
        data = self._published(_norm(path))
        assert data is not None, f"no such archive file: {path}"
        return hashlib.sha256(data).hexdigest()

    def archive_csv(self, path) -> str:
        """The CSV text inside the published zip."""
        with zipfile.ZipFile(io.BytesIO(self._published(_norm(path)))) as z:
            return z.read(z.namelist()[0]).decode()

    # ---- HTTP ----------------------------------------------------------------------------
    def _archive_handle(self, h, raw_path: str, head: bool = False):
        path = raw_path.lstrip("/")
        is_checksum = path.endswith(".CHECKSUM")
        zpath = _norm(path)
        entry = {"path": path, "kind": "checksum" if is_checksum else "zip", "status": 200, "bytes": 0,
                 "method": "HEAD" if head else "GET"}
        headers = {}
        declared = None
        try:
            with self._lock:
                plan = self._arch_plan.pop(0) if self._arch_plan else None
            if plan is not None:
                status, retry_after = plan
                if retry_after is not None:
                    headers["Retry-After"] = str(retry_after)
                code = "SlowDown" if status == 503 else "TooManyRequests"
                body, ctype = _xml_error(code, "Please reduce your request rate.", path), "application/xml"
            elif self._missing(zpath) or (is_checksum and self._fault(zpath, "missing_checksum")):
                status, body, ctype = 404, _xml_error("NoSuchKey", "The specified key does not exist.", path), "application/xml"
            elif is_checksum:
                data = self._published(zpath)
                if data is None:
                    status, body, ctype = 404, _xml_error("NoSuchKey", "The specified key does not exist.", path), "application/xml"
                else:
                    sha = hashlib.sha256(data).hexdigest()
                    if not head and self._fault(zpath, "wrong_checksum", consume=True) is not None:
                        sha = wrong_sha(zpath)
                    status, ctype = 200, "binary/octet-stream"
                    body = f"{sha}  {zpath.rsplit('/', 1)[1]}".encode()
            else:
                data = self._published(zpath)
                if data is None:
                    status, body, ctype = 404, _xml_error("NoSuchKey", "The specified key does not exist.", path), "application/xml"
                else:
                    status, ctype, body = 200, "application/zip", data
                    if not head:
                        if self.archive_delay:
                            time.sleep(self.archive_delay)
                        if self._fault(zpath, "garbage") and self._fault(zpath, "garbage", consume=True)["left"] is not None:
                            body = garbage_bytes(zpath)
                        nc = self._fault(zpath, "no_csv")
                        if nc is not None and nc["left"] is not None:
                            self._fault(zpath, "no_csv", consume=True)
                            body = make_zip({"README.txt": "nothing to see here\n"})
                        tr = self._fault(zpath, "truncate", consume=True)
                        if tr is not None:
                            keep = tr["keep"]
                            n = int(len(body) * keep) if isinstance(keep, float) else int(keep)
                            if tr["lying"]:
                                declared = len(body)
                            body = body[: max(0, min(n, len(body) - 1))]
                    headers["ETag"] = '"' + hashlib.md5(body).hexdigest() + '"'
                    headers["Last-Modified"] = "Mon, 01 Jan 2024 08:40:00 GMT"
        except Exception as e:  # a bug in the fake: make it loud
            status, body, ctype = 500, f"fake archive error: {e!r}".encode(), "text/plain"
        entry["status"] = status
        entry["bytes"] = 0 if head else len(body)
        with self._lock:
            self.archive_requests.append(entry)
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(declared if declared is not None else len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            try:
                h.wfile.write(body)
                h.wfile.flush()
            except OSError:
                pass


def _xml_error(code: str, message: str, key: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Key>{key}</Key></Error>"
    ).encode()
