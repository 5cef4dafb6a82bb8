"""Small pieces of the service that are clearest tested directly."""

from __future__ import annotations

from sqlalchemy import text

from shared import db
from shared.automation.queue import fingerprint
from shared.events import Causation


def test_after_commit_callbacks_wait_for_the_outer_commit_not_a_savepoint(database):
    fired = []
    with db.session_scope() as session:
        session.execute(text("select 1"))
        with session.begin_nested():
            db.after_commit(session, lambda: fired.append("outer"))
        assert fired == []  # released savepoint: nothing is committed yet
    assert fired == ["outer"]


def test_fingerprints_ignore_key_order_and_differ_by_type():
    a = fingerprint("message.created", {"a": 1, "b": [1, 2]})
    assert a == fingerprint("message.created", {"b": [1, 2], "a": 1})
    assert a != fingerprint("note.created", {"a": 1, "b": [1, 2]})
    assert len(a) == 64


def test_a_causation_chain_grows_by_one_rule_per_hop():
    start = Causation.from_dict(None)
    assert start == Causation() and start.depth == 0
    hop = start.extended("r1").extended("r2")
    assert hop.as_dict() == {"rule_ids": ["r1", "r2"], "depth": 2}
    assert Causation.from_dict(hop.as_dict()) == hop
