"""A stream resumed after a disconnect learns that its agent's access changed meanwhile.

While a client is connected, the re-check sends ``reset`` ``access_changed``. While it is
not (a network blip, a deploy, a laptop asleep), the resume replayed the backlog filtered
by the new access and said nothing: the client kept a list chosen by the old rule. Each
resume here goes to another stream process than the first connect (the state is Redis's).
"""

from __future__ import annotations

from api.stream_app import create_stream_app
from api.stream_hub import Hub
from shared.config import get_settings
from shared.realtime import access
from shared.redis_client import get_redis
from tests.realtime.conftest import (
    in_division,
    inbound,
    new_division,
    of_type,
    ready_streams,
    serving,
)

ACCESS_CHANGED = {"reason": "access_changed"}


def _last_ids(*streams) -> list[str]:
    """Each stream's Last-Event-ID, as EventSource keeps it, once the stream is closed."""
    for stream in streams:
        stream.drain(0.3)
        stream.close()
    return [stream.last_id for stream in streams]


def _resume(streams, url: str, token: str, last_id: str):
    return streams(url, token, **{"Last-Event-ID": last_id})


def test_a_division_joined_while_disconnected_resets_only_that_agent(
    stream_url, ws, other, streams
):
    mover, mover_token = ws.create_agent("agent")
    bystander, bystander_token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", mover["id"], bystander["id"])
    support = new_division(ws, "Support")
    tokens = (mover_token, bystander_token, other.token)
    last = _last_ids(*ready_streams(streams, stream_url, *tokens))

    joined = ws.call("POST", f"/api/divisions/{support}/agents", json={"agent_ids": [mover["id"]]})
    assert joined.status_code in (200, 204), joined.text
    sent = inbound(ws, "cust-while-down", "in Sales")
    conversation = sent["conversation_id"]
    moved = ws.call(
        "POST", f"/api/conversations/{conversation}/transfer", json={"to_division_id": sales}
    )
    assert moved.status_code == 200, moved.text

    with serving(create_stream_app()) as elsewhere:
        moving = _resume(streams, elsewhere, mover_token, last[0])
        first = moving.next()
        assert (first.event, first.json) == ("reset", ACCESS_CHANGED)
        # Then live, filtered by the new access.
        live = in_division(ws, "cust-after", support)
        moving.until(of_type("conversation.transferred", id=live))

        # The bystander's access did not change: its backlog replays as before.
        staying = _resume(streams, elsewhere, bystander_token, last[1])
        opening = staying.drain(0.5)
        assert not [e for e in opening if e.event == "reset"], opening
        assert [e for e in opening if of_type("conversation.transferred", id=conversation)(e)]
        assert opening[-1].event == "ready"
        foreign = _resume(streams, elsewhere, other.token, last[2])
        assert foreign.next().event == "ready"


def test_a_resume_without_an_access_change_replays_the_backlog(stream_url, ws, streams):
    _, token = ws.create_agent("agent")
    [last] = _last_ids(*ready_streams(streams, stream_url, token))
    inbound(ws, "cust-missed", "missed")
    with serving(create_stream_app()) as elsewhere:
        opening = _resume(streams, elsewhere, token, last).drain(0.5)
        assert not [e for e in opening if e.event == "reset"], opening
        assert [e for e in opening if of_type("message.created", body="missed")(e)], opening
        assert opening[-1].event == "ready"


def test_a_role_changed_while_disconnected_resets_the_resumed_stream(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    new_division(ws, "Sales", agent["id"])
    [last] = _last_ids(*ready_streams(streams, stream_url, token))
    promoted = ws.call("PATCH", f"/api/agents/{agent['id']}", json={"role": "supervisor"})
    assert promoted.status_code == 200, promoted.text
    with serving(create_stream_app()) as elsewhere:
        first = _resume(streams, elsewhere, token, last).next()
        assert (first.event, first.json) == ("reset", ACCESS_CHANGED)


def test_a_resume_whose_access_record_redis_lost_is_a_reset(stream_url, ws, streams):
    agent, token = ws.create_agent("agent")
    [last] = _last_ids(*ready_streams(streams, stream_url, token))
    get_redis().delete(access.mark_key(ws.tenant["id"], agent["id"]))
    first = _resume(streams, stream_url, token, last).next()
    assert (first.event, first.json) == ("reset", ACCESS_CHANGED)
    # Recorded again: the next resume from here replays as usual.
    again = _resume(streams, stream_url, token, first.id)
    assert again.next().event == "ready"


class _NeverRechecking(Hub):
    """A stream process whose re-check has not come round yet (it never does here)."""

    async def check_clients(self) -> None:
        return None


def test_a_stream_not_yet_rechecked_when_another_records_the_change_resumes_with_reset(
    stream_url, ws, streams
):
    agent, token = ws.create_agent("agent")
    sales = new_division(ws, "Sales", agent["id"])
    support = new_division(ws, "Support")
    with serving(create_stream_app(_NeverRechecking(get_settings().redis_url))) as slow:
        [behind] = ready_streams(streams, slow, token)
        joined = ws.call(
            "POST", f"/api/divisions/{support}/agents", json={"agent_ids": [agent["id"]]}
        )
        assert joined.status_code in (200, 204), joined.text
        # Another tab opens elsewhere: the change is recorded there, first.
        ready_streams(streams, stream_url, token)
        # What the old rule still lets through carries no id past the change...
        seen = in_division(ws, "cust-old-rule", sales)
        got = behind.until(of_type("conversation.transferred", id=seen))
        assert got.id is None
        [last] = _last_ids(behind)
    # ... so its resume is a reset, not a list the old rule chose.
    first = _resume(streams, stream_url, token, last).next()
    assert (first.event, first.json) == ("reset", ACCESS_CHANGED)
