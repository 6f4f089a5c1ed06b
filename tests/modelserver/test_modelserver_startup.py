"""Startup: failures end the process with one clear line; a dead parent ends the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.modelserver import (
    free_port,
    launch,
    run_to_exit,
    server_env,
    wait_ready,
)
from tests.support.processes import alive

PREFIX = "modelhost.modelserver: "


def last_line(log: str) -> str:
    return log.strip().splitlines()[-1]


def write_code(model_dir: Path, source: str, name: str = "inference.py") -> None:
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / name).write_text(textwrap.dedent(source))


def test_python_framework_without_user_code_fails(tmp_path):
    rc, log = run_to_exit(tmp_path, tmp_path / "log", MODELHOST_FRAMEWORK="python")
    assert rc != 0
    assert last_line(log).startswith(PREFIX + "framework 'python' needs user code")
    assert str(tmp_path / "code" / "inference.py") in last_line(log)


def test_sklearn_without_model_file_fails(tmp_path):
    rc, log = run_to_exit(tmp_path, tmp_path / "log", MODELHOST_FRAMEWORK="sklearn")
    assert rc != 0
    assert last_line(log).startswith(PREFIX + "model_fn failed: FileNotFoundError: no model file")


def test_sklearn_with_ambiguous_model_files_fails(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"x")
    (tmp_path / "b.joblib").write_bytes(b"x")
    rc, log = run_to_exit(tmp_path, tmp_path / "log", MODELHOST_FRAMEWORK="sklearn")
    assert rc != 0
    assert "model_fn failed: ValueError: several model files" in last_line(log)


def test_user_model_fn_failure_exits_with_message(tmp_path):
    write_code(
        tmp_path,
        """
        def model_fn(model_dir):
            raise RuntimeError("weights are corrupt")

        def predict_fn(data, model):
            return data
    """,
    )
    rc, log = run_to_exit(tmp_path, tmp_path / "log", MODELHOST_FRAMEWORK="python")
    assert rc == 1
    assert last_line(log) == PREFIX + "model_fn failed: RuntimeError: weights are corrupt"
    assert "Traceback" in log


def test_import_error_in_user_code(tmp_path):
    write_code(tmp_path, "import not_a_real_module_xyz\n")
    rc, log = run_to_exit(tmp_path, tmp_path / "log")
    assert rc == 1
    assert "importing user code" in last_line(log)
    assert "ModuleNotFoundError: No module named 'not_a_real_module_xyz'" in last_line(log)


def test_missing_sagemaker_program(tmp_path):
    rc, log = run_to_exit(tmp_path, tmp_path / "log", SAGEMAKER_PROGRAM="serve_me.py")
    assert rc == 1
    assert "SAGEMAKER_PROGRAM='serve_me.py'" in last_line(log)


def test_transform_fn_with_input_fn_is_refused(tmp_path):
    write_code(
        tmp_path,
        """
        def input_fn(body, content_type):
            return body

        def transform_fn(model, body, content_type, accept):
            return body
    """,
    )
    rc, log = run_to_exit(tmp_path, tmp_path / "log")
    assert rc == 1
    assert "transform_fn together with" in last_line(log)


def test_bad_environment_value(tmp_path):
    rc, log = run_to_exit(tmp_path, tmp_path / "log", SAGEMAKER_MODEL_SERVER_WORKERS="many")
    assert rc == 1
    assert last_line(log) == (
        PREFIX + "invalid SAGEMAKER_MODEL_SERVER_WORKERS='many': not an integer"
    )


def test_unknown_argument_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "modelhost.modelserver", "train"],
        capture_output=True,
        text=True,
        timeout=30,
        env=server_env(tmp_path, free_port()),
    )
    assert proc.returncode == 2
    assert "only 'serve'" in proc.stderr


ECHO_MODEL = """
    def model_fn(model_dir):
        return lambda x: x
"""


def test_exits_when_parent_pid_dies(tmp_path):
    """MODELHOST_PARENT_PID names a process that is not our parent: we watch it die."""
    write_code(tmp_path, ECHO_MODEL)
    keeper = subprocess.Popen(["sleep", "60"])
    server = launch(tmp_path, tmp_path / "log", MODELHOST_PARENT_PID=str(keeper.pid))
    try:
        wait_ready(server)
        keeper.kill()  # not reaped yet: a zombie must count as dead
        server.proc.wait(timeout=5)
        assert "parent process" in server.log()
    finally:
        keeper.wait()
        server.stop()


def test_exits_when_real_parent_is_killed(tmp_path):
    """The launcher (our real parent) is SIGKILLed: re-parenting is noticed."""
    write_code(tmp_path, ECHO_MODEL)
    port = free_port()
    pid_file = tmp_path / "server.pid"
    launcher = textwrap.dedent(f"""
        import os, subprocess, sys, time
        env = dict(os.environ, MODELHOST_PARENT_PID=str(os.getpid()))
        p = subprocess.Popen([sys.executable, "-m", "modelhost.modelserver"], env=env)
        open({str(pid_file)!r}, "w").write(str(p.pid))
        time.sleep(60)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher],
        env=server_env(tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 8
        while alive(server_pid):
            if time.monotonic() > deadline:
                os.kill(server_pid, signal.SIGKILL)
                pytest.fail("model server outlived its killed parent")
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
