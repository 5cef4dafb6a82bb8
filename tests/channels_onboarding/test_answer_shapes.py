"""An answer from Meta in a shape it does not document is a 502 naming the call, not a 500.

The readers take Meta's documented shapes (objects of objects, lists of objects); a
string or a number where one of those belongs used to raise out of the request.
"""

from __future__ import annotations

import logging

import pytest

from tests.channels_onboarding.conftest import assert_error, connected_page, signup

HEALTH = "/api/integrations/whatsapp/health"
CONNECT = "/api/integrations/messenger/connect"
MENU = "/api/integrations/messenger/persistent-menu"


@pytest.mark.parametrize(
    "answer",
    [
        {"health_status": "GREEN", "quality_rating": "GREEN"},
        {"health_status": {"entities": 5}},
        # A verdict of another type than text: null would read as "Meta did not say".
        {"quality_rating": 3},
        {"status": {"state": "CONNECTED"}},
        {"messaging_limit_tier": ["TIER_1K"]},
        {"health_status": {"can_send_message": True}},
    ],
)
def test_a_health_answer_of_another_shape_is_502(workspace, meta_settings, caplog, answer):
    graph = meta_settings
    resp, _, _ = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    graph.meta.script("number", ("raw", 200, answer))
    with caplog.at_level(logging.ERROR, logger="shared.channels.meta_calls"):
        resp = workspace.call("GET", HEALTH)
    error = assert_error(resp, 502, "meta_api_error")
    assert "reading the number's health" in error["message"]
    assert "not in the documented shape" in error["message"]
    assert any("in a shape it does not document" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("answer", [{"data": ["a page"]}, {"data": [], "paging": "next"}])
def test_a_page_list_of_another_shape_is_502_and_nothing_is_kept(workspace, meta_settings, answer):
    graph = meta_settings
    page = graph.meta.add_page("Acme")
    code = graph.meta.grant(pages=[page.id])
    graph.meta.script("accounts", ("raw", 200, answer))
    resp = workspace.call("POST", CONNECT, json={"code": code})
    error = assert_error(resp, 502, "meta_api_error")
    assert "listing the Pages you manage" in error["message"]
    assert workspace.call("GET", "/api/integrations/messenger").status_code == 404


def test_descriptive_health_fields_of_another_type_are_null(workspace, meta_settings):
    graph = meta_settings
    resp, _, _ = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    answer = {
        "quality_rating": "GREEN",
        "verified_name": 7,
        "display_phone_number": {"n": 1},
        "name_status": ["APPROVED"],
        "throughput": {"level": 80},
    }
    graph.meta.script("number", ("raw", 200, answer))
    resp = workspace.call("GET", HEALTH)
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["quality_rating"] == "GREEN"
    assert [body[f] for f in ("verified_name", "display_phone_number", "name_status")] == [
        None,
        None,
        None,
    ]
    assert body["throughput_level"] is None


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [{"persistent_menu": "not a list"}]},
        {"data": [{"persistent_menu": ["not an object"]}]},
        {"data": [{"persistent_menu": [None]}]},
        {"data": "persistent_menu"},
    ],
)
def test_a_menu_of_another_shape_is_502(workspace, meta_settings, answer):
    graph = meta_settings
    account, _page = connected_page(workspace, graph)
    graph.meta.script("messenger_profile", ("raw", 200, answer))
    resp = workspace.call("GET", MENU, params={"integration_account_id": account["id"]})
    error = assert_error(resp, 502, "meta_api_error")
    assert "reading the persistent menu" in error["message"]


@pytest.mark.parametrize("name", [7, {"x": 1}])
def test_a_facebook_user_or_page_label_of_another_type_is_null(workspace, meta_settings, name):
    graph = meta_settings
    page = graph.meta.add_page("Acme")
    page.category = name
    code = graph.meta.grant(pages=[page.id])
    graph.meta.script("me", ("raw", 200, {"id": "42", "name": name}))
    resp = workspace.call("POST", CONNECT, json={"code": code})
    assert resp.status_code == 200, resp.text
    assert resp.json["user"] == {"id": "42", "name": None}
    assert [(p["id"], p["category"]) for p in resp.json["pages"]] == [(page.id, None)]


def test_a_facebook_user_id_of_another_type_is_502_and_nothing_is_kept(workspace, meta_settings):
    graph = meta_settings
    page = graph.meta.add_page("Acme")
    code = graph.meta.grant(pages=[page.id])
    graph.meta.script("me", ("raw", 200, {"id": {"value": "42"}, "name": "Grace"}))
    resp = workspace.call("POST", CONNECT, json={"code": code})
    error = assert_error(resp, 502, "meta_api_error")
    assert "reading the Facebook user" in error["message"]
    assert workspace.call("GET", "/api/integrations/messenger").status_code == 404


@pytest.mark.parametrize("expires_in", [1e300, 10**30, True, "5184000"])
def test_a_token_lifetime_of_another_shape_reads_as_unknown_not_a_500(
    workspace, meta_settings, expires_in
):
    graph = meta_settings
    page = graph.meta.add_page("Acme")
    code = graph.meta.grant(pages=[page.id])
    token = "EAALong" + page.id
    graph.meta.tokens[token] = graph.meta.codes[code]  # the long-lived token Meta answers
    graph.meta.script(
        "oauth", "ok", ("raw", 200, {"access_token": token, "expires_in": expires_in})
    )
    resp = workspace.call("POST", CONNECT, json={"code": code})
    assert resp.status_code == 200, resp.text
    assert resp.json["token_expires_at"] is None


@pytest.mark.parametrize("page_token", [12345, {"token": "EAAPage"}, ["EAAPage"]])
def test_a_page_token_that_is_not_text_is_502_naming_it_and_nothing_is_kept(
    workspace, meta_settings, page_token
):
    """WHY: ``str()`` of it was stored as the Page's token (``"12345"``, ``"{'token': ...}"``):
    the account connected fine, then every send failed at Meta with 190."""
    graph = meta_settings
    page = graph.meta.add_page("Acme", instagram_username="acme")
    page.token = page_token
    resp = workspace.call("POST", CONNECT, json={"code": graph.meta.grant(pages=[page.id])})
    error = assert_error(resp, 502, "meta_api_error")
    assert "listing the Pages you manage" in error["message"]
    assert "access_token" in error["message"]
    assert workspace.call("GET", "/api/integrations/messenger").status_code == 404

    resp = workspace.call(
        "POST",
        "/api/integrations/instagram/connect",
        json={"code": graph.meta.grant(pages=[page.id])},
    )
    error = assert_error(resp, 502, "meta_api_error")
    assert "access_token" in error["message"]
    assert workspace.call("GET", "/api/integration-accounts?channel=instagram").json["items"] == []
