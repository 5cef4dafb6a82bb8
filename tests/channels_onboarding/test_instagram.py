"""Instagram connect: code -> long-lived token -> the linked account's Page subscribed."""

from __future__ import annotations

from tests.channels_onboarding.conftest import assert_error, credentials_of, events, login_state

CONNECT = "/api/integrations/instagram/connect"


def test_connect_creates_the_account_with_the_long_lived_page_token(workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme Store", instagram_username="acme.store")
    graph.meta.add_page("Unlinked Page")
    code = graph.meta.grant(pages=[page.id])
    resp = workspace.call("POST", CONNECT, json={"code": code})
    assert resp.status_code == 201, resp.text
    account = resp.json
    assert account["channel"] == "instagram"
    assert account["external_id"] == page.instagram["id"]
    assert account["name"] == "@acme.store"
    assert account["settings"]["page_id"] == page.id
    assert credentials_of(account["id"])["access_token"] == page.token
    assert page.token not in resp.text
    # The user token was exchanged for a long-lived one before the Pages were read.
    exchanges = [r for r in graph.requests if r.path.endswith("/oauth/access_token")]
    assert len(exchanges) == 2
    assert b"fb_exchange_token" in exchanges[1].body
    (listing,) = graph.gets("/v21.0/me/accounts")
    assert listing.token.startswith("EAALong")
    assert "messages" in graph.meta.subscriptions[page.id].split(",")
    assert [e["id"] for e in events(workspace, "integration_account.connected")] == [account["id"]]


def test_several_linked_accounts_need_a_choice(workspace, meta_settings):
    graph = meta_settings
    first = graph.meta.add_page("One", instagram_username="one")
    second = graph.meta.add_page("Two", instagram_username="two")
    code = graph.meta.grant(pages=[first.id, second.id])
    error = assert_error(
        workspace.call("POST", CONNECT, json={"code": code}), 422, "validation_error"
    )
    assert error["details"][0]["field"] == "instagram_account_id"
    assert "@one" in error["message"] and "@two" in error["message"]
    code = graph.meta.grant(pages=[first.id, second.id])
    body = {"code": code, "instagram_account_id": second.instagram["id"], "name": "Second"}
    resp = workspace.call("POST", CONNECT, json=body)
    assert resp.status_code == 201, resp.text
    assert (resp.json["external_id"], resp.json["name"]) == (second.instagram["id"], "Second")
    assert first.id not in graph.meta.subscriptions


def test_no_linked_account_answers_422(workspace, meta_settings):
    page = meta_settings.meta.add_page("Plain Page")
    code = meta_settings.meta.grant(pages=[page.id])
    error = assert_error(
        workspace.call("POST", CONNECT, json={"code": code}), 422, "validation_error"
    )
    assert "Instagram professional account" in error["message"]


def test_the_redirect_uri_is_passed_to_meta_as_sent(workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme", instagram_username="acme")
    redirect = "https://inbox.example.com/oauth/instagram?x=1"
    code = graph.meta.grant(pages=[page.id], redirect_uri=redirect)
    without = workspace.call("POST", CONNECT, json={"code": code})
    assert_error(without, 422, "invalid_oauth_code")
    body = {"code": code, "redirect_uri": redirect, "state": login_state(workspace, "instagram")}
    resp = workspace.call("POST", CONNECT, json=body)
    assert resp.status_code == 201, resp.text


def test_the_long_lived_exchange_failing_answers_502(workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme", instagram_username="acme")
    code = graph.meta.grant(pages=[page.id])
    graph.meta.script("oauth", "ok", "503")
    error = assert_error(
        workspace.call("POST", CONNECT, json={"code": code}), 502, "meta_api_error"
    )
    assert "long-lived" in error["message"]
    assert workspace.call("GET", "/api/integration-accounts?channel=instagram").json["items"] == []


def test_connecting_again_refreshes_the_token(workspace, other_workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme", instagram_username="acme")
    first = workspace.call("POST", CONNECT, json={"code": graph.meta.grant(pages=[page.id])})
    assert first.status_code == 201, first.text
    page.token = "EAAPage-rotated-token"
    again = workspace.call("POST", CONNECT, json={"code": graph.meta.grant(pages=[page.id])})
    assert again.status_code == 200, again.text
    assert again.json["id"] == first.json["id"]
    assert credentials_of(first.json["id"])["access_token"] == "EAAPage-rotated-token"
    code = graph.meta.grant(pages=[page.id])
    assert_error(other_workspace.call("POST", CONNECT, json={"code": code}), 409, "conflict")


def test_an_instagram_id_that_is_no_graph_id_is_metas_failure(workspace, meta_settings):
    """A linked account whose id is no Graph id got its Page subscribed, then a 422 on
    ``external_id`` (a field the caller never sent); it is a 502 before any write at Meta."""
    graph = meta_settings
    page = graph.meta.add_page("Acme Store", instagram_username="acme.store")
    code = graph.meta.grant(pages=[page.id])
    item = {
        "id": page.id,
        "name": page.name,
        "access_token": page.token,
        "instagram_business_account": {"id": ["1"], "username": "acme.store"},
    }
    graph.meta.script("accounts", ("raw", 200, {"data": [item]}))
    resp = workspace.call("POST", CONNECT, json={"code": code})
    assert_error(resp, 502, "meta_api_error")
    assert page.id not in graph.meta.subscriptions


def test_connecting_again_with_is_default_makes_it_the_default(workspace, meta_settings):
    """WHY: ``is_default`` was honoured on create and silently dropped on a reconnect."""
    graph = meta_settings
    first_page = graph.meta.add_page("Acme", instagram_username="acme")
    page = graph.meta.add_page("Acme Two", instagram_username="acme2")
    first = workspace.call("POST", CONNECT, json={"code": graph.meta.grant(pages=[first_page.id])})
    second = workspace.call("POST", CONNECT, json={"code": graph.meta.grant(pages=[page.id])})
    assert (first.json["is_default"], second.json["is_default"]) == (True, False)

    code = graph.meta.grant(pages=[page.id])
    again = workspace.call("POST", CONNECT, json={"code": code, "is_default": True})

    assert again.status_code == 200, again.text
    assert (again.json["id"], again.json["is_default"]) == (second.json["id"], True)
    before = workspace.call("GET", f"/api/integration-accounts/{first.json['id']}").json
    assert before["is_default"] is False
