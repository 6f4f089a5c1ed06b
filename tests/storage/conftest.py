"""Fixtures for storage tests: each state store implementation, an isolated AWS
environment and a real S3 (moto server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelhost.config import Settings
from modelhost.storage import FsspecObjectStore, StateStore, open_store
from tests.support.moto import MotoServer, isolate_aws_env, moto_server

Opener = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[StateStore] = []
    url = request.param
    if url == "postgresql":
        url = request.getfixturevalue("postgres").new_database()

    def open_again() -> StateStore:
        store = open_store(Settings(data_dir=tmp_path, state_url=url))
        opened.append(store)
        return store

    yield open_again
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> StateStore:
    return opener()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Dummy credentials, no endpoint settings; returns the test's own AWS config file."""
    return isolate_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def bucket(moto: MotoServer, aws_config: Path) -> str:
    return moto.create_bucket()


@pytest.fixture
def local_store(tmp_path: Path, aws_config: Path) -> FsspecObjectStore:
    return FsspecObjectStore(tmp_path / "objects")


@pytest.fixture
def s3_store(moto: MotoServer, aws_config: Path, tmp_path: Path) -> FsspecObjectStore:
    return FsspecObjectStore(tmp_path / "objects", moto.endpoint_url)
