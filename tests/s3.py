"""S3 for the tests: a local moto server, fresh buckets, and a proxy that injects faults.

Plain helpers, no pytest fixtures (those are in conftest.py), so worker subprocesses and
benchmarks can import them as well.

The code under test reaches S3 through the Rust ``object_store`` crate, which takes its
settings as ``storage_options`` (the keys ``AmazonS3Builder`` accepts through
``parse_url_opts``); the tests inspect and damage what it wrote through boto3, straight to the
server, so that a proxy in between neither logs nor fails those requests.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

# Set to an S3 endpoint (e.g. http://127.0.0.1:5055) to use that server instead of starting one.
ENDPOINT_ENV = "CANDLECACHE_TEST_S3_ENDPOINT"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


def wait_until_up(endpoint: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``endpoint`` answers HTTP at all (any status).

    Raises TimeoutError after ``timeout`` seconds, or RuntimeError at once if ``proc`` (the
    server's process) exits first.
    """
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        # http.client rather than urllib: urllib would route 127.0.0.1 through an HTTP_PROXY.
        conn = http.client.HTTPConnection(host, port, timeout=1.0)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return
        except OSError as exc:
            last_error = exc
        finally:
            conn.close()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the S3 server at {endpoint} exited with code {proc.returncode} before answering")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the S3 server at {endpoint} did not answer within {timeout:g} s: {last_error!r}")
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


@contextlib.contextmanager
def moto_server(log_path: Path, timeout: float = 20.0) -> Iterator[str]:
    """Run ``python -m moto.server`` (in memory) on 127.0.0.1 and yield its endpoint URL.

    Its output goes to ``log_path``, whose end is quoted if it does not come up in ``timeout`` s.
    """
    proc, endpoint = _start_moto(log_path, timeout)
    try:
        yield endpoint
    finally:
        _stop(proc)


