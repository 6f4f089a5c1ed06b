"""The embedded object store's S3 API: PUT and GET throughput of one large object through
the server's port (modelhost's proxy in front of `rclone serve s3`) next to rclone
reached directly, with boto3's default transfer settings (8 MB multipart parts, 10
threads), as `aws s3 cp` and the sagemaker SDK's `upload_data` use them.

Usage:
    python benchmarks/s3_api.py [--mb 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import boto3
from _common import machine_facts, scratch_dir, sigterm_as_interrupt
from botocore.config import Config
from tests.support.aws import TEST_ENV
from tests.support.processes import child_pids, listening_ports
from tests.support.server import ServerProcess


def _client(url: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=TEST_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(signature_version="s3v4"),
    )


def _rclone_url(server: ServerProcess) -> str:
    for pid in child_pids(server.pid):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "rclone":
            return f"http://127.0.0.1:{listening_ports(pid)[0]}"
    raise RuntimeError("the server runs no rclone")


def _measure(url: str, source: Path, back: Path, bucket: str, rounds: int) -> tuple[float, float]:
    s3 = _client(url)
    size_mb = source.stat().st_size / 1024**2
    put, get = [], []
    for i in range(rounds):
        started = time.perf_counter()
        s3.upload_file(str(source), bucket, f"bench/{i}.bin")
        put.append(size_mb / (time.perf_counter() - started))
        started = time.perf_counter()
        s3.download_file(bucket, f"bench/{i}.bin", str(back))
        get.append(size_mb / (time.perf_counter() - started))
        if back.stat().st_size != source.stat().st_size:
            raise RuntimeError("the object came back with another size")
    return max(put), max(get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with sigterm_as_interrupt(), scratch_dir(args.keep) as work:
        source = work / "object.bin"
        with source.open("wb") as out:
            for _ in range(args.mb):
                out.write(os.urandom(1024 * 1024))
        server = ServerProcess(work / "data", log_level="warning").start()
        try:
            _client(server.url).create_bucket(Bucket="bench")
            rows = [
                (
                    "modelhost port (proxy)",
                    _measure(server.url, source, work / "b1", "bench", args.rounds),
                ),
                (
                    "rclone directly",
                    _measure(_rclone_url(server), source, work / "b2", "bench", args.rounds),
                ),
            ]
        finally:
            server.stop()
    for key, value in machine_facts("boto3 upload_file/download_file").items():
        print(f"{key}: {value}")
    print(f"\n{args.mb} MB object, best of {args.rounds}")
    print(f"{'path':<26}{'PUT MB/s':>10}{'GET MB/s':>10}")
    for name, (put, get) in rows:
        print(f"{name:<26}{put:>10.1f}{get:>10.1f}")


if __name__ == "__main__":
    main()
