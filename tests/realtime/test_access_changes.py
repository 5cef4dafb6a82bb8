"""An open stream whose agent's visibility changes (a division joined or left, a role that
gains or loses ``conversations.manage``) is sent one ``reset``: the conversations its client
holds were chosen by the old rule. A re-check that finds the same visibility sends nothing."""

from __future__ import annotations

from tests.realtime.conftest import new_division, ready_event


def _is_reset(event) -> bool:
    return event.event == "reset"


def _access_reset(stream) -> None:
    reset = stream.until(_is_reset, timeout=8)
    assert reset.json == {"reason": "access_changed"}
    # Once: the next re-checks find the same access.
    assert not [e for e in stream.drain(2.5) if _is_reset(e)]


def _membership(ws, method: str, division: str, agent_id: str) -> None:
    resp = ws.call(method, f"/api/divisions/{division}/agents", json={"agent_ids": [agent_id]})
    assert resp.status_code in (200, 204), resp.text


def test_leaving_or_joining_a_division_resets_only_that_agents_stream(
    stream_url, ws, other, streams
):
    mover, mover_token = ws.create_agent("agent")
    bystander, bystander_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", mover["id"], bystander["id"])
    support = new_division(ws, "Support")
    moving = streams(stream_url, mover_token)
    staying = streams(stream_url, bystander_token)
    admin = streams(stream_url, ws.token)
    foreign = streams(stream_url, other.token)
    for stream in (moving, staying, admin, foreign):
        ready_event(stream)

    _membership(ws, "POST", support, mover["id"])
    _access_reset(moving)
    _membership(ws, "DELETE", sales, mover["id"])
    _access_reset(moving)

    # The same re-checks found the others' access unchanged: nothing for them.
    for stream in (staying, admin, foreign):
        assert not [e for e in stream.drain(0.5) if _is_reset(e)]


def test_gaining_or_losing_conversations_manage_resets_the_stream(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    new_division(ws, "Sales", agent["id"])
    stream = streams(stream_url, token)
    ready_event(stream)
    promoted = ws.call("PATCH", f"/api/agents/{agent['id']}", json={"role": "supervisor"})
    assert promoted.status_code == 200, promoted.text
    _access_reset(stream)
    demoted = ws.call("PATCH", f"/api/agents/{agent['id']}", json={"role": "agent"})
    assert demoted.status_code == 200, demoted.text
    _access_reset(stream)


def test_deleting_an_agents_only_division_resets_their_stream(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", agent["id"])
    stream = streams(stream_url, token)
    ready_event(stream)
    deleted = ws.call("DELETE", f"/api/divisions/{sales}")
    assert deleted.status_code == 204, deleted.text
    _access_reset(stream)
