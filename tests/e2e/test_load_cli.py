"""`modelhost load` against a real endpoint, by name, through the runtime path."""

from __future__ import annotations

import json

from tests.support.cli import run_cli
from tests.support.endpoints import deploy


def test_load_drives_an_endpoint_by_name(server, sagemaker, iris_model_url: str) -> None:
    name = deploy(sagemaker, iris_model_url)
    result = run_cli(
        "load",
        name,
        "--body",
        "5.1,3.5,1.4,0.2",
        "--content-type",
        "text/csv",
        "--phase",
        "20:1",
        "--phase",
        "20-40:1",
        "--json",
        url=server.url,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["errors"] == 0
    assert summary["completed"] == summary["sent"] == summary["scheduled"] > 0
    missing = run_cli(
        "load", "no-such-endpoint", "--body", "1", "--phase", "10:0.3", "--json", url=server.url
    )
    assert missing.returncode == 1  # nothing answered with success
    assert json.loads(missing.stdout)["summary"]["errors_by_code"].keys() == {"400"}


def test_load_without_a_body_is_refused_before_it_sends() -> None:
    result = run_cli("load", "iris", "--phase", "10:1", url="http://127.0.0.1:9")
    assert result.returncode == 2
    assert "give one of --body or --payload" in result.stderr
