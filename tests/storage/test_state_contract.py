"""The state store contract, held by every implementation: the embedded SQLite file and a
real PostgreSQL server.

An implementation joins by adding a param to `opener` (tests/storage/conftest.py): a
function that opens the same store again each time it is called, so durability across a
restart is tested like the rest."""

from __future__ import annotations

import threading
import time

import pytest

from modelhost.storage import Record, StateStore
from tests.storage.conftest import Opener


def test_insert_put_get_delete(store: StateStore) -> None:
    assert store.get("model", "iris") is None
    assert store.insert("model", "iris", {"ModelName": "iris", "n": 1})
    assert not store.insert("model", "iris", {"ModelName": "iris", "n": 2})
    assert store.get("model", "iris") == {"ModelName": "iris", "n": 1}
    store.put("model", "iris", {"ModelName": "iris", "n": 3, "_private": [1, {"a": None}]})
    assert store.get("model", "iris") == {"ModelName": "iris", "n": 3, "_private": [1, {"a": None}]}
    store.put("model", "new", {"n": 0})  # put adds as well as replaces
    assert store.get("model", "new") == {"n": 0}
    # Kinds are separate name spaces.
    assert store.get("endpoint", "iris") is None
    assert store.delete("model", "iris")
    assert not store.delete("model", "iris")
    assert store.get("model", "iris") is None


def test_list_and_names_are_by_kind_sorted_by_name(store: StateStore) -> None:
    for name in ("b", "a", "c", "B"):
        store.put("endpoint", name, {"EndpointName": name})
    store.put("model", "z", {"ModelName": "z"})
    # Byte-wise, whatever the database's collation.
    assert store.names("endpoint") == ["B", "a", "b", "c"]
    assert [r["EndpointName"] for r in store.list("endpoint")] == ["B", "a", "b", "c"]
    assert store.names("model") == ["z"]
    assert store.list("nothing") == [] and store.names("nothing") == []


def test_modify_changes_or_leaves_a_record(store: StateStore) -> None:
    assert store.modify("endpoint", "absent", lambda r: {**r, "x": 1}) is None
    assert store.get("endpoint", "absent") is None

    store.put("endpoint", "e", {"Status": "Creating", "n": 0})
    assert store.modify("endpoint", "e", lambda r: {**r, "Status": "InService"}) == {
        "Status": "InService",
        "n": 0,
    }
    assert store.get("endpoint", "e") == {"Status": "InService", "n": 0}
    # None leaves it as it is and answers what is stored.
    assert store.modify("endpoint", "e", lambda r: None) == {"Status": "InService", "n": 0}

    def fail(record: Record) -> Record:
        raise RuntimeError("change refused")

    with pytest.raises(RuntimeError, match="change refused"):
        store.modify("endpoint", "e", fail)
    assert store.get("endpoint", "e") == {"Status": "InService", "n": 0}


def test_concurrent_modifies_lose_no_update(store: StateStore) -> None:
    """The API and the controllers write the same record from different threads."""
    store.put("endpoint", "e", {"n": 0})
    threads, rounds = 4, 50

    def bump() -> None:
        for _ in range(rounds):
            store.modify("endpoint", "e", lambda r: {**r, "n": r["n"] + 1})

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert store.get("endpoint", "e") == {"n": threads * rounds}


def test_tags(store: StateStore) -> None:
    arn = "arn:aws:sagemaker:us-east-1:000000000000:model/iris"
    other = "arn:aws:sagemaker:us-east-1:000000000000:model/other"
    assert store.tags(arn) == {}
    store.set_tags(arn, {"team": "a", "env": "dev"})
    store.set_tags(other, {"team": "b"})
    store.set_tags(arn, {"env": "prod", "cost": "1"})  # overwrites one, adds one
    assert store.tags(arn) == {"cost": "1", "env": "prod", "team": "a"}
    assert list(store.tags(arn)) == ["cost", "env", "team"]
    store.delete_tags(arn, ["cost", "absent"])
    assert store.tags(arn) == {"env": "prod", "team": "a"}
    store.delete_tags(arn)
    assert store.tags(arn) == {}
    assert store.tags(other) == {"team": "b"}


def test_insert_with_tags_sets_them_in_the_same_step(store: StateStore) -> None:
    arn = "arn:aws:sagemaker:us-east-1:000000000000:model/iris"
    store.set_tags(arn, {"left": "behind"})  # by an earlier resource of the ARN
    assert store.insert("model", "iris", {"n": 1}, arn=arn, tags={"team": "a"})
    assert store.tags(arn) == {"team": "a"}
    # An insert that finds the name taken changes no tags.
    assert not store.insert("model", "iris", {"n": 2}, arn=arn, tags={"team": "b"})
    assert store.tags(arn) == {"team": "a"} and store.get("model", "iris") == {"n": 1}
    store.delete("model", "iris")
    assert store.insert("model", "iris", {"n": 3}, arn=arn)  # no tags: none left
    assert store.tags(arn) == {}
    assert store.insert("model", "other", {"n": 4})  # without an arn: tags untouched
    assert store.tags(arn) == {}


