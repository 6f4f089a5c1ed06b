"""`modelhost images build`: what it refuses before touching an engine, and the pieces
that decide which wheels an image gets. Building a real image against podman is
tests/e2e/test_container_modelserver.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from modelhost.imagebuild import BuildError, find_source
from modelhost.imagebuild.wheelhouse import Interpreter, parse_probe, requirements
from tests.support.cli import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_unknown_framework_is_refused() -> None:
    result = run_cli("images", "build", "--framework", "tensorflow")
    assert result.returncode == 2
    assert "sklearn, onnx, python or all" in result.stderr


def test_several_frameworks_need_a_tag_naming_each() -> None:
    result = run_cli("images", "build", "--framework", "all", "--tag", "team/server:1")
    assert result.returncode == 2
    assert "{framework}" in result.stderr


def test_without_an_engine_it_says_how_to_get_one(tmp_path: Path) -> None:
    result = run_cli(
        "images", "build", "--framework", "sklearn", "--engine", f"unix://{tmp_path}/none.sock"
    )
    assert result.returncode == 1
    assert "no container engine reachable" in result.stderr
    assert "podman system service" in result.stderr


def test_wheels_match_the_images_glibc_and_python() -> None:
    interpreter = parse_probe('noise\n["3.11", "2.36", "x86_64"]\n')
    assert interpreter == Interpreter("3.11", (2, 36), "x86_64")
    platforms = interpreter.platforms()
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert {"manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    assert "manylinux_2_37_x86_64" not in platforms
    # An older glibc gets no wheel built for a newer one.
    older = Interpreter("3.12", (2, 17), "aarch64").platforms()
    assert "manylinux_2_28_aarch64" not in older and "manylinux2014_aarch64" in older
    assert "manylinux2010_aarch64" in older


def test_the_image_gets_every_pinned_dependency_and_the_onnx_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = requirements(REPO)
    assert set(project["dependencies"]) <= set(pins)
    assert set(project["optional-dependencies"]["onnx"]) <= set(pins)
    assert all("==" in pin for pin in pins)


def test_a_folder_that_is_not_a_source_tree_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    with pytest.raises(BuildError, match="not a modelhost source tree"):
        find_source(tmp_path)
    assert find_source(REPO) == REPO
