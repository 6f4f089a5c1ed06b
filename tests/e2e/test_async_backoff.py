"""A short outage of the object store costs neither the request nor another run of the
model: the outcome's write is tried again with backoff, the model's answer kept.

The outage is real: the folder the embedded store writes the object into is taken by a
plain file (which makes every write there fail, even as root, where permissions would
not), then given back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.async_inference import deploy_async, local_path, wait_for_object
from tests.support.models import put_model
from tests.support.processes import wait_until
from tests.support.server import ServerProcess, running_server

# Appends a line to RUNS_FILE each time it runs: how many times the model ran, counted
# outside the server.
_COUNTING_CODE = b"""
import json, os
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    with open(os.environ["RUNS_FILE"], "a") as runs:
        runs.write("run\\n")
    request = json.loads(body)
    if "fail" in request:
        raise ValueError("the model refuses: " + request["fail"])
    return json.dumps({"answer": request["n"] * 2}), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A base of 2 s: the test gives the folder back well inside the first waits.
    with running_server(
        tmp_path_factory.mktemp("backoff") / "data",
        env={"MODELHOST_ASYNC_RETRY_BASE": "2", "MODELHOST_ASYNC_MAX_ATTEMPTS": "3"},
    ) as process:
        yield process


@pytest.mark.parametrize(
    ("body", "blocked"),
    [
        ({"n": 21}, "OutputLocation"),
        ({"n": 1, "fail": "on purpose"}, "FailureLocation"),
    ],
)
def test_a_blip_while_writing_the_outcome_retries_the_write_not_the_model(
    server: ServerProcess, tmp_path: Path, body: dict, blocked: str
) -> None:
    runs = tmp_path / "runs"
    model = put_model(server.data_dir, "counting", {"code/inference.py": _COUNTING_CODE})
    endpoint = deploy_async(server.client("sagemaker"), model, environment={"RUNS_FILE": str(runs)})
    folder = "out" if blocked == "OutputLocation" else "failed"
    taken = local_path(server.data_dir, f"s3://async-results/{endpoint}/{folder}")
    taken.parent.mkdir(parents=True, exist_ok=True)
    taken.write_bytes(b"")  # the outage begins: nothing can be written under it
    source = local_path(server.data_dir, f"s3://inputs/{endpoint}/in.json")
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(json.dumps(body).encode())
    answer = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=f"s3://inputs/{endpoint}/in.json",
        ContentType="application/json",
    )
    location = answer[blocked]
    wait_until(lambda: f"cannot write {location}" in server.log(), 60, "the first write to fail")
    taken.unlink()  # the outage ends
    found = wait_for_object(server.data_dir, answer["OutputLocation"], answer["FailureLocation"])
    assert found == location
    written = local_path(server.data_dir, found).read_text()
    if blocked == "OutputLocation":
        assert json.loads(written) == {"answer": 42}
    else:
        assert "the model refuses: on purpose" in written
    assert runs.read_text() == "run\n"  # the model ran once
    assert "the write is tried again in" in server.log()
