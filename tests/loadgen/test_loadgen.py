"""The load generator against a real HTTP server process (the null responder)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from modelhost.loadgen import LoadResult, LoadSpec, Phase, run, run_in_subprocess
from tests.support.server import free_port


@pytest.fixture(scope="module")
def responder() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "modelhost.loadgen.responder", str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "responder did not start"
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(10)


def _spec(url: str, *phases: Phase, **options: object) -> LoadSpec:
    return LoadSpec(url=url, phases=phases, **options)  # type: ignore[arg-type]


def test_open_loop_sends_on_schedule_and_records_every_answer(responder: str) -> None:
    result = run(_spec(f"{responder}/x", Phase(1.0, rate=200), Phase(1.0, rate=100, end_rate=300)))
    # constant 200/s for 1 s, then a ramp averaging 200/s for 1 s
    assert 300 <= result.scheduled <= 400
    assert result.sent == result.scheduled == result.completed
    assert result.error_count == 0
    summary = result.summary()
    assert (
        0
        < summary["p50_ms"]
        <= summary["p90_ms"]
        <= summary["p95_ms"]
        <= summary["p99_ms"]
        <= summary["max_ms"]
    )
    assert len(result.timeline) >= 2
    assert sum(s.completed for s in result.timeline) == result.completed
    assert sum(s.scheduled for s in result.timeline) == result.scheduled


def test_errors_are_counted_by_status(responder: str) -> None:
    result = run(_spec(f"{responder}/status/503", Phase(0.5, rate=100)))
    assert result.completed == 0
    assert set(result.errors) == {"503"}
    assert result.errors["503"] == result.sent > 0


def test_refused_connections_and_timeouts_are_errors(responder: str) -> None:
    closed = run(_spec(f"http://127.0.0.1:{free_port()}/", Phase(0.3, rate=50)))
    assert set(closed.errors) == {"connection"} and closed.completed == 0
    slow = run(_spec(f"{responder}/sleep/2000", Phase(0.3, rate=20), timeout_s=0.2))
    assert set(slow.errors) == {"timeout"} and slow.completed == 0


def test_open_loop_counts_queueing_behind_a_slow_server(responder: str) -> None:
    """One connection, 50 ms per answer, 40 requests/s offered: the server can do 20/s,
    so requests wait ever longer. An open loop must report that wait (a closed loop at the
    same settings would report ~50 ms and simply send fewer requests)."""
    result = run(_spec(f"{responder}/sleep/50", Phase(2.0, rate=40), max_connections=1))
    assert result.error_count == 0
    assert result.completed == result.scheduled
    assert result.percentile_ms(99) > 500  # the last ones waited behind ~40 others
    closed = run(_spec(f"{responder}/sleep/50", Phase(1.0, users=1), mode="closed"))
    assert closed.percentile_ms(99) < result.percentile_ms(99)


def test_the_timeout_runs_from_the_scheduled_time(responder: str) -> None:
    """One connection, 100 ms per answer, 50 requests/s offered for 1 s, 0.5 s timeout:
    requests queue behind each other, and every one either answers within 0.5 s of its
    scheduled time or is a timeout, however long it waited for the connection."""
    result = run(
        _spec(f"{responder}/sleep/100", Phase(1.0, rate=50), max_connections=1, timeout_s=0.5)
    )
    assert result.completed > 0 and result.errors["timeout"] > 0
    assert set(result.errors) == {"timeout"}
    assert result.completed + result.errors["timeout"] == result.scheduled
    assert result.max_ms <= 500 * 1.01  # an answer later than the timeout is a timeout


def test_closed_loop_follows_the_number_of_users(responder: str) -> None:
    result = run(
        _spec(f"{responder}/sleep/20", Phase(0.5, users=1), Phase(0.5, users=4), mode="closed")
    )
    assert result.mode == "closed" and result.error_count == 0
    assert result.completed == result.sent > 0
    # with 20 ms per answer, 1 user cannot send more than 25 in 0.5 s
    assert result.completed > 25


def test_subprocess_round_trip_keeps_the_histogram(responder: str) -> None:
    spec = _spec(f"{responder}/x", Phase(0.5, rate=100), payloads=(b"a", b"bb"), seed=1)
    result = asyncio.run(run_in_subprocess(spec))
    assert isinstance(result, LoadResult)
    assert result.completed == result.sent > 0
    assert result.histogram.get_total_count() == result.completed
    assert sum(s.histogram.get_total_count() for s in result.timeline) == result.completed


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="http://"):
        _spec("https://example.com/", Phase(1, rate=1))
    with pytest.raises(ValueError, match="rate"):
        _spec("http://127.0.0.1:1/", Phase(1, users=3))
    with pytest.raises(ValueError, match="users"):
        _spec("http://127.0.0.1:1/", Phase(1, rate=3), mode="closed")
    with pytest.raises(ValueError, match="phase"):
        _spec("http://127.0.0.1:1/")


def test_cli_reports_json(responder: str, tmp_path) -> None:
    payloads = tmp_path / "rows.csv"
    payloads.write_text("1,2,3,4\n5,6,7,8\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelhost",
            "load",
            f"{responder}/x",
            "--phase",
            "50:0.5",
            "--phase",
            "50-100:0.5",
            "--payload",
            str(payloads),
            "--lines",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["summary"]["completed"] == report["summary"]["sent"] > 0
    assert report["summary"]["mode"] == "open"
    assert {"second", "sent", "completed", "errors", "p99_ms"} <= set(report["timeline"][0])
    bad = subprocess.run(
        [
            *(sys.executable, "-m", "modelhost", "load", f"{responder}/x"),
            *("--body", "x", "--phase", "fast"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "bad --phase" in bad.stderr
