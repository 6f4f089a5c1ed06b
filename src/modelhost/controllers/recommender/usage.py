"""What a candidate's instances use while a traffic step runs: CPU and resident memory of
the model servers and their workers, read with psutil."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import psutil


def _processes(pid: int) -> list[psutil.Process]:
    """An instance's model server and its workers; empty once it is gone."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


class Usage:
    """CPU (percent of one core, summed over the model servers and their workers, as
    CloudWatch's CPUUtilization) and resident memory (percent of each instance's memory,
    averaged over the instances) of a candidate's instances over a step. A serverless
    candidate's instances come and go: one started during the step counts from its start."""

    def __init__(self, pids: Callable[[], list[int]], memory_bytes: float) -> None:
        self.pids = pids
        self.memory_bytes = memory_bytes
        self.cpu_before = {pid: _cpu_seconds(_processes(pid)) for pid in pids()}
        self.started = time.monotonic()

    def read(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        trees = [_processes(pid) for pid in {*self.cpu_before, *self.pids()}]
        cpu = sum(
            max(_cpu_seconds(tree) - self.cpu_before.get(tree[0].pid, 0.0), 0.0)
            for tree in trees
            if tree
        )
        rss = 0.0
        for tree in trees:
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    rss += process.memory_info().rss
        instances = max(sum(1 for tree in trees if tree), 1)
        return cpu / elapsed * 100, rss / (self.memory_bytes * instances) * 100
