"""Demo data: a tenant with agents, divisions, contacts, conversations and messages.

``python -m shared.demo`` (or ``make demo``) creates the tenant ``demo`` (or refreshes
it: its inbox rows are replaced, its admin's password reset) and prints the login.
Rows go in with COPY, so the default volume takes seconds and the benchmark's
(100,000 conversations and 1,000,000 messages per tenant) takes minutes.

Determinism: every conversation draws from its own ``random.Random`` seeded by
``(seed, tenant slug, conversation number)``, so the same flags produce the same
rows; and conversation counters are computed from the very messages written, in a
first pass, because COPY must write contacts and conversations before their messages.

Example::

    python -m shared.demo --conversations 100000 --messages 1000000 --tenants 2 --seed 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select, text
from sqlalchemy.orm import Session

from shared.channels import accounts
from shared.context import Ctx
from shared.db import get_engine, session_scope
from shared.identity.security import hash_password
from shared.identity.tenants import register_tenant
from shared.models import Role, Tenant, User
from shared.models.ai import AiAgent, AiAgentAssignment, KnowledgeSource, QnaPair
from shared.models.inbox import CHANNELS, Contact, Division, DivisionMember

DEMO_PASSWORD = "demo-password-2024"  # noqa: S105 (printed for the demo login)
DIVISIONS = ("Sales", "Support", "Billing")
TAGS = ("vip", "lead", "refund", "complaint", "wholesale", "returning", "urgent", "newsletter")
FIRST = [
    "Ana",
    "Ben",
    "Carla",
    "Diego",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kemal",
    "Lena",
    "Marco",
    "Nadia",
    "Omar",
    "Paula",
    "Quentin",
    "Rosa",
    "Samir",
    "Tanya",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Luca",
    "Amara",
    "Noah",
    "Sofia",
]
LAST = [
    "Silva",
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Tanaka",
    "Okafor",
    "Novak",
    "Jensen",
    "Costa",
    "Ivanova",
    "Nguyen",
    "Ahmed",
    "Fischer",
    "Moreau",
    "Santos",
    "Yilmaz",
    "Kim",
    "Patel",
    "Lopez",
    "Cohen",
    "Berg",
]
COUNTRIES = ("US", "BR", "DE", "FR", "ES", "IT", "GB", "MX", "IN", "NG", "TR", "PT")
INBOUND = (
    "Hi, where is my order {ref}? It was supposed to arrive yesterday.",
    "Hello! Do you ship to {city}?",
    "I would like a refund for order {ref}, the {item} arrived broken.",
    "Can I change the delivery address for {ref}?",
    "Is the {item} available in blue?",
    "Thanks a lot, that solved it!",
    "My payment failed twice, can you check invoice {ref}?",
    "What are your opening hours on Saturday?",
    "The tracking link for {ref} does not work.",
    "Can I speak to a human please?",
    "I received the wrong size of {item}, how do I exchange it?",
    "Do you have a discount code for returning customers?",
)
OUTBOUND = (
    "Hi! Thanks for reaching out, let me check order {ref} for you.",
    "Your order {ref} is on its way, tracking will update within 24 hours.",
    "We have issued a refund for {ref}; it shows up in 3 to 5 business days.",
    "Yes, we ship to {city}. Delivery takes 2 to 4 days.",
    "The {item} is back in stock next week.",
    "I have updated the delivery address, anything else I can help with?",
    "Sorry about that! A replacement {item} ships today.",
    "We are open 9:00 to 18:00 on Saturdays.",
    "Here is a 10% discount code for you: WELCOME10",
    "You're welcome, have a great day!",
)
CITIES = ("Lisbon", "Berlin", "São Paulo", "Lagos", "Austin", "Madrid", "Milan", "Istanbul")
ITEMS = ("jacket", "sneakers", "backpack", "headphones", "coffee grinder", "desk lamp")
#: Statuses by age: the newest conversations are the work in hand (the inbox's first
#: pages), older ones are mostly resolved.
FRESH_STATUSES = (("open", 75), ("pending", 20), ("snoozed", 5))
API_CHANNEL = "api"
STATUSES = (("open", 25), ("pending", 10), ("snoozed", 5), ("resolved", 60))
#: The newest share of conversations drawn from ``FRESH_STATUSES``, at least the first
#: two pages of a default inbox list whatever the volume.
FRESH_SHARE, FRESH_MIN = 0.05, 100
#: Roughly what one message of the demo costs to build and COPY here: how long to announce.
SECONDS_PER_MESSAGE = 1 / 25_000
OUT_STATUSES = (("read", 50), ("delivered", 30), ("sent", 15), ("failed", 5))


@dataclass
class Volume:
    contacts: int = 5_000
    conversations: int = 10_000
    messages: int = 100_000
    agents: int = 10
    days: int = 90


@dataclass
class DemoTenant:
    tenant_id: uuid.UUID
    slug: str
    admin_email: str
    password: str
    agent_ids: list[uuid.UUID] = field(default_factory=list)
    agent_emails: list[str] = field(default_factory=list)
    division_ids: list[uuid.UUID] = field(default_factory=list)
    #: The tenant's api-channel account: replies on its conversations are handed over.
    api_account_id: uuid.UUID | None = None
    #: The AI agent answering new conversations of the api-channel account (offline provider).
    ai_agent_id: uuid.UUID | None = None


@dataclass
class Counts:
    contacts: int = 0
    conversations: int = 0
    messages: int = 0


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], [w for _, w in table])[0]


def prepare_tenant(
    session: Session, *, slug: str, name: str, agents: int, password: str = DEMO_PASSWORD
) -> DemoTenant:
    """Create the tenant (or empty its inbox and reset its users' password); add agents."""
    admin_email = f"admin@{slug}.example.com"
    tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()
    password_hash = hash_password(password)
    if tenant is None:
        tenant = register_tenant(
            session,
            organization_name=name,
            full_name="Demo Admin",
            email=admin_email,
            password=password,
            slug=slug,
        ).tenant
    else:
        _empty_inbox(session, tenant.id)
        session.execute(
            text("UPDATE users SET password_hash = :h WHERE tenant_id = :t"),
            {"h": password_hash, "t": tenant.id},
        )
    role_id = session.scalar(
        select(Role.id).where(Role.tenant_id == tenant.id, Role.name == "agent")
    )
    demo = DemoTenant(tenant.id, slug, admin_email, password)
    demo.api_account_id = _api_account(session, tenant.id).id
    demo.ai_agent_id = _ai_agent(session, tenant.id, demo.api_account_id)
    existing = {
        email: user_id
        for email, user_id in session.execute(
            select(User.email, User.id).where(User.tenant_id == tenant.id)
        )
    }
    for i in range(agents):
        email = f"agent{i:02d}@{slug}.example.com"
        if email not in existing:
            existing[email] = session.scalar(
                insert(User)
                .values(
                    tenant_id=tenant.id,
                    role_id=role_id,
                    email=email,
                    full_name=f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}",
                    password_hash=password_hash,
                    status="online" if i % 3 else "offline",
                )
                .returning(User.id)
            )
        demo.agent_ids.append(existing[email])
        demo.agent_emails.append(email)
    for i, division in enumerate(DIVISIONS):
        division_id = session.scalar(
            insert(Division)
            .values(tenant_id=tenant.id, name=division, description=f"The {division} team")
            .returning(Division.id)
        )
        demo.division_ids.append(division_id)
        members = demo.agent_ids[i::3]
        if members:
            session.execute(
                insert(DivisionMember),
                [
                    {"tenant_id": tenant.id, "division_id": division_id, "user_id": user_id}
                    for user_id in members
                ],
            )
    return demo


