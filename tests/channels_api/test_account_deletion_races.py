"""An api account's calls racing its disconnection (``DELETE /api/integration-accounts/{id}``).

Each test runs the deletion in ``holder`` (done, not committed), starts the call and commits
the deletion once the call waits on it (tests/lock_races.py).
"""

from __future__ import annotations

import uuid

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_sessionmaker
from tests.channels_api.conftest import ApiChannel
from tests.lock_races import race


def _disconnecting(ws, api: ApiChannel):
    holder = get_sessionmaker()()
    accounts.delete_account(holder, Ctx.system(uuid.UUID(ws.tenant["id"])), uuid.UUID(api.id))
    return holder


def test_a_secret_rotated_while_the_account_is_disconnected_is_a_404(workspace):
    """The rotation re-read the account FOR UPDATE with ``session.refresh``, which raises
    when the row went meanwhile: a 500."""
    api = ApiChannel(workspace, None)

    resp = race(
        _disconnecting(workspace, api), lambda: workspace.call("POST", f"{api.base}/rotate-secret")
    )

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["message"] == "Integration account not found"
