"""A model's `code/requirements.txt` installed before it loads, on the process backend:
into a package environment cached under the data dir and shared by every endpoint asking
for the same packages. No index is reachable here: the server's pip is pointed at a
folder of wheels made at test time, with pip's own variables (PIP_FIND_LINKS,
PIP_NO_INDEX), which the server passes through to pip."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.endpoints import deploy, unique, wait_for_status
from tests.support.models import put_model
from tests.support.server import ServerProcess
from tests.support.wheels import one_module_wheel

PACKAGE = "mhgreeting"

HANDLER = f"""
import json
import shutil

import {PACKAGE}


def model_fn(model_dir):
    return {PACKAGE}.GREETING


def transform_fn(model, body, content_type, accept):
    return json.dumps({{"greeting": model, "from": {PACKAGE}.__file__}}), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    wheels = tmp_path_factory.mktemp("wheels")
    one_module_wheel(wheels, PACKAGE, "1.0", 'GREETING = "installed by pip"\n')
    server = ServerProcess(
        tmp_path_factory.mktemp("requirements") / "data",
        env={"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"},
    ).start()
    yield server
    server.stop()


def _model(server: ServerProcess, requirements: str) -> str:
    return put_model(
        server.data_dir,
        unique("req"),
        {
            "code/inference.py": HANDLER.encode(),
            "code/requirements.txt": requirements.encode(),
        },
    )


def _instance_log(server: ServerProcess, endpoint: str) -> str:
    (log,) = (server.data_dir / "logs" / endpoint).glob("*.log")
    return log.read_text()


def _invoke(server: ServerProcess, endpoint: str) -> dict:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=b"{}"
    )
    return json.loads(answer["Body"].read())


def test_requirements_are_installed_then_reused(server: ServerProcess) -> None:
    sagemaker = server.client("sagemaker")
    requirements = f"# what the handler imports\n{PACKAGE}==1.0\n"
    first = deploy(sagemaker, _model(server, requirements), image="modelhost/python")
    answer = _invoke(server, first)
    assert answer["greeting"] == "installed by pip"
    packages = server.data_dir / "packages"
    assert Path(answer["from"]).is_relative_to(packages)  # not the server's environment
    log = _instance_log(server, first)
    assert f"Successfully installed {PACKAGE}-1.0" in log  # pip's own output
    (environment,) = [p for p in packages.iterdir() if not p.name.startswith(".")]

    # Another model (another endpoint) asking for the same packages: no second pip run.
    second = deploy(sagemaker, _model(server, requirements), image="modelhost/python")
    assert _invoke(server, second)["greeting"] == "installed by pip"
    log = _instance_log(server, second)
    assert f"is installed in {environment} (cached)" in log
    assert "Successfully installed" not in log and "Processing" not in log
    assert [p for p in packages.iterdir() if not p.name.startswith(".")] == [environment]


def test_a_requirement_pip_cannot_install_fails_the_endpoint(server: ServerProcess) -> None:
    sagemaker = server.client("sagemaker")
    name = deploy(
        sagemaker,
        _model(server, "no-such-package-anywhere==9.9\n"),
        image="modelhost/python",
        wait=False,
    )
    status = wait_for_status(sagemaker, name, {"InService", "Failed"}, timeout_s=120)
    assert status["EndpointStatus"] == "Failed"
    reason = status["FailureReason"]
    assert "pip could not install code/requirements.txt" in reason
    assert "No matching distribution found for no-such-package-anywhere==9.9" in reason
    assert "No matching distribution" in _instance_log(server, name)
    # nothing half-built is left to be taken for a cached environment
    assert [p.name for p in (server.data_dir / "packages").iterdir() if "." in p.name] == []


def test_a_restarted_server_reuses_the_environment_offline(tmp_path: Path) -> None:
    """Once built, the environment needs no index: with the wheels gone, a restarted
    server brings the endpoint back on it."""
    wheels = tmp_path / "wheels"
    one_module_wheel(wheels, PACKAGE, "1.0", 'GREETING = "installed by pip"\n')
    first = ServerProcess(
        tmp_path / "data", env={"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}
    ).start()
    try:
        name = deploy(
            first.client("sagemaker"), _model(first, f"{PACKAGE}==1.0\n"), image="modelhost/python"
        )
    finally:
        first.stop()
    shutil.rmtree(wheels)
    second = first.restarted()
    try:
        status = wait_for_status(second.client("sagemaker"), name, {"InService", "Failed"})
        assert status["EndpointStatus"] == "InService", status.get("FailureReason")
        assert _invoke(second, name)["greeting"] == "installed by pip"
        logs = sorted(
            (second.data_dir / "logs" / name).glob("*.log"), key=lambda p: p.stat().st_mtime
        )
        assert "(cached)" in logs[-1].read_text()
    finally:
        second.stop()
