"""What only the PostgreSQL state store does: migrations shared by servers starting at
once, and a database that cannot be reached or goes away (against a real server)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from modelhost.storage import StateStore, StoreUnavailable, StoreUnreachable
from modelhost.storage.postgres_state import MIGRATIONS, PostgresStateStore, redact
from tests.support.postgres import PostgresServer
from tests.support.server import free_port


def test_servers_starting_at_once_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    stores: list[StateStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            stores.append(PostgresStateStore(url))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=start) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        assert errors == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM modelhost_schema").fetchall() == [
                (len(MIGRATIONS),)
            ]
        stores[0].put("model", "m", {"n": 1})
        assert all(store.get("model", "m") == {"n": 1} for store in stores)
    finally:
        for store in stores:
            store.close()


def test_a_newer_schema_is_refused(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    PostgresStateStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE modelhost_schema SET version = 99")
    with pytest.raises(StoreUnreachable, match="schema version 99, newer"):
        PostgresStateStore(url)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    url = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/state"
    with pytest.raises(StoreUnreachable) as caught:
        PostgresStateStore(url)
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message
    assert message.startswith(f"cannot reach the state store {redact(url)}: ")
    assert "someone:***@127.0.0.1" in message


def test_a_lost_database_is_unavailable_then_recovers(postgres: PostgresServer) -> None:
    store = PostgresStateStore(postgres.new_database())
    try:
        store.put("model", "m", {"n": 1})
        postgres.stop()
        try:
            with pytest.raises(StoreUnavailable, match="is unavailable") as caught:
                store.get("model", "m")
            assert caught.value.status == 503
        finally:
            postgres.start()
        assert store.get("model", "m") == {"n": 1}
    finally:
        store.close()
