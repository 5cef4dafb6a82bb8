"""The process's copy of the cache epochs: answered without a round trip, never stale.

Other writers are another Redis client here (another process does the same through
Redis); the end-to-end guarantee across API processes is in test_principal_cache.py.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from shared import epoch_cache, epoch_mirror
from shared.config import get_settings
from shared.redis_client import get_redis


@pytest.fixture(autouse=True)
def no_refresh_while_counting(monkeypatch):
    """Counted round trips are the misses only (a slow machine may pass the refresh period)."""
    monkeypatch.setattr(epoch_mirror, "REFRESH_SECONDS", 3600.0)


@pytest.fixture
def mirror(redis_namespace):
    """A mirror of its own, tracking one prefix of this test's own."""
    prefix = f"{redis_namespace}:mirror-test:{uuid.uuid4().hex[:8]}:"
    made = epoch_mirror.EpochMirror(lambda: [prefix])
    made.prefix = prefix
    yield made
    made._drop()


def keys_of(mirror, *names: str) -> tuple[str, ...]:
    return tuple(mirror.prefix + name for name in names)


def test_unchanged_epochs_are_answered_without_a_round_trip(mirror):
    keys = keys_of(mirror, "a", "b")
    get_redis().set(keys[0], "1")

    assert mirror.mget(keys) == [b"1", None]
    trips = mirror.round_trips
    for _ in range(50):
        assert mirror.mget(keys) == [b"1", None]
    assert mirror.round_trips == trips


@pytest.mark.parametrize("change", ["set", "delete", "set an unset key"])
def test_another_clients_change_is_seen_by_the_next_read(mirror, change):
    keys = keys_of(mirror, "a", "b")
    client = get_redis()
    client.set(keys[0], "1")
    assert mirror.mget(keys) == [b"1", None]

    if change == "set":
        client.set(keys[0], "2")
        expected = [b"2", None]
    elif change == "delete":
        client.delete(keys[0])
        expected = [None, None]
    else:
        client.set(keys[1], "x")
        expected = [b"1", b"x"]

    assert mirror.mget(keys) == expected


def test_many_changes_between_reads_are_all_taken(mirror):
    keys = keys_of(mirror, *(str(i) for i in range(200)))
    client = get_redis()
    assert mirror.mget(keys) == [None] * 200
    client.mset({k: k for k in keys})

    assert mirror.mget(keys) == [k.encode() for k in keys]


def test_keys_outside_the_tracked_prefixes_are_read_every_time(mirror, redis_namespace):
    outside = (f"{redis_namespace}:untracked:{uuid.uuid4().hex}",)
    client = get_redis()
    client.set(outside[0], "1")
    assert mirror.mget(outside) == [b"1"]
    trips = mirror.round_trips

    client.set(outside[0], "2")
    assert mirror.mget(outside) == [b"2"]
    assert mirror.round_trips == trips + 1


def test_the_copy_is_confirmed_by_a_round_trip_every_refresh_period(mirror, monkeypatch):
    monkeypatch.setattr(epoch_mirror, "REFRESH_SECONDS", 0.05)
    keys = keys_of(mirror, "a")
    mirror.mget(keys)
    trips = mirror.round_trips

    mirror.mget(keys)
    assert mirror.round_trips == trips
    time.sleep(0.06)
    mirror.mget(keys)
    assert mirror.round_trips == trips + 1


def test_a_killed_connection_is_never_answered_from_the_old_copy(mirror):
    keys = keys_of(mirror, "a")
    client = get_redis()
    client.set(keys[0], "before")
    assert mirror.mget(keys) == [b"before"]

    ours = [
        c["id"] for c in client.client_list() if c["name"] == f"omnistream:epochs:{os.getpid()}"
    ]
    assert ours
    for client_id in ours:
        client.client_kill_filter(_id=client_id)
    client.set(keys[0], "after")

    answers = []
    for _ in range(2):
        try:
            answers.append(mirror.mget(keys))
        except Exception:  # the dead connection is reported once, then replaced
            answers.append("error")
    assert [b"before"] not in answers
    assert answers[-1] == [b"after"]


def test_a_new_cache_prefix_reopens_the_tracking_connection(redis_namespace):
    prefixes = [f"{redis_namespace}:grow-a:"]
    mirror = epoch_mirror.EpochMirror(lambda: list(prefixes))
    try:
        late = (f"{redis_namespace}:grow-b:k",)
        mirror.mget((f"{redis_namespace}:grow-a:k",))
        prefixes.append(f"{redis_namespace}:grow-b:")
        mirror.mget(late)
        trips = mirror.round_trips
        assert mirror.mget(late) == [None]
        assert mirror.round_trips == trips, "the late cache's key is kept once tracked"

        get_redis().set(late[0], "1")
        assert mirror.mget(late) == [b"1"]
    finally:
        mirror._drop()


def test_turned_off_every_read_is_a_round_trip(mirror, monkeypatch):
    settings = get_settings().model_copy(update={"epoch_mirror": False})
    monkeypatch.setattr("shared.epoch_mirror.get_settings", lambda: settings)
    keys = keys_of(mirror, "a")
    get_redis().set(keys[0], "1")
    assert mirror.mget(keys) == [b"1"]
    get_redis().set(keys[0], "2")
    assert mirror.mget(keys) == [b"2"]
    assert mirror.round_trips == 0


def test_the_epoch_caches_read_through_the_processs_mirror(redis_namespace):
    tenant = uuid.uuid4()
    epoch_cache.read(tenant)
    trips = epoch_cache._MIRROR.round_trips
    for _ in range(20):
        epoch_cache.read(tenant)
    # NOTE: not == trips: threads an earlier test left behind in this process may write
    # an epoch of this namespace meanwhile, and the next read then fetches it.
    assert epoch_cache._MIRROR.round_trips - trips <= 3, "20 reads, almost all from the copy"
    assert epoch_cache._MIRROR.refused is None
    names = [c["name"] for c in get_redis().client_list()]
    assert f"omnistream:epochs:{os.getpid()}" in names
