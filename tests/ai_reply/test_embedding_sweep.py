"""Items whose ``embed_items`` message was lost are embedded by the scheduler's sweep.

Rows inserted here (as :class:`World` does) never had their message sent: the same as a
message lost between commit and send. Other tests' items in this database may be owed
too, so each test judges its own items only (aged a day, they are the oldest owed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import uuid

import falcon.testing
from sqlalchemy import select, update

from scheduler import jobs
from shared.ai.knowledge import embedding_sweep, queue
from shared.config import get_settings
from shared.db import session_scope
from shared.models import AiAgent, AiProduct, KnowledgeChunk, KnowledgeSource, QnaPair
from tests.admin.conftest import create_super_admin, login
from tests.ai_reply.conftest import embed_messages_lost
from tests.waiting import wait_until

TABLES = {"chunk": KnowledgeChunk, "qna": QnaPair, "product": AiProduct}
ONE_QNA = [("Can I return an order?", "Yes: returns are free within 30 days of delivery.")]


def _sweep() -> dict[str, int]:
    with session_scope() as session:
        return jobs.sweep_knowledge_embeddings(session)


@contextlib.contextmanager
def _sends_recorded():
    """What the sweep sends, recorded instead of sent: to the sweep, an item whose
    embedding never arrives (a provider that keeps failing on it); as ``(kind, id)``."""
    sent: list[tuple[str, uuid.UUID]] = []
    saved = queue.EMBED.enqueuer
    queue.EMBED.set_enqueuer(lambda items: sent.extend((i.kind, i.item_id) for i in items))
    try:
        yield sent
    finally:
        queue.EMBED.set_enqueuer(saved)


def _agent_rows(tenant_id, *, provider="openai", embedding_model="embed-s", embedded=False):
    """An agent of ``tenant_id`` with one chunk, one QnA pair and one product, inserted
    with no ``embed_items`` sent; returns ``{kind: item_id}``."""
    vector = [0.5] * 8 if embedded else None
    with session_scope() as session:
        agent = AiAgent(
            tenant_id=tenant_id,
            name=f"Sweepy {uuid.uuid4().hex[:6]}",
            provider=provider,
            embedding_model=embedding_model,
        )
        session.add(agent)
        session.flush()
        source = KnowledgeSource(
            tenant_id=tenant_id, ai_agent_id=agent.id, kind="text", title="FAQ", status="ready"
        )
        session.add(source)
        session.flush()
        mine = {"tenant_id": tenant_id, "ai_agent_id": agent.id, "embedding": vector}
        rows = {
            "chunk": KnowledgeChunk(
                **mine, source_id=source.id, position=0, content="Parcels arrive in two days."
            ),
            "qna": QnaPair(**mine, source_id=source.id, question=ONE_QNA[0][0], answer="Yes."),
            "product": AiProduct(**mine, name="Blue mug", description="A mug, blue."),
        }
        session.add_all(rows.values())
        session.flush()
        return {kind: row.id for kind, row in rows.items()}


def _age(items: dict[str, uuid.UUID], **delta) -> None:
    """Make the items owed since ``delta`` ago (their after-commit message long lost)."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(**delta)
    with session_scope() as session:
        for kind, item_id in items.items():
            table = TABLES[kind]
            since = {"created_at": when} if kind == "chunk" else {"updated_at": when}
            session.execute(update(table).where(table.id == item_id).values(**since))


def _state(kind: str, item_id: uuid.UUID):
    table = TABLES[kind]
    with session_scope() as session:
        return session.execute(
            select(
                table.embedding, table.embed_attempts, table.embed_swept_at, table.embed_gave_up_at
            ).where(table.id == item_id)
        ).one()


def _last_swept(kind: str, item_id: uuid.UUID, **ago) -> None:
    table = TABLES[kind]
    with session_scope() as session:
        session.execute(
            update(table)
            .where(table.id == item_id)
            .values(embed_swept_at=dt.datetime.now(dt.UTC) - dt.timedelta(**ago))
        )