def _api_account(session: Session, tenant_id: uuid.UUID):
    """The demo's api-channel account, without a callback URL: replies to its
    conversations are handed over at once (``sent``), so a newcomer's reply works with no
    Meta account or mail relay; set a ``callback_url`` to receive them."""
    found = accounts.default_account(session, tenant_id, API_CHANNEL)
    return found or accounts.create_account(
        session, Ctx.system(tenant_id), channel=API_CHANNEL, name="Demo shop", external_id=None
    )


AI_AGENT_NAME = "Demo assistant"
#: The demo agent's knowledge: what a newcomer can ask it.
AI_FAQ = (
    (
        "What are your opening hours?",
        "We are open Monday to Friday, 9am to 6pm, and Saturday 10am to 2pm.",
    ),
    (
        "How long does shipping take?",
        "Orders ship within a day; delivery takes 3 to 5 business days.",
    ),
    (
        "Can I return an order?",
        "Yes: returns are free within 30 days of delivery, with the receipt.",
    ),
    ("Which payment methods do you accept?", "We accept cards, PayPal and bank transfer."),
    (
        "Where is my order?",
        "You can follow your order with the tracking link in your shipping email.",
    ),
    (
        "Do you ship abroad?",
        "We ship to every EU country; shipping abroad takes 5 to 8 business days.",
    ),
)


