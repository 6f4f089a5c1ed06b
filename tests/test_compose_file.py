"""docker/compose.yaml, checked where Docker cannot run it: the file parses, describes
two modelhost servers on one PostgreSQL, one Redis and one S3 service, and every variable
it sets for modelhost is one modelhost (or botocore, for AWS_*) reads. The same topology
runs as plain processes in tests/e2e/test_several_servers.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
# What botocore and the AWS tools read (modelhost resolves S3 the standard AWS way).
AWS_VARIABLES = {
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
}


def _services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    services = document["services"]
    assert isinstance(services, dict)
    return services


def _modelhost_servers(services: dict[str, Any]) -> dict[str, Any]:
    return {
        name: service
        for name, service in services.items()
        if service.get("image") == "modelhost/server"
    }


def _read_by_modelhost() -> set[str]:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "modelhost").rglob("*.py"))
    return set(re.findall(r"MODELHOST_[A-Z0-9_]+", source))


def test_two_servers_share_one_database_queue_and_object_store() -> None:
    services = _services()
    servers = _modelhost_servers(services)
    assert len(servers) == 2, sorted(services)
    environments = [s["environment"] for s in servers.values()]
    assert environments[0] == environments[1]  # one shared state, configured once
    env = environments[0]
    state_url = re.sub(r"\$\{[^}]*\}", "x", env["MODELHOST_STATE_URL"])  # compose's ${...}
    assert urlsplit(state_url).hostname == "postgres"
    assert urlsplit(env["MODELHOST_ASYNC_QUEUE"]).hostname == "redis"
    assert urlsplit(env["AWS_ENDPOINT_URL_S3"]).hostname == "s3"
    for name in ("postgres", "redis", "s3"):
        assert name in services
        for server in servers.values():
            assert name in server["depends_on"]
    # each server keeps its own data dir
    volumes = [tuple(s["volumes"]) for s in servers.values()]
    assert len(set(volumes)) == 2
    ports = [tuple(s["ports"]) for s in servers.values()]
    assert len(set(ports)) == 2
    dockerfile = ROOT / servers[next(iter(servers))]["build"]["dockerfile"]
    assert dockerfile.is_file()
    assert "postgres" in dockerfile.read_text() and "redis" in dockerfile.read_text()


def test_every_variable_it_sets_is_one_modelhost_reads() -> None:
    known = _read_by_modelhost()
    for name, server in _modelhost_servers(_services()).items():
        for variable in server["environment"]:
            if variable.startswith("AWS_"):
                assert variable in AWS_VARIABLES, (name, variable)
            else:
                assert variable in known, f"{name} sets {variable}, which modelhost never reads"


def test_no_secret_is_written_in_the_file() -> None:
    """Passwords come from the operator's environment (compose refuses to start without
    them), never defaults in the file."""
    text = COMPOSE.read_text()
    assert "${MODELHOST_DB_PASSWORD:?" in text
    assert "${S3_SECRET_KEY:?" in text
    for service in _services().values():
        for variable, value in (service.get("environment") or {}).items():
            if any(word in variable for word in ("PASSWORD", "SECRET")):
                assert str(value).startswith("${") and ":?" in str(value), variable