def test_items_whose_embed_message_was_lost_are_embedded_after_the_sweep(world, fake_llm):
    items = _agent_rows(world.tenant_id)
    assert all(_state(kind, i).embedding is None for kind, i in items.items())

    _sweep()  # within the grace period the after-commit message still has its chance
    assert all(_state(kind, i).embed_attempts == 0 for kind, i in items.items())

    _age(items, days=1)
    assert _sweep()["sent"] >= 3
    for kind, item_id in items.items():
        wait_until(lambda k=kind, i=item_id: _state(k, i).embedding, f"the {kind} embedded")
        assert _state(kind, item_id).embed_attempts == 1
    with _sends_recorded() as sent:  # embedded: nothing is owed any more
        _last_swept("qna", items["qna"], days=1)
        _sweep()
    assert not set(items.items()) & set(sent)


def test_an_item_that_stays_unembedded_is_re_sent_with_backoff_then_given_up(world, caplog):
    item = ("qna", _agent_rows(world.tenant_id)["qna"])
    _age(dict([item]), days=1)
    after = get_settings().knowledge_embed_sweep_after_seconds
    waits = []
    with _sends_recorded() as sent:
        for attempt in range(1, embedding_sweep.MAX_ATTEMPTS + 1):
            if attempt > 1:
                wait = embedding_sweep.wait_after(attempt - 1)
                waits.append(wait)
                _last_swept(*item, seconds=wait - 30)
                _sweep()
                assert sent.count(item) == attempt - 1, "re-sent before its wait ran out"
                _last_swept(*item, seconds=wait + 1)
            _sweep()
            assert sent.count(item) == attempt
            assert _state(*item).embed_attempts == attempt
            _sweep()  # sent a moment ago: the next tick waits
            assert sent.count(item) == attempt

        # The last send's wait runs out with the item still unembedded: it is given up,
        # once, visibly (the job's count and a warning), and never sent again.
        _last_swept(*item, seconds=embedding_sweep.wait_after(embedding_sweep.MAX_ATTEMPTS) + 1)
        with caplog.at_level(logging.WARNING, logger=embedding_sweep.__name__):
            assert _sweep()["given_up"] >= 1
        assert "gave up" in caplog.text
        assert _state(*item).embed_gave_up_at is not None
        _last_swept(*item, days=1)
        _sweep()
    assert sent.count(item) == embedding_sweep.MAX_ATTEMPTS
    assert _state(*item).embed_attempts == embedding_sweep.MAX_ATTEMPTS
    # Each wait is twice the one before (up to the cap), starting at twice the grace period.
    assert waits[0] == 2 * after
    assert all(
        b == min(2 * a, embedding_sweep.MAX_SWEEP_BACKOFF_SECONDS)
        for a, b in itertools.pairwise(waits)
    )


def test_a_suspended_tenants_items_wait_and_another_tenants_are_swept(world, other_workspace, app):
    suspended = _agent_rows(world.tenant_id)
    other_tenant = uuid.UUID(other_workspace.tenant["id"])
    owed = _agent_rows(other_tenant)
    offline = _agent_rows(other_tenant, provider="offline")  # no vectors: nothing owed
    no_model = _agent_rows(other_tenant, embedding_model=None)
    embedded = _agent_rows(other_tenant, embedded=True)
    for items in (suspended, owed, offline, no_model, embedded):
        _age(items, days=1)
    root = login(falcon.testing.TestClient(app), create_super_admin())
    path = f"/api/admin/tenants/{world.tenant_id}"
    assert root.call("DELETE", path).status_code == 204

    with _sends_recorded() as sent:
        _sweep()
    sent_set = set(sent)
    assert set(owed.items()) <= sent_set
    for untouched in (suspended, offline, no_model, embedded):
        assert not set(untouched.items()) & sent_set
        assert all(_state(kind, i).embed_attempts == 0 for kind, i in untouched.items())

    # Reactivated, its owed items are swept: waiting was not dropping them.
    assert root.call("PATCH", path, json={"status": "active"}).status_code == 200
    with _sends_recorded() as sent:
        _sweep()
    assert set(suspended.items()) <= set(sent)


def _give_up(session, product_id: uuid.UUID, **values) -> uuid.UUID:
    """The product given up by the sweep (its budget spent), with ``values``; its agent."""
    session.execute(
        update(AiProduct)
        .where(AiProduct.id == product_id)
        .values(
            embed_attempts=embedding_sweep.MAX_ATTEMPTS,
            embed_gave_up_at=dt.datetime.now(dt.UTC),
            **values,
        )
    )
    return session.scalar(select(AiProduct.ai_agent_id).where(AiProduct.id == product_id))