def _start_moto(log_path: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    # The free port is picked before moto binds it, so another process can take it first;
    # a server that exits before answering is therefore retried on a new port.
    attempts = 3
    for attempt in range(1, attempts + 1):
        endpoint = f"http://127.0.0.1:{_free_port()}"
        with open(log_path, "ab") as log:
            # Output goes to a file: a pipe nobody reads would block moto once it filled up.
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(endpoint, timeout, proc)
            return proc, endpoint
        except RuntimeError as exc:
            if attempt == attempts:
                raise RuntimeError(f"{exc}; its log {log_path}:\n{_tail(log_path)}") from None
        except TimeoutError as exc:
            _stop(proc)
            raise TimeoutError(f"{exc}; its log {log_path}:\n{_tail(log_path)}") from None
    raise AssertionError("unreachable")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def new_s3_client(endpoint: str, attempts: int = 3) -> Any:
    """A new boto3 S3 client for ``endpoint``.

    ``attempts=1`` turns off botocore's retries, for tests that count requests or want to see
    an injected error themselves.
    """
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": attempts},
            # An empty mapping, not None: botocore would otherwise take HTTP_PROXY from the
            # environment and send requests for 127.0.0.1 there.
            proxies={},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


@cache
def s3_client(endpoint: str) -> Any:
    """A shared boto3 S3 client for ``endpoint`` (creating one takes tens of milliseconds)."""
    return new_s3_client(endpoint)


@dataclass(frozen=True)
class S3Bucket:
    """One bucket on a test S3 server.

    ``endpoint`` is where the code under test should talk to (the server, or a proxy in front
    of it: see ``via``); ``direct_endpoint`` is the server itself, which the inspection helpers
    (``keys``, ``get``, ``put``, ``delete``) always use. ``dataclasses.replace(bucket,
    prefix="other")`` gives another root in the same bucket.
    """

    name: str
    endpoint: str
    direct_endpoint: str
    prefix: str = "cache"

    @property
    def url(self) -> str:
        """The cache's root URL: ``s3://<bucket>/<prefix>``."""
        return f"s3://{self.name}/{self.prefix}"

    @property
    def storage_options(self) -> dict[str, str]:
        """Options for ``object_store``'s ``parse_url_opts`` (a new dict each time)."""
        return {
            "endpoint": self.endpoint,
            "allow_http": "true",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "region": REGION,
        }

    def via(self, proxy: S3Proxy | str) -> S3Bucket:
        """The same bucket, with ``endpoint`` (and so ``storage_options``) set to ``proxy``."""
        endpoint = proxy if isinstance(proxy, str) else proxy.endpoint
        return S3Bucket(self.name, endpoint, self.direct_endpoint, self.prefix)

    @property
    def client(self) -> Any:
        """A boto3 client straight to the server."""
        return s3_client(self.direct_endpoint)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket that starts with ``prefix`` (full keys, sorted)."""
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(found)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)

    def remove(self) -> None:
        """Delete every object and then the bucket."""
        keys = self.keys()
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
        self.client.delete_bucket(Bucket=self.name)


def create_bucket(endpoint: str, prefix: str = "cache") -> S3Bucket:
    """A new bucket with a unique name on the S3 server at ``endpoint``."""
    name = f"candlecache-test-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return S3Bucket(name, endpoint, endpoint, prefix)


# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy recomputes, never forwarded as sent.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_CONDITIONS = frozenset({"if-none-match", "if-match"})
_ERROR_CODES = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    409: "OperationAborted",
    412: "PreconditionFailed",
    429: "SlowDown",
    500: "InternalError",
    503: "SlowDown",
}


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    method: str | None
    status: int
    remaining: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _Hang:
    pattern: re.Pattern[str]
    method: str | None


def _client_gone(sock: socket.socket) -> bool:
    """True when the client closed its end (a killed process's sockets are closed by the OS)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class S3Proxy:
    """A reverse proxy in front of an S3 server that logs requests and injects faults.

    Everything is settable from the test while the proxy runs:

    - ``strip_conditions = True``: drop ``If-None-Match`` and ``If-Match`` before forwarding,
      i.e. a store that silently ignores conditional puts.
    - ``hang(pattern, method="PUT")``: hold every matching request until ``release()`` (or
      ``stop()``); ``wait_hung()`` waits for the first one. A held request whose client has
      gone away (``kill -9``) is dropped and never forwarded, so it cannot land after its
      writer died.
    - ``fail(pattern, status, count=1, method=None, body=None)``: answer the next ``count``
      matching requests with ``status`` without forwarding them (``body=None`` gives an S3 XML
      error for statuses >= 300 and an empty body otherwise).
    - ``requests``: every request received, as ``(method, path, query)``; ``count()`` and
      ``clear()`` help with it.

    Patterns are regular expressions searched (``re.search``) in the request's path as sent,
    i.e. percent-encoded and without the query, e.g. ``/<bucket>/cache/_log/``; ``method=None``
    matches any method.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream
        self._upstream_host = parts.hostname or "127.0.0.1"
        self._upstream_port = parts.port or 80
        self.strip_conditions = False
        self.requests: list[tuple[str, str, str]] = []
        self.dropped: list[tuple[str, str, str]] = []
        self._faults: list[_Fault] = []
        self._hangs: list[_Hang] = []
        self._hung: list[tuple[str, str, str]] = []
        self._release_epoch = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._server = _ProxyServer(self)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: stop() waits up to one interval for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="S3Proxy", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> S3Proxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, drop held requests and close the clients' connections."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        self._server.server_close()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    # --- faults ---

    def fail(
        self,
        pattern: str,
        status: int,
        count: int = 1,
        method: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` requests matching ``pattern`` (and ``method``) with ``status``."""
        if body is None:
            body = b""
            if status >= 300:
                code = _ERROR_CODES.get(status, "InjectedFault")
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>injected by S3Proxy</Message></Error>"
                ).encode()
        all_headers = {"Content-Type": "application/xml"} if body.startswith(b"<?xml") else {}
        all_headers.update(headers or {})
        with self._cond:
            self._faults.append(_Fault(re.compile(pattern), _upper(method), status, count, body, all_headers))

    def hang(self, pattern: str, method: str | None = "PUT") -> None:
        """Hold every request matching ``pattern`` (and ``method``) until ``release()``."""
        with self._cond:
            self._hangs.append(_Hang(re.compile(pattern), _upper(method)))

    def release(self) -> None:
        """Forward the held requests (those whose clients are still there) and stop holding."""
        with self._cond:
            self._hangs.clear()
            self._release_epoch += 1
            self._cond.notify_all()

    @property
    def hung(self) -> list[tuple[str, str, str]]:
        """The requests held right now, as ``(method, path, query)``."""
        with self._cond:
            return list(self._hung)

    def wait_hung(self, timeout: float = 10.0) -> tuple[str, str, str]:
        """Wait until a request is held and return it; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._hung:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no request was held within {timeout:g} s; received: {self.requests}")
                self._cond.wait(left)
            return self._hung[0]

    def reset(self) -> None:
        """Forget faults, release held requests, forward conditions again, and clear the log."""
        self.release()
        with self._cond:
            self._faults.clear()
            self.strip_conditions = False
        self.clear()

    # --- the log ---

    def clear(self) -> None:
        """Empty the request log."""
        with self._cond:
            self.requests.clear()
            self.dropped.clear()

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """How many logged requests match ``method`` and the path regex ``pattern``."""
        want = _upper(method)
        regex = re.compile(pattern) if pattern is not None else None
        with self._cond:
            return sum(
                1
                for m, path, _ in self.requests
                if (want is None or m == want) and (regex is None or regex.search(path))
            )

    # --- called by the request handler ---

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.remaining > 0 and _matches(fault.pattern, fault.method, method, path):
                    fault.remaining -= 1
                    return fault
            return None

    def _hold(self, request: tuple[str, str, str], sock: socket.socket) -> bool:
        """Block while a hang rule matches; False if the request must be dropped instead."""
        method, path, _ = request
        with self._cond:
            if not any(_matches(h.pattern, h.method, method, path) for h in self._hangs):
                return True
            epoch = self._release_epoch
            self._hung.append(request)
            self._cond.notify_all()
            try:
                while self._release_epoch == epoch and not self._stopping:
                    # Polls the socket: nothing else wakes this thread when the client dies.
                    self._cond.wait(0.05)
                    if _client_gone(sock):
                        break
                keep = self._release_epoch != epoch and not self._stopping and not _client_gone(sock)
                if not keep:
                    self.dropped.append(request)
                return keep
            finally:
                self._hung.remove(request)

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=60)
        try:
            # The client's Host header goes through unchanged: SigV4 signs it.
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()


def _upper(method: str | None) -> str | None:
    return method.upper() if method is not None else None


def _matches(pattern: re.Pattern[str], want: str | None, method: str, path: str) -> bool:
    return (want is None or want == method) and pattern.search(path) is not None


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: S3Proxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the client's connections open, as object_store's pool expects.
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        proxy = cast(_ProxyServer, self.server).proxy
        with proxy._cond:
            proxy._connections.add(self.connection)

    def finish(self) -> None:
        proxy = cast(_ProxyServer, self.server).proxy
        with proxy._cond:
            proxy._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is S3Proxy.requests

    def _handle(self) -> None:
        proxy = cast(_ProxyServer, self.server).proxy
        method = self.command
        path, _, query = self.path.partition("?")
        request = (method, path, query)
        with proxy._cond:
            proxy.requests.append(request)
        # The whole body is read before holding or failing: the connection then stays in step,
        # and a client that closes it afterwards has really gone.
        body = self._read_body()

        fault = proxy._take_fault(method, path)
        if fault is not None:
            self._respond(fault.status, None, list(fault.headers.items()), fault.body)
            return
        if not proxy._hold(request, self.connection):
            self.close_connection = True
            return

        dropped = {name.lower() for name in self.headers.get("Connection", "").split(",")} | _HOP_BY_HOP
        if proxy.strip_conditions:
            dropped |= _CONDITIONS
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in dropped]
        try:
            status, reason, resp_headers, data = proxy._forward(method, self.path, headers, body)
        except OSError as exc:
            self._respond(502, "Bad Gateway", [("Content-Type", "text/plain")], f"S3Proxy: {exc!r}".encode())
            return
        self._respond(status, reason, resp_headers, data)

    def _read_body(self) -> bytes | None:
        """The request body (de-chunked), or None when the request has none."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields: S3's checksums travel inside aws-chunked, not here
            return b"".join(parts)
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        return self.rfile.read(int(length))

    def _respond(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status, reason)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        for name, value in headers:
            lower = name.lower()
            # A HEAD answer's Content-Length is the object's size and is relayed as it came.
            if lower in _HOP_BY_HOP and not (lower == "content-length" and self.command == "HEAD"):
                continue
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(body)
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle
