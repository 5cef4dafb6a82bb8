"""The public receivers: signatures, dedupe, batches, unknown recipients, bad bodies, handshakes."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import event, func, select

from shared.channels.signatures import meta_signature
from shared.config import get_settings
from shared.db import get_engine, session_scope
from shared.models import InboundEvent
from tests.channels_inbound.conftest import load, numeric_id


def _count_inbound() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(InboundEvent))


@pytest.fixture
def platform_secret(monkeypatch):
    """Run with the platform's META_APP_SECRET and META_VERIFY_TOKEN set."""
    monkeypatch.setenv("META_APP_SECRET", "platform-app-secret")
    monkeypatch.setenv("META_VERIFY_TOKEN", "platform-verify-token")
    get_settings.cache_clear()
    yield "platform-app-secret"
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha1=0123",
        "sha256=" + "0" * 64,
        meta_signature("someone-elses-secret", b"{}"),
    ],
)
def test_a_bad_or_missing_signature_is_401_and_stores_nothing(channels, signature):
    account = channels.account("whatsapp")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    before = _count_inbound()

    resp = channels.post_meta("meta", payload, secret=None, signature=signature)

    assert resp.status_code == 401, resp.text
    assert resp.json["error"]["code"] == "invalid_signature"
    assert _count_inbound() == before
    assert channels.messages() == []


def test_the_signature_covers_the_raw_bytes(channels):
    """Re-serialising the JSON (other spacing) breaks the signature: we verify raw bytes."""
    account = channels.account("whatsapp")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    raw = json.dumps(payload).encode()
    signature = meta_signature(account["credentials"]["app_secret"], raw)
    resp = channels.post_meta(
        "meta", json.dumps(payload, indent=2).encode(), secret=None, signature=signature
    )
    assert resp.status_code == 401
    resp = channels.post_meta("meta", raw, secret=None, signature=signature)
    assert resp.status_code == 200


def test_a_replayed_payload_is_stored_and_processed_once(channels):
    account = channels.account("whatsapp")
    first = channels.whatsapp(account, "wa_text.json")
    channels.settle()
    again = channels.whatsapp(account, "wa_text.json")
    channels.settle()

    assert first.json == {"stored": 1, "duplicates": 0, "dropped": 0}
    assert again.json == {"stored": 0, "duplicates": 1, "dropped": 0}
    assert len(channels.inbound_events()) == 1
    assert len(channels.messages()) == 1
    assert len(channels.events("message.created")) == 1


def test_the_same_message_rebatched_creates_nothing_new(channels):
    """Meta may resend a message inside another batch: the message id still dedupes."""
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    payload["entry"][0]["changes"][0]["value"]["messages"].append(
        load("wa_image.json")["entry"][0]["changes"][0]["value"]["messages"][0]
    )
    channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    channels.settle()

    assert sorted(m.provider_message_id for m in channels.messages()) == [
        "wamid.IMAGE1",
        "wamid.TEXT1",
    ]
    assert len(channels.events("message.created")) == 2
    assert all(row.status == "processed" for row in channels.inbound_events())


def test_processing_a_stored_payload_twice_creates_nothing_new(channels):
    from shared.channels import processing

    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    channels.settle()
    (row,) = channels.inbound_events()
    with session_scope() as session:  # as if a redelivered job found it pending again
        session.get(InboundEvent, row.id).status = "pending"
    with session_scope() as session:
        assert processing.process(session, row.id) == "processed"
    assert len(channels.messages()) == 1
    assert len(channels.events("message.created")) == 1
    assert len(channels.events("conversation.created")) == 1


def test_a_batch_with_a_bad_entry_keeps_the_others(channels):
    """Two accounts' changes in one POST, one change broken: the others are stored."""
    a = channels.account("whatsapp")
    b = channels.account("whatsapp", credentials={"app_secret": a["credentials"]["app_secret"]})
    good = load("wa_text.json", PHONE_NUMBER_ID=a["external_id"])
    other = load("wa_image.json", PHONE_NUMBER_ID=b["external_id"])
    broken = copy.deepcopy(good)
    value = broken["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {"id": "wamid.NOFROM", "type": "text", "text": {"body": "who am I?"}},  # no sender
        {**value["messages"][0], "id": "wamid.SIBLING", "text": {"body": "still here"}},
    ]
    payload = {
        "object": "whatsapp_business_account",
        "entry": good["entry"] + other["entry"] + broken["entry"],
    }
    resp = channels.post_meta("meta", payload, secret=a["credentials"]["app_secret"])
    assert resp.json == {"stored": 3, "duplicates": 0, "dropped": 0}
    channels.settle()

    assert sorted(m.provider_message_id for m in channels.messages()) == [
        "wamid.IMAGE1",
        "wamid.SIBLING",
        "wamid.TEXT1",
    ]
    rows = {r.status: r for r in channels.inbound_events()}
    assert set(rows) == {"processed", "failed"}
    failed = rows["failed"]
    assert "1 of 2 item(s) failed" in failed.error
    assert "without id or sender" in failed.result["errors"][0]
    assert failed.result["counts"] == {"failed": 1, "message_created": 1}


