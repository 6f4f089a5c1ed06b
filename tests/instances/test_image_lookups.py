"""The container backend's image lookups: a found image is taken as there for
IMAGE_CACHE_S without asking the engine again, and one removed since is looked up anew
when the engine says so, never pulled by the client library's own unbounded pull."""

from __future__ import annotations

from typing import Any

import pytest
from docker.errors import ImageNotFound

from modelhost.instances import container


class _Images:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[str] = []

    def get(self, name: str) -> object:
        self.asked.append(name)
        if name not in self.present:
            raise ImageNotFound(name)
        return object()


class _Containers:
    def __init__(self, images: _Images) -> None:
        self.images = images
        self.created: list[str] = []

    def create(self, name: str, **arguments: Any) -> str:
        if name not in self.images.present:
            raise ImageNotFound(name)
        self.created.append(name)
        return name


class _Client:
    def __init__(self, present: set[str]) -> None:
        self.images = _Images(present)
        self.containers = _Containers(self.images)


def _engine(client: _Client) -> container._Engine:
    engine = container._Engine("unix:///nonexistent.sock", "scope")
    engine._client = client
    return engine


def test_a_found_image_is_not_asked_for_again_within_the_cache_period() -> None:
    client = _Client({"team/model:1"})
    engine = _engine(client)
    assert engine.find_image("team/model:1") == "team/model:1"
    assert engine.find_image("team/model:1") == "team/model:1"
    assert client.images.asked == ["team/model:1"]


def test_the_cache_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _Client({"team/model:1"})
    engine = _engine(client)
    engine.find_image("team/model:1")
    monkeypatch.setattr(container, "IMAGE_CACHE_S", 0.0)
    engine.find_image("team/model:1")
    assert client.images.asked == ["team/model:1", "team/model:1"]


def test_an_image_removed_since_it_was_found_is_looked_up_again_at_create(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = _Client({"team/model:1"})
    engine = _engine(client)
    backend = container.ContainerBackend()
    backend._engine = engine
    engine.find_image("team/model:1")
    client.images.present = set()  # removed since
    pulled: list[str] = []

    def pull(image: str, progress: object) -> None:  # the registry has it again
        pulled.append(image)
        client.images.present.add(image)

    monkeypatch.setattr(engine, "_pull", pull)
    assert backend._create("team/model:1", "team/model:1", {}) == "team/model:1"
    assert client.images.asked.count("team/model:1") >= 2  # asked again, not trusted
    assert pulled == ["team/model:1"]  # through the bounded pull
