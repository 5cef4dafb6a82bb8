"""The demo tenant's AI agent answers a newcomer's inbound message on the api account."""

from __future__ import annotations

import uuid

from shared import demo
from tests.waiting import wait_until


def test_the_demo_ai_agent_answers_on_the_api_account(client, broker, worker):
    slug = f"demo-ai-{uuid.uuid4().hex[:6]}"
    volume = demo.Volume(contacts=5, conversations=10, messages=20, agents=1)
    [tenant] = demo.build(volume, slug=slug, progress=lambda *_: None)
    demo.build(volume, slug=slug, progress=lambda *_: None)  # a refresh keeps it working

    login = client.simulate_post(
        "/api/auth/login", json={"email": tenant.admin_email, "password": tenant.password}
    )
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}
    resp = client.simulate_post(
        f"/api/integration-accounts/{tenant.api_account_id}/api/messages",
        json={"contact": {"source_id": "newcomer-1"}, "content": "How long does shipping take?"},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    conversation_id = resp.json["conversation_id"]

    def answered():
        listed = client.simulate_get(
            f"/api/conversations/{conversation_id}/messages", headers=headers
        ).json["items"]
        return [m for m in listed if m["sender_type"] == "ai_agent"]

    [answer] = wait_until(answered, "the demo agent's answer")
    assert answer["body"] == dict(demo.AI_FAQ)["How long does shipping take?"]
    assert answer["sender_id"] == str(tenant.ai_agent_id)
