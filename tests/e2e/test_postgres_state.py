"""A server whose state lives in PostgreSQL (a real, private server): state shared by
servers on one database, a database that cannot be reached at start, and one lost while
serving (503s on the control plane, invocations go on, recovery when it is back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.postgres import PostgresServer
from tests.support.server import free_port, running_server


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:{free_port}/state",  # nothing listens there
        "127.0.0.1:notaport/state",  # malformed, as a mistyped setting
        "[::1/state",  # malformed enough that libpq quotes it back
    ],
)
def test_an_unreachable_database_at_start_is_one_line_and_exit_2(
    tmp_path: Path, address: str
) -> None:
    # The free port is picked when the test runs: a value computed at collection would
    # differ between pytest-xdist's workers.
    address = address.replace("{free_port}", str(free_port()))
    url = f"postgresql://modelhost:s3cret@{address}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelhost",
            "server",
            "--data-dir",
            str(tmp_path / "data"),
            "--state",
            url,
        ],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"modelhost server: cannot reach the state store postgresql://modelhost:***@{address}: "
    )
    assert "s3cret" not in result.stderr


def test_a_postgresql_state_without_psycopg_says_to_install_the_extra(tmp_path: Path) -> None:
    """psycopg is made absent for the server process only: a package of that name on
    PYTHONPATH that fails to import the way a missing one does."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(shadow.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelhost",
            "server",
            "--data-dir",
            str(tmp_path / "data"),
            "--state",
            f"postgresql://modelhost:s3cret@127.0.0.1:{free_port()}/state",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        "modelhost server: a postgresql:// state store needs the psycopg package, which is "
        "not installed: install the postgres extra (pip install 'modelhost[postgres]')"
    )


def test_servers_share_state_and_survive_losing_the_database(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    env = {"MODELHOST_STATE_URL": postgres.new_database(), "MODELHOST_MODEL_TIMEOUT": "5"}
    with running_server(tmp_path / "one", env=env) as one:
        sagemaker = one.client("sagemaker")
        runtime = one.client("sagemaker-runtime")
        name = deploy(sagemaker, put_iris_model(one.data_dir))
        body = json.dumps(iris_rows()).encode()

        def invoke() -> int:
            answer = runtime.invoke_endpoint(
                EndpointName=name, Body=body, ContentType="application/json"
            )
            return int(answer["ResponseMetadata"]["HTTPStatusCode"])

        assert invoke() == 200
        # Names are unique regardless of case, across servers: the database says so.
        with running_server(tmp_path / "two", env=env) as two:
            other = two.client("sagemaker")
            assert other.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
            with pytest.raises(ClientError, match="Cannot create already existing model"):
                other.create_model(
                    ModelName=name.upper(),
                    ExecutionRoleArn="arn:aws:iam::000000000000:role/r",
                    PrimaryContainer={
                        "Image": "modelhost/sklearn",
                        "ModelDataUrl": "s3://models/iris/model.tar.gz",
                    },
                )

        postgres.stop()
        try:
            with pytest.raises(ClientError) as lost:
                sagemaker.describe_endpoint(EndpointName=name)
            assert lost.value.response["Error"]["Code"] == "ServiceUnavailable"
            assert lost.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert "state store" in lost.value.response["Error"]["Message"]
            assert invoke() == 200  # the running instance serves on
        finally:
            postgres.start()
        assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        assert invoke() == 200
