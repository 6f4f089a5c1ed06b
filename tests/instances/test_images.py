"""What a model's Image names: a built-in model server or an image to run, and the local
names an ECR-style URI is looked up under."""

from __future__ import annotations

import pytest

from modelhost.instances.images import candidates, ecr_repository, is_builtin, repository

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_an_ecr_uri_is_also_looked_up_as_repository_and_tag() -> None:
    assert ecr_repository(f"{ECR}/team/model:2") == "team/model:2"
    assert candidates(f"{ECR}/team/model:2") == [f"{ECR}/team/model:2", "team/model:2"]
    assert ecr_repository("registry.example.com/team/model:2") is None
    assert candidates("team/model:2") == ["team/model:2"]


@pytest.mark.parametrize(
    ("image", "repo"),
    [
        (f"{ECR}/team/model:2", "team/model"),
        ("localhost:5000/model@sha256:abc", "localhost:5000/model"),
        ("model", "model"),
    ],
)
def test_repository_drops_registry_tag_and_digest(image: str, repo: str) -> None:
    assert repository(image) == repo


@pytest.mark.parametrize(
    "image",
    [
        "modelhost/sklearn",
        "modelhost/python:latest",
        f"{ECR}/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
        "my-sklearn-server",
        "team/onnx-runtime:1",
    ],
)
def test_modelhost_and_framework_images_are_builtin(image: str) -> None:
    assert is_builtin(image)


@pytest.mark.parametrize(
    "image",
    [
        "team/own-server:1",
        f"{ECR}/byoc:latest",
        "vllm/vllm-openai:v0.6",
    ],
)
def test_other_images_are_run_as_images(image: str) -> None:
    assert not is_builtin(image)