def test_an_unknown_recipient_answers_200_and_is_dropped(channels):
    payload = load("wa_text.json", PHONE_NUMBER_ID=numeric_id())
    before = _count_inbound()
    resp = channels.post_meta("meta", payload, secret="whatever")
    assert resp.status_code == 200
    assert resp.json == {"stored": 0, "duplicates": 0, "dropped": 1}
    assert _count_inbound() == before  # nothing could verify it: logged, not stored


def test_with_the_platform_secret_unknown_recipients_are_kept_as_dropped(channels, platform_secret):
    account = channels.account("whatsapp", credentials={"access_token": "EAAG-x"})
    known = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    unknown_id = numeric_id()
    unknown = load("wa_image.json", PHONE_NUMBER_ID=unknown_id)
    payload = {"object": "whatsapp_business_account", "entry": known["entry"] + unknown["entry"]}

    resp = channels.post_meta("meta", payload, secret=platform_secret)
    channels.settle()

    assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 1}
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]
    with session_scope() as session:
        dropped = session.scalars(
            select(InboundEvent).where(InboundEvent.provider_event_id.like(f"{unknown_id}/%"))
        ).one()
    assert (dropped.status, dropped.tenant_id) == ("dropped", None)


def test_an_account_secret_cannot_speak_for_another_tenants_account(channels, other_channels):
    mine = channels.account("whatsapp")
    theirs = other_channels.account("whatsapp")
    forged = load("wa_text.json", PHONE_NUMBER_ID=theirs["external_id"])
    resp = channels.post_meta("meta", forged, secret=mine["credentials"]["app_secret"])
    assert resp.status_code == 401
    # Mixed with one of mine, theirs is dropped and mine is kept.
    own = load("wa_image.json", PHONE_NUMBER_ID=mine["external_id"])
    payload = {"object": "whatsapp_business_account", "entry": own["entry"] + forged["entry"]}
    resp = channels.post_meta("meta", payload, secret=mine["credentials"]["app_secret"])
    channels.settle()
    assert resp.json == {"stored": 1, "duplicates": 0, "dropped": 1}
    assert other_channels.messages() == []
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.IMAGE1"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"object": "whatsapp_business_account", "entry": "nope"}', 400),
        (b'{"object": "page", "entry": []}', 400),  # Messenger payload on the WhatsApp route
        # Parsed before any signature can be checked: a stack overflow was anyone's 500.
        (b'{"object": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    ],
)
def test_malformed_bodies_are_400_and_store_nothing(channels, body, status):
    before = _count_inbound()
    resp = channels.post_meta("meta", body, secret="x")
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["code"] == "bad_request"
    assert _count_inbound() == before


def test_verification_handshake_with_an_accounts_verify_token(channels):
    channels.account("messenger", credentials={"verify_token": "my-page-token"})
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": "my-page-token",
    }
    for route in ("meta", "messenger", "instagram"):
        resp = channels.client.simulate_get(f"/api/webhooks/{route}", params=params)
        assert resp.status_code == 200
        assert resp.text == "1158201444"
        assert resp.headers["content-type"].startswith("text/plain")
    wrong = params | {"hub.verify_token": "not-my-token"}
    resp = channels.client.simulate_get("/api/webhooks/meta", params=wrong)
    assert resp.status_code == 403
    resp = channels.client.simulate_get(
        "/api/webhooks/meta", params=params | {"hub.mode": "unsubscribe"}
    )
    assert resp.status_code == 403


def test_verification_handshake_with_the_platform_token(client, platform_secret):
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "abc",
        "hub.verify_token": "platform-verify-token",
    }
    resp = client.simulate_get("/api/webhooks/instagram", params=params)
    assert (resp.status_code, resp.text) == (200, "abc")


