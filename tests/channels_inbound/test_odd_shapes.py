"""Signed Meta callbacks whose inner fields have another shape: a 200 and a row that says
what failed, at once; never a 500, and never a job retried to a dead letter."""

from __future__ import annotations

import copy
import itertools
import json
import string

import pytest

from shared.channels import ingest
from shared.channels.signatures import email_signature
from tests.channels_inbound.conftest import load
from tests.channels_inbound.test_statuses_and_messaging import _sent_reply


def _wa(channels, account, mutate) -> dict:
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    mutate(payload["entry"][0])
    return payload


def _value(entry: dict) -> dict:
    return entry["changes"][0]["value"]


def _deliver(channels, account, payload, route: str = "meta") -> None:
    """Post the callback signed with the account's app secret; return once it is processed."""
    channels.post_meta(route, payload, secret=account["credentials"]["app_secret"])
    channels.settle()


@pytest.mark.parametrize(
    "mutate, stored",
    [
        pytest.param(lambda e: e.__setitem__("changes", 5), [], id="changes-a-number"),
        pytest.param(lambda e: e.__setitem__("changes", {"field": "x"}), [], id="changes-obj"),
        pytest.param(lambda e: _value(e).__setitem__("messages", 5), [], id="messages-a-number"),
        pytest.param(
            lambda e: _value(e).__setitem__("statuses", "read"),
            ["wamid.TEXT1"],
            id="statuses-a-string",
        ),
    ],
)
def test_lists_of_another_shape_answer_200(channels, mutate, stored):
    account = channels.account("whatsapp")
    payload = _wa(channels, account, mutate)
    resp = channels.post_meta("meta", payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    assert [m.provider_message_id for m in channels.messages()] == stored
    assert all(row.status in ("failed", "processed") for row in channels.inbound_events())


def test_a_messenger_messaging_that_is_not_a_list_answers_200(channels):
    account = channels.account("messenger")
    payload = load("messenger_text.json", PAGE_ID=account["external_id"])
    payload["entry"][0]["messaging"] = 7
    resp = channels.post_meta("messenger", payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    assert channels.messages() == []


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("text", {"body": {"nested": True}}, "ProgrammingError"),  # a body that is an object
        ("id", "wamid." + "w" * 300, "DataError"),  # past provider_message_id
    ],
)
def test_a_message_the_database_cannot_take_fails_once_not_retried(channels, field, value, error):
    account = channels.account("whatsapp")
    payload = _wa(channels, account, lambda e: _value(e)["messages"][0].__setitem__(field, value))
    _deliver(channels, account, payload)
    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("failed", 1)
    assert error in row.result["errors"][0]
    assert "INSERT INTO" not in row.result["errors"][0]  # the reason, not the statement
    assert channels.messages() == [] and channels.contacts() == []


def test_the_sibling_of_a_message_the_database_cannot_take_is_stored(channels):
    account = channels.account("whatsapp")

    def two(entry: dict) -> None:
        good = _value(entry)["messages"][0]
        bad = copy.deepcopy(good) | {"id": "wamid.BADBODY", "text": {"body": ["a", "list"]}}
        _value(entry)["messages"] = [bad, good | {"id": "wamid.SIBLING"}]

    payload = _wa(channels, account, two)
    _deliver(channels, account, payload)
    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.result["counts"] == {"failed": 1, "message_created": 1}
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.SIBLING"]


@pytest.mark.parametrize(
    "contacts",
    [
        pytest.param(7, id="a-number"),
        pytest.param([{"wa_id": "16315551181", "profile": "Kerry"}], id="profile-a-string"),
        pytest.param([{"wa_id": "16315551181", "profile": {"name": ["K"]}}], id="name-a-list"),
    ],
)
def test_contacts_of_another_shape_leave_the_message_without_a_name(channels, contacts):
    account = channels.account("whatsapp")
    payload = _wa(channels, account, lambda e: _value(e).__setitem__("contacts", contacts))
    _deliver(channels, account, payload)
    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]
    assert [c.name for c in channels.contacts()] == [None]


