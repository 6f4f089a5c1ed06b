"""`modelhost deploy`'s packing: what goes into model.tar.gz, and what is refused."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from modelhost.cli.packing import PackingError, pack


def _names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return sorted(tar.getnames())


def test_a_model_file_is_the_archive_root(tmp_path: Path) -> None:
    (tmp_path / "iris.joblib").write_bytes(b"model")
    packed = pack(tmp_path / "iris.joblib", tmp_path / "model.tar.gz")
    assert _names(packed.archive) == ["iris.joblib"]
    assert (packed.image, packed.content_type) == ("modelhost/sklearn", "text/csv")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    assert pack(tmp_path / "m.onnx", tmp_path / "o.tar.gz").image == "modelhost/onnx"


def test_a_folder_keeps_its_layout_and_requirements_go_to_code(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "code" / "inference.py").write_text("def model_fn(d): return None\n")
    (folder / "requirements.txt").write_text("# none\n")
    (folder / "weights.bin").write_bytes(b"w")
    packed = pack(folder, tmp_path / "model.tar.gz")
    assert _names(packed.archive) == [
        "code",
        "code/inference.py",
        "code/requirements.txt",
        "weights.bin",
    ]
    assert packed.image == "modelhost/python"


@pytest.mark.parametrize("case", ["text file", "empty folder", "missing", "link", "dangling"])
def test_refusals(tmp_path: Path, case: str) -> None:
    source = tmp_path / "source"
    if case == "text file":
        source.write_text("not a model")
    elif case == "empty folder":
        source.mkdir()
    elif case == "link":
        source.mkdir()
        (source / "model.joblib").write_bytes(b"m")
        os.symlink("/etc/passwd", source / "secret")
    elif case == "dangling":
        source.mkdir()
        (source / "model.joblib").write_bytes(b"m")
        os.symlink(source / "gone", source / "dangling")
    with pytest.raises(PackingError):
        pack(source, tmp_path / "model.tar.gz")
