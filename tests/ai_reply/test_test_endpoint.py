"""POST /api/ai-agents/{id}/test: a synchronous answer, sent nowhere, counted as usage."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.ai import agents
from shared.config import get_settings
from shared.db import get_sessionmaker
from shared.web_threads import ai_test_slots
from tests.ai_reply.conftest import one_ai_reply_a_month
from tests.automation.conftest import admin_ctx
from tests.lock_races import race
from tests.waiting import wait_until


def _test(world, agent_id, body, **kwargs):
    return world.ws.call("POST", f"/api/ai-agents/{agent_id}/test", json=body, **kwargs)


def test_the_offline_agent_answers_with_its_source_and_sends_nothing(world, fake_graph):
    agent = world.agent()

    resp = _test(world, agent.id, {"message": "How long does shipping take?"})

    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["reply"] == "Shipping takes 3 to 5 business days."
    assert body["handoff"]["handoff"] is False
    [source] = body["sources"]
    assert source["kind"] == "qna" and source["score"] > 0
    assert body["tokens"]["total"] == body["tokens"]["prompt"] + body["tokens"]["completion"] > 0
    assert (body["provider"], body["model"]) == ("offline", "offline")
    # NOTE: this account's requests only: the Graph fake is shared by the session, and a
    # previous test's worker may still deliver its own hand-off message meanwhile.
    assert [r for r in fake_graph.requests if world.wa["external_id"] in r.path] == []
    usage = world.usage(agent.id)
    assert (usage.replies, usage.test_replies) == (0, 1)
    assert usage.prompt_tokens == body["tokens"]["prompt"]


def test_the_openai_agent_answers_from_the_model_with_history(world, fake_llm):
    agent = world.agent(provider="openai", prompt_cost_per_1k="0.5", completion_cost_per_1k="1")
    fake_llm.answer = "Three to five days."
    history = [{"sender": "contact", "text": "Hi"}, {"sender": "agent", "text": "Hello!"}]

    resp = _test(world, agent.id, {"message": "How long does shipping take?", "history": history})

    assert resp.status_code == 200, resp.text
    assert resp.json["reply"] == "Three to five days."
    [chat] = fake_llm.chats()
    assert [m["role"] for m in chat.messages] == ["system", "user", "user", "assistant", "user"]
    usage = world.usage(agent.id)
    tokens = resp.json["tokens"]
    assert float(usage.cost) == pytest.approx(
        tokens["prompt"] * 0.5 / 1000 + tokens["completion"] / 1000
    )


def test_a_failing_model_answers_the_handoff_decision(world, fake_llm):
    agent = world.agent(provider="openai", handoff_message="One moment please.")
    fake_llm.script(("status", 500))
    resp = _test(world, agent.id, {"message": "How long does shipping take?"})
    assert resp.status_code == 200, resp.text
    handoff = resp.json["handoff"]
    assert (resp.json["reply"], handoff["handoff"], handoff["reason"]) == (
        None,
        True,
        "model_error",
    )
    assert handoff["message"] == "One moment please."


def test_asking_for_a_human_answers_the_handoff_without_a_model_call(world, fake_llm):
    agent = world.agent(provider="openai")
    resp = _test(world, agent.id, {"message": "Let me talk to a human"})
    assert resp.json["handoff"]["reason"] == "explicit_request"
    assert fake_llm.chats() == []


def test_another_tenants_agent_is_404(world, other_workspace):
    agent = world.agent()
    resp = other_workspace.call(
        "POST", f"/api/ai-agents/{agent.id}/test", json={"message": "hello"}
    )
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    assert _test(world, uuid.uuid4(), {"message": "hello"}).status_code == 404


def test_an_agent_without_ai_agents_manage_is_403(world):
    agent = world.agent()
    _, token = world.ws.create_agent(role="supervisor")
    resp = _test(world, agent.id, {"message": "hello"}, token=token)
    assert resp.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": ""},
        {"message": "x" * 4001},
        {"message": "hi", "history": [{"sender": "bot", "text": "x"}]},
        {"message": "hi", "extra": 1},
    ],
    ids=["missing", "empty", "too-long", "bad-sender", "unknown-field"],
)
def test_bad_input_is_422(world, body):
    agent = world.agent()
    resp = _test(world, agent.id, body)
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["code"] == "validation_error"


def test_a_server_runs_a_few_tests_at_once_and_answers_429_beyond_them(world, fake_llm):
    """A slow model must not hold every web thread: tests past the bound are refused."""
    agent = world.agent(provider="openai")
    slots = ai_test_slots(get_settings())
    fake_llm.delay = 1.0
    with ThreadPoolExecutor(slots) as pool:
        running = [
            pool.submit(_test, world, agent.id, {"message": "How long does shipping take?"})
            for _ in range(slots)
        ]
        wait_until(lambda: len(fake_llm.chats()) == slots, "every slot's model call")
        fake_llm.delay = 0.0

        refused = _test(world, agent.id, {"message": "How long does shipping take?"})

        assert refused.status_code == 429, refused.text
        assert refused.json["error"]["code"] == "rate_limited"
        assert refused.headers["Retry-After"] == "5"
        assert [f.result().status_code for f in running] == [200] * slots
    assert len(fake_llm.chats()) == slots  # the refused test never reached the model
    assert world.usage(agent.id).test_replies == slots

    again = _test(world, agent.id, {"message": "How long does shipping take?"})
    assert again.status_code == 200, again.text


def test_a_model_reporting_absurd_token_counts_still_answers(world, fake_llm):
    """A count past bigint (a buggy model server) made the usage row's write a 500."""
    agent = world.agent(provider="openai")
    body = {
        "choices": [{"message": {"role": "assistant", "content": "Three to five days."}}],
        "usage": {"prompt_tokens": 10**20, "completion_tokens": 4},
    }
    fake_llm.script(("raw", json.dumps(body).encode()))
    resp = _test(world, agent.id, {"message": "How long does shipping take?"})
    assert resp.status_code == 200, resp.text
    assert resp.json["reply"] == "Three to five days."
    assert 0 < resp.json["tokens"]["prompt"] < 10**6
    assert world.usage(agent.id).prompt_tokens == resp.json["tokens"]["prompt"]


def test_a_workspace_past_its_plans_ai_replies_gets_no_test_answers(world, workspace, fake_graph):
    """A test uses none of the plan's AI replies, but once they are spent it makes no more
    model calls (on the operator's key by default)."""
    one_ai_reply_a_month(workspace)
    agent = world.agent()
    within = _test(world, agent.id, {"message": "How long does shipping take?"})
    assert within.status_code == 200, within.text
    world.write("What are your opening hours?")
    world.wait_sent_to_graph(fake_graph, 1)  # the month's one AI reply, to a customer

    spent = _test(world, agent.id, {"message": "How long does shipping take?"})

    assert spent.status_code == 402, spent.text
    assert spent.json["error"]["code"] == "plan_limit_reached"
    assert spent.json["error"]["details"][0]["limit"] == "ai_replies"
    assert world.usage(agent.id).test_replies == 1


def test_a_test_of_an_agent_deleted_meanwhile_is_404(world):
    """The deletion commits while the test counts its usage: 404 (the agent is gone), not
    a 409 from the usage row's foreign key."""
    agent = world.agent()
    deleting = get_sessionmaker()()
    agents.delete_agent(deleting, admin_ctx(world.ws), agent.id)
    deleting.flush()

    resp = race(deleting, lambda: _test(world, agent.id, {"message": "Shipping time?"}))

    assert resp.status_code == 404, resp.text
    assert resp.json["error"]["code"] == "not_found"
