"""Instances hold none of the server's secrets, run unprivileged, answer only the router,
and end with everything they start (with or without control groups, even when the server
is SIGKILLed).

The models below attack from the inside; what they report comes back through a real,
SigV4-signed invoke.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.support.endpoints import deploy
from tests.support.models import put_model
from tests.support.processes import alive, instance_pids, wait_until
from tests.support.server import ServerProcess
from tests.support.wheels import one_module_wheel

KEY, SECRET = "AKIDISOLATION", "isolation-secret-key-value"
SECRETS = {
    "MODELHOST_ACCESS_KEYS": f"{KEY}:{SECRET}",
    "MODELHOST_WEBHOOK_SECRET": "webhook-secret-value",
    "MODELHOST_METRICS_TOKEN": "metrics-token-value",
    "AWS_SECRET_ACCESS_KEY": "server-aws-secret-value",
    "AWS_SESSION_TOKEN": "server-aws-session-value",
    "MODELHOST_SOMETHING_NEW": "a-setting-nobody-listed-value",
}

SNOOP_CODE = b"""
import json, os
from pathlib import Path

def model_fn(model_dir):
    return model_dir

def _read(path):
    try:
        return Path(path).read_bytes().decode("latin-1")
    except OSError as exc:
        return "refused: " + type(exc).__name__

def _ppid(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])

def transform_fn(model_dir, body, content_type, accept):
    data_dir = Path(model_dir).parent.parent
    parent = os.getppid()
    seen = {
        "uid": os.getuid(),
        "env": dict(os.environ),
        "pid1": _read("/proc/1/environ"),
        "parent": _read(f"/proc/{parent}/environ"),
        "grandparent": _read(f"/proc/{_ppid(parent)}/environ"),
        "state": _read(data_dir / "state.db"),
        "listing": None,
        "port": os.environ.get("SAGEMAKER_BIND_TO_PORT"),
    }
    try:
        seen["listing"] = os.listdir(data_dir)
    except OSError as exc:
        seen["listing"] = "refused: " + type(exc).__name__
    try:
        (Path(model_dir) / "planted.txt").write_text("x")
        seen["write"] = "written"
    except OSError as exc:
        seen["write"] = "refused: " + type(exc).__name__
    try:
        (Path(model_dir) / "code" / "inference.py").write_text("x")
        seen["write_code"] = "written"
    except OSError as exc:
        seen["write_code"] = "refused: " + type(exc).__name__
    home = Path(os.environ["TMPDIR"]) / "scratch"
    home.write_text("ok")
    seen["tmp"] = home.read_text()
    return json.dumps(seen), "application/json"
"""

# Starts a child in its own process group and a double-forked daemon in its own session:
# both escape a process-group kill, and the daemon is re-parented away from its parent.
SPAWN_CODE = b"""
import os, subprocess, sys, time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            time.sleep(1000)
        os._exit(0)
    daemon = os.read(read, 32).decode()
    return f"{child.pid} {daemon}", "text/plain"
"""


def _client(server: ServerProcess, service: str):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def _deploy(server: ServerProcess, model: str) -> str:
    return deploy(
        _client(server, "sagemaker"),
        f"s3://models/{model}/model.tar.gz",
        image="modelhost/python",
    )


def _invoke(server: ServerProcess, name: str) -> bytes:
    rt = _client(server, "sagemaker-runtime")
    return rt.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"x")["Body"].read()


def _reachable_python() -> tuple[str, dict[str, str]]:
    """An interpreter `nobody` can run with this checkout's packages: ours, or where ours
    lives under /root, the system's of the same minor version with our site-packages."""
    env = {
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2] / "src"), sysconfig.get_paths()["purelib"]]
        )
    }
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if (
            Path(python).exists()
            and subprocess.run(
                ["su", "-s", "/bin/sh", "nobody", "-c", f"{python} -c 'import modelhost'"],
                env={**os.environ, **env},
                capture_output=True,
            ).returncode
            == 0
        ):
            return python, env
    pytest.skip("no Python here that the user nobody can run with modelhost")


