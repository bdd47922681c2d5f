"""The S3 test infrastructure itself (s3.py, conftest.py), checked with boto3 alone."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from s3 import S3Bucket, S3Proxy, create_bucket, new_s3_client


def status_of(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def proxied_client(proxy: S3Proxy) -> Any:
    # One attempt: the tests must see each injected error, not botocore's retry of it.
    return new_s3_client(proxy.endpoint, attempts=1)


def raw_connection(proxy: S3Proxy) -> http.client.HTTPConnection:
    parts = urlsplit(proxy.endpoint)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)


def test_bucket_fixture(s3_bucket: S3Bucket, s3_endpoint: str) -> None:
    assert s3_bucket.url == f"s3://{s3_bucket.name}/cache"
    assert s3_bucket.endpoint == s3_endpoint
    assert s3_bucket.storage_options == {
        "endpoint": s3_endpoint,
        "allow_http": "true",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "region": "us-east-1",
    }
    assert s3_bucket.keys() == []
    s3_bucket.put("cache/a/1", b"one")
    s3_bucket.put("cache/b", b"two")
    s3_bucket.put("other", b"three")
    assert s3_bucket.keys() == ["cache/a/1", "cache/b", "other"]
    assert s3_bucket.keys("cache/") == ["cache/a/1", "cache/b"]
    assert s3_bucket.get("cache/a/1") == b"one"
    s3_bucket.delete("cache/a/1")
    assert s3_bucket.keys("cache/") == ["cache/b"]


def test_buckets_are_fresh(s3_bucket: S3Bucket, s3_endpoint: str) -> None:
    other = create_bucket(s3_endpoint)
    try:
        assert other.name != s3_bucket.name
        s3_bucket.put("cache/x", b"x")
        assert other.keys() == []
    finally:
        other.remove()


def test_moto_honours_conditional_puts(s3_bucket: S3Bucket) -> None:
    client, name = s3_bucket.client, s3_bucket.name
    first = client.put_object(Bucket=name, Key="cache/_log/1", Body=b"a", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=name, Key="cache/_log/1", Body=b"b", IfNoneMatch="*")
    assert status_of(exc.value) == 412
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3_bucket.get("cache/_log/1") == b"a"

    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=name, Key="cache/_log/1", Body=b"c", IfMatch='"0123456789abcdef"')
    assert status_of(exc.value) == 412
    client.put_object(Bucket=name, Key="cache/_log/1", Body=b"d", IfMatch=first["ETag"])
    assert s3_bucket.get("cache/_log/1") == b"d"


def test_moto_lets_one_of_racing_creates_win(s3_bucket: S3Bucket) -> None:
    client, name = s3_bucket.client, s3_bucket.name
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def create(i: int) -> None:
        barrier.wait()
        try:
            client.put_object(Bucket=name, Key="cache/_log/race", Body=str(i).encode(), IfNoneMatch="*")
            statuses.append(200)
        except ClientError as exc:
            statuses.append(status_of(exc))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(statuses) == [200] + [412] * 7


def test_proxy_forwards_and_logs(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    via = s3_bucket.via(s3_proxy)
    assert via.storage_options["endpoint"] == s3_proxy.endpoint
    assert via.url == s3_bucket.url
    client = proxied_client(s3_proxy)
    name = s3_bucket.name
    client.put_object(Bucket=name, Key="cache/data/1", Body=b"x" * 100_000)
    assert client.head_object(Bucket=name, Key="cache/data/1")["ContentLength"] == 100_000
    assert client.get_object(Bucket=name, Key="cache/data/1", Range="bytes=10-19")["Body"].read() == b"x" * 10
    listed = client.list_objects_v2(Bucket=name, Prefix="cache/")
    assert [o["Key"] for o in listed["Contents"]] == ["cache/data/1"]
    client.delete_object(Bucket=name, Key="cache/data/1")
    assert s3_bucket.keys() == []

    methods = [m for m, _, _ in s3_proxy.requests]
    assert methods == ["PUT", "HEAD", "GET", "GET", "DELETE"]
    assert s3_proxy.requests[3] == ("GET", f"/{name}", s3_proxy.requests[3][2])
    assert "list-type=2" in s3_proxy.requests[3][2]
    assert s3_proxy.count("GET") == 2
    assert s3_proxy.count(pattern=r"/cache/data/") == 4
    assert s3_proxy.count("get", r"/cache/data/") == 1
    s3_proxy.clear()
    assert s3_proxy.requests == [] and s3_proxy.count() == 0


def test_proxy_strip_conditions_makes_a_lying_store(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    client, name = proxied_client(s3_proxy), s3_bucket.name
    client.put_object(Bucket=name, Key="cache/_log/1", Body=b"a", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=name, Key="cache/_log/1", Body=b"b", IfNoneMatch="*")
    assert status_of(exc.value) == 412, "the proxy must forward conditions by default"

    s3_proxy.strip_conditions = True
    client.put_object(Bucket=name, Key="cache/_log/1", Body=b"c", IfNoneMatch="*")
    assert s3_bucket.get("cache/_log/1") == b"c"


def test_proxy_fail_answers_then_forwards(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    client, name = proxied_client(s3_proxy), s3_bucket.name
    s3_proxy.fail(r"/cache/", 503)
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=name, Key="cache/a", Body=b"a")
    assert status_of(exc.value) == 503
    assert exc.value.response["Error"]["Code"] == "SlowDown"
    assert s3_bucket.keys() == [], "a failed request must not be forwarded"
    client.put_object(Bucket=name, Key="cache/a", Body=b"a")
    assert s3_bucket.get("cache/a") == b"a"

    s3_proxy.fail(r"/cache/a$", 200, count=2, method="GET", body=b"garbage")
    assert client.get_object(Bucket=name, Key="cache/a")["Body"].read() == b"garbage"
    client.put_object(Bucket=name, Key="cache/a", Body=b"b")  # another method: forwarded
    assert client.get_object(Bucket=name, Key="cache/a")["Body"].read() == b"garbage"
    assert client.get_object(Bucket=name, Key="cache/a")["Body"].read() == b"b"

    s3_proxy.fail(r"/cache/a$", 404, method="HEAD")
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=name, Key="cache/a")
    assert status_of(exc.value) == 404
    assert client.head_object(Bucket=name, Key="cache/a")["ContentLength"] == 1
    assert s3_proxy.count() == 8


def test_proxy_hang_holds_until_release(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    client, name = proxied_client(s3_proxy), s3_bucket.name
    s3_proxy.hang(r"/_log/")
    client.put_object(Bucket=name, Key="cache/data/1", Body=b"d")  # does not match: goes through
    outcome: list[object] = []
    writer = threading.Thread(
        target=lambda: outcome.append(client.put_object(Bucket=name, Key="cache/_log/1", Body=b"c"))
    )
    writer.start()
    assert s3_proxy.wait_hung(5) == ("PUT", f"/{name}/cache/_log/1", "")
    time.sleep(0.2)
    assert writer.is_alive() and outcome == []
    assert s3_bucket.keys() == ["cache/data/1"]

    s3_proxy.release()
    writer.join(5)
    assert not writer.is_alive() and len(outcome) == 1
    assert s3_bucket.get("cache/_log/1") == b"c"
    assert s3_proxy.hung == [] and s3_proxy.dropped == []


def test_proxy_drops_a_held_request_whose_client_died(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    # What kill -9 of a writer looks like to the proxy: its connection closes mid-request.
    s3_proxy.hang(r"/_log/")
    conn = raw_connection(s3_proxy)
    path = f"/{s3_bucket.name}/cache/_log/1"
    conn.request("PUT", path, body=b"commit")
    s3_proxy.wait_hung(5)
    conn.close()
    deadline = time.monotonic() + 5
    while not s3_proxy.dropped and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s3_proxy.dropped == [("PUT", path, "")]
    s3_proxy.release()
    time.sleep(0.1)
    assert s3_bucket.keys() == [], "a dead writer's request must never land"


def test_proxy_drops_the_commit_of_a_killed_writer(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    s3_proxy.hang(r"/_log/")
    port = s3_proxy.endpoint.rsplit(":", 1)[1]
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import http.client, sys\n"
            "conn = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]))\n"
            "conn.request('PUT', sys.argv[2], body=b'commit')\n"
            "conn.getresponse()\n",
            port,
            f"/{s3_bucket.name}/cache/_log/1",
        ]
    )
    try:
        s3_proxy.wait_hung(10)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    deadline = time.monotonic() + 5
    while not s3_proxy.dropped and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(s3_proxy.dropped) == 1
    s3_proxy.release()
    assert s3_bucket.keys() == []


def test_proxy_stop_drops_held_requests(s3_bucket: S3Bucket, s3_endpoint: str) -> None:
    proxy = S3Proxy(s3_endpoint)
    proxy.hang(r"/_log/")
    conn = raw_connection(proxy)
    conn.request("PUT", f"/{s3_bucket.name}/cache/_log/1", body=b"commit")
    proxy.wait_hung(5)
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.getresponse()
    conn.close()
    assert s3_bucket.keys() == []


def test_proxy_relays_chunked_bodies(s3_bucket: S3Bucket, s3_proxy: S3Proxy) -> None:
    conn = raw_connection(s3_proxy)
    for key in ("one", "two"):
        # The second request reuses the connection: the proxy keeps HTTP/1.1 connections open.
        body = iter([b"hello ", key.encode(), b" chunked"])
        conn.request("PUT", f"/{s3_bucket.name}/cache/{key}", body=body, encode_chunked=True)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()
    assert s3_bucket.get("cache/one") == b"hello one chunked"
    assert s3_bucket.get("cache/two") == b"hello two chunked"
    assert s3_proxy.count("PUT") == 2
