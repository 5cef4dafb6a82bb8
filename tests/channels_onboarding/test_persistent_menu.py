"""The Messenger persistent menu: set, read and delete at Meta; validation; tenancy."""

from __future__ import annotations

import uuid

import pytest

from shared.db import session_scope
from tests.channels_onboarding.conftest import assert_error, connected_page

MENU = "/api/integrations/messenger/persistent-menu"
A_MENU = [
    {
        "locale": "default",
        "composer_input_disabled": False,
        "call_to_actions": [
            {"type": "postback", "title": "Talk to an agent", "payload": "AGENT"},
            {
                "type": "web_url",
                "title": "Shop",
                "url": "https://shop.example/",
                "webview_height_ratio": "full",
            },
        ],
    },
    {
        "locale": "pt_BR",
        "call_to_actions": [{"type": "postback", "title": "Falar com agente", "payload": "AGENT"}],
    },
]


def test_set_read_and_delete_the_menu(workspace, meta_settings):
    graph = meta_settings
    account, page = connected_page(workspace, graph)
    empty = workspace.call("GET", MENU)
    assert empty.status_code == 200, empty.text
    assert empty.json == {"integration_account_id": account["id"], "menu": None}

    resp = workspace.call(
        "POST", MENU, json={"integration_account_id": account["id"], "menu": A_MENU}
    )
    assert resp.status_code == 200, resp.text
    stored = graph.meta.profiles[page.id]["persistent_menu"]
    assert stored[1] == {
        "locale": "pt_BR",
        "composer_input_disabled": False,
        "call_to_actions": [{"type": "postback", "title": "Falar com agente", "payload": "AGENT"}],
    }
    assert stored[0]["call_to_actions"][1]["url"] == "https://shop.example/"
    read = workspace.call("GET", f"{MENU}?integration_account_id={account['id']}")
    assert read.json["menu"] == stored
    assert all(r.token == page.token for r in graph.requests if "messenger_profile" in r.path)

    deleted = workspace.call("POST", MENU, json={"menu": None})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json["menu"] is None
    assert "persistent_menu" not in graph.meta.profiles[page.id]
    assert workspace.call("GET", MENU).json["menu"] is None


@pytest.mark.parametrize(
    ("menu", "field"),
    [
        ([{"locale": "pt_BR", "call_to_actions": A_MENU[1]["call_to_actions"]}], "menu"),
        (
            [{"locale": "default", "call_to_actions": [{"type": "postback", "title": "x"}]}],
            "menu[0].call_to_actions[0]",
        ),
        (
            [
                {
                    "locale": "default",
                    "call_to_actions": [{"type": "postback", "title": "x" * 31, "payload": "P"}],
                }
            ],
            "menu[0].call_to_actions[0].title",
        ),
        (
            [
                {
                    "locale": "default",
                    "call_to_actions": [
                        {"type": "web_url", "title": "x", "url": "http://plain.example"}
                    ],
                }
            ],
            "menu[0].call_to_actions[0].url",
        ),
        (
            [{"locale": "english", "call_to_actions": A_MENU[1]["call_to_actions"]}],
            "menu[0].locale",
        ),
        ([{"locale": "default", "call_to_actions": []}], "menu[0].call_to_actions"),
    ],
)
def test_a_bad_menu_is_422_and_meta_is_not_called(workspace, meta_settings, menu, field):
    connected_page(workspace, meta_settings)
    before = len(meta_settings.requests)
    error = assert_error(workspace.call("POST", MENU, json={"menu": menu}), 422, "validation_error")
    fields = [d["field"] for d in error["details"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert len(meta_settings.requests) == before


def test_the_menu_key_is_required(workspace, meta_settings):
    error = assert_error(workspace.call("POST", MENU, json={}), 422, "validation_error")
    assert error["details"] == [{"field": "menu", "message": "required"}]


def test_another_tenants_account_is_404(workspace, other_workspace, meta_settings):
    account, _ = connected_page(workspace, meta_settings)
    resp = other_workspace.call("GET", f"{MENU}?integration_account_id={account['id']}")
    assert_error(resp, 404, "not_found")
    body = {"integration_account_id": account["id"], "menu": None}
    assert_error(other_workspace.call("POST", MENU, json=body), 404, "not_found")
    assert_error(other_workspace.call("GET", MENU), 404, "not_found")


def test_an_expired_page_token_marks_the_account(workspace, meta_settings):
    account, page = connected_page(workspace, meta_settings)
    meta_settings.meta.expire(page.token)
    error = assert_error(
        workspace.call("POST", MENU, json={"menu": A_MENU}), 409, "meta_token_invalid"
    )
    assert "is now in status 'error'" in error["message"]
    assert (
        workspace.call("GET", f"/api/integration-accounts/{account['id']}").json["status"]
        == "error"
    )


def test_meta_refusing_the_menu_is_422_naming_menu(workspace, meta_settings):
    connected_page(workspace, meta_settings)
    meta_settings.meta.script("messenger_profile", "100")
    error = assert_error(workspace.call("POST", MENU, json={"menu": A_MENU}), 422, "meta_rejected")
    assert error["details"][0]["field"] == "menu"


def test_a_token_refused_after_a_reconnect_leaves_the_new_one_alone(workspace, meta_settings):
    """The refused call used the old token; the admin reconnected meanwhile: no 'error'."""
    from shared.channels.graph import SendFailed
    from shared.channels.meta_calls import mark_token_invalid
    from shared.context import Ctx
    from shared.models import IntegrationAccount

    account, _ = connected_page(workspace, meta_settings)
    with session_scope() as session:
        seen = session.get(IntegrationAccount, uuid.UUID(account["id"]))
        session.expunge(seen)
    reconnected = workspace.call(
        "PATCH",
        f"/api/integration-accounts/{account['id']}",
        json={"credentials": {"access_token": "a-new-page-token"}},
    )
    assert reconnected.status_code == 200, reconnected.text

    refused = SendFailed("190", "Error validating access token", transient=False)
    assert mark_token_invalid(Ctx.system(seen.tenant_id), seen, refused) is False
    status = workspace.call("GET", f"/api/integration-accounts/{account['id']}").json["status"]
    assert status == "active"