def test_a_given_up_product_replaced_is_owed_afresh(world):
    """A new text may embed where the old one kept failing: its budget starts again."""
    items = _agent_rows(world.tenant_id)
    item = ("product", items["product"])
    with session_scope() as session:
        agent_id = _give_up(session, item[1])
    with embed_messages_lost():  # the replacement's own message is lost too
        resp = world.ws.call(
            "PUT", f"/api/ai-agents/{agent_id}/products/{item[1]}", json={"name": "Red mug"}
        )
    assert resp.status_code == 200, resp.text
    assert _state(*item)[1:] == (0, None, None)

    _age(dict([item]), days=1)
    with _sends_recorded() as sent:
        _sweep()
    assert item in sent


def test_a_given_up_product_updated_by_an_import_is_owed_afresh(world):
    """An import row that updates a product gives it a new text, as a replace does: the
    sends spent on the old text say nothing of it, so its budget starts again."""
    from shared.ai import product_import
    from shared.context import Ctx

    items = _agent_rows(world.tenant_id)
    item = ("product", items["product"])
    with session_scope() as session:
        agent_id = _give_up(session, item[1], sku="MUG-1")
        job = product_import.start_import(
            session,
            Ctx.system(world.tenant_id),
            agent_id,
            b"sku,name\nMUG-1,Red mug\n",
            "csv",
            enqueue=lambda *_: None,
        )
    with embed_messages_lost():  # the import's own message is lost too
        assert product_import.process_import(job.id) == "succeeded"
    assert _state(*item)[1:] == (0, None, None)

    _age(dict([item]), days=1)
    with _sends_recorded() as sent:
        _sweep()
    assert item in sent


def test_a_new_embedding_model_gives_given_up_items_a_fresh_budget(world):
    item = ("chunk", _agent_rows(world.tenant_id)["chunk"])
    with session_scope() as session:
        agent = session.scalars(
            select(AiAgent)
            .join(KnowledgeChunk, KnowledgeChunk.ai_agent_id == AiAgent.id)
            .where(KnowledgeChunk.id == item[1])
        ).one()
        agent_id, name = agent.id, agent.name
        session.execute(
            update(KnowledgeChunk)
            .where(KnowledgeChunk.id == item[1])
            .values(
                embed_attempts=embedding_sweep.MAX_ATTEMPTS,
                embed_gave_up_at=dt.datetime.now(dt.UTC),
            )
        )
    with _sends_recorded() as sent:
        resp = world.ws.call(
            "PUT",
            f"/api/ai-agents/{agent_id}",
            json={"name": name, "provider": "openai", "embedding_model": "embed-t"},
        )
    assert resp.status_code == 200, resp.text
    assert item in sent  # the re-embedding's own send
    assert _state(*item)[1:] == (0, None, None)


def _sweep_reembedding() -> dict[str, int]:
    with session_scope() as session:
        return jobs.sweep_knowledge_reembedding(session)


def _agent_of(kind: str, item_id: uuid.UUID) -> AiAgent:
    table = TABLES[kind]
    with session_scope() as session:
        agent = session.scalars(
            select(AiAgent).join(table, table.ai_agent_id == AiAgent.id).where(table.id == item_id)
        ).one()
        session.expunge(agent)
        return agent


