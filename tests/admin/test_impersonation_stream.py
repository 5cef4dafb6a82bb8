"""An impersonation's live stream ends with the super admin behind it, within seconds.

The API refuses the ``imp`` token at once (``test_impersonation_ends``); the stream
process re-authenticates its clients when their access epoch moves, so deleting the
super admin must move it too, not wait for the minute's full re-check.
"""

from __future__ import annotations

import time

from tests.admin.conftest import create_super_admin, login
from tests.realtime.conftest import stream_url, streams  # noqa: F401  (fixtures)


def _opened(streams, stream_url, token):  # noqa: F811
    stream = streams(stream_url, token)
    event = stream.next()
    assert event.event == "ready", event
    return stream


def test_deleting_the_super_admin_closes_their_impersonations_stream(
    root,
    client,
    worker,
    workspace,
    stream_url,  # noqa: F811
    streams,  # noqa: F811
):
    operator = login(client, create_super_admin())
    resp = operator.call("POST", f"/api/admin/tenants/{workspace.tenant['id']}/impersonate")
    assert resp.status_code == 200, resp.text
    stream = _opened(streams, stream_url, resp.json["access_token"])
    assert root.call("DELETE", f"/api/admin/super-admins/{operator.id}").status_code == 204
    started = time.monotonic()
    closing = stream.until(lambda e: e.event == "close", timeout=15)
    assert closing.json == {"reason": "unauthorized"}
    assert time.monotonic() - started < 8
