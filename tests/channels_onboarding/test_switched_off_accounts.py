"""Meta reads and writes through a disabled account, or one of a switched-off channel.

The persistent menu is refused with 409 (``account_disabled`` / ``channel_disabled``)
naming the account, before Meta is called, for the account named and for the default
(never another account instead). The reads that exist to repair or remove an account
still work: WhatsApp health (why is this number failing?) and Messenger disconnect.
"""

from __future__ import annotations

from tests.channels_onboarding.conftest import assert_error, connected_page, signup

MENU = "/api/integrations/messenger/persistent-menu"
HEALTH = "/api/integrations/whatsapp/health"
DISCONNECT = "/api/integrations/messenger/disconnect"
A_MENU = [
    {
        "locale": "default",
        "call_to_actions": [{"type": "postback", "title": "Agent", "payload": "AGENT"}],
    }
]


def _set_status(workspace, account_id: str, status: str) -> None:
    resp = workspace.call(
        "PATCH", f"/api/integration-accounts/{account_id}", json={"status": status}
    )
    assert resp.status_code == 200, resp.text


def _switch(workspace, channel: str, enabled: bool) -> None:
    resp = workspace.call("PUT", f"/api/integrations/{channel}", json={"enabled": enabled})
    assert resp.status_code == 200, resp.text


def _menu_calls(graph) -> list:
    return [r for r in graph.requests if "messenger_profile" in r.path]


def test_the_menu_of_a_disabled_page_named_or_default_is_409_naming_it(workspace, meta_settings):
    graph = meta_settings
    default, _ = connected_page(workspace, graph, "Acme Store")
    other, other_page = connected_page(workspace, graph, "Acme Outlet")
    _set_status(workspace, default["id"], "disabled")

    for call in (
        ("GET", MENU, None),
        ("GET", f"{MENU}?integration_account_id={default['id']}", None),
        ("POST", MENU, {"menu": A_MENU}),
        ("POST", MENU, {"integration_account_id": default["id"], "menu": None}),
    ):
        method, path, body = call
        error = assert_error(workspace.call(method, path, json=body), 409, "account_disabled")
        assert default["id"] in error["message"], error
        assert error["details"] == [{"integration_account_id": default["id"]}]
    assert _menu_calls(graph) == []

    # The other Page, named, is not held back; the disabled default is never swapped for it
    # above, and works again once enabled.
    resp = workspace.call("GET", f"{MENU}?integration_account_id={other['id']}")
    assert resp.status_code == 200, resp.text
    assert all(r.token == other_page.token for r in _menu_calls(graph))
    _set_status(workspace, default["id"], "active")
    resp = workspace.call("GET", MENU)
    assert resp.status_code == 200, resp.text
    assert resp.json["integration_account_id"] == default["id"]


def test_the_menu_of_a_switched_off_channel_is_409_channel_disabled(workspace, meta_settings):
    graph = meta_settings
    account, _ = connected_page(workspace, graph)
    _switch(workspace, "messenger", False)
    error = assert_error(workspace.call("GET", MENU), 409, "channel_disabled")
    assert "switched off" in error["message"] and account["id"] in error["message"]
    assert_error(workspace.call("POST", MENU, json={"menu": A_MENU}), 409, "channel_disabled")
    assert _menu_calls(graph) == []
    _switch(workspace, "messenger", True)
    assert workspace.call("GET", MENU).status_code == 200


def test_health_still_reads_a_disabled_account_or_switched_off_channel(workspace, meta_settings):
    """Health is how an admin sees why a number broke before enabling it again."""
    graph = meta_settings
    resp, _, (number,) = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    account = resp.json
    _set_status(workspace, account["id"], "disabled")
    resp = workspace.call("GET", HEALTH)
    assert resp.status_code == 200, resp.text
    assert resp.json["integration_account_id"] == account["id"]
    _set_status(workspace, account["id"], "active")
    _switch(workspace, "whatsapp", False)
    resp = workspace.call("GET", f"{HEALTH}?integration_account_id={account['id']}")
    assert resp.status_code == 200, resp.text
    assert len(graph.gets(f"/v21.0/{number.id}")) == 2


def test_a_disabled_page_can_still_be_disconnected(workspace, meta_settings):
    graph = meta_settings
    account, page = connected_page(workspace, graph)
    _set_status(workspace, account["id"], "disabled")
    _switch(workspace, "messenger", False)
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": account["id"]})
    assert resp.status_code == 204, resp.text
    assert page.id not in graph.meta.subscriptions
    assert workspace.call("GET", f"/api/integration-accounts/{account['id']}").status_code == 404
