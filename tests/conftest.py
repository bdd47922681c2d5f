"""Fixtures shared by the test modules: S3 (see s3.py for the helpers behind them)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from s3 import ENDPOINT_ENV, S3Bucket, S3Proxy, create_bucket, moto_server, wait_until_up


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an S3 server: ``$CANDLECACHE_TEST_S3_ENDPOINT``, else a moto server started here.

    Session scope, so each xdist worker starts at most one server, and only if a test asks.
    """
    external = os.environ.get(ENDPOINT_ENV)
    if external:
        endpoint = external.rstrip("/")
        try:
            wait_until_up(endpoint, timeout=5)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} (set by ${ENDPOINT_ENV})") from None
        yield endpoint
        return
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    """A new, empty bucket; ``url`` is ``s3://<bucket>/cache``."""
    bucket = create_bucket(s3_endpoint)
    yield bucket
    # A shared server (CI's) would otherwise keep every test's objects in memory until the end.
    # Cleaning up is best effort: a test's own failure is the one worth reporting.
    with contextlib.suppress(Exception):
        bucket.remove()


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[S3Proxy]:
    """An S3Proxy in front of ``s3_endpoint``; pair it with ``s3_bucket.via(s3_proxy)``."""
    with S3Proxy(s3_endpoint) as proxy:
        yield proxy