def test_delete_with_an_arn_removes_the_tags_in_the_same_step(store: StateStore) -> None:
    arn = "arn:aws:sagemaker:us-east-1:000000000000:model/iris"
    store.insert("model", "iris", {"n": 1}, arn=arn, tags={"team": "a"})
    assert store.delete("model", "iris", arn=arn)
    assert store.tags(arn) == {}
    # A delete that finds no record leaves the ARN's tags (another resource's) alone.
    store.set_tags(arn, {"team": "b"})
    assert not store.delete("model", "iris", arn=arn)
    assert store.tags(arn) == {"team": "b"}


def test_state_survives_reopening(opener: Opener) -> None:
    first = opener()
    first.put("model", "iris", {"ModelName": "iris"})
    first.set_tags("arn:x", {"k": "v"})
    first.close()
    again = opener()
    assert again.get("model", "iris") == {"ModelName": "iris"}
    assert again.tags("arn:x") == {"k": "v"}


def test_fold_case_insert_refuses_a_name_differing_only_in_case(store: StateStore) -> None:
    assert store.insert("model", "Iris", {"n": 1}, fold_case=True)
    assert not store.insert("model", "iris", {"n": 2}, fold_case=True)
    assert not store.insert("model", "IRIS", {"n": 3}, fold_case=True)
    assert store.names("model") == ["Iris"]
    # Other kinds are other name spaces; plain inserts and puts stay case-sensitive.
    assert store.insert("endpoint", "iris", {"n": 4}, fold_case=True)
    assert store.insert("model", "IRIS", {"n": 5})
    store.put("model", "iRis", {"n": 6})
    assert store.names("model") == ["IRIS", "Iris", "iRis"]
    # Replacing keeps the folded name taken; deleting frees it.
    store.put("model", "Iris", {"n": 7})
    assert not store.insert("model", "iris", {"n": 8}, fold_case=True)
    assert store.delete("model", "Iris")
    assert store.insert("model", "iris", {"n": 9}, fold_case=True)


def test_racing_fold_case_inserts_have_one_winner(opener: Opener) -> None:
    """Creations of one name in different cases from many threads (or servers): the
    store settles it, exactly one succeeds."""
    store = opener()
    names = [name for _ in range(5) for name in ("job", "Job", "JOB", "jOb")]
    wins: list[str] = []
    barrier = threading.Barrier(len(names))

    def create(name: str) -> None:
        barrier.wait()
        if store.insert("transform_job", name, {"name": name}, fold_case=True):
            wins.append(name)

    workers = [threading.Thread(target=create, args=(name,)) for name in names]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(wins) == 1
    assert store.names("transform_job") == wins


def test_local_says_whether_calls_leave_the_process(
    store: StateStore, request: pytest.FixtureRequest
) -> None:
    assert store.local is (request.node.callspec.params["opener"] == "sqlite")


def test_lease_acquire_renew_release(store: StateStore) -> None:
    assert store.acquire(["endpoint:a", "job:b"], "one", 30) == {"endpoint:a", "job:b"}
    # Held by "one": renewed for it, refused to anyone else.
    assert store.acquire(["endpoint:a"], "one", 30) == {"endpoint:a"}
    assert store.acquire(["endpoint:a", "job:c"], "two", 30) == {"job:c"}
    assert store.holders(["endpoint:a", "job:b", "job:c", "none"]) == {
        "endpoint:a": "one",
        "job:b": "one",
        "job:c": "two",
    }
    # Releasing someone else's lease does nothing; one's own frees it.
    store.release(["endpoint:a"], "two")
    assert store.holders(["endpoint:a"]) == {"endpoint:a": "one"}
    store.release(["endpoint:a"], "one")
    assert store.holders(["endpoint:a"]) == {}
    assert store.acquire(["endpoint:a"], "two", 30) == {"endpoint:a"}
    assert store.acquire([], "two", 30) == set()


def test_an_expired_lease_is_taken_over(store: StateStore) -> None:
    assert store.acquire(["job:a"], "dead", 0.2) == {"job:a"}
    assert store.acquire(["job:a"], "alive", 30) == set()
    time.sleep(0.5)
    assert store.holders(["job:a"]) == {}
    assert store.acquire(["job:a"], "alive", 30) == {"job:a"}
    assert store.holders(["job:a"]) == {"job:a": "alive"}
    # The old holder cannot renew what it lost.
    assert store.acquire(["job:a"], "dead", 30) == set()


def test_leases_survive_reopening(opener: Opener) -> None:
    opener().acquire(["job:a"], "one", 60)
    assert opener().holders(["job:a"]) == {"job:a": "one"}


def test_racing_holders_have_one_winner(opener: Opener) -> None:
    """Many holders (threads here, servers in production) racing for the same free and
    expired leases: the store settles each, exactly one holder gets it."""
    store = opener()
    store.acquire(["expired"], "dead", 0.1)
    time.sleep(0.3)
    holders = [f"server-{n}" for n in range(12)]
    won: dict[str, list[str]] = {"free": [], "expired": []}
    barrier = threading.Barrier(len(holders))

    def race(holder: str) -> None:
        barrier.wait()
        for name in store.acquire(["free", "expired"], holder, 30):
            won[name].append(holder)

    workers = [threading.Thread(target=race, args=(holder,)) for holder in holders]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [len(won["free"]), len(won["expired"])] == [1, 1]
    assert store.holders(["free", "expired"]) == {
        "free": won["free"][0],
        "expired": won["expired"][0],
    }
