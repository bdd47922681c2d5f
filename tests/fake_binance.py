"""A fake Binance spot REST server for testing candlecache through a real ccxt.binance.

Only what ``ccxt.binance().load_markets()`` (spot only) and ``fetch_ohlcv()`` need is served:

* ``GET /api/v3/exchangeInfo``
* ``GET /api/v3/klines`` with ``symbol``, ``interval``, ``startTime``, ``endTime``, ``limit``
  (default 500, max 1000 like Binance spot; returns the first ``limit`` existing candles
  with ``startTime <= openTime <= endTime``; without ``startTime`` the latest ones)
* ``GET /api/v3/time`` and ``/api/v3/ping`` for completeness.

Candles are a pure function of (symbol, interval, open time) -- see :func:`kline_strings` --
so tests compute the ground truth independently with :func:`expected_frame`.

The server clock is ``time.time()`` looked up at request time (so ``monkeypatch.setattr(time,
"time", fake)`` drives it together with candlecache), unless ``server.now_ms`` is set.
Candles that open after "now" do not exist; the candle containing "now" is the open candle,
whose values depend on ``server.revision``; it becomes final once now >= its close.

The server runs on 127.0.0.1 on an ephemeral port in a background thread; it answers HTTP/1.0
(one connection per request), so ``stop()`` leaves no lingering handler threads.

The same server also mirrors Binance's public archive (data.binance.vision) under ``/data/...``:
zipped monthly and daily kline CSVs of the same candles, with fault injection -- see
``fake_archive.py`` (mixed into :class:`FakeBinance`). The archive also knows the futures
markets ``BTC/USDT:USDT`` (um, id ``BTCUSDT``) and ``BTC/USD:BTC`` (cm, id ``BTCUSD_PERP``);
the REST side stays spot only (what ``make_exchange`` loads).
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

FIXED_MS = {
    "1s": SECOND,
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "6h": 6 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": WEEK,
}
INTERVALS = list(FIXED_MS) + ["1M"]

# 1970-01-01 was a Thursday; Binance weekly candles open on Monday 00:00 UTC (1970-01-05).
WEEK_OFFSET = 4 * DAY

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


def ms(year, month=1, day=1, hour=0, minute=0, second=0) -> int:
    """UTC wall-clock time -> epoch milliseconds."""
    return calendar.timegm((year, month, day, hour, minute, second)) * 1000


# --------------------------------------------------------------------------------------------
# Interval arithmetic (Binance alignment)
# --------------------------------------------------------------------------------------------


def _month_index(t: int) -> int:
    d = datetime.fromtimestamp(t // 1000, tz=timezone.utc)
    return d.year * 12 + (d.month - 1)


def _month_start(index: int) -> int:
    return ms(index // 12, index % 12 + 1, 1)


def align_down(interval: str, t: int) -> int:
    """Open time of the candle containing t."""
    if interval == "1M":
        return _month_start(_month_index(t))
    p = FIXED_MS[interval]
    off = WEEK_OFFSET if interval == "1w" else 0
    return (t - off) // p * p + off


def next_open(interval: str, t: int) -> int:
    """Open time of the candle after the (aligned) candle opening at t."""
    if interval == "1M":
        return _month_start(_month_index(t) + 1)
    return t + FIXED_MS[interval]


def align_up(interval: str, t: int) -> int:
    """First candle open time >= t."""
    a = align_down(interval, t)
    return a if a == t else next_open(interval, a)


def add_periods(interval: str, t: int, n: int) -> int:
    """t + n periods (calendar months for 1M; t need not be aligned for fixed periods)."""
    if interval == "1M":
        d = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
        idx = d.year * 12 + d.month - 1 + n
        d2 = d.replace(year=idx // 12, month=idx % 12 + 1)
        return int(round(d2.timestamp() * 1000))
    return t + n * FIXED_MS[interval]


def open_times(interval: str, start: int, end: int) -> list[int]:
    """All aligned open times t with start <= t <= end (regardless of existence)."""
    out = []
    t = align_up(interval, start)
    while t <= end:
        out.append(t)
        t = next_open(interval, t)
    return out


# --------------------------------------------------------------------------------------------
# Markets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    symbol: str  # unified, e.g. "BTC/USDT"
    listed: int  # first instant with trading (ms)
    delisted: int | None = None  # first instant without trading (ms), None = still listed
    gaps: tuple[tuple[int, int], ...] = ()  # maintenance windows [start, end) without trading
    kind: str = "spot"  # "spot", "um" (USD-M futures) or "cm" (COIN-M futures)
    market_id: str | None = None  # exchange id when it is not base + quote (e.g. BTCUSD_PERP)

    @property
    def base(self):
        return self.symbol.split("/")[0]

    @property
    def quote(self):
        return self.symbol.split("/")[1].split(":")[0]

    @property
    def id(self):
        return self.market_id or self.base + self.quote


BTC_LISTED = ms(2017, 8, 17, 4)
# Binance's real spot maintenance on 2023-03-24 lasted about two hours.
BTC_GAP = (ms(2023, 3, 24, 12, 30), ms(2023, 3, 24, 14, 40))
NEW_LISTED = ms(2024, 3, 1, 10, 0)
OLD_LISTED = ms(2019, 1, 1)
OLD_DELISTED = ms(2024, 2, 1, 12, 0)

MARKETS = {
    m.symbol: m
    for m in (
        Market("BTC/USDT", BTC_LISTED, None, (BTC_GAP,)),
        Market("ETH/USDT", BTC_LISTED),
        Market("NEW/USDT", NEW_LISTED),
        Market("OLD/USDT", OLD_LISTED, OLD_DELISTED),
    )
}
MARKETS_BY_ID = {m.id: m for m in MARKETS.values()}  # the REST side (spot only)

UM_LISTED = ms(2019, 9, 8, 9)
CM_LISTED = ms(2020, 8, 11, 2)
# Futures markets exist only in the archive mirror (fake_archive.py), not in exchangeInfo/klines.
FUTURES_MARKETS = {
    m.symbol: m
    for m in (
        Market("BTC/USDT:USDT", UM_LISTED, kind="um", market_id="BTCUSDT"),
        Market("BTC/USD:BTC", CM_LISTED, kind="cm", market_id="BTCUSD_PERP"),
    )
}
ALL_MARKETS = {**MARKETS, **FUTURES_MARKETS}


def candle_exists(market: Market, interval: str, t: int, now_ms: int) -> bool:
    """A candle exists if its span overlaps trading time, is not wholly inside a maintenance
    window, and it has opened by now."""
    if t > now_ms:
        return False
    end = next_open(interval, t)
    if end <= market.listed:
        return False
    if market.delisted is not None and t >= market.delisted:
        return False
    for g0, g1 in market.gaps:
        if g0 <= t and end <= g1:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Deterministic candle values
# --------------------------------------------------------------------------------------------


def _h(*parts) -> int:
    key = "|".join(map(str, parts)).encode()
    return int.from_bytes(_blake2b(key, digest_size=8).digest(), "big")


_blake2b = hashlib.blake2b


@functools.lru_cache(maxsize=None)
def _price_level(symbol: str) -> int:
    return 1000 + (_h(symbol) % 50000)  # per-symbol price level


def _kline_ints(symbol: str, interval: str, t: int, revision: int | None):
    """(open, high, low, close) in cents and volume in thousandths."""
    tag = "final" if revision is None else f"open{revision}"
    h = int.from_bytes(_blake2b(f"{symbol}|{interval}|{t}|{tag}".encode(), digest_size=8).digest(), "big")
    base = _price_level(symbol)
    o = base * 100 + (h % 200000)  # in cents
    c = base * 100 + ((h >> 20) % 200000)
    hi = max(o, c) + ((h >> 40) % 5000)
    lo = max(1, min(o, c) - ((h >> 52) % 5000))
    vol = (h >> 8) % 10_000_000  # in thousandths
    return o, hi, lo, c, vol


def kline_strings(symbol: str, interval: str, t: int, revision: int | None = None):
    """(open, high, low, close, volume) as Binance-style decimal strings.

    ``revision=None`` is the final candle; an int is the open (still forming) candle at that
    revision. Values have at most 2 decimals (prices) / 3 decimals (volume), so parsing the
    strings to float is exact and unambiguous.
    """
    o, hi, lo, c, vol = _kline_ints(symbol, interval, t, revision)
    return (f"{o / 100:.8f}", f"{hi / 100:.8f}", f"{lo / 100:.8f}", f"{c / 100:.8f}", f"{vol / 1000:.8f}")


def kline_full(symbol: str, interval: str, t: int, revision: int | None = None) -> list:
    """The 12 fields Binance answers for one kline (REST /klines row and archive CSV row):
    open_time, open, high, low, close, volume, close_time, quote_volume, count,
    taker_buy_base, taker_buy_quote, ignore."""
    o, h, l, c, v = _kline_ints(symbol, interval, t, revision)
    o, h, l, c, v = o / 100, h / 100, l / 100, c / 100, v / 1000  # == float(kline_strings(...))
    close_time = next_open(interval, t) - 1
    count = int.from_bytes(_blake2b(f"{symbol}|{t}".encode(), digest_size=8).digest(), "big") % 5000 + 1
    return [t, f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{c:.8f}", f"{v:.8f}", close_time, f"{v * c:.8f}", count,
            "0.00000000", "0.00000000", "0"]


def candle_row(symbol, interval, t, now_ms, revision):
    """[t, o, h, l, c, v] floats as ccxt returns them, final or open depending on now."""
    is_open = next_open(interval, t) > now_ms
    o, h, l, c, v = _kline_ints(symbol, interval, t, revision if is_open else None)
    # == float() of kline_strings' decimals: both are the double nearest the exact quotient
    return [t, o / 100, h / 100, l / 100, c / 100, v / 1000]


def expected_rows(symbol, interval, start, end, now_ms=None, revision=0):
    """Ground truth: existing candles with start <= open time <= end, as [t, o, h, l, c, v]."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    m = ALL_MARKETS[symbol]
    return [
        candle_row(symbol, interval, t, now_ms, revision)
        for t in open_times(interval, start, end)
        if candle_exists(m, interval, t, now_ms)
    ]


