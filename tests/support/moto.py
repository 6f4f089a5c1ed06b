"""A real S3 endpoint for tests: moto's server in a subprocess.

Tests talk to it over HTTP exactly as they would to MinIO or AWS, so the s3fs/botocore
code paths under test are the production ones (no in-process mocking). Reusable from
any test folder: wrap `moto_server()` in a session fixture.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# Dummy credentials moto accepts; set in the server's and the tests' environment so the
# standard AWS credential chain never reaches for a real account.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# Everything that can steer botocore/s3fs toward some S3 other than the one under test.
_AWS_STEERING_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_SESSION_TOKEN",
    "MODELHOST_S3",
)


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give a test dummy credentials and an empty AWS config file of its own.

    The developer's ~/.aws and exported AWS_* variables must not decide where a test's
    objects go. Returns the (empty) config file path, for tests that write one.
    """
    for name in _AWS_STEERING_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    return config


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]

    def s3_client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client bound to this server with the test credentials.

        Built from a fresh session each time: boto3's default session caches the AWS
        config file it first read, and tests change that file and AWS_PROFILE.
        """
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=TEST_ENV["AWS_DEFAULT_REGION"],
        )
        return session.client("s3", endpoint_url=self.endpoint_url)

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.s3_client().create_bucket(Bucket=name)
        return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(startup_timeout_s: float = 30.0) -> Iterator[MotoServer]:
    """Run `python -m moto.server` on a free local port until the block ends."""
    port = _free_port()
    env = {**os.environ, **TEST_ENV}
    for name in _AWS_STEERING_VARS:
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"moto server exited with {proc.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.05)
        yield MotoServer(endpoint_url=url, process=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
