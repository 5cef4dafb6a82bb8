"""An operator's requeue of a send's dead letter: the failed message goes out again, or the
requeue says why it cannot (HTTP -> worker -> fake Meta -> status)."""

from __future__ import annotations

from tests.channels_outbound.conftest import messages_of, wait_for_status
from tests.waiting import wait_until

TOKEN = "EAAG-requeue-token"


def _dead_send(workspace, channels, fake_graph):
    """A WhatsApp message whose send ran out of retries: (account id, conversation, message
    id, its dead letter's id)."""
    account_id = channels.account("whatsapp", credentials={"access_token": TOKEN})
    contact = channels.contact(channel="whatsapp", external_id="15557654321")
    conversation = channels.conversation(contact, integration_account_id=account_id)
    fake_graph.script("503")  # transient every time: retried, then failed and dead-lettered
    resp = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"body": "again?"}
    )
    assert resp.status_code == 201, resp.text
    message_id = resp.json["id"]
    wait_for_status(workspace, conversation["id"], message_id, "failed", timeout=30)
    return account_id, conversation, message_id, _dead_letter_of(workspace, message_id)


def _dead_letter_of(workspace, message_id: str) -> str:
    def found():
        for item in workspace.call("GET", "/api/ops/dead-letters").json["items"]:
            full = workspace.call("GET", f"/api/ops/dead-letters/{item['id']}").json
            if full["actor"] == "send_outbound" and full["args"] == [message_id]:
                return item["id"]
        return None

    return wait_until(found, "the send's dead letter")


def _moves(channels, message_id: str) -> list[tuple[str, str]]:
    return [
        (e.data["previous_status"], e.data["status"])
        for e in channels.events("message.status_updated")
        if e.data["id"] == message_id
    ]


def test_requeuing_a_dead_send_queues_its_message_again_and_sends_it(
    workspace, channels, fake_graph
):
    _, conversation, message_id, letter = _dead_send(workspace, channels, fake_graph)
    tries = len(fake_graph.sent())
    fake_graph.script("ok")

    resp = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 200, resp.text
    assert resp.json["requeued_at"]
    sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert sent["provider_message_id"].startswith("wamid.")
    assert sent["error_code"] is None and sent["error_message"] is None
    assert len(fake_graph.sent()) == tries + 1
    assert _moves(channels, message_id)[-3:] == [
        ("queued", "failed"),
        ("failed", "queued"),
        ("queued", "sent"),
    ]
    again = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")
    assert again.status_code == 409


def test_a_dead_send_whose_account_was_disabled_is_not_requeued_and_says_why(
    workspace, channels, fake_graph
):
    account_id, conversation, message_id, letter = _dead_send(workspace, channels, fake_graph)
    tries = len(fake_graph.sent())
    resp = workspace.call(
        "PATCH", f"/api/integration-accounts/{account_id}", json={"status": "disabled"}
    )
    assert resp.status_code == 200, resp.text

    resp = workspace.call("POST", f"/api/ops/dead-letters/{letter}/requeue")

    assert resp.status_code == 409, resp.text
    error = resp.json["error"]
    assert error["code"] == "send_not_requeueable"
    assert "disabled" in error["message"]
    assert error["details"]
    [item] = [m for m in messages_of(workspace, conversation["id"]) if m["id"] == message_id]
    assert item["status"] == "failed"
    view = workspace.call("GET", f"/api/ops/dead-letters/{letter}").json
    assert view["requeued_at"] is None  # still listed: the operator may fix it and retry
    assert len(fake_graph.sent()) == tries


def test_a_requeued_send_whose_job_runs_before_the_requeue_commits_still_goes_out(
    workspace, channels, fake_graph
):
    """The dead letter's job is sent inside the requeue's transaction: a worker quick enough
    to run it before the commit finds the send locked and does nothing. The revival's own
    job, after the commit, sends it (not the sweeper, a minute later)."""
    import uuid

    from shared import dead_letters
    from shared.db import session_scope
    from workers.actors.channels_outbound import send_outbound

    _, conversation, message_id, letter = _dead_send(workspace, channels, fake_graph)
    tries = len(fake_graph.sent())
    fake_graph.script("ok")

    def run_at_once(resend) -> None:  # the fastest worker: the job runs before the commit
        send_outbound.fn(*resend.args)

    with session_scope() as session:
        dead_letters.requeue_dead_letter(
            session, uuid.UUID(letter), tenant_id=channels.tenant_id, send=run_at_once
        )

    sent = wait_for_status(workspace, conversation["id"], message_id, "sent")
    assert sent["provider_message_id"].startswith("wamid.")
    assert len(fake_graph.sent()) == tries + 1
