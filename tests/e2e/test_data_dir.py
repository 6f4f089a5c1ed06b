"""A data dir belongs to one server, and a damaged state store is refused, never started
empty: real servers, real files damaged on disk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.cli import run_cli
from tests.support.endpoints import deploy
from tests.support.models import iris_rows, put_iris_model
from tests.support.processes import alive, instance_pids, wait_until
from tests.support.server import ServerProcess, free_port, running_server

_ROLE = "arn:aws:iam::000000000000:role/any"


def _server_command(data_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelhost",
        "server",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
    ]


def _refused_start(data_dir: Path, env: dict[str, str] | None = None) -> str:
    """Start a server that must refuse: its one line of stderr."""
    result = subprocess.run(
        _server_command(data_dir, free_port()),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


def _create_models(server: ServerProcess, count: int = 3) -> list[str]:
    sagemaker = server.client("sagemaker")
    names = [f"kept-{i}" for i in range(count)]
    for name in names:
        sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=_ROLE,
            PrimaryContainer={
                "Image": "modelhost/sklearn",
                "ModelDataUrl": "s3://models/iris/model.tar.gz",
            },
        )
    return names


def _model_names(server: ServerProcess) -> list[str]:
    models = server.client("sagemaker").list_models()["Models"]
    return sorted(model["ModelName"] for model in models)


def _ping(server: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# --- one server per data dir ---------------------------------------------------------------


def test_second_server_on_the_same_data_dir_exits_and_touches_nothing(tmp_path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    with running_server(data) as first:
        sagemaker = first.client("sagemaker")
        runtime = first.client("sagemaker-runtime")
        name = deploy(sagemaker, "s3://models/iris/model.tar.gz", variants=[("AllTraffic", 2, 1.0)])
        pids = instance_pids(first.process.pid, name)
        assert len(pids) == 2
        for port in (first.port, free_port()):  # the busy port, and a free one
            second = subprocess.run(
                _server_command(data, port), capture_output=True, text=True, timeout=60
            )
            assert second.returncode == 1
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert str(data) in lines[0] and f"PID {first.process.pid}" in lines[0]
        assert all(alive(pid) for pid in pids)
        assert instance_pids(first.process.pid, name) == pids
        body = "\n".join(",".join(map(str, row)) for row in iris_rows())
        answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body=body)
        assert answer["Body"].read()
    # the lock dies with its holder: a SIGKILLed server's data dir is free at once
    first = ServerProcess(data).start()
    first.kill()
    first.restarted().stop()


# --- damage found at start -------------------------------------------------------------------


def _used_data_dir(tmp_path: Path, *, crash: bool) -> tuple[Path, list[str]]:
    """A data dir whose server created models, then stopped cleanly or was SIGKILLed."""
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    try:
        names = _create_models(server)
    finally:
        if crash:
            server.kill()
        else:
            server.stop()
    return data, names


def _garbage_page(path: Path, page: int) -> None:
    with path.open("r+b") as file:
        file.seek(page * 4096)
        file.write(os.urandom(4096))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "page"])
def test_damaged_state_file_is_refused_with_one_line(tmp_path, damage: str) -> None:
    data, _ = _used_data_dir(tmp_path, crash=False)
    state = data / "state.db"
    assert not (data / "state.db-wal").exists() or not (data / "state.db-wal").stat().st_size
    size = state.stat().st_size
    if damage == "empty":
        state.write_bytes(b"")
    elif damage == "truncated":
        os.truncate(state, size // 2 + 100)
    elif damage == "garbage":
        state.write_bytes(os.urandom(size))
    else:
        _garbage_page(state, 1)
    line = _refused_start(data)
    assert str(state) in line and "modelhost state restore" in line


def test_damaged_queue_file_is_refused(tmp_path) -> None:
    data, _ = _used_data_dir(tmp_path, crash=False)
    queue = data / "async-queue.db"
    queue.write_bytes(os.urandom(queue.stat().st_size))
    line = _refused_start(data)
    assert str(queue) in line and "--store async-queue" in line


def test_deleted_wal_after_a_crash_is_refused(tmp_path) -> None:
    data, _ = _used_data_dir(tmp_path, crash=True)
    wal = data / "state.db-wal"
    assert wal.stat().st_size > 0  # the crash left the latest state there
    wal.unlink()
    line = _refused_start(data)
    assert "state.db-wal is missing" in line and "modelhost state restore" in line


def test_damaged_wal_after_a_crash_is_refused(tmp_path) -> None:
    data, _ = _used_data_dir(tmp_path, crash=True)
    wal = data / "state.db-wal"
    frames = (wal.stat().st_size - 32) // (24 + 4096)
    assert frames >= 3
    with wal.open("r+b") as file:  # garbage in the page of the first frame
        file.seek(32 + 24 + 100)
        file.write(os.urandom(512))
    line = _refused_start(data)
    assert "state.db-wal is damaged" in line


def test_deleted_store_in_a_used_data_dir_is_refused(tmp_path) -> None:
    data, _ = _used_data_dir(tmp_path, crash=False)
    (data / "state.db").unlink()
    assert "missing or empty" in _refused_start(data)


def test_clean_shutdown_checkpoints_into_one_file(tmp_path) -> None:
    data, names = _used_data_dir(tmp_path, crash=False)
    wal = data / "state.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # the main file alone holds everything
    copy = tmp_path / "copy.db"
    copy.write_bytes((data / "state.db").read_bytes())
    rows = (
        sqlite3.connect(copy)
        .execute("SELECT name FROM resources WHERE kind = 'model' ORDER BY name")
        .fetchall()
    )
    assert [row[0] for row in rows] == names


# --- backup and restore ------------------------------------------------------------------------


def test_backup_while_serving_and_restore_after_damage(tmp_path) -> None:
    data = tmp_path / "data"
    backup = tmp_path / "backup.db"
    queue_backup = tmp_path / "queue.db"
    server = ServerProcess(data).start()
    try:
        names = _create_models(server)
        result = run_cli("state", "backup", str(backup), "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
        result = run_cli(
            "state", "backup", str(queue_backup), "--data-dir", str(data), "--store", "async-queue"
        )
        assert result.returncode == 0, result.stderr
        # restore is refused while a server holds the data dir, and changes nothing
        refused = run_cli("state", "restore", str(backup), "--data-dir", str(data))
        assert refused.returncode == 1
        assert f"PID {server.process.pid}" in refused.stderr
        server.client("sagemaker").create_model(
            ModelName="after-backup",
            ExecutionRoleArn=_ROLE,
            PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": "s3://models/x.tar.gz"},
        )
    finally:
        server.kill()
    (data / "state.db-wal").unlink()
    _refused_start(data)

    # a damaged backup is refused too
    bad = tmp_path / "bad.db"
    bad.write_bytes(os.urandom(8192))
    assert run_cli("state", "restore", str(bad), "--data-dir", str(data)).returncode == 1

    result = run_cli("state", "restore", str(backup), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    result = run_cli(
        "state", "restore", str(queue_backup), "--data-dir", str(data), "--store", "async-queue"
    )
    assert result.returncode == 0, result.stderr
    assert list(data.glob("state.db.replaced-*"))  # the damaged file is kept, not lost
    with running_server(data) as restored:
        assert _model_names(restored) == names


def test_periodic_backups_rotate(tmp_path) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "backups"
    env = {
        "MODELHOST_BACKUP_INTERVAL": "0.3",
        "MODELHOST_BACKUP_KEEP": "2",
        "MODELHOST_BACKUP_DIR": str(folder),
    }
    with running_server(data, env=env) as server:
        names = _create_models(server)

        def rotated() -> bool:
            copies = sorted(folder.glob("state-*.db"))
            if not copies:
                return False
            rows = (
                sqlite3.connect(copies[-1])
                .execute("SELECT count(*) FROM resources WHERE kind = 'model'")
                .fetchone()
            )
            return rows[0] == len(names)

        wait_until(rotated, timeout_s=30, what="a backup holding the models")
        wait_until(
            lambda: len(list(folder.glob("state-*.db"))) == 2, timeout_s=30, what="two kept backups"
        )
        wait_until(
            lambda: list(folder.glob("async-queue-*.db")), timeout_s=30, what="a queue backup"
        )
        assert len(list(folder.glob("state-*.db"))) <= 2


# --- damage while serving --------------------------------------------------------------------


def test_store_damaged_while_serving_fails_health_and_answers_sagemaker_errors(tmp_path) -> None:
    data = tmp_path / "data"
    put_iris_model(data)
    with running_server(data, env={"MODELHOST_STORE_CHECK_INTERVAL": "0.3"}) as server:
        sagemaker = server.client("sagemaker")
        runtime = server.client("sagemaker-runtime")
        name = deploy(sagemaker, "s3://models/iris/model.tar.gz")
        _create_models(server, 20)
        assert _ping(server) == 200
        # fold the log into the main file (as SQLite does by itself as the log grows),
        # then break a page of it
        checkpoint = sqlite3.connect(data / "state.db")
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        for page in (1, 2, 3):
            _garbage_page(data / "state.db", page)

        wait_until(lambda: _ping(server) == 503, timeout_s=30, what="/ping to say 503")
        with pytest.raises(ClientError) as control:
            sagemaker.describe_endpoint(EndpointName=name)
        assert control.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert control.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # running instances keep serving from the router, without the store...
        runtime.invoke_endpoint(EndpointName=name, ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
        # ...and what needs the store gets SageMaker's error, not a raw 500
        with pytest.raises(ClientError) as invoke:
            runtime.invoke_endpoint(
                EndpointName="not-deployed", ContentType="text/csv", Body="5.1,3.5,1.4,0.2"
            )
        assert invoke.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert invoke.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