def test_statuses_that_are_a_number_leave_the_messages_beside_them_stored(channels):
    account = channels.account("whatsapp")
    payload = _wa(channels, account, lambda e: _value(e).__setitem__("statuses", 5))
    _deliver(channels, account, payload)
    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error
    assert [m.provider_message_id for m in channels.messages()] == ["wamid.TEXT1"]


@pytest.mark.parametrize(
    "errors, code, message",
    [
        pytest.param(5, None, None, id="errors-a-number"),
        pytest.param({"code": 131047}, None, None, id="errors-an-object"),
        pytest.param(
            [{"code": 131047, "title": "Re-engagement message", "error_data": "late"}],
            "131047",
            "Re-engagement message",
            id="error-data-a-string",
        ),
        pytest.param(
            [{"code": "E" * 300, "title": "Odd"}], "E" * 64, "Odd", id="a-code-past-64-chars"
        ),
    ],
)
def test_a_failed_status_with_errors_of_another_shape_still_fails_the_message(
    channels, errors, code, message
):
    account = channels.account("whatsapp")
    _sent_reply(channels, account, "wamid.OUT9")
    payload = load(
        "wa_status_failed.json", PHONE_NUMBER_ID=account["external_id"], WAMID_OUTBOUND="wamid.OUT9"
    )
    _value(payload["entry"][0])["statuses"][0]["errors"] = errors
    _deliver(channels, account, payload)
    sent = channels.message("wamid.OUT9")
    assert (sent.status, sent.error_code, sent.error_message) == ("failed", code, message)


@pytest.mark.parametrize(
    "attachments",
    [5, {"type": "image"}, [{"type": "image", "payload": {"url": {"href": "x"}}}]],
    ids=["a-number", "an-object", "a-url-of-another-shape"],
)
def test_messenger_attachments_of_another_shape_store_the_message_without_them(
    channels, attachments
):
    account = channels.account("messenger")
    payload = load("messenger_attachment.json", PAGE_ID=account["external_id"])
    payload["entry"][0]["messaging"][0]["message"]["attachments"] = attachments
    payload["entry"][0]["messaging"][0]["message"]["text"] = "see attached"
    _deliver(channels, account, payload, route="messenger")
    (stored,) = channels.messages()
    assert (stored.provider_message_id, stored.body, stored.attachments) == (
        "m_MESSENGER_IMG1",
        "see attached",
        [],
    )


def test_a_messenger_delivery_whose_mids_are_a_number_is_kept_as_unsupported(channels):
    """As any messaging event it cannot read, not a failed change."""
    account = channels.account("messenger")
    payload = load("messenger_text.json", PAGE_ID=account["external_id"])
    event = payload["entry"][0]["messaging"][0]
    del event["message"]
    event["delivery"] = {"mids": 5}
    _deliver(channels, account, payload, route="messenger")
    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error
    assert [m.content_type for m in channels.messages()] == ["unsupported"]


@pytest.mark.parametrize(
    "kind, content, body",
    [
        pytest.param("text", ["hello"], None, id="text-a-list"),
        pytest.param("location", [1, 2], None, id="location-a-list"),
        pytest.param("contacts", {"name": "Kerry"}, None, id="contacts-an-object"),
        pytest.param(
            "contacts",
            [
                {"name": "Kerry"},
                {"name": {"formatted_name": 7}},
                {"name": {"formatted_name": "Al"}},
            ],
            "Al",
            id="contact-names-of-another-shape",
        ),
    ],
)
def test_a_message_whose_content_has_another_shape_is_kept_beside_its_sibling(
    channels, kind, content, body
):
    account = channels.account("whatsapp")

    def two(entry: dict) -> None:
        good = _value(entry)["messages"][0]
        odd = {k: v for k, v in good.items() if k not in ("type", "text")}
        odd |= {"id": "wamid.ODD", "type": kind, kind: content}
        _value(entry)["messages"] = [odd, good]

    payload = _wa(channels, account, two)
    _deliver(channels, account, payload)
    (row,) = channels.inbound_events()
    assert row.status == "processed", row.error
    stored = {m.provider_message_id: m for m in channels.messages()}
    assert set(stored) == {"wamid.ODD", "wamid.TEXT1"}
    odd = stored["wamid.ODD"]
    assert odd.body == body
    assert odd.content_type == ("contacts" if body else "unsupported")


