"""AI reply fixtures: agents and knowledge as rows, signed WhatsApp callbacks, the fake peers.

Agents, assignments and rules are inserted with the ORM (their CRUD endpoints belong
to another part of the issue); contacts write through signed Meta callbacks, answers
leave through the fake Graph API, and ``openai`` agents talk to the fake LLM server.
"""

from __future__ import annotations

import contextlib
import os

os.environ.update(
    AI_MODEL_TIMEOUT_SECONDS="1.0",
    AI_MODEL_MAX_RETRIES="2",
    AI_MODEL_MAX_RETRY_AFTER_SECONDS="2",
    AI_SWEEP_AFTER_SECONDS="1",
    KNOWLEDGE_REEMBED_SWEEP_AFTER_SECONDS="1",
    AI_GENERATING_STALE_SECONDS="30",
)

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.config import get_settings

get_settings.cache_clear()

from shared import crypto  # noqa: E402
from shared.db import session_scope  # noqa: E402
from shared.models import Conversation, Message, OutboxEvent  # noqa: E402
from shared.models.ai import (  # noqa: E402
    AiAgent,
    AiAgentAssignment,
    AiHandoffRule,
    AiOrchestrationRule,
    AiReply,
    AiUsageDaily,
    KnowledgeChunk,
    KnowledgeSource,
    QnaPair,
)
from tests.channels_inbound.conftest import Channels, load  # noqa: E402
from tests.peers.environment import environment  # noqa: E402
from tests.peers.fixtures import (  # noqa: E402, F401
    fake_graph,
    fake_graph_server,
    fake_llm,
    fake_llm_server,
)
from tests.waiting import wait_until  # noqa: E402
from workers import queues  # noqa: E402

FAQ = [
    ("What are your opening hours?", "We are open Monday to Friday, 9am to 6pm."),
    ("How long does shipping take?", "Shipping takes 3 to 5 business days."),
    ("Can I return an order?", "Yes: returns are free within 30 days of delivery."),
]


@pytest.fixture(scope="package", autouse=True)
def ai_peer_settings(fake_graph_server, fake_llm_server):  # noqa: F811
    """Point the Graph client and the default model endpoint at this run's fakes, for this
    folder's tests only."""
    with environment(
        META_GRAPH_BASE_URL=fake_graph_server.base_url,
        META_GRAPH_VERSION="v21.0",
        AI_OPENAI_BASE_URL=fake_llm_server.base_url,
    ):
        yield


