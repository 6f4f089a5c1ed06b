"""A real S3 endpoint for tests: moto's server in a subprocess.

Tests talk to it over HTTP exactly as they would to MinIO or AWS, so the s3fs/botocore
code paths under test are the production ones (no in-process mocking). Reusable from
any test folder: wrap `moto_server()` in a session fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.aws import AWS_STEERING_VARS, TEST_ENV, isolated_environ
from tests.support.server import free_port, wait_for_http


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give a test dummy credentials and an empty AWS config file of its own.

    The developer's ~/.aws and exported AWS_* variables must not decide where a test's
    objects go. Returns the (empty) config file path, for tests that write one.
    """
    for name in AWS_STEERING_VARS:
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


def _exit_output(proc: subprocess.Popen[bytes]) -> str:
    """What moto wrote before it exited (its stderr pipe would block while it runs)."""
    if proc.poll() is None or proc.stderr is None:
        return ""
    return proc.stderr.read().decode(errors="replace")[-2000:]


@contextmanager
def moto_server(startup_timeout_s: float = 30.0) -> Iterator[MotoServer]:
    """Run `python -m moto.server` on a free local port until the block ends."""
    port = free_port()
    env = isolated_environ(dict(os.environ))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(
            f"{url}/moto-api/",
            proc,
            startup_timeout_s,
            what="moto server",
            log=lambda: _exit_output(proc),
        )
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
