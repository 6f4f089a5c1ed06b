"""Response streaming: time to first byte and total time of a streamed answer, through
modelhost (InvokeEndpointWithResponseStream) next to the model server called directly,
plus the same model through plain InvokeEndpoint, where the first byte is the last.

Why this shape:
- The model is the tests' "token generator" (tests/support/streaming.py): it yields
  TOKENS parts with a fixed pause before each, so the total time is mostly the model's
  and the time to first byte shows whether parts travel as they are produced (about one
  pause) or wait for the whole answer.
- The three paths run against the same model in the same run, one request at a time,
  alternating, so they see the same machine load. The direct one is an instance the
  benchmark starts through modelhost's own instance backend on the endpoint's model
  folder (see _direct.py): only the process that starts an instance holds its token.
- Requests go over plain http.client (what boto3 sends, minus signing), reading the body
  with read1() so each figure is taken when bytes reach the client.

Usage:
    python benchmarks/response_stream.py [--requests 20] [--tokens 32] [--pause-ms 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import (
    add_output_options,
    machine_facts,
    publish,
    scratch_dir,
    sigterm_as_interrupt,
)
from _direct import DirectInstance, endpoint_model_dir
from tests.support.endpoints import deploy, undeploy
from tests.support.server import ServerProcess
from tests.support.streaming import put_token_model


def _timed(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[float, float, int]:
    """Seconds to the first body byte and to the end, and the bytes received."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        connection.request("POST", path, body, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        first = None
        size = 0
        while data := response.read1(65536):
            if first is None:
                first = time.perf_counter() - started
            size += len(data)
        total = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status}")
        return first or total, total, size
    finally:
        connection.close()


def measure(
    requests: int, tokens: int, pause_ms: float, scratch: Path
) -> dict[str, list[tuple[float, float, int]]]:
    server = ServerProcess(scratch / "data", log_level="warning").start()
    sagemaker = server.client("sagemaker")
    name = None
    direct: DirectInstance | None = None
    try:
        name = deploy(sagemaker, put_token_model(server.data_dir), image="modelhost/python")
        direct = DirectInstance(
            endpoint_model_dir(server.data_dir, name), "python", scratch / "direct"
        ).start()
        body = json.dumps(
            {"tokens": [f"token{i} " for i in range(tokens)], "delay": pause_ms / 1000}
        ).encode()
        paths = {
            "modelhost, InvokeEndpointWithResponseStream": (
                server.port,
                f"/endpoints/{name}/invocations-response-stream",
                {},
            ),
            "model server directly, POST /invocations": (
                direct.port,
                "/invocations",
                direct.headers,
            ),
            "modelhost, InvokeEndpoint (buffered)": (
                server.port,
                f"/endpoints/{name}/invocations",
                {},
            ),
        }
        results: dict[str, list[tuple[float, float, int]]] = {label: [] for label in paths}
        for port, path, headers in paths.values():  # warm-up: connections, first import
            _timed(port, path, body, headers)
        for _ in range(requests):
            for label, (port, path, headers) in paths.items():
                results[label].append(_timed(port, path, body, headers))
        return results
    finally:
        if direct is not None:
            direct.stop()
        if name is not None:
            undeploy(sagemaker, name)
        server.stop()


def report(
    results: dict[str, list[tuple[float, float, int]]],
    tokens: int,
    pause_ms: float,
    facts: dict[str, str],
) -> str:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f} ms"

    lines = [
        f"# Response streaming: {tokens} parts, {pause_ms:g} ms before each "
        f"({len(next(iter(results.values())))} requests per path, medians)",
        "",
        *(f"- {key}: {value}" for key, value in facts.items()),
        f"- load average (1 min) at the end of the run: {os.getloadavg()[0]:.2f}",
        "",
        "| path | time to first byte | total | bytes |",
        "|---|---|---|---|",
    ]
    for label, samples in results.items():
        first = statistics.median(s[0] for s in samples)
        total = statistics.median(s[1] for s in samples)
        lines.append(f"| {label} | {ms(first)} | {ms(total)} | {samples[0][2]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per path")
    parser.add_argument("--tokens", type=int, default=32, help="parts per answer")
    parser.add_argument("--pause-ms", type=float, default=10.0, help="pause before each part")
    add_output_options(parser, "response_stream")
    args = parser.parse_args(argv)
    with sigterm_as_interrupt(), scratch_dir(args.keep_data) as scratch:
        results = measure(args.requests, args.tokens, args.pause_ms, scratch)
    text = report(
        results, args.tokens, args.pause_ms, machine_facts("http.client, one request at a time")
    )
    publish(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
