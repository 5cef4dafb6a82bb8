"""The live-key limit holds for keys created at once, not only one after another."""

from __future__ import annotations

from shared.db import get_sessionmaker
from shared.identity import api_keys, auth
from shared.identity.api_keys import MAX_KEYS_PER_USER
from tests.lock_races import race


def test_a_key_created_while_the_last_allowed_one_is_being_created_is_refused(workspace):
    """Both creations counted the keys before either committed: the user held 51."""
    for n in range(MAX_KEYS_PER_USER - 1):
        assert workspace.call("POST", "/api/api-keys", json={"name": f"k{n}"}).status_code == 201
    holder = get_sessionmaker()()
    ctx = auth.authenticate_token(holder, workspace.token)
    api_keys.create_key(holder, ctx, name="the last one")

    resp = race(holder, lambda: workspace.call("POST", "/api/api-keys", json={"name": "one more"}))

    assert resp.status_code == 422, resp.text
    listed = workspace.call("GET", "/api/api-keys", params={"limit": 200}).json["items"]
    live = [k for k in listed if k["revoked_at"] is None]
    assert len(live) == MAX_KEYS_PER_USER