def _ai_agent(session: Session, tenant_id: uuid.UUID, account_id: uuid.UUID) -> uuid.UUID:
    """The demo's AI agent (offline provider, a few QnA pairs) on the api-channel account.

    New conversations of that account get its answers with no model and no key; the
    assignment is recreated on a refresh (emptying the inbox drops it with the divisions).
    """
    agent = session.scalars(
        select(AiAgent).where(AiAgent.tenant_id == tenant_id, AiAgent.name == AI_AGENT_NAME)
    ).one_or_none()
    if agent is None:
        agent = AiAgent(
            tenant_id=tenant_id,
            name=AI_AGENT_NAME,
            description="Answers the Demo shop's customers from its FAQ",
            provider="offline",
            instructions="Answer questions about the Demo shop's orders, shipping and returns.",
            settle_seconds=1.0,
            # NOTE: full-text ranks of a good FAQ match are around 0.05-0.1 (retrieval.py).
            confidence_threshold=0.02,
            handoff_message="Let me pass you to a colleague: someone will answer shortly.",
        )
        session.add(agent)
        session.flush()
        source = KnowledgeSource(
            tenant_id=tenant_id,
            ai_agent_id=agent.id,
            kind="text",
            title="Store FAQ",
            content="\n".join(f"{q}\n{a}" for q, a in AI_FAQ),
            status="ready",
        )
        session.add(source)
        session.flush()
        session.add_all(
            QnaPair(
                tenant_id=tenant_id, ai_agent_id=agent.id, source_id=source.id, question=q, answer=a
            )
            for q, a in AI_FAQ
        )
    assigned = session.scalar(
        select(AiAgentAssignment.id).where(
            AiAgentAssignment.tenant_id == tenant_id,
            AiAgentAssignment.ai_agent_id == agent.id,
            AiAgentAssignment.integration_account_id == account_id,
        )
    )
    if assigned is None:
        session.add(
            AiAgentAssignment(
                tenant_id=tenant_id, ai_agent_id=agent.id, integration_account_id=account_id
            )
        )
        session.flush()
    return agent.id


_DEPENDENTS = text(
    """
    WITH RECURSIVE deps(rel, depth) AS (
        SELECT unnest(ARRAY['contacts'::regclass, 'divisions'::regclass]), 0
        UNION
        SELECT c.conrelid::regclass, d.depth + 1
        FROM pg_constraint c JOIN deps d ON c.confrelid = d.rel
        WHERE c.contype = 'f' AND c.conrelid <> c.confrelid AND d.depth < 10
    )
    SELECT rel::text, max(depth) AS depth,
           bool_or(EXISTS (SELECT 1 FROM pg_attribute a
                           WHERE a.attrelid = rel AND a.attname = 'tenant_id'
                             AND NOT a.attisdropped)) AS scoped
    FROM deps GROUP BY rel ORDER BY max(depth) DESC
    """
)


