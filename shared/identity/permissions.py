"""Permission keys and the built-in roles every tenant starts with."""

from __future__ import annotations

from typing import NamedTuple


class Permission(NamedTuple):
    key: str
    description: str
    #: Built-in roles holding it by default (``admin`` holds every key).
    defaults: tuple[str, ...]


PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        "conversations.manage",
        "See all conversations, assign others, bulk actions, take over",
        ("supervisor", "admin"),
    ),
    Permission(
        "quick_replies.manage", "Shared quick replies, CSV import/export", ("supervisor", "admin")
    ),
    Permission("analytics.view", "Analytics, CSAT analytics, SLA reports", ("supervisor", "admin")),
    Permission("campaigns.manage", "Campaigns", ("supervisor", "admin")),
    Permission("automation.view", "Automation reads and worker metrics", ("supervisor", "admin")),
    Permission("automation.manage", "Automation writes, retries, global control", ("admin",)),
    Permission("ai_agents.review", "AI agent reads, usage, evaluations", ("supervisor", "admin")),
    Permission("ai_agents.manage", "AI agent configuration", ("admin",)),
    Permission("agents.manage", "Agents, divisions, division membership", ("admin",)),
    Permission("roles.manage", "Roles", ("admin",)),
    Permission("sla.manage", "SLA policy writes", ("admin",)),
    Permission("settings.manage", "Working hours, timezone, chat expiration", ("admin",)),
    Permission("integrations.manage", "Integrations, accounts, WhatsApp templates", ("admin",)),
    Permission("webhooks.manage", "Outgoing webhooks", ("admin",)),
    Permission("activity_logs.view", "Activity logs", ("admin",)),
    Permission("api_keys.manage", "Creating API keys", ("admin",)),
    Permission("billing.manage", "Tenant billing", ("admin",)),
)

ALL_KEYS: frozenset[str] = frozenset(p.key for p in PERMISSIONS)

#: Built-in role name -> (description, permission keys).
BUILTIN_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (
        description,
        tuple(p.key for p in PERMISSIONS if name == "admin" or name in p.defaults),
    )
    for name, description in (
        ("admin", "Full access to the workspace"),
        ("supervisor", "Manages conversations, reports and campaigns"),
        ("agent", "Answers the conversations assigned to them"),
    )
}
