"""Package environments of `code/requirements.txt` (modelhost.instances.packages), below
the server: what asks for an environment, the time bound on pip, what a failure leaves.
The end-to-end behaviour (installed, importable, cached, pip's failure as the endpoint's
FailureReason) is tests/e2e/test_requirements.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelhost.instances.packages import PackageEnvironments, RequirementsFailed


def _model(root: Path, requirements: str | None) -> Path:
    (root / "code").mkdir(parents=True)
    if requirements is not None:
        (root / "code" / "requirements.txt").write_text(requirements)
    return root


def test_no_file_or_only_comments_asks_for_no_environment(tmp_path: Path) -> None:
    environments = PackageEnvironments(tmp_path / "packages", timeout_s=60)
    for name, text in (("none", None), ("comments", "# nothing\n\n   # more\n")):
        model = _model(tmp_path / name, text)
        assert asyncio.run(environments.python_for(model, None)) is None
    assert not (tmp_path / "packages").exists()


def test_pip_past_its_time_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    environments = PackageEnvironments(tmp_path / "packages", timeout_s=0.01)
    model = _model(tmp_path / "m", "anything==1.0\n")
    log = tmp_path / "instance.log"
    with pytest.raises(RequirementsFailed, match="MODELHOST_REQUIREMENTS_TIMEOUT"):
        asyncio.run(environments.python_for(model, log))
    assert list((tmp_path / "packages").iterdir()) == []
    assert "MODELHOST_REQUIREMENTS_TIMEOUT" in log.read_text()