def _reembedding_checked_now(agent_id: uuid.UUID) -> None:
    """The wait before the re-embedding's next check ran out."""
    with session_scope() as session:
        session.execute(
            update(AiAgent)
            .where(AiAgent.id == agent_id, AiAgent.reembed_due_at.is_not(None))
            .values(reembed_due_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


def _reembed_due_at(agent_id: uuid.UUID):
    with session_scope() as session:
        return session.scalar(select(AiAgent.reembed_due_at).where(AiAgent.id == agent_id))


def _new_model(world, agent: AiAgent, model: str) -> None:
    resp = world.ws.call(
        "PUT",
        f"/api/ai-agents/{agent.id}",
        json={"name": agent.name, "provider": "openai", "embedding_model": model},
    )
    assert resp.status_code == 200, resp.text


def test_an_item_that_never_embeds_in_a_re_embedding_is_given_up_and_it_completes(world, caplog):
    """The re-embedding spends the same budget: an item the provider always refuses must
    neither be sent every hour forever nor keep its agent's re-embedding open."""
    items = _agent_rows(world.tenant_id, embedded=True)
    agent = _agent_of("chunk", items["chunk"])
    owned = set(items.items())
    with _sends_recorded() as sent:
        _new_model(world, agent, "embed-t")
        assert owned <= set(sent)  # the change's own send, not counted against the budget
        for attempt in range(1, embedding_sweep.MAX_ATTEMPTS + 1):
            _reembedding_checked_now(agent.id)
            _sweep_reembedding()
            for item in owned:
                assert sent.count(item) == attempt + 1
                assert _state(*item).embed_attempts == attempt
            assert _reembed_due_at(agent.id) is not None

        # The last send's wait runs out with the items still unembedded: given up, once,
        # visibly, and the re-embedding is done (nothing of it is owed any more).
        _reembedding_checked_now(agent.id)
        with caplog.at_level(logging.WARNING, logger="shared.ai.knowledge.reembedding"):
            assert _sweep_reembedding()["given_up"] >= len(owned)
        assert "gave up" in caplog.text
        assert all(_state(*item).embed_gave_up_at is not None for item in owned)
        assert _reembed_due_at(agent.id) is None

        # Neither sweep sends them again.
        _sweep_reembedding()
        _age(items, days=1)
        for item in owned:
            _last_swept(*item, days=1)
        _sweep()
    for item in owned:
        assert sent.count(item) == embedding_sweep.MAX_ATTEMPTS + 1


def test_a_suspended_tenants_re_embedding_waits_without_spending_its_budget(world, app):
    """Its worker would drop each send: counted, the items would be given up for nothing."""
    items = _agent_rows(world.tenant_id, embedded=True)
    agent = _agent_of("chunk", items["chunk"])
    with _sends_recorded():
        _new_model(world, agent, "embed-t")
    root = login(falcon.testing.TestClient(app), create_super_admin())
    path = f"/api/admin/tenants/{world.tenant_id}"
    assert root.call("DELETE", path).status_code == 204

    with _sends_recorded() as sent:
        for _ in range(embedding_sweep.MAX_ATTEMPTS + 2):
            _reembedding_checked_now(agent.id)
            _sweep_reembedding()
    assert not set(items.items()) & set(sent)
    assert all(_state(*item)[1:] == (0, None, None) for item in items.items())
    assert _reembed_due_at(agent.id) is not None

    # Reactivated, its re-embedding is re-driven: waiting was not dropping it.
    assert root.call("PATCH", path, json={"status": "active"}).status_code == 200
    with _sends_recorded() as sent:
        _reembedding_checked_now(agent.id)
        _sweep_reembedding()
    assert set(items.items()) <= set(sent)


def test_a_sweeps_messages_each_hold_one_tenants_items(world, other_workspace, app, broker):
    """The tenant gate (and a dead letter's console) take a message's tenant from its first
    item: a message mixing tenants would drop another tenant's items with a suspended one's."""
    from workers import queues

    first = _agent_rows(world.tenant_id)
    second = _agent_rows(uuid.UUID(other_workspace.tenant["id"]))
    _age(first, days=2)  # the oldest owed: the first tenant's items lead each kind
    _age(second, days=1)
    deliver = queue.EMBED.enqueuer
    held: list = []
    queue.EMBED.set_enqueuer(held.extend)
    try:
        _sweep()
    finally:
        queue.EMBED.set_enqueuer(deliver)
    # The first tenant is suspended between the sweep's send and its messages' run.
    root = login(falcon.testing.TestClient(app), create_super_admin())
    assert root.call("DELETE", f"/api/admin/tenants/{world.tenant_id}").status_code == 204

    deliver(held)
    for kind, item_id in second.items():
        wait_until(lambda k=kind, i=item_id: _state(k, i).embedding, f"the other's {kind} embedded")
    broker.join(queues.KNOWLEDGE, timeout=20_000)
    assert all(_state(kind, i).embedding is None for kind, i in first.items())
