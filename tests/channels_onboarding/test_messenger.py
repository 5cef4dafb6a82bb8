"""Messenger: Facebook Login, Page subscriptions (one account each), disconnect."""

from __future__ import annotations

import uuid

from tests.channels_onboarding.conftest import (
    assert_error,
    connected_page,
    credentials_of,
    events,
    login_state,
)

CONNECT = "/api/integrations/messenger/connect"
SUBSCRIBE = "/api/integrations/messenger/subscribe-pages"
DISCONNECT = "/api/integrations/messenger/disconnect"


def _login(workspace, graph, pages):
    code = graph.meta.grant(pages=[p.id for p in pages])
    body = {"code": code, "state": login_state(workspace, "messenger")}
    resp = workspace.call("POST", CONNECT, json=body)
    assert resp.status_code == 200, resp.text
    return resp


def test_connect_keeps_the_user_token_and_lists_pages_without_tokens(workspace, meta_settings):
    graph = meta_settings
    pages = [graph.meta.add_page(f"Page {n}") for n in range(3)]
    resp = _login(workspace, graph, pages)
    body = resp.json
    assert body["user"]["name"] == "Grace Admin"
    assert body["token_expires_at"] is not None
    assert [p["id"] for p in body["pages"]] == [p.id for p in pages]
    assert all(p["integration_account_id"] is None for p in body["pages"])
    assert not any(p.token in resp.text for p in pages)
    integration = workspace.call("GET", "/api/integrations/messenger").json
    assert integration["credential_keys"] == ["user_access_token"]
    assert integration["settings"]["facebook_user"]["name"] == "Grace Admin"
    assert not any(token in str(integration) for token in graph.meta.tokens)
    assert events(workspace, "integration_account.connected") == []


def test_pages_are_read_past_the_first_batch(workspace, meta_settings):
    graph = meta_settings
    pages = [graph.meta.add_page(f"Page {n}") for n in range(130)]
    body = _login(workspace, graph, pages).json
    assert len(body["pages"]) == 130
    assert len(graph.gets("/v21.0/me/accounts")) == 2


def test_subscribe_pages_creates_one_account_per_page(workspace, meta_settings):
    graph = meta_settings
    pages = [graph.meta.add_page(f"Page {n}") for n in range(3)]
    _login(workspace, graph, pages)
    chosen = [pages[0].id, pages[2].id]
    resp = workspace.call("POST", SUBSCRIBE, json={"page_ids": chosen})
    assert resp.status_code == 200, resp.text
    made = resp.json["accounts"]
    assert [a["external_id"] for a in made] == chosen
    assert [a["name"] for a in made] == ["Page 0", "Page 2"]
    assert [a["is_default"] for a in made] == [True, False]
    for account, page_id in zip(made, chosen, strict=True):
        assert credentials_of(account["id"])["access_token"] == graph.meta.page_token_of(page_id)
    assert set(graph.meta.subscriptions) == set(chosen)
    assert sorted(e["id"] for e in events(workspace, "integration_account.connected")) == sorted(
        a["id"] for a in made
    )
    # Listing again shows them connected; subscribing again refreshes, announces nothing.
    listed = _login(workspace, graph, pages).json["pages"]
    assert [p["integration_account_id"] for p in listed] == [made[0]["id"], None, made[1]["id"]]
    again = workspace.call("POST", SUBSCRIBE, json={"page_ids": [pages[0].id]})
    assert again.status_code == 200, again.text
    assert again.json["accounts"][0]["id"] == made[0]["id"]
    assert len(events(workspace, "integration_account.connected")) == 2


def test_subscribe_before_connect_is_409(workspace, meta_settings):
    resp = workspace.call("POST", SUBSCRIBE, json={"page_ids": ["123"]})
    assert_error(resp, 409, "messenger_not_connected")


def test_a_page_the_user_does_not_manage_is_422_and_nothing_is_subscribed(workspace, meta_settings):
    graph = meta_settings
    mine = graph.meta.add_page("Mine")
    theirs = graph.meta.add_page("Theirs")
    _login(workspace, graph, [mine])
    resp = workspace.call("POST", SUBSCRIBE, json={"page_ids": [mine.id, theirs.id]})
    error = assert_error(resp, 422, "validation_error")
    assert error["details"][0]["field"] == "page_ids[1]"
    assert graph.meta.subscriptions == {}


def test_a_page_another_tenant_connected_is_409(workspace, other_workspace, meta_settings):
    graph = meta_settings
    _account, page = connected_page(workspace, graph)
    _login(other_workspace, graph, [page])
    resp = other_workspace.call("POST", SUBSCRIBE, json={"page_ids": [page.id]})
    assert_error(resp, 409, "conflict")
    assert other_workspace.call("GET", "/api/integration-accounts").json["items"] == []


