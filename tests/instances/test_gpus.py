"""GPU assignment: each instance of a GPU type gets GPUs of its own from the host's
/dev/nvidiaN devices, and a host without enough says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelhost.catalog import get_instance_type
from modelhost.instances.gpus import GpuPool, GpusUnavailable


def _devices(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).touch()
    return folder


def test_each_instance_gets_its_own_gpus(tmp_path: Path) -> None:
    pool = GpuPool(_devices(tmp_path, "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"))
    g5 = get_instance_type("ml.g5.xlarge")
    assert g5 is not None
    assert pool.host_gpus() == [0, 1]
    assert pool.take("a", g5) == [0]
    assert pool.take("b", g5) == [1]
    with pytest.raises(GpusUnavailable, match="0 of this host's 2 GPUs are free"):
        pool.take("c", g5)
    pool.give_back("a")
    assert pool.take("c", g5) == [0]


def test_a_host_without_gpus_refuses_gpu_types_only(tmp_path: Path) -> None:
    pool = GpuPool(_devices(tmp_path, "nvidiactl"))
    cpu, gpu = get_instance_type("ml.m5.large"), get_instance_type("ml.p3.2xlarge")
    assert cpu is not None and gpu is not None
    assert pool.take("a", cpu) == []
    with pytest.raises(GpusUnavailable, match=r"ml\.p3\.2xlarge has 1 GPU.*this host has none"):
        pool.take("b", gpu)
