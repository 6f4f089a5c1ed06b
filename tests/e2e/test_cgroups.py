"""Instances run in control groups holding them to their instance type's CPU and memory.

One server with MODELHOST_CPU_SCALE=0.25: an ml.c5.large (2 vCPUs) gets half a core of
this machine. Skipped, with the server's reason, where cgroups are not writable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.models import put_burn_model, put_model
from tests.support.processes import instance_pids
from tests.support.server import ServerProcess, running_server

# Shared anonymous memory: RLIMIT_DATA does not count it, the memory cgroup does.
HOG_CODE = b"""
import mmap
def model_fn(model_dir):
    return None
def transform_fn(model, body, content_type, accept):
    chunk = 64 * 1024 * 1024
    maps = []
    for _ in range(int(body) // 64):
        block = mmap.mmap(-1, chunk)
        block.write(b"x" * chunk)
        maps.append(block)
    return str(len(maps)), "text/plain"
"""


@pytest.fixture(scope="module")
def cg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("cgroups") / "data"
    put_burn_model(data)
    put_model(data, "hog", {"code/inference.py": HOG_CODE})
    with running_server(
        data, env={"MODELHOST_CPU_SCALE": "0.25", "MODELHOST_HEALTH_INTERVAL": "0.2"}
    ) as server:
        yield server


@pytest.fixture(scope="module")
def sm(cg_server: ServerProcess):
    return cg_server.client("sagemaker")


@pytest.fixture(scope="module")
def rt(cg_server: ServerProcess):
    return cg_server.client("sagemaker-runtime", retries=0)


def _deploy(server: ServerProcess, sm, model: str, instance_type: str) -> tuple[str, int]:
    """An endpoint on `instance_type` in a control group; returns its name and its
    instance's pid. Skips where the server found no usable cgroups."""
    if "without control groups" in server.log():
        line = next(x for x in server.log().splitlines() if "without control groups" in x)
        pytest.skip(f"cgroups are not usable here: {line.split(': ', 1)[-1]}")
    return _create(server, sm, model, instance_type)


def _create(server: ServerProcess, sm, model: str, instance_type: str) -> tuple[str, int]:
    name = deploy(
        sm,
        f"s3://models/{model}/model.tar.gz",
        image="modelhost/python",
        instance_type=instance_type,
    )
    (pid,) = instance_pids(server.process.pid, name)
    return name, pid


def _mounts() -> dict[str, Path]:
    """Mount point per v1 controller, and under "" the v2 hierarchy's."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype == "cgroup2":
            mounts.setdefault("", Path(fields[4]))
        elif fstype == "cgroup":
            for option in fields[fields.index("-") + 3].split(","):
                mounts.setdefault(option, Path(fields[4]))
    return mounts


def _group(pid: int, controller: str) -> Path:
    """The directory of `pid`'s group holding `controller` (v1), else its v2 group."""
    groups = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            groups[name] = path
    mounts = _mounts()
    if controller in groups and controller in mounts and "/modelhost/" in groups[controller]:
        return mounts[controller] / groups[controller].lstrip("/")
    return mounts[""] / groups[""].lstrip("/")


def _cpu_quota(group: Path) -> tuple[int, int]:
    if (group / "cpu.max").exists():
        quota, period = (group / "cpu.max").read_text().split()
        return int(quota), int(period)
    return (
        int((group / "cpu.cfs_quota_us").read_text()),
        int((group / "cpu.cfs_period_us").read_text()),
    )


def _memory_limit(group: Path) -> int:
    name = "memory.max" if (group / "memory.max").exists() else "memory.limit_in_bytes"
    return int((group / name).read_text())


def _stat(group: Path) -> dict[str, int]:
    return {
        key: int(value)
        for key, value in (line.split() for line in (group / "cpu.stat").read_text().splitlines())
    }


def _delete(sm, name: str) -> None:
    sm.delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if name not in {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not deleted")


def _serves(rt, name: str, body: bytes = b"0") -> dict:
    """Invoke until an instance answers (a replacement or restored one is starting)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return rt.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=body)
        except ClientError as exc:
            # no healthy instance yet, or a restarted server still starting them
            if "try again shortly" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _gone(path: Path, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def test_instance_runs_in_a_group_with_its_type_quota(cg_server, sm) -> None:
    """ml.c5.large: 2 vCPUs x 0.25 = half a core, 4 GiB; the group goes with the endpoint."""
    name, pid = _deploy(cg_server, sm, "burn", "ml.c5.large")
    cpu, memory = _group(pid, "cpu"), _group(pid, "memory")
    assert "/modelhost/" in str(cpu) and name in cpu.name
    assert _cpu_quota(cpu) == (50_000, 100_000)
    assert _memory_limit(memory) == 4 * 1024**3
    assert str(pid) in (cpu / "cgroup.procs").read_text().split()
    _delete(sm, name)
    assert _gone(cpu) and _gone(memory), "the stopped instance's group was left behind"


def test_type_bigger_than_the_host_gets_the_host(cg_server, sm) -> None:
    """ml.m5.12xlarge: 48 vCPUs x 0.25 = 12 cores, more than this host has."""
    name, pid = _deploy(cg_server, sm, "burn", "ml.m5.12xlarge")
    assert _cpu_quota(_group(pid, "cpu")) == ((os.cpu_count() or 1) * 100_000, 100_000)
    _delete(sm, name)


def test_cpu_burner_is_throttled_to_its_quota(cg_server, sm, rt) -> None:
    """Seconds of CPU on half a core: the kernel throttles the group. A burner only meets
    its quota when it gets more than half a core, which a machine busy with other work may
    not give it for one burn; so it burns again, up to a deadline, until the group has
    been throttled."""
    name, pid = _deploy(cg_server, sm, "burn", "ml.c5.large")
    group = _group(pid, "cpu")
    before = _stat(group)
    key = "throttled_usec" if "throttled_usec" in before else "throttled_time"
    deadline = time.monotonic() + 120
    after = before
    while after["nr_throttled"] == before["nr_throttled"] and time.monotonic() < deadline:
        body = rt.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"2")
        assert body["Body"].read() == b"burnt"
        after = _stat(group)
    assert after["nr_throttled"] > before["nr_throttled"]
    assert after[key] > before[key]
    _delete(sm, name)


def test_killed_instance_is_replaced_in_a_new_group(cg_server, sm, rt) -> None:
    name, pid = _deploy(cg_server, sm, "burn", "ml.c5.large")
    old = _group(pid, "cpu")
    os.kill(pid, signal.SIGKILL)
    assert _gone(old), "the dead instance's group was left behind"
    _serves(rt, name)  # by its replacement
    (new,) = instance_pids(cg_server.process.pid, name)
    assert _group(new, "cpu") != old and _cpu_quota(_group(new, "cpu")) == (50_000, 100_000)
    _delete(sm, name)


def test_memory_past_the_type_kills_the_instance_which_is_replaced(cg_server, sm, rt) -> None:
    """ml.c5.large has 4 GiB; shared memory escapes RLIMIT_DATA but not the group."""
    name, pid = _deploy(cg_server, sm, "hog", "ml.c5.large")
    assert _memory_limit(_group(pid, "memory")) == 4 * 1024**3
    with pytest.raises(Exception):  # noqa: B017 - the instance dies mid-request
        rt.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"4608")
    # The kernel's OOM killer ended it (SIGKILL), and the replacement serves.
    small = _serves(rt, name, b"128")
    assert not Path(f"/proc/{pid}").exists()
    assert instance_pids(cg_server.process.pid, name) != [pid]
    assert any(
        f"endpoint {name}: instance" in line and "exited with code -9" in line
        for line in cg_server.log().splitlines()
    )
    assert small["Body"].read() == b"2"
    _delete(sm, name)


def _server(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    data = tmp_path / "data"
    put_burn_model(data)
    return ServerProcess(data, env=env).start()


def test_fresh_interpreter_instances_join_their_group(tmp_path: Path) -> None:
    """MODELHOST_FORK_SERVER=0: the instance joins its group as well, and the server
    removes its parent group when it stops."""
    server = _server(tmp_path, {"MODELHOST_FORK_SERVER": "0", "MODELHOST_CPU_SCALE": "0.5"})
    try:
        sm = server.client("sagemaker")
        _, pid = _deploy(server, sm, "burn", "ml.c5.large")
        group = _group(pid, "cpu")
        assert _cpu_quota(group) == (100_000, 100_000)
    finally:
        server.stop()
    assert _gone(group.parent), "the server's parent group outlived it"


def test_cgroups_off_leaves_instances_where_the_server_is(tmp_path: Path) -> None:
    server = _server(tmp_path, {"MODELHOST_CGROUPS": "off"})
    try:
        _, pid = _create(server, server.client("sagemaker"), "burn", "ml.c5.large")
        assert "/modelhost/" not in Path(f"/proc/{pid}/cgroup").read_text()
        assert "without control groups (MODELHOST_CGROUPS=off)" in server.log()
    finally:
        server.stop()


def test_restart_removes_the_previous_runs_groups(tmp_path: Path) -> None:
    """A server killed with SIGKILL cannot remove its groups; the next one on the same
    data dir does, and brings the endpoint back in a new group."""
    server = _server(tmp_path, {})
    try:
        name, pid = _deploy(server, server.client("sagemaker"), "burn", "ml.c5.large")
        old = _group(pid, "cpu")
        server.kill()
        assert old.exists()
        server = ServerProcess(server.data_dir).start()
        assert _gone(old), "the previous run's group was left behind"
        _serves(server.client("sagemaker-runtime", retries=0), name)
        (new,) = instance_pids(server.process.pid, name)
        assert _group(new, "cpu").parent == old.parent
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MODELHOST_CGROUPS", "sometimes", "MODELHOST_CGROUPS='sometimes': expected auto or off"),
        ("MODELHOST_CPU_SCALE", "0", "MODELHOST_CPU_SCALE=0.0: expected a number > 0"),
    ],
)
def test_bad_setting_stops_the_server_with_a_clear_message(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelhost", "server", "--data-dir", str(tmp_path)],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"modelhost server: {message}"
