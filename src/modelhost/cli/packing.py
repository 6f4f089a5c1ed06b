"""Packing what `modelhost deploy` is given into the `model.tar.gz` SageMaker deploys.

A model file (`.joblib`, `.pkl`, `.pickle`, `.onnx`) becomes an archive holding that one
file; a folder is archived as it is (its `code/inference.py` is the handler, and a
`requirements.txt` beside `code/` goes to `code/requirements.txt`, where the model server
looks for it). The archive holds regular files and folders only, named relative to its
root, which is what the server's safe unpacking accepts.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

SKLEARN_SUFFIXES = (".joblib", ".pkl", ".pickle")
ONNX_SUFFIXES = (".onnx",)


class PackingError(ValueError):
    """What is wrong with the path given, in words a user can act on."""


@dataclass(frozen=True)
class Packed:
    archive: Path
    #: the built-in image that serves it: modelhost/sklearn, modelhost/onnx or modelhost/python
    image: str
    #: what the model most likely reads, for the invocation example printed afterwards
    content_type: str


def _image_for(names: list[str], has_code: bool) -> tuple[str, str]:
    if any(n.endswith(ONNX_SUFFIXES) for n in names):
        return "modelhost/onnx", "application/json"
    if any(n.endswith(SKLEARN_SUFFIXES) for n in names):
        return "modelhost/sklearn", "text/csv"
    if has_code:
        return "modelhost/python", "application/json"
    raise PackingError(
        "the folder has no model file (.joblib, .pkl, .onnx) and no code/inference.py"
    )


def pack(source: Path, archive: Path) -> Packed:
    """Write `archive` (a gzipped tar) from `source`, a model file or a folder."""
    if source.is_file():
        if not source.name.endswith(SKLEARN_SUFFIXES + ONNX_SUFFIXES):
            raise PackingError(
                f"{source} is not a model file (.joblib, .pkl, .pickle, .onnx) or a folder"
            )
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(source, arcname=source.name, recursive=False)
        image, content_type = _image_for([source.name], has_code=False)
        return Packed(archive, image, content_type)
    if not source.is_dir():
        raise PackingError(f"{source} does not exist")
    files = sorted(source.rglob("*"))
    for path in files:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise PackingError(
                f"{path} is a link or a special file; model archives hold regular files "
                "and folders only"
            )
    names = [p.relative_to(source).as_posix() for p in files]
    if archive.resolve().is_relative_to(source.resolve()):
        raise PackingError("the archive cannot be written inside the folder it packs")
    has_code = "code/inference.py" in names
    if has_code and "code/requirements.txt" not in names and "requirements.txt" in names:
        names = ["code/requirements.txt" if n == "requirements.txt" else n for n in names]
    image, content_type = _image_for(names, has_code)
    with tarfile.open(archive, "w:gz") as tar:
        for path, name in zip(files, names, strict=True):
            tar.add(path, arcname=name, recursive=False)
    return Packed(archive, image, content_type)
