"""A sender connected elsewhere answers 409 naming the field that carried it.

WHY: the 409 said only "already connected" with empty details, so a client could not
tell which of the body's ids (or which of several Page ids) to change.
"""

from __future__ import annotations

from tests.channels_onboarding.conftest import PIN, assert_error, connected_page, signup

ACCOUNTS = "/api/integration-accounts"


def _fields(error) -> list[str]:
    return [d.get("field") for d in error["details"]]


def test_an_account_created_twice_names_external_id(workspace, other_workspace, meta_settings):
    body = {"channel": "whatsapp", "name": "Main", "external_id": "1234509876"}
    assert workspace.call("POST", ACCOUNTS, json=body).status_code == 201
    error = assert_error(other_workspace.call("POST", ACCOUNTS, json=body), 409, "conflict")
    assert _fields(error) == ["external_id"]


def test_a_number_signed_up_by_another_tenant_names_phone_number_id(
    workspace, other_workspace, meta_settings
):
    graph = meta_settings
    resp, waba_id, _numbers = signup(workspace, graph)
    assert resp.status_code == 201, resp.text
    code = graph.meta.grant(wabas=[waba_id])
    resp = other_workspace.call(
        "POST", "/api/integrations/whatsapp/embedded-signup", json={"code": code, "pin": PIN}
    )
    assert _fields(assert_error(resp, 409, "conflict")) == ["phone_number_id"]


def test_an_instagram_account_of_another_tenant_names_instagram_account_id(
    workspace, other_workspace, meta_settings
):
    graph = meta_settings
    page = graph.meta.add_page("Acme", instagram_username="acme")
    connect = "/api/integrations/instagram/connect"
    resp = workspace.call("POST", connect, json={"code": graph.meta.grant(pages=[page.id])})
    assert resp.status_code == 201, resp.text
    resp = other_workspace.call("POST", connect, json={"code": graph.meta.grant(pages=[page.id])})
    assert _fields(assert_error(resp, 409, "conflict")) == ["instagram_account_id"]


def test_a_page_of_another_tenant_names_its_index(workspace, other_workspace, meta_settings):
    graph = meta_settings
    _account, taken = connected_page(workspace, graph)
    free = graph.meta.add_page("Free")
    code = graph.meta.grant(pages=[free.id, taken.id])
    resp = other_workspace.call("POST", "/api/integrations/messenger/connect", json={"code": code})
    assert resp.status_code == 200, resp.text
    resp = other_workspace.call(
        "POST",
        "/api/integrations/messenger/subscribe-pages",
        json={"page_ids": [free.id, taken.id]},
    )
    assert _fields(assert_error(resp, 409, "conflict")) == ["page_ids[1]"]
