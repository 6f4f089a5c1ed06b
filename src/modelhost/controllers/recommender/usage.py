"""What a candidate's instances use while a traffic step runs: CPU and resident memory of
the model servers and their workers, read with psutil where they are processes of this
machine, else from their backend's own readings (a Ray node's, at most a second old)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import psutil

from modelhost.instances import Instance


def _processes(pid: int) -> list[psutil.Process]:
    """An instance's model server and its workers; empty once it is gone."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _reading(instance: Instance) -> tuple[float, float] | None:
    """CPU seconds and resident bytes of the instance's tree so far; None once gone."""
    if instance.pid is None:
        usage = instance.usage()
        return None if usage is None else (usage.cpu_seconds, float(usage.rss_bytes))
    tree = _processes(instance.pid)
    if not tree:
        return None
    cpu = rss = 0.0
    for process in tree:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
    return cpu, rss


class Usage:
    """CPU (percent of one core, summed over the model servers and their workers, as
    CloudWatch's CPUUtilization) and resident memory (percent of each instance's memory,
    averaged over the instances) of a candidate's instances over a step. A serverless
    candidate's instances come and go: one started during the step counts from its start."""

    def __init__(self, instances: Callable[[], list[Instance]], memory_bytes: float) -> None:
        self.instances = instances
        self.memory_bytes = memory_bytes
        self.cpu_before = {
            id(i): reading[0] for i in instances() if (reading := _reading(i)) is not None
        }
        self.started = time.monotonic()

    def read(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        readings = {id(i): r for i in self.instances() if (r := _reading(i)) is not None}
        cpu = sum(
            max(seconds - self.cpu_before.get(key, 0.0), 0.0)
            for key, (seconds, _) in readings.items()
        )
        rss = sum(resident for _, resident in readings.values())
        instances = max(len(readings), 1)
        return cpu / elapsed * 100, rss / (self.memory_bytes * instances) * 100