def _empty_inbox(session: Session, tenant_id: uuid.UUID) -> None:
    """Delete the tenant's contacts, divisions and everything hanging off them.

    PERF: messages reference conversations with no index led by conversation_id, so a
    cascading DELETE of conversations scans messages once per conversation. When every
    dependent table is tenant-scoped, each is emptied by ``tenant_id`` with the FK
    triggers off (``session_replication_role``, superuser only, as in development);
    otherwise the plain cascade runs, slowly but correctly.
    """
    session.execute(text("SET LOCAL statement_timeout = 0"))
    tables = session.execute(_DEPENDENTS).all()
    if all(scoped for _, _, scoped in tables):
        try:
            with session.begin_nested():
                session.execute(text("SET LOCAL session_replication_role = replica"))
                for table, _, _ in tables:
                    session.execute(
                        text(f"DELETE FROM {table} WHERE tenant_id = :t"),  # noqa: S608 (catalog names)
                        {"t": tenant_id},
                    )
                session.execute(text("SET LOCAL session_replication_role = origin"))
            return
        except Exception as exc:  # not a superuser: fall back to the cascade
            print(f"fast delete unavailable ({type(exc).__name__}); cascading", file=sys.stderr)
    session.execute(delete(Contact).where(Contact.tenant_id == tenant_id))
    session.execute(delete(Division).where(Division.tenant_id == tenant_id))


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _messages(
    rng: random.Random, conv: dict, count: int, agent_ids: list[uuid.UUID], now: dt.datetime
) -> Iterator[tuple]:
    """The conversation's messages, oldest first, as COPY rows (deterministic per ``rng``)."""
    at = conv["created_at"]
    end = now if conv["status"] != "resolved" else conv["resolved_at"]
    step = max((end - at) / max(count, 1), dt.timedelta(seconds=5))
    step = min(step, dt.timedelta(hours=6))
    for i in range(count):
        inbound = i % 2 == 0 or rng.random() < 0.15
        ref = f"ref{rng.randrange(100_000):05d}"
        template = rng.choice(INBOUND if inbound else OUTBOUND)
        body = template.format(ref=ref, city=rng.choice(CITIES), item=rng.choice(ITEMS))
        at = min(at + step * rng.uniform(0.3, 1.0), end)
        if inbound:
            sender_type, sender_id, status = "contact", None, "received"
        else:
            human = agent_ids and (conv["assignee_id"] or rng.random() < 0.5)
            sender_type = "user" if human else "automation"
            sender_id = (conv["assignee_id"] or rng.choice(agent_ids)) if human else None
            status = _weighted(rng, OUT_STATUSES)
        yield (
            _uuid(rng),
            conv["tenant_id"],
            conv["id"],
            conv["channel"],
            "inbound" if inbound else "outbound",
            sender_type,
            sender_id,
            "text",
            body,
            status,
            at,
            at,
        )


MESSAGE_COPY_COLUMNS = (
    "id, tenant_id, conversation_id, channel, direction, sender_type, sender_id, content_type,"
    " body, status, created_at, updated_at"
)