def test_a_whatsapp_text_too_big_to_index_is_stored_cut_not_retried_to_failure(channels):
    """A tenant signs its own callbacks with its app secret, so a body is as long as it
    likes: some 700 KB of distinct words failed the insert as a program limit (the search
    vector's 1 MB), retried as if the database were down. Every channel's body is cut."""
    account = channels.account("whatsapp")
    words = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=4))
    text = " ".join(itertools.islice(words, 140_000))
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    _value(payload["entry"][0])["messages"][0]["text"]["body"] = text
    _deliver(channels, account, payload)
    (stored,) = channels.messages()
    assert len(stored.body) == ingest.MAX_BODY_CHARS and text.startswith(stored.body)
    assert stored.metadata_["body_truncated"] is True
    (event,) = channels.inbound_events(account)
    assert event.status == "processed"


def test_a_message_past_a_database_program_limit_fails_once_not_retried(channels):
    """An attachment URL too long for its index (a tenant-signed Messenger callback) is a
    program limit, an OperationalError like a database outage: it was retried until the
    dead letter. The payload's own data fails its item once, visibly."""
    account = channels.account("messenger")
    payload = load("messenger_attachment.json", PAGE_ID=account["external_id"])
    attachment = payload["entry"][0]["messaging"][0]["message"]["attachments"][0]
    attachment["payload"]["url"] = "https://scontent.xx.fbcdn.net/v/" + "".join(
        f"{n:08x}" for n in range(1_000)
    )
    _deliver(channels, account, payload, route="messenger")
    (row,) = channels.inbound_events()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "index row size" in row.result["errors"][0]


@pytest.mark.parametrize("obj", [["page"], {"object": "page"}], ids=["a-list", "an-object"])
@pytest.mark.parametrize("route", ["meta", "messenger", "instagram"])
def test_an_object_field_of_another_shape_is_400_not_500(channels, route, obj):
    account = channels.account("whatsapp")
    payload = {"object": obj, "entry": []}
    resp = channels.post_meta(route, payload, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 400, resp.text
    assert resp.json["error"]["code"] == "bad_request"
    assert channels.inbound_events() == []


def test_a_lone_surrogate_escape_is_stored_as_a_replacement_character(channels):
    """``\\ud83d`` alone (a text cut mid-emoji) is JSON Python reads, but no UTF-8 can carry
    it: the stored copy gets U+FFFD, as for NUL, and the message is kept."""
    account = channels.account("whatsapp")
    payload = load("wa_text.json", PHONE_NUMBER_ID=account["external_id"])
    _value(payload["entry"][0])["messages"][0]["text"]["body"] = "cut \ud83d|ok \U0001f600"
    raw = json.dumps(payload).encode()  # ASCII: the surrogate travels as an escape
    assert b"\\ud83d|" in raw
    resp = channels.post_meta("meta", raw, secret=account["credentials"]["app_secret"])
    assert resp.status_code == 200, resp.text
    channels.settle()
    (message,) = channels.messages()
    assert message.body == "cut \ufffd|ok \U0001f600"


def test_a_lone_surrogate_in_an_email_recipient_is_not_a_500(channels):
    account = channels.account("email")
    raw = json.dumps({"recipient": "\udc00" + account["external_id"], "mime": ""}).encode()
    signature = email_signature(account["credentials"]["inbound_signing_key"], raw)
    resp = channels.client.simulate_post(
        "/api/webhooks/email",
        body=raw,
        headers={"Content-Type": "application/json", "X-Inbound-Signature": signature},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json == {"stored": 0, "duplicates": 0, "dropped": 1}