@pytest.fixture(params=["fork", "fresh"])
def confined(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A root server whose instances can run as nobody: the data directory is outside
    pytest's 0700 temporary directory."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs a root server")
    python, env = _reachable_python()
    base = Path(tempfile.mkdtemp(prefix="modelhost-isolation-", dir="/var/tmp"))
    base.chmod(0o755)
    data = base / "data"
    put_model(data, "snoop", {"code/inference.py": SNOOP_CODE})
    env = {
        **SECRETS,
        **env,
        "MODELHOST_INSTANCE_USER": "nobody",
        "MODELHOST_FORK_SERVER": "1" if request.param == "fork" else "0",
    }
    process = ServerProcess(data, env=env, python=python).start()
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["fork", "fresh"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    data = tmp_path / "data"
    put_model(data, "snoop", {"code/inference.py": SNOOP_CODE})
    env = {**SECRETS, "MODELHOST_FORK_SERVER": "1" if request.param == "fork" else "0"}
    process = ServerProcess(data, env=env).start()
    try:
        yield process
    finally:
        process.stop()


def test_model_code_cannot_reach_the_servers_secrets(confined: ServerProcess) -> None:
    server = confined
    seen = json.loads(_invoke(server, _deploy(server, "snoop")))
    assert seen["uid"] != 0
    leaked = [
        k
        for k, v in SECRETS.items()
        for place in ("env", "pid1", "parent", "grandparent")
        if v in (json.dumps(seen[place]) if place == "env" else seen[place])
    ]
    assert leaked == [], f"the model read {leaked}"
    assert not any(
        k.startswith(
            (
                "MODELHOST_ACCESS",
                "MODELHOST_WEBHOOK",
                "MODELHOST_METRICS",
                "MODELHOST_SOMETHING",
                "MODELHOST_INSTANCE_TOKEN",
                "AWS_",
            )
        )
        for k in seen["env"]
    )
    for place in ("pid1", "parent", "grandparent", "state"):
        assert seen[place].startswith("refused: PermissionError"), (place, seen[place][:200])
    assert seen["listing"] == "refused: PermissionError"
    assert seen["write"] == "refused: PermissionError"
    assert seen["write_code"] == "refused: PermissionError"
    assert seen["tmp"] == "ok"


def test_instances_get_none_of_the_servers_secrets_even_unconfined(server: ServerProcess) -> None:
    """The environment is allow-listed whoever the instances run as."""
    seen = json.loads(_invoke(server, _deploy(server, "snoop")))
    assert not [k for k, v in SECRETS.items() if v in json.dumps(seen["env"])]


def test_instance_port_refuses_requests_without_the_token(server: ServerProcess) -> None:
    """Anyone on the machine can connect to the instance's port; it answers them 403."""
    name = _deploy(server, "snoop")
    port = json.loads(_invoke(server, name))["port"]
    for method, path, body in (("POST", "/invocations", b"x"), ("GET", "/ping", None)):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=body,
            method=method,
            headers={"Content-Type": "text/plain"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    assert json.loads(_invoke(server, name))["port"] == port  # the router still gets in


def _spawning_server(tmp_path: Path, cgroups: str, fork: str) -> ServerProcess:
    data = tmp_path / "data"
    put_model(data, "spawn", {"code/inference.py": SPAWN_CODE})
    return ServerProcess(
        data, env={**SECRETS, "MODELHOST_CGROUPS": cgroups, "MODELHOST_FORK_SERVER": fork}
    ).start()


def _spawned(server: ServerProcess, name: str) -> list[int]:
    pids = [int(p) for p in _invoke(server, name).split()]
    assert all(alive(p) for p in pids)
    return pids


@pytest.mark.parametrize("fork", ["1", "0"])
@pytest.mark.parametrize("cgroups", ["auto", "off"])
@pytest.mark.parametrize("ending", ["endpoint deleted", "server SIGKILLed"])
def test_what_a_model_starts_ends_with_its_instance(
    tmp_path: Path, cgroups: str, fork: str, ending: str
) -> None:
    """A model's own children, a daemon it double-forked among them, end when its
    endpoint is deleted or when the server is killed, with or without control groups."""
    server = _spawning_server(tmp_path, cgroups, fork)
    try:
        name = _deploy(server, "spawn")
        (instance,) = instance_pids(server.process.pid, name)
        pids = _spawned(server, name)
        if ending == "endpoint deleted":
            _client(server, "sagemaker").delete_endpoint(EndpointName=name)
        else:
            server.kill()
        wait_until(
            lambda: not any(alive(p) for p in [instance, *pids]),
            30,
            what=f"the instance and what it started to end ({ending})",
        )
    finally:
        server.stop()


PACKAGED_CODE = b"""
import os

import mhconfined


def model_fn(model_dir):
    return mhconfined.VALUE


def transform_fn(model, body, content_type, accept):
    return f"{model} {os.getuid()} {mhconfined.__file__}", "text/plain"
"""


def test_a_confined_instance_runs_with_its_package_environment(tmp_path: Path) -> None:
    """`code/requirements.txt` is installed by the server (root) and read by the instance
    user, who may not change it."""
    if os.geteuid() != 0:
        pytest.skip("switching users needs a root server")
    python, env = _reachable_python()
    one_module_wheel(tmp_path / "wheels", "mhconfined", "1.0", 'VALUE = "packaged"\n')
    base = Path(tempfile.mkdtemp(prefix="modelhost-isolation-", dir="/var/tmp"))
    base.chmod(0o755)
    data = base / "data"
    put_model(
        data,
        "packaged",
        {"code/inference.py": PACKAGED_CODE, "code/requirements.txt": b"mhconfined==1.0\n"},
    )
    env = {
        **SECRETS,
        **env,
        "MODELHOST_INSTANCE_USER": "nobody",
        "PIP_FIND_LINKS": str(tmp_path / "wheels"),
        "PIP_NO_INDEX": "1",
    }
    server = ServerProcess(data, env=env, python=python).start()
    try:
        value, uid, where = _invoke(server, _deploy(server, "packaged")).decode().split()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert (value, uid) == ("packaged", str(pwd.getpwnam("nobody").pw_uid))
    assert Path(where).is_relative_to(data / "packages")