class World(Channels):
    """A tenant with a WhatsApp account, its AI agents, and contacts who write to it."""

    def __init__(self, workspace, broker):
        super().__init__(workspace, broker)
        self.wa = self.account("whatsapp")
        self.account_id = uuid.UUID(self.wa["id"])
        self._n = 0

    # -- configuration (rows) ------------------------------------------------------------
    def agent(self, *, faq=FAQ, chunks=(), assign: bool = True, **fields: Any) -> AiAgent:
        # NOTE: ts_rank_cd scores an exact FAQ match about 0.09 (retrieval.py), under the
        # schema's default threshold of 0.1: the tests set the threshold they mean.
        values = {
            "name": f"Ava {uuid.uuid4().hex[:6]}",
            "settle_seconds": 0.2,
            "confidence_threshold": 0.02,
        } | fields
        api_key = values.pop("api_key", None)
        if api_key:
            values["api_key_encrypted"] = crypto.encrypt(api_key)
        with session_scope() as session:
            agent = AiAgent(tenant_id=self.tenant_id, **values)
            session.add(agent)
            session.flush()
            self.knowledge(session, agent, faq=faq, chunks=chunks)
            session.expunge(agent)
        if assign:
            self.assign(agent.id)
        return agent

    def knowledge(self, session, agent: AiAgent, *, faq=(), chunks=()) -> None:
        source = KnowledgeSource(
            tenant_id=self.tenant_id,
            ai_agent_id=agent.id,
            kind="text",
            title="FAQ",
            content="",
            status="ready",
        )
        session.add(source)
        session.flush()
        for question, answer in faq:
            session.add(
                QnaPair(
                    tenant_id=self.tenant_id,
                    ai_agent_id=agent.id,
                    source_id=source.id,
                    question=question,
                    answer=answer,
                )
            )
        for position, content in enumerate(chunks):
            session.add(
                KnowledgeChunk(
                    tenant_id=self.tenant_id,
                    ai_agent_id=agent.id,
                    source_id=source.id,
                    position=position,
                    content=content,
                )
            )

    def add(self, row):
        with session_scope() as session:
            session.add(row)
            session.flush()
            session.expunge(row)
        return row

    def assign(self, agent_id, *, channel: str | None = None, whole_channel=False, **fields):
        target = (
            {"channel": channel or "whatsapp"}
            if whole_channel
            else {"integration_account_id": self.account_id}
        )
        return self.add(
            AiAgentAssignment(tenant_id=self.tenant_id, ai_agent_id=agent_id, **target, **fields)
        )

    def handoff_rule(self, agent_id, kind: str, **fields):
        return self.add(
            AiHandoffRule(tenant_id=self.tenant_id, ai_agent_id=agent_id, kind=kind, **fields)
        )

    def orchestration(self, target_id, match_type: str, **fields):
        return self.add(
            AiOrchestrationRule(
                tenant_id=self.tenant_id,
                name=f"rule {uuid.uuid4().hex[:6]}",
                match_type=match_type,
                target_ai_agent_id=target_id,
                **fields,
            )
        )

    def division(self) -> uuid.UUID:
        from shared.models.inbox import Division

        return self.add(Division(tenant_id=self.tenant_id, name=f"Team {uuid.uuid4().hex[:6]}")).id

    # -- the contact writes --------------------------------------------------------------
    def write(self, body: str, *, sender: str = "16315551181", settle: bool = True):
        """A signed WhatsApp text from ``sender``; returns its wamid."""
        self._n += 1
        wamid = f"wamid.AI{uuid.uuid4().hex}"
        payload = load("wa_text.json", PHONE_NUMBER_ID=self.wa["external_id"])
        value = payload["entry"][0]["changes"][0]["value"]
        value["contacts"][0]["wa_id"] = sender
        message = value["messages"][0]
        message.update({"from": sender, "id": wamid, "text": {"body": body}})
        resp = self.post_meta("meta", payload, secret=self.wa["credentials"]["app_secret"])
        assert resp.status_code == 200, resp.text
        if settle:
            self.settle()
        return wamid

    # -- reading back ----------------------------------------------------------------------
    def conversation(self, sender: str = "16315551181") -> Conversation:
        def find():
            with session_scope() as session:
                return session.scalars(
                    select(Conversation)
                    .join(Message, Message.conversation_id == Conversation.id)
                    .where(
                        Conversation.tenant_id == self.tenant_id,
                        Message.direction == "inbound",
                    )
                    .where(Conversation.contact_id.in_(self._contact_ids(session, sender)))
                    .limit(1)
                ).first()

        return wait_until(find, f"the conversation of {sender}")

    def _contact_ids(self, session, sender: str):
        from shared.models import Contact

        return select(Contact.id).where(
            Contact.tenant_id == self.tenant_id, Contact.external_id == sender
        )

    def replies(self, conversation_id=None) -> list[AiReply]:
        with session_scope() as session:
            query = select(AiReply).where(AiReply.tenant_id == self.tenant_id)
            if conversation_id is not None:
                query = query.where(AiReply.conversation_id == conversation_id)
            return list(session.scalars(query.order_by(AiReply.created_at)))

    def final_replies(self, conversation_id=None, count: int = 1, timeout: float = 15.0):
        """Wait until ``count`` replies are final (not pending or generating)."""

        def done():
            rows = self.replies(conversation_id)
            final = [r for r in rows if r.status not in ("pending", "generating")]
            return final if len(final) >= count else None

        return wait_until(done, f"{count} final AI replies", timeout=timeout)

    def outbound(self, conversation_id) -> list[Message]:
        with session_scope() as session:
            return list(
                session.scalars(
                    select(Message)
                    .where(
                        Message.tenant_id == self.tenant_id,
                        Message.conversation_id == conversation_id,
                        Message.direction == "outbound",
                    )
                    .order_by(Message.created_at)
                )
            )

    def usage(self, agent_id) -> AiUsageDaily | None:
        with session_scope() as session:
            row = session.scalars(
                select(AiUsageDaily).where(
                    AiUsageDaily.tenant_id == self.tenant_id, AiUsageDaily.ai_agent_id == agent_id
                )
            ).one_or_none()
            if row is not None:
                session.expunge(row)
            return row

    def events(self, event_type: str) -> list[OutboxEvent]:
        return super().events(event_type)

    def fresh(self, conversation_id) -> Conversation:
        with session_scope() as session:
            row = session.get(Conversation, conversation_id)
            session.expunge(row)
            return row

    def sent_to_graph(self, graph) -> list:
        """What this world's WhatsApp number sent to the fake Graph API.

        The fake serves the whole test process: a previous test's late send (the
        in-process worker finishing its work) must not count here.
        """
        own = f"/{self.wa['external_id']}/messages"
        return [r for r in graph.sent() if r.path.endswith(own)]

    def wait_sent_to_graph(self, graph, count: int = 1, timeout: float = 15.0):
        return wait_until(
            lambda: (sent := self.sent_to_graph(graph)) and len(sent) >= count and sent,
            f"{count} message(s) at the fake Graph API",
            timeout=timeout,
        )

    def drain(self) -> None:
        """Wait for the whole chain an inbound message starts, stage by stage.

        Each stage enqueues the next after its commit and before its ack, so once a
        queue (in-flight messages included) is empty the next one holds everything
        it caused: intake, then the dispatch that decides on an AI reply, then the
        reply itself (delayed by the agent's settle window).
        """
        for queue in (queues.INBOUND, queues.EVENTS, queues.AI):
            self.broker.join(queue, timeout=20_000)


def one_ai_reply_a_month(workspace) -> None:
    """Subscribe the workspace to a plan that allows one AI reply a month."""
    from shared.billing import usage
    from shared.models.billing import BillingPlan

    with session_scope() as session:
        plan = BillingPlan(
            code=f"ai-one-{workspace.tenant['id'][:8]}",
            name="One AI reply",
            currency="USD",
            price_amount=0,
            billing_interval="month",
            monthly_ai_reply_limit=1,
            features={},
        )
        session.add(plan)
        session.flush()
        plan_id = str(plan.id)
    resp = workspace.call("POST", "/api/billing/subscription", json={"plan_id": plan_id})
    assert resp.status_code == 201, resp.text
    usage._cache.clear()  # the worker thread reads the limits fresh


@contextlib.contextmanager
def embed_messages_lost():
    """``embed_items`` messages sent meanwhile are lost (the sweep, or a test's own call, is
    then their only way)."""
    from shared.ai import products

    saved = products.EMBED_QUEUE.enqueuer
    products.EMBED_QUEUE.set_enqueuer(None)
    try:
        yield
    finally:
        products.EMBED_QUEUE.set_enqueuer(saved)


@pytest.fixture
def world(workspace, broker, worker, fake_graph, fake_llm):  # noqa: F811
    return World(workspace, broker)
