"""Server settings end to end: the state URL a server runs with, and settings it refuses
before it touches its data dir (one line, exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import running_server


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--state", "mongodb://db.example/modelhost"],
            {},
            "MODELHOST_STATE_URL='mongodb://db.example/modelhost': unsupported state store; "
            "supported schemes: sqlite, postgresql, postgres (empty: the embedded SQLite file "
            "<data-dir>/state.db)",
        ),
        (
            [],
            {"MODELHOST_STATE_URL": "mysql://x"},
            "MODELHOST_STATE_URL='mysql://x': unsupported state store; supported schemes: sqlite, "
            "postgresql, postgres (empty: the embedded SQLite file <data-dir>/state.db)",
        ),
        (
            [],
            {"MODELHOST_S3": "sometimes"},
            "MODELHOST_S3 must be 'auto', 'local' or 'aws', not 'sometimes'",
        ),
        (
            [],
            {"MODELHOST_TRANSFORM_PART_BYTES": "0"},
            "MODELHOST_TRANSFORM_PART_BYTES=0: expected a number of bytes >= 1",
        ),
    ],
    ids=["state-option", "state-variable", "s3", "transform-part-bytes"],
)
def test_a_bad_setting_is_one_line_and_leaves_the_data_dir_alone(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "modelhost", "server", "--data-dir", str(data_dir), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"modelhost server: {message}"
    assert not data_dir.exists()


def test_the_explicit_sqlite_url_is_the_data_dirs_own_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    url = f"sqlite:///{data_dir}/state.db"
    with running_server(data_dir, env={"MODELHOST_STATE_URL": url}) as server:
        server.client("sagemaker").create_model(
            ModelName="kept",
            PrimaryContainer={
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://models/iris/model.tar.gz",
            },
            ExecutionRoleArn="arn:aws:iam::000000000000:role/r",
        )
    assert (data_dir / "state.db").stat().st_size > 0
    with running_server(data_dir, env={"MODELHOST_STATE_URL": ""}) as server:
        models = server.client("sagemaker").list_models()["Models"]
    assert [m["ModelName"] for m in models] == ["kept"]