def test_an_expired_user_token_answers_409_asking_to_log_in_again(workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme")
    _login(workspace, graph, [page])
    for token in list(graph.meta.tokens):
        graph.meta.expire(token)
    error = assert_error(
        workspace.call("POST", SUBSCRIBE, json={"page_ids": [page.id]}), 409, "meta_token_invalid"
    )
    assert "messenger/connect again" in error["message"]


def test_disconnect_unsubscribes_at_meta_then_deletes(workspace, meta_settings):
    graph = meta_settings
    account, page = connected_page(workspace, graph)
    assert page.id in graph.meta.subscriptions
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": account["id"]})
    assert resp.status_code == 204, resp.text
    assert page.id not in graph.meta.subscriptions
    (delete,) = [r for r in graph.requests if r.method == "DELETE"]
    assert delete.path.endswith(f"/{page.id}/subscribed_apps") and delete.token == page.token
    assert workspace.call("GET", f"/api/integration-accounts/{account['id']}").status_code == 404
    (gone,) = events(workspace, "integration_account.disconnected")
    assert gone["id"] == account["id"]


def test_disconnect_keeps_the_page_subscribed_for_its_instagram_account(
    workspace, other_workspace, meta_settings
):
    graph = meta_settings
    page = graph.meta.add_page("Acme Store", instagram_username="acme.store")
    # Another workspace receives the Page's Instagram messages through its subscription.
    code = graph.meta.grant(pages=[page.id])
    resp = other_workspace.call("POST", "/api/integrations/instagram/connect", json={"code": code})
    assert resp.status_code == 201, resp.text
    instagram = resp.json
    _login(workspace, graph, [page])
    resp = workspace.call("POST", SUBSCRIBE, json={"page_ids": [page.id]})
    assert resp.status_code == 200, resp.text
    [messenger] = resp.json["accounts"]

    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": messenger["id"]})
    assert resp.status_code == 204, resp.text
    assert workspace.call("GET", f"/api/integration-accounts/{messenger['id']}").status_code == 404
    assert [r for r in graph.requests if r.method == "DELETE"] == []
    assert page.id in graph.meta.subscriptions
    got = other_workspace.call("GET", f"/api/integration-accounts/{instagram['id']}")
    assert got.status_code == 200 and got.json["status"] == "active"


def test_meta_refusing_the_unsubscription_keeps_the_account(workspace, meta_settings):
    graph = meta_settings
    account, _page = connected_page(workspace, graph)
    graph.meta.script("subscribed_apps", "503")
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": account["id"]})
    assert_error(resp, 502, "meta_api_error")
    assert workspace.call("GET", f"/api/integration-accounts/{account['id']}").status_code == 200
    assert events(workspace, "integration_account.disconnected") == []


def test_disconnect_with_an_expired_page_token_marks_the_account(workspace, meta_settings):
    graph = meta_settings
    account, page = connected_page(workspace, graph)
    graph.meta.expire(page.token)
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": account["id"]})
    error = assert_error(resp, 409, "meta_token_invalid")
    assert f"DELETE /api/integration-accounts/{account['id']}" in error["message"]
    again = workspace.call("GET", f"/api/integration-accounts/{account['id']}")
    assert again.json["status"] == "error"


def test_disconnect_of_another_tenants_or_channels_account_is_404(
    workspace, other_workspace, meta_settings
):
    graph = meta_settings
    account, page = connected_page(workspace, graph)
    body = {"integration_account_id": account["id"]}
    assert_error(other_workspace.call("POST", DISCONNECT, json=body), 404, "not_found")
    wa = workspace.call(
        "POST",
        "/api/integration-accounts",
        json={"channel": "whatsapp", "name": "WA", "external_id": "15550001111"},
    ).json
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": wa["id"]})
    assert_error(resp, 404, "not_found")
    resp = workspace.call("POST", DISCONNECT, json={"integration_account_id": str(uuid.uuid4())})
    assert_error(resp, 404, "not_found")
    assert page.id in graph.meta.subscriptions


def test_more_pages_than_the_bound_is_a_clear_409_not_a_silent_cut(workspace, meta_settings):
    """WHY: the listing stopped after 1,000 Pages without a word: the rest were missing
    from connect, and subscribing one of them answered 'not one of theirs'."""
    from shared.channels.onboarding.oauth import MAX_PAGES

    graph = meta_settings
    pages = [graph.meta.add_page(f"Page {n}") for n in range(MAX_PAGES + 1)]
    code = graph.meta.grant(pages=[p.id for p in pages])
    body = {"code": code, "state": login_state(workspace, "messenger")}

    resp = workspace.call("POST", CONNECT, json=body)

    error = assert_error(resp, 409, "too_many_pages")
    assert f"{MAX_PAGES:,}" in error["message"]
    assert workspace.call("GET", "/api/integrations/messenger").status_code == 404


def test_exactly_the_bound_of_pages_is_read_whole(workspace, meta_settings):
    from shared.channels.onboarding.oauth import MAX_PAGES

    graph = meta_settings
    pages = [graph.meta.add_page(f"Page {n}") for n in range(MAX_PAGES)]
    body = _login(workspace, graph, pages).json
    assert len(body["pages"]) == MAX_PAGES