def generate(demo: DemoTenant, volume: Volume, *, seed: int, progress=None) -> Counts:
    """COPY the tenant's contacts, conversations and messages; commit once at the end."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    base = random.Random(f"{seed}:{demo.slug}")
    contacts: list[dict] = []
    for i in range(volume.contacts):
        channel = CHANNELS[i % len(CHANNELS)]
        first, last = base.choice(FIRST), base.choice(LAST)
        contacts.append(
            {
                "id": _uuid(base),
                "channel": channel,
                "external_id": f"{channel}-{i:07d}",
                "name": f"{first} {last}",
                "phone": f"+{base.randrange(1, 99)}{base.randrange(10**9, 10**10)}"
                if channel == "whatsapp"
                else None,
                "email": f"{first.lower()}.{last.lower()}{i}@mail.example.com"
                if channel in ("email", "messenger")
                else None,
                "country": base.choice(COUNTRIES),
                "tags": base.sample(TAGS, base.choice((0, 0, 1, 2))),
                "created_at": now - dt.timedelta(days=volume.days + 1, seconds=i),
                "last_inbound_at": None,
            }
        )
    per_conversation = volume.messages // max(volume.conversations, 1)
    extra = volume.messages - per_conversation * volume.conversations
    span = dt.timedelta(days=volume.days).total_seconds()
    plans: list[tuple[dict, int, int]] = []
    first_fresh = volume.conversations - max(volume.conversations * FRESH_SHARE, FRESH_MIN)
    if not contacts:
        raise ValueError("conversations need at least one contact")
    # The work in hand is on the api channel, whose replies work without a provider.
    api_contacts = [c for c in contacts if c["channel"] == API_CHANNEL] or contacts
    contact_of: list[dict] = []
    for n in range(volume.conversations):
        rng = random.Random(f"{seed}:{demo.slug}:{n}")
        fresh = n >= first_fresh
        pool = api_contacts if fresh else contacts
        contact = pool[n % len(pool)]
        contact_of.append(contact)
        status = _weighted(rng, FRESH_STATUSES if fresh else STATUSES)
        # Newest conversations last; the latest few hours hold fresh, open work.
        created = now - dt.timedelta(seconds=span * (1 - (n + 1) / volume.conversations) + 60)
        count = per_conversation + (1 if n < extra else 0)
        conv = {
            "id": _uuid(rng),
            "tenant_id": demo.tenant_id,
            "contact_id": contact["id"],
            "channel": contact["channel"],
            "integration_account_id": demo.api_account_id
            if contact["channel"] == API_CHANNEL
            else None,
            "status": status,
            "snoozed_until": now + dt.timedelta(hours=rng.randrange(1, 48))
            if status == "snoozed"
            else None,
            "resolution_reason": "resolved" if status == "resolved" else None,
            "resolved_at": None,
            "priority": rng.choice(("low", "normal", "normal", "normal", "high", "urgent")),
            "assignee_id": rng.choice(demo.agent_ids)
            if demo.agent_ids and rng.random() < 0.8
            else None,
            "division_id": rng.choice(demo.division_ids)
            if demo.division_ids and rng.random() < 0.7
            else None,
            "tags": rng.sample(TAGS, rng.choice((0, 1, 1, 2))),
            "created_at": created,
        }
        if status == "resolved":
            conv["resolved_at"] = min(created + dt.timedelta(hours=rng.uniform(0.5, 72)), now)
        plans.append((conv, count, n))
    # Pass 1: counters from the messages themselves.
    for conv, count, n in plans:
        rng = random.Random(f"{seed}:{demo.slug}:{n}:messages")
        inbound = total = 0
        last = last_in = first_response = None
        preview = None
        for row in _messages(rng, conv, count, demo.agent_ids, now):
            total += 1
            last, preview = row[10], row[8][:200]
            if row[4] == "inbound":
                inbound += 1
                last_in = row[10]
            elif first_response is None and row[5] == "user":
                first_response = row[10]
        contact = contact_of[n]
        if last_in and (contact["last_inbound_at"] is None or last_in > contact["last_inbound_at"]):
            contact["last_inbound_at"] = last_in
        conv.update(
            message_count=total,
            inbound_count=inbound,
            last_message_at=last,
            last_inbound_at=last_in,
            last_message_preview=preview,
            first_response_at=first_response,
            last_activity_at=last or conv["created_at"],
            updated_at=last or conv["created_at"],
        )
    engine = get_engine()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            # NOTE: a bulk load outlives the API's statement timeout by design.
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute("SET LOCAL synchronous_commit = off")
            with cur.copy(
                "COPY contacts (id, tenant_id, channel, integration_account_id, external_id,"
                " name, phone, email, country, tags, last_inbound_at, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for c in contacts:
                    copy.write_row(
                        (
                            c["id"],
                            demo.tenant_id,
                            c["channel"],
                            # An api contact is the demo api account's (ingest.contact_scope).
                            demo.api_account_id if c["channel"] == API_CHANNEL else None,
                            c["external_id"],
                            c["name"],
                            c["phone"],
                            c["email"],
                            c["country"],
                            c["tags"],
                            c["last_inbound_at"],
                            c["created_at"],
                            c["created_at"],
                        )
                    )
            if progress:
                progress(f"  {len(contacts):,} contacts")
            columns = [
                "id",
                "tenant_id",
                "contact_id",
                "channel",
                "integration_account_id",
                "status",
                "snoozed_until",
                "resolution_reason",
                "resolved_at",
                "priority",
                "assignee_id",
                "division_id",
                "tags",
                "created_at",
                "message_count",
                "inbound_count",
                "last_message_at",
                "last_inbound_at",
                "last_message_preview",
                "first_response_at",
                "last_activity_at",
                "updated_at",
            ]
            with cur.copy(f"COPY conversations ({', '.join(columns)}) FROM STDIN") as copy:
                for conv, _, _ in plans:
                    copy.write_row(tuple(conv[c] for c in columns))
            if progress:
                progress(f"  {len(plans):,} conversations")
            written = 0
            # A tenth of the messages between progress lines (big volumes take minutes).
            report_every = max(volume.messages // 10, 100_000)
            with cur.copy(f"COPY messages ({MESSAGE_COPY_COLUMNS}) FROM STDIN") as copy:
                for conv, count, n in plans:
                    rng = random.Random(f"{seed}:{demo.slug}:{n}:messages")
                    for row in _messages(rng, conv, count, demo.agent_ids, now):
                        copy.write_row(row)
                        written += 1
                        if progress and written % report_every == 0:
                            progress(f"  {written:,} of {volume.messages:,} messages")
            if progress and written % report_every:
                progress(f"  {written:,} messages")
        conn.commit()
    finally:
        raw.close()
    # WHY: what autovacuum does to freshly loaded tables on a server in service, done now
    # (a server may run without it: this machine's CI configuration turns it off). Without
    # it no row's commit is marked on its page and no page is marked all-visible, so the
    # first read of every row rewrites its page (written back while it is being measured:
    # the inbox mix's first round ran ~25 % slower than its second on the same data) and
    # index-only scans read the heap anyway.
    with engine.connect() as vacuum:
        vacuum.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("contacts", "conversations", "messages"):
            vacuum.execute(text(f"VACUUM (ANALYZE) {table}"))
    return Counts(len(contacts), len(plans), written)


def build(
    volume: Volume, *, tenants: int = 1, seed: int = 1, slug: str = "demo", progress=print
) -> list[DemoTenant]:
    """Create or refresh ``tenants`` demo tenants (``demo``, ``demo-2``...) with ``volume`` each."""
    built = []
    for index in range(tenants):
        tenant_slug = slug if index == 0 else f"{slug}-{index + 1}"
        started = time.monotonic()
        with session_scope() as session:
            demo = prepare_tenant(
                session,
                slug=tenant_slug,
                name=f"Demo Store {index + 1}",
                agents=volume.agents,
            )
        counts = generate(demo, volume, seed=seed, progress=progress)
        progress(
            f"{tenant_slug}: {counts.contacts:,} contacts, {counts.conversations:,} conversations,"
            f" {counts.messages:,} messages in {time.monotonic() - started:.1f} s"
        )
        built.append(demo)
    return built


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Volume()
    parser.add_argument("--contacts", type=int, help="default: conversations / 2")
    parser.add_argument("--conversations", type=int, default=defaults.conversations)
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--agents", type=int, default=defaults.agents)
    parser.add_argument("--tenants", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slug", default="demo")
    args = parser.parse_args(argv)
    if args.contacts is None:
        args.contacts = max(1, args.conversations // 2)
    if not (1 <= args.conversations <= 5_000_000 and 0 <= args.messages <= 50_000_000):
        parser.error("--conversations 1..5,000,000, --messages 0..50,000,000")
    if not (args.contacts >= 1 and 1 <= args.tenants <= 20 and 0 <= args.agents <= 500):
        parser.error("--contacts >= 1, --tenants 1..20, --agents 0..500")
    return args


def estimate_seconds(volume: Volume, tenants: int) -> float:
    """Roughly how long :func:`build` takes here, to say so before it starts."""
    return tenants * (2 + (volume.messages + volume.conversations) * SECONDS_PER_MESSAGE)


def logins(demo: DemoTenant) -> list[str]:
    """The lines that tell a newcomer how to sign in as each of the tenant's users."""
    lines = [f"  admin   {demo.admin_email:<32} {demo.password}"]
    lines += [f"  agent   {email:<32} {demo.password}" for email in demo.agent_emails]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    volume = Volume(args.contacts, args.conversations, args.messages, args.agents)
    print(
        f"Building {args.tenants} demo tenant(s) of {volume.conversations:,} conversations and"
        f" {volume.messages:,} messages each: about"
        f" {estimate_seconds(volume, args.tenants):.0f} s"
    )
    started = time.monotonic()
    tenants = build(volume, tenants=args.tenants, seed=args.seed, slug=args.slug)
    print(f"done in {time.monotonic() - started:.1f} s")
    for demo in tenants:
        print(f"\nTenant {demo.slug!r}: log in with POST /api/auth/login as")
        print("\n".join(logins(demo)))
        print(
            f"  AI agent {AI_AGENT_NAME!r} answers new conversations of the api account"
            f" {demo.api_account_id}: POST /api/integration-accounts/{demo.api_account_id}"
            "/api/messages an inbound 'How long does shipping take?' and read its reply"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