def expected_frame(symbol, interval, start, end, now_ms=None, revision=0):
    """Ground truth as a polars DataFrame shaped like candlecache's result."""
    import polars as pl

    rows = expected_rows(symbol, interval, start, end, now_ms, revision)
    cols = ["time", "open", "high", "low", "close", "volume"]
    return pl.DataFrame(
        {c: [r[i] for r in rows] for i, c in enumerate(cols)},
        schema={"time": pl.Int64, **{c: pl.Float64 for c in cols[1:]}},
    )


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

ERROR_BODIES = {
    429: {
        "code": -1003,
        "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute. "
        "Please use the websocket for live updates to avoid bans.",
    },
    418: {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned until 1700000000000."},
    503: {
        "code": -1008,
        "msg": "Server is currently overloaded with other requests. Please try again in a few minutes.",
    },
    500: {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
}


class _BinanceError(Exception):
    def __init__(self, status, code, msg, body=None):
        super().__init__(msg)
        self.status = status
        self.body = body if body is not None else {"code": code, "msg": msg}


from fake_archive import ArchiveMixin  # noqa: E402  (uses the helpers above)


class FakeBinance(ArchiveMixin):
    """State + HTTP server. Thread-safe; all knobs may be changed while it runs.
    The archive mirror's knobs (``archive_*`` methods) are documented in fake_archive.py."""

    def __init__(self, delay: float = 0.0):
        self.now_ms: int | None = None  # None -> int(time.time() * 1000) at request time
        self.revision = 0  # values of the open candle
        self.delay = delay  # seconds to sleep in every klines request (for concurrency tests)
        self.markets = dict(MARKETS)
        self._lock = threading.Lock()
        self._plan: list = []  # per upcoming klines request: None (serve) or (status, body)
        self.requests: list[dict] = []  # every request: path, params, status, rows, first, last
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._archive_init()

    # ---- clock -------------------------------------------------------------------------
    def now(self) -> int:
        if self.now_ms is not None:
            return self.now_ms
        return int(time.time() * 1000)  # looked up at call time: monkeypatchable

    # ---- failure injection -------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 429, after: int = 0, body=None):
        """After `after` more klines requests are served normally, the next n answer `status`
        with a Binance-style JSON error body (or `body`: a dict sent as JSON, a str as text)."""
        if body is None:
            body = ERROR_BODIES.get(status, {"code": -1000, "msg": "An unknown error occured while processing the request."})
        with self._lock:
            self._plan.extend([None] * after + [(status, body)] * n)

    # ---- request log -------------------------------------------------------------------
    def klines_log(self, ok_only: bool = True) -> list[dict]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r["path"].endswith("/klines") and (not ok_only or r["status"] == 200)
            ]

    def klines_count(self, ok_only: bool = True) -> int:
        return len(self.klines_log(ok_only))

    def reset_log(self):
        """Clear the REST request log and the archive request log."""
        with self._lock:
            self.requests.clear()
            self.archive_requests.clear()

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # keep test output clean (and off the clock)
                pass

            def do_GET(self):
                fake._handle(self)

            def do_HEAD(self):
                fake._handle(self, head=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- request handling --------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, head: bool = False):
        parts = urlsplit(h.path)
        path = parts.path
        if path.startswith("/data/"):
            return self._archive_handle(h, path, head)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        entry = {"path": path, "params": params, "status": 200, "rows": 0, "first": None, "last": None}
        status, body = 200, None
        try:
            if path == "/api/v3/exchangeInfo":
                body = self._exchange_info()
            elif path == "/api/v3/ping":
                body = {}
            elif path == "/api/v3/time":
                body = {"serverTime": self.now()}
            elif path == "/api/v3/klines":
                with self._lock:
                    fail = self._plan.pop(0) if self._plan else None
                if fail is not None:
                    status, body = fail
                    raise _BinanceError(status, None, None, body)
                if self.delay:
                    time.sleep(self.delay)
                body = self._klines(params)
                entry["rows"] = len(body)
                if body:
                    entry["first"], entry["last"] = body[0][0], body[-1][0]
            else:
                raise _BinanceError(404, -1000, "Not found")
        except _BinanceError as e:
            status, body = e.status, e.body
        except Exception as e:  # a bug in the fake: make it loud
            status, body = 500, {"code": -1000, "msg": f"fake server error: {e!r}"}
        entry["status"] = status
        with self._lock:
            self.requests.append(entry)
        if isinstance(body, str):
            data, ctype = body.encode(), "text/html"
        else:
            data, ctype = json.dumps(body).encode(), "application/json;charset=UTF-8"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if not head:
            h.wfile.write(data)

    def _exchange_info(self):
        symbols = []
        for m in self.markets.values():
            trading = m.delisted is None or self.now() < m.delisted
            symbols.append(
                {
                    "symbol": m.id,
                    "status": "TRADING" if trading else "BREAK",
                    "baseAsset": m.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": m.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": True,
                    "cancelReplaceAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"},
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _klines(self, params):
        def int_param(name):
            v = params.get(name)
            if v is None:
                return None
            try:
                return int(v)
            except ValueError:
                raise _BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")

        sym = params.get("symbol")
        if sym is None:
            raise _BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        m = MARKETS_BY_ID.get(sym)
        if m is None:
            raise _BinanceError(400, -1121, "Invalid symbol.")
        interval = params.get("interval")
        if interval not in INTERVALS:
            raise _BinanceError(400, -1120, "Invalid interval.")
        limit = int_param("limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise _BinanceError(400, -1130, "Invalid data sent for a parameter.")
        start, end = int_param("startTime"), int_param("endTime")
        if start is not None and end is not None and start > end:
            raise _BinanceError(400, -1023, "Start time is greater than end time.")
        now = self.now()
        revision = self.revision
        hi = now if end is None else min(end, now)
        if m.delisted is not None:
            hi = min(hi, m.delisted - 1)
        if start is None:
            # the latest `limit` candles up to hi
            times = []
            t = align_down(interval, hi) if hi >= 0 else None
            floor = align_down(interval, m.listed)
            while t is not None and t >= floor and len(times) < limit:
                if candle_exists(m, interval, t, now):
                    times.append(t)
                t = align_down(interval, t - 1)
            times.reverse()
        else:
            times = []
            t = align_up(interval, start)
            first_listed = align_down(interval, m.listed)
            if t < first_listed:
                t = first_listed
            while t <= hi and len(times) < limit:
                if candle_exists(m, interval, t, now):
                    times.append(t)
                    t = next_open(interval, t)
                else:
                    # skip a maintenance window in one jump
                    nt = next_open(interval, t)
                    for g0, g1 in m.gaps:
                        if g0 <= t < g1:
                            nt = max(nt, align_down(interval, g1))
                    t = nt if nt > t else next_open(interval, t)
        symbol = m.symbol
        rows = []
        for t in times:
            is_open = next_open(interval, t) > now
            rows.append(kline_full(symbol, interval, t, revision if is_open else None))
        return rows


# --------------------------------------------------------------------------------------------
# ccxt glue
# --------------------------------------------------------------------------------------------


def make_exchange(server_or_url, load_markets: bool = True, module=None):
    """A real ccxt.binance whose every API url points at the fake server (spot markets only).
    ``module=ccxt.async_support`` gives the async client (then markets are not loaded here:
    ``await ex.load_markets()``)."""
    import ccxt

    module = module or ccxt
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    ex = module.binance(
        {
            "enableRateLimit": False,
            "timeout": 10_000,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
                "adjustForTimeDifference": False,
            },
        }
    )
    api = ex.urls["api"]
    for name, value in list(api.items()):
        if isinstance(value, str):
            api[name] = url + urlsplit(value).path
    if load_markets and module is ccxt:
        ex.load_markets()
    return ex


# Entry point for worker subprocesses:
#   python fake_binance.py URL BASE_DIR SYMBOL PERIOD START COUNT OUT READY_FILE GO_FILE
# Loads markets, imports candlecache, touches READY_FILE, waits for GO_FILE (a barrier so all
# workers call get_ohlcv_with_cache together), then writes the result to OUT (parquet).
def _worker_main(argv):
    import os

    import candlecache

    url, base_dir, symbol, period, start, count, out, ready, go = argv
    ex = make_exchange(url)
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("barrier timeout")
        time.sleep(0.002)
    df = candlecache.get_ohlcv_with_cache(base_dir, symbol, period, int(start), int(count), ex.fetch_ohlcv)
    df.write_parquet(out)


if __name__ == "__main__":
    import sys

    _worker_main(sys.argv[1:])