def test_the_sweeper_reenqueues_a_payload_whose_job_was_lost(channels):
    from sqlalchemy import update

    from scheduler import jobs
    from shared.channels import inbound_queue

    account = channels.account("whatsapp")
    saved = inbound_queue.QUEUE.enqueuer
    inbound_queue.set_enqueuer(None)  # the process died between commit and enqueue
    try:
        channels.whatsapp(account, "wa_text.json")
    finally:
        inbound_queue.set_enqueuer(saved)
    channels.settle()
    (row,) = channels.inbound_events()
    assert row.status == "pending"
    with session_scope() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == row.id)
            .values(sweep_at=func.now() - func.make_interval(0, 0, 0, 0, 1))
        )
    with session_scope() as session:
        assert jobs.sweep_inbound_events(session) >= 1
    channels.settle()
    (row,) = channels.inbound_events()
    assert row.status == "processed"
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]


def test_a_rotated_app_secret_is_accepted_at_once_despite_the_cache(channels):
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")  # caches the account and its old secret
    resp = channels.ws.call(
        "PATCH",
        f"/api/integration-accounts/{account['id']}",
        json={"credentials": {"app_secret": "rotated-secret"}},
    )
    assert resp.status_code == 200
    payload = load("wa_image.json", PHONE_NUMBER_ID=account["external_id"])
    assert channels.post_meta("meta", payload, secret="rotated-secret").status_code == 200
    old = load("wa_video.json", PHONE_NUMBER_ID=account["external_id"])
    assert (
        channels.post_meta("meta", old, secret=account["credentials"]["app_secret"]).status_code
        == 401
    )
    channels.settle()
    assert len(channels.messages()) == 2


def test_a_payload_for_an_account_deleted_meanwhile_is_dropped_not_processed(channels):
    account = channels.account("whatsapp")
    channels.whatsapp(account, "wa_text.json")
    channels.settle()
    assert (
        channels.ws.call("DELETE", f"/api/integration-accounts/{account['id']}").status_code == 204
    )
    # Still resolved from the cache for a few seconds: stored, then dropped by processing.
    resp = channels.whatsapp(account, "wa_image.json")
    channels.settle()
    assert resp.status_code == 200
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]
    statuses = sorted(r.status for r in channels.inbound_events())
    assert statuses in (["processed"], ["dropped", "processed"])


def test_nul_characters_are_stored_as_replacement_characters(channels):
    account = channels.account("whatsapp")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "a\x00b"
    resp = channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    assert channels.message("wamid.TEXT1").body == "a\ufffdb"


def test_a_message_the_database_refuses_is_failed_and_visible(channels):
    """One item, no savepoint: the transaction is rolled back and the row failed anew."""
    account = channels.account("whatsapp")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    # A message id past provider_message_id's 255 characters (no provider sends one).
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = "wamid." + "9" * 300
    channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    channels.settle()
    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "DataError" in row.result["errors"][0]
    assert channels.messages() == [] and channels.contacts() == []


def test_many_waba_entries_cost_one_account_query_not_one_each(channels):
    """Accounts are resolved before the signature can be checked against their secrets, so
    an unsigned body of thousands of WABA-only entries (no phone number id) ran one
    account query per entry: unbounded database work for anyone who can POST."""
    account = channels.account("whatsapp")
    entries = [
        {"id": numeric_id(), "changes": [{"field": "message_template_status_update"}]}
        for _ in range(2000)
    ]
    entries.append(load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])["entry"][0])
    body = json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        if "integration_accounts" in statement:
            statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        resp = channels.post_meta("meta", body, secret=None, signature="sha256=" + "0" * 64)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert resp.status_code == 401, resp.text
    assert len(statements) <= 4, len(statements)


@pytest.mark.parametrize("repeated", ["hub.verify_token", "hub.challenge", "hub.mode"])
def test_a_handshake_with_a_repeated_parameter_is_403_not_500(channels, repeated):
    """Anyone may call the handshake; a parameter given twice arrives as a list."""
    channels.account("messenger", credentials={"verify_token": "my-page-token"})
    params = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": "my-page-token",
    }
    query = "&".join(f"{k}={v}" for k, v in params.items()) + f"&{repeated}=again"

    resp = channels.client.simulate_get("/api/webhooks/meta", query_string=query)

    assert resp.status_code == 403, resp.text
    assert resp.json["error"]["code"] == "forbidden"
