"""Contact corrections at the edges of their fields: what is stored is what the rules say."""

from __future__ import annotations

import uuid

from shared.db import session_scope
from shared.models import Contact


def _contact(ws, **fields) -> str:
    """Insert a WhatsApp contact of ``ws`` (contacts are created by inbound messages only)."""
    with session_scope() as session:
        contact = Contact(
            tenant_id=uuid.UUID(ws.tenant["id"]),
            channel="whatsapp",
            external_id=uuid.uuid4().hex,
            **fields,
        )
        session.add(contact)
        session.flush()
        return str(contact.id)


def test_a_phone_with_digits_of_another_script_is_refused(workspace):
    """``\\d`` matched Arabic-Indic, full-width and Bengali digits: such a number was stored
    as typed, one no search, send or partner system reads as +1415..."""
    path = f"/api/contacts/{_contact(workspace, phone='+14155550123')}"
    for phone in (
        "+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663",
        "+1\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
        "+1415555\u09e6\u09e7\u09e8\u09e9",
    ):
        resp = workspace.call("PATCH", path, json={"phone": phone})
        assert resp.status_code == 422, (phone, resp.text)
        assert [d["field"] for d in resp.json["error"]["details"]] == ["phone"]
    assert workspace.call("GET", path).json["phone"] == "+14155550123"


def test_a_language_region_with_digits_of_another_script_is_refused(workspace):
    """A UN M.49 region is three ASCII digits ("es-419"); ``\\d`` also took "es-" and three
    Arabic-Indic digits, stored as a tag no client or translation service recognises."""
    path = f"/api/contacts/{_contact(workspace, language='es-419')}"
    resp = workspace.call("PATCH", path, json={"language": "es-\u0664\u0661\u0669"})
    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == ["language"]
    assert workspace.call("GET", path).json["language"] == "es-419"


def test_custom_attributes_replace_values_python_calls_equal(workspace):
    """``True == 1`` and ``1 == 1.0`` in Python: sending ``{"active": true}`` over
    ``{"active": 1}`` was taken for no change, answered 200 and kept 1 (no event either)."""
    path = f"/api/contacts/{_contact(workspace, custom_attributes={'active': 1, 'seats': 2.0})}"
    sent = {"active": True, "seats": 2}
    resp = workspace.call("PATCH", path, json={"custom_attributes": sent})
    assert resp.status_code == 200, resp.text
    for shown in (resp.json, workspace.call("GET", path).json):
        assert shown["custom_attributes"]["active"] is True
        assert type(shown["custom_attributes"]["seats"]) is int


def test_custom_attributes_size_counts_the_bytes_of_their_json(workspace):
    """The 16 KiB bound is on the JSON's bytes (UTF-8, as stored and sent): measured on
    ``json.dumps``'s ASCII escapes, a Cyrillic letter took 6 bytes and an emoji 12, so three
    1,000-letter Russian values (6 KB) were refused as over 16 KB."""
    path = f"/api/contacts/{_contact(workspace)}"
    sent = {f"note{i}": "д" * 1000 for i in range(3)} | {"mood": "🙂" * 1000}
    resp = workspace.call("PATCH", path, json={"custom_attributes": sent})
    assert resp.status_code == 200, resp.text
    assert workspace.call("GET", path).json["custom_attributes"] == sent
    # Past the bound as UTF-8 (9 values of 2,000 bytes each): still refused.
    over = {f"note{i}": "д" * 1000 for i in range(9)}
    resp = workspace.call("PATCH", path, json={"custom_attributes": over})
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "custom_attributes"
