"""A real S3 protocol server for the tests: moto's standalone server on 127.0.0.1, one per test session.

``s3_server`` starts it (and stops it at the end of the session); ``s3_data_uri`` gives each test its own
bucket and points ``DRIFTLOOP_DATA_URI`` and the standard AWS variables at it, so the code under test reaches
it exactly as it would reach AWS S3 or MinIO. A test that needs the server and cannot start it fails under
``CI=true`` and skips locally with the reason.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.constants import service_missing

# moto accepts any key pair; these names make a leaked value obvious.
ACCESS_KEY = "driftloop-test-key"
SECRET_KEY = "driftloop-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens."""

    endpoint_url: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self):
        """A boto3 S3 client on this server (for arranging and inspecting buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name; returns its name."""
        name = f"driftloop-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` in ``bucket``, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def run_s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on a free 127.0.0.1 port; stop it when the block ends."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_missing(f"moto's S3 server is not installed ({exc}); `make venv` installs it")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as exc:  # the server thread failed to bind or start
        service_missing(f"moto's S3 server did not start on 127.0.0.1:{port}: {exc}")
    try:
        yield S3Server(endpoint_url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server for the whole test session."""
    with run_s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The AWS variables point at the test server (and no profile or real credentials are used)."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return s3_server


@pytest.fixture
def s3_data_uri(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket as the data location (``DRIFTLOOP_DATA_URI=s3://<bucket>/zones``)."""
    uri = f"s3://{s3_env.new_bucket()}/zones"
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", uri)
    return uri
