"""Batch transform throughput: a MultiRecord transform job against a plain in-process loop
over the same CSV file, side by side in one run on one machine.

The plain loop is the floor: it reads the file in the same mini-batches the job sends
(`modelhost.batch.mini_batches`, same MaxPayloadInMB), decodes them with the same CSV
decoder the sklearn instance uses, calls the model's `predict` directly and writes the
encoded predictions to a file. It runs in its own process so its peak memory (VmHWM) is
its own. The job runs through a real `modelhost server` with boto3: it reads the object
from the embedded object store, streams mini-batches to one instance over HTTP with
MaxConcurrentTransforms in flight, and writes `<input>.out`. Its wall time runs from
CreateTransformJob to Completed, instance start-up included. Peak memory of the server
and the instance comes from their VmHWM, sampled while the job runs.

Usage:
    python benchmarks/batch_transform.py [--size-mb 1024] [--payload-mb 6]
                                         [--concurrency 2] [--rounds 1] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    BENCHMARKS_DIR,
    machine_facts,
    scratch_dir,
    sigterm_as_interrupt,
)
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import child_pids, peak_rss_mb
from tests.support.server import ServerProcess

RESULTS_DIR = BENCHMARKS_DIR / "results"
TARGET_RATIO = 0.90


def generate_csv(path: Path, size_mb: int) -> tuple[int, int]:
    """Iris-like rows (the real rows, perturbed) until the file holds `size_mb` MiB,
    written in blocks so generating 1 GB holds a few MB. Returns (rows, bytes)."""
    import numpy as np

    rng = np.random.default_rng(7)
    base = np.array(iris_rows(6))
    target = size_mb * 1024 * 1024
    rows = written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        while written < target:
            block = base[rng.integers(0, len(base), 50_000)] + rng.normal(0, 0.2, (50_000, 4))
            text = "\n".join(",".join(f"{v:.3f}" for v in row) for row in block.tolist())
            data = (text + "\n").encode()
            out.write(data)
            written += len(data)
            rows += 50_000
    return rows, written


def plain_loop(model_tarball: Path, data: Path, payload_mb: int, out: Path) -> dict:
    """Run in a child process: the in-process floor the job is compared with."""
    import io
    import tarfile

    import joblib

    from modelhost.batch import mini_batches
    from modelhost.modelserver.codecs import decode_csv, encode_csv

    with tarfile.open(model_tarball) as archive:
        member = archive.extractfile("model.joblib")
        assert member is not None
        model = joblib.load(io.BytesIO(member.read()))
    records = 0
    started = time.perf_counter()
    with data.open("rb") as stream, out.open("wb") as sink:
        for batch in mini_batches(stream, "Line", "MultiRecord", payload_mb * 1024 * 1024):
            sink.write(encode_csv(model.predict(decode_csv(batch.payload))))
            records += batch.records
    seconds = time.perf_counter() - started
    return {"records": records, "seconds": seconds, "peak_mb": _self_peak()}


def _self_peak() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_plain(model_tarball: Path, data: Path, payload_mb: int, scratch: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--plain-loop",
        str(model_tarball),
        str(data),
        str(payload_mb),
        str(scratch / "plain.out"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def run_job(
    server: ServerProcess, sagemaker, model: str, payload_mb: int, concurrency: int, round_no: int
) -> dict:
    name = f"bench-{round_no}-{int(time.time())}"
    started = time.perf_counter()
    sagemaker.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=payload_mb,
        MaxConcurrentTransforms=concurrency,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://bench/out-{round_no}/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    )
    instance_peak = 0.0
    while True:
        job = sagemaker.describe_transform_job(TransformJobName=name)
        for pid in child_pids(server.pid):
            instance_peak = max(instance_peak, peak_rss_mb(pid))
        if job["TransformJobStatus"] != "InProgress":
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if job["TransformJobStatus"] != "Completed":
        raise RuntimeError(f"job {name} {job['TransformJobStatus']}: {job.get('FailureReason')}")
    output = server.data_dir / "objects" / "bench" / f"out-{round_no}" / "data.csv.out"
    records = sum(block.count(b"\n") for block in _blocks(output))
    return {
        "records": records,
        "seconds": seconds,
        "server_peak_mb": peak_rss_mb(server.pid),
        "instance_peak_mb": instance_peak,
    }


def _blocks(path: Path):
    with path.open("rb") as f:
        while block := f.read(8 * 1024 * 1024):
            yield block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size (default 1 GiB)")
    parser.add_argument("--payload-mb", type=int, default=6, help="MaxPayloadInMB")
    parser.add_argument("--concurrency", type=int, default=2, help="MaxConcurrentTransforms")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch data dir")
    args = parser.parse_args()

    with sigterm_as_interrupt(), scratch_dir(args.keep) as scratch:
        server = ServerProcess(scratch / "data").start()
        try:
            model_url = put_iris_model(server.data_dir)
            tarball = server.data_dir / "objects" / model_url.removeprefix("s3://")
            data = server.data_dir / "objects" / "bench" / "in" / "data.csv"
            rows, size = generate_csv(data, args.size_mb)
            sagemaker = server.client("sagemaker")
            sagemaker.create_model(
                ModelName="bench-iris",
                PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": model_url},
            )
            results = []
            for round_no in range(args.rounds):
                plain = run_plain(tarball, data, args.payload_mb, scratch)
                job = run_job(
                    server, sagemaker, "bench-iris", args.payload_mb, args.concurrency, round_no
                )
                results.append((plain, job))
        finally:
            server.stop()
    report(args, rows, size, results)


def report(args: argparse.Namespace, rows: int, size: int, results: list) -> None:
    mib = size / 2**20
    lines = [
        f"# batch transform, {mib:,.0f} MiB CSV, {rows:,} records, MaxPayloadInMB="
        f"{args.payload_mb}, MaxConcurrentTransforms={args.concurrency}, 1 instance",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in machine_facts("-").items() if k != "load generator"]
    lines += [
        "",
        "| round | path | records/s | MB/s | wall s | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    ratios = []
    for round_no, (plain, job) in enumerate(results):
        for label, run, peak in (
            ("plain loop", plain, f"{plain['peak_mb']:.0f} MiB"),
            (
                "transform job",
                job,
                f"server {job['server_peak_mb']:.0f} MiB, instance "
                f"{job['instance_peak_mb']:.0f} MiB",
            ),
        ):
            assert run["records"] == rows, f"{label} did {run['records']} of {rows} records"
            lines.append(
                f"| {round_no} | {label} | {run['records'] / run['seconds']:,.0f} | "
                f"{mib / run['seconds']:,.1f} | {run['seconds']:.1f} | {peak} |"
            )
        ratios.append(plain["seconds"] / job["seconds"])
    best = max(ratios)
    lines += [
        "",
        f"job / plain loop throughput: {', '.join(f'{r:.2f}' for r in ratios)} "
        f"(target >= {TARGET_RATIO:.2f}: {'met' if best >= TARGET_RATIO else 'NOT met'})",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"batch_transform-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--plain-loop":
        print(
            json.dumps(
                plain_loop(
                    Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
                )
            )
        )
    else:
        main()
