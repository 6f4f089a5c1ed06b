"""`modelhost state migrate`: a laptop's SQLite state moved to a team's PostgreSQL
database (a real, private server) and back, read by real servers on each side."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_cli
from tests.support.postgres import PostgresServer
from tests.support.server import running_server

ROLE = "arn:aws:iam::000000000000:role/r"


def _make_state(server_dir: Path) -> dict[str, object]:
    """Resources of several kinds, with tags; what a server describes of them."""
    with running_server(server_dir) as server:
        sagemaker = server.client("sagemaker")
        for name in ("Iris", "wine"):
            sagemaker.create_model(
                ModelName=name,
                ExecutionRoleArn=ROLE,
                PrimaryContainer={
                    "Image": "modelhost/sklearn",
                    "ModelDataUrl": f"s3://models/{name}/model.tar.gz",
                },
                Tags=[{"Key": "team", "Value": "search"}, {"Key": "model", "Value": name}],
            )
        sagemaker.create_endpoint_config(
            EndpointConfigName="iris-config",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "Iris",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        return _described(server)


def _described(server) -> dict[str, object]:  # type: ignore[no-untyped-def]
    sagemaker = server.client("sagemaker")
    models = sorted(m["ModelName"] for m in sagemaker.list_models()["Models"])
    described: dict[str, object] = {"models": models}
    for name in models:
        model = sagemaker.describe_model(ModelName=name)
        model.pop("ResponseMetadata")
        described[name] = model
        described[f"{name} tags"] = sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName="iris-config")
    config.pop("ResponseMetadata")
    described["config"] = config
    return described


def test_a_laptop_state_moves_to_postgres_and_back(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    laptop = tmp_path / "laptop"
    before = _make_state(laptop)
    url = postgres.new_database()

    moved = run_cli("state", "migrate", "--from", f"sqlite:{laptop / 'state.db'}", "--to", url)
    assert moved.returncode == 0, moved.stderr
    assert "migrated 3 record(s) and 4 tag(s)" in moved.stdout, moved.stdout
    assert "  model: 2\n  endpoint_config: 1\n" in moved.stdout, moved.stdout

    again = run_cli("state", "migrate", "--from", f"sqlite:{laptop / 'state.db'}", "--to", url)
    assert again.returncode == 1
    assert "already holds records; pass --replace" in again.stderr, again.stderr
    replaced = run_cli(
        "state", "migrate", "--from", f"sqlite:{laptop / 'state.db'}", "--to", url, "--replace"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert "3 replaced" in replaced.stdout, replaced.stdout

    with running_server(tmp_path / "team", env={"MODELHOST_STATE_URL": url}) as team:
        assert _described(team) == before
        # the database holds the case-insensitive names as the laptop did
        sagemaker = team.client("sagemaker")
        try:
            sagemaker.create_model(
                ModelName="IRIS",
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": "s3://m/x"},
            )
            raise AssertionError("a second model named IRIS was created")
        except sagemaker.exceptions.ClientError as error:
            assert "already existing" in str(error)

    back = tmp_path / "back"
    returned = run_cli("state", "migrate", "--from", url, "--to", f"sqlite:{back / 'state.db'}")
    assert returned.returncode == 0, returned.stderr
    with running_server(back) as server:
        assert _described(server) == before


def test_migrate_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    missing = run_cli(
        "state", "migrate", "--from", f"sqlite:{tmp_path / 'none.db'}", "--to", "sqlite:x.db"
    )
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    wrong = run_cli("state", "migrate", "--from", "mysql://h/db", "--to", "sqlite:x.db")
    assert wrong.returncode == 1
    assert "sqlite:PATH or postgresql://" in wrong.stderr
