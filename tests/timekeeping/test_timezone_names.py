"""Time zone names over HTTP: only a place's IANA zone, wherever a workspace names one."""

from __future__ import annotations

import uuid

import pytest

#: Names the zone database loads that are not a place's civil time.
NOT_PLACES = ("localtime", "right/UTC", "posixrules", "Factory")


@pytest.mark.parametrize("name", NOT_PLACES)
def test_the_workspace_time_zone_must_be_a_place(workspace, name):
    resp = workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": name})

    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "timezone"
    assert workspace.call("GET", "/api/working-hours/timezone").json == {"timezone": "UTC"}


@pytest.mark.parametrize("name", NOT_PLACES)
def test_registration_refuses_a_time_zone_that_is_not_a_place(client, name):
    resp = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Clockwork",
            "full_name": "Casey",
            "email": f"casey-{uuid.uuid4().hex[:8]}@example.com",
            "password": "a long enough password",
            "timezone": name,
        },
    )

    assert resp.status_code == 422, resp.text
    assert [d["field"] for d in resp.json["error"]["details"]] == ["timezone"]


def test_a_backward_link_is_still_a_place(workspace):
    resp = workspace.call("PUT", "/api/working-hours/timezone", json={"timezone": "US/Eastern"})

    assert resp.status_code == 200, resp.text
