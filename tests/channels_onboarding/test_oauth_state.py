"""OAuth ``state``: a login's code is redeemed only by the admin, workspace and channel
whose oauth-config started that login, and a refused state never spends the code."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.channels.onboarding import oauth_state
from shared.context import Ctx
from shared.events import Actor
from tests.channels_onboarding.conftest import assert_error, login_state

REDIRECT = "https://inbox.example.com/oauth/meta"
CHANNELS = ("instagram", "messenger")
#: What a successful connect answers per channel.
CONNECTED = {"instagram": 201, "messenger": 200}


def _connect(workspace, channel: str, body: dict, token: str | None = None):
    path = f"/api/integrations/{channel}/connect"
    return workspace.call("POST", path, json=body, token=token)


def _login(graph, *, redirect_uri: str | None = REDIRECT) -> str:
    """A code for a Page with a linked Instagram account (both channels accept it)."""
    page = graph.meta.add_page("Acme", instagram_username=f"acme{uuid.uuid4().hex[:6]}")
    return graph.meta.grant(pages=[page.id], redirect_uri=redirect_uri)


def _exchanges(graph) -> list:
    return [r for r in graph.requests if r.path.endswith("/oauth/access_token")]


def _refused(resp) -> dict:
    error = assert_error(resp, 422, "invalid_oauth_state")
    assert [d["field"] for d in error["details"]] == ["state"], error
    assert "oauth-config" in error["message"], error
    return error


def _ctx_of(workspace) -> Ctx:
    user_id = uuid.UUID(workspace.admin["id"])
    return Ctx(
        tenant_id=uuid.UUID(workspace.tenant["id"]), actor=Actor("user", user_id), user_id=user_id
    )


def _tampered(state: str) -> str:
    last = state[-1]
    return state[:-1] + ("A" if last != "A" else "B")


def _later_expiry(state: str) -> str:
    channel, expires, rest = state.split(".", 2)
    return f"{channel}.{int(expires) + 3600}.{rest}"


def test_the_oauth_config_carries_a_fresh_url_safe_state(workspace, meta_settings):
    first, second = (login_state(workspace, "instagram") for _ in range(2))
    assert first != second
    assert all(c.isalnum() or c in "-_." for c in first), first
    # No id of ours travels through Meta's redirect.
    assert workspace.tenant["id"] not in first and workspace.admin["id"] not in first


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(
    "whose", ["other_tenant", "other_admin", "other_channel", "expired", "tampered", "missing"]
)
def test_a_state_not_issued_for_this_login_is_refused_before_meta(
    workspace, other_workspace, meta_settings, channel, whose
):
    graph = meta_settings
    code = _login(graph)
    other_channel = "messenger" if channel == "instagram" else "instagram"
    if whose == "other_tenant":
        state = login_state(other_workspace, channel)
    elif whose == "other_admin":
        _, token = workspace.create_agent(role="admin")
        state = login_state(workspace, channel, token=token)
    elif whose == "other_channel":
        state = login_state(workspace, other_channel)
    elif whose == "expired":
        issued = dt.datetime.now(dt.UTC) - oauth_state.LIFETIME - dt.timedelta(seconds=1)
        state = oauth_state.issue(_ctx_of(workspace), channel, now=issued)
    elif whose == "tampered":
        state = _tampered(login_state(workspace, channel))
    else:
        state = None
    body = {"code": code, "redirect_uri": REDIRECT}
    if state is not None:
        body["state"] = state
    error = _refused(_connect(workspace, channel, body))
    if whose == "expired":
        assert "expired" in error["message"]
    if whose == "missing":
        assert "required" in error["details"][0]["message"]
    assert _exchanges(graph) == []
    # The code was not spent: the right state still connects with it.
    body["state"] = login_state(workspace, channel)
    resp = _connect(workspace, channel, body)
    assert resp.status_code == CONNECTED[channel], resp.text


def test_a_later_expiry_breaks_the_signature(workspace, meta_settings):
    code = _login(meta_settings)
    state = _later_expiry(login_state(workspace, "instagram"))
    body = {"code": code, "redirect_uri": REDIRECT, "state": state}
    error = _refused(_connect(workspace, "instagram", body))
    assert "expired" not in error["message"]
    assert _exchanges(meta_settings) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_sdk_popup_needs_no_state_but_a_sent_one_is_checked(
    workspace, other_workspace, meta_settings, channel
):
    graph = meta_settings
    code = _login(graph, redirect_uri=None)
    body = {"code": code, "state": login_state(other_workspace, channel)}
    _refused(_connect(workspace, channel, body))
    assert _exchanges(graph) == []
    resp = _connect(workspace, channel, {"code": code})
    assert resp.status_code == CONNECTED[channel], resp.text


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_valid_state_connects_through_the_redirect(workspace, meta_settings, channel):
    code = _login(meta_settings)
    body = {"code": code, "redirect_uri": REDIRECT, "state": login_state(workspace, channel)}
    resp = _connect(workspace, channel, body)
    assert resp.status_code == CONNECTED[channel], resp.text
