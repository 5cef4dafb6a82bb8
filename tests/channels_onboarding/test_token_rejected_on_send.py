"""A send Meta refuses with 190 fails the message and marks its account ``error``."""

from __future__ import annotations

from tests.channels_onboarding.conftest import signup
from tests.inbox_messages.conftest import Inbox
from tests.waiting import wait_until


def test_a_rejected_token_on_send_marks_the_account_error(workspace, worker, meta_settings):
    graph = meta_settings
    resp, _, _ = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    account = resp.json
    inbox = Inbox(workspace.tenant["id"])
    contact = inbox.contact(channel="whatsapp", external_id="15551234567")
    conversation = inbox.conversation(contact, integration_account_id=account["id"])
    graph.script("190")

    sent = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "Hello"}
    )
    assert sent.status_code == 201, sent.text

    def failed():
        items = workspace.call("GET", f"/api/conversations/{conversation['id']}/messages").json
        return next(
            (m for m in items["items"] if m["id"] == sent.json["id"] and m["status"] == "failed"),
            None,
        )

    message = wait_until(failed, "the message failed")
    assert message["error_code"] == "190"
    after = workspace.call("GET", f"/api/integration-accounts/{account['id']}").json
    assert after["status"] == "error"
    logs = workspace.call("GET", "/api/activity-logs?action=integration_account.token_invalid")
    assert [entry["entity_id"] for entry in logs.json["items"]] == [account["id"]]
