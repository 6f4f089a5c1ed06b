"""The wheels an image installs from, gathered on the host: inside a build there is no
index to reach (no route to PyPI, or one only through a proxy whose CA the base image does
not trust), so every wheel is fetched here, by the host's pip, for the image's own
interpreter.

`pip download --only-binary=:all: --python-version --platform` picks wheels for the
base image's Python and glibc (asked of the image itself), whatever Python the host runs:
every pinned dependency ships manylinux wheels, so nothing is compiled. The dependency
wheels are kept under the cache folder, keyed by what decides them (the pins, the image's
interpreter, pip's version); only modelhost's own wheel is rebuilt each time, from the
source tree, in a folder of its own so that the image's layer of dependencies stays cached
by the engine while the code changes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from modelhost.imagebuild.base import BuildError

#: The extras every image holds: the onnx handlers need onnxruntime; sklearn's are core.
EXTRAS = ("onnx",)


@dataclass(frozen=True)
class Interpreter:
    """The image's Python, as the wheels must match it."""

    python: str  # "3.11"
    glibc: tuple[int, int]  # (2, 36)
    machine: str  # "x86_64"

    def platforms(self) -> list[str]:
        """Every manylinux tag a wheel for this glibc may carry, newest first, with the
        legacy aliases (manylinux2014 = 2_17, manylinux2010 = 2_12, manylinux1 = 2_5)."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        return tags


#: Asked of the base image: its Python's version, glibc and machine.
PROBE = (
    "import json, platform, sys; "
    "print(json.dumps([f'{sys.version_info[0]}.{sys.version_info[1]}', "
    "platform.libc_ver()[1], platform.machine()]))"
)


def parse_probe(output: str) -> Interpreter:
    python, glibc, machine = json.loads(output.strip().splitlines()[-1])
    major, minor = (int(part) for part in glibc.split(".")[:2])
    return Interpreter(python, (major, minor), machine)


def requirements(source: Path) -> list[str]:
    """The pinned runtime dependencies (with the image's extras) of the source tree."""
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    pins = list(project["dependencies"])
    for extra in EXTRAS:
        pins += project["optional-dependencies"][extra]
    return pins


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    ran = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if ran.returncode != 0:
        raise BuildError(f"pip {args[0]} failed: {ran.stderr.strip()[-2000:]}")
    return ran


def pip_version() -> str:
    try:
        from pip import __version__
    except ImportError as exc:
        raise BuildError(
            f"building an image needs pip in the Python that runs modelhost ({sys.executable})"
        ) from exc
    return str(__version__)


def dependencies(source: Path, interpreter: Interpreter, folder: Path) -> tuple[Path, bool]:
    """`folder`/<key>: the dependency wheels (and pip's own, to install them with) plus
    `requirements.txt`; returns it and whether it was fetched now (False: cached)."""
    pins = [*requirements(source), f"pip=={pip_version()}"]
    platforms = interpreter.platforms()
    key = hashlib.sha256(json.dumps([pins, interpreter.python, platforms]).encode()).hexdigest()[
        :16
    ]
    target = folder / key
    if (target / "requirements.txt").exists():
        return target, False
    partial = folder / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "pins.txt").write_text("\n".join(pins) + "\n")
    _pip(
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        interpreter.python,
        "--implementation",
        "cp",
        *(arg for platform in platforms for arg in ("--platform", platform)),
        "--dest",
        str(partial),
        "--requirement",
        str(partial / "pins.txt"),
    )
    # Written last: its presence marks a complete folder.
    (partial / "pins.txt").rename(partial / "requirements.txt")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target, True


def modelhost_wheel(source: Path, folder: Path) -> Path:
    """modelhost's own wheel, built from `source` into `folder`."""
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder), str(source))
    [wheel] = folder.glob("modelhost-*.whl")
    return wheel
