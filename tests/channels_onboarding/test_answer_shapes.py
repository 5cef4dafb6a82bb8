"""An answer from Meta in a shape it does not document is a 502 naming the call, not a 500.

The readers take Meta's documented shapes (objects of objects, lists of objects); a
string or a number where one of those belongs used to raise out of the request.
"""

from __future__ import annotations

import logging

import pytest

from tests.channels_onboarding.conftest import assert_error, signup

HEALTH = "/api/integrations/whatsapp/health"
CONNECT = "/api/integrations/messenger/connect"


@pytest.mark.parametrize(
    "answer",
    [
        {"health_status": "GREEN", "quality_rating": "GREEN"},
        {"health_status": {"entities": 5}},
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
