"""The event catalogue: every event type the platform emits, and which can trigger rules.

Webhook subscriptions and automation triggers validate against this table, and
``GET /api/outgoing-webhooks/event-types`` serves it.
"""

from __future__ import annotations

from typing import NamedTuple


class EventType(NamedTuple):
    name: str
    description: str
    #: Whether automation rules may trigger on it.
    automation: bool


CATALOGUE: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType("conversation.created", "A conversation started", True),
        EventType("conversation.assigned", "A conversation was assigned to an agent", True),
        EventType("conversation.unassigned", "A conversation lost its assignee", True),
        EventType("conversation.status_changed", "A conversation changed status", True),
        EventType("conversation.tags_updated", "A conversation's tags changed", True),
        EventType("conversation.read", "An agent read a conversation", False),
        EventType("conversation.transferred", "A conversation was transferred", True),
        EventType("conversation.taken_over", "A human took over a conversation", True),
        EventType("conversation.handed_off", "An AI agent handed a conversation to humans", True),
        EventType("conversation.expired", "A conversation expired", True),
        EventType("message.created", "A message was received or sent", True),
        EventType("message.status_updated", "A provider reported a delivery status", True),
        EventType("contact.created", "A new contact wrote in", True),
        EventType("contact.updated", "A contact was updated", True),
        EventType("note.created", "A private note was added", True),
        EventType("csat.submitted", "A CSAT rating was submitted", True),
        EventType("sla.breached", "An SLA due time passed", True),
        EventType(
            "scheduled_message.failed", "A scheduled message could not be sent when due", True
        ),
        EventType("agent.created", "An agent was created", False),
        EventType("agent.updated", "An agent was updated", False),
        EventType("agent.deleted", "An agent was deleted", False),
        EventType("agent.status_changed", "An agent went online or offline", False),
        EventType("role.created", "A role was created", False),
        EventType("role.updated", "A role was updated", False),
        EventType("role.deleted", "A role was deleted", False),
        EventType("api_key.created", "An API key was created", False),
        EventType("api_key.revoked", "An API key was revoked", False),
        EventType("csat.survey_sent", "A CSAT survey was sent", False),
        EventType("campaign.started", "A campaign started", False),
        EventType("campaign.completed", "A campaign finished", False),
        EventType("campaign.cancelled", "A campaign was cancelled", False),
        EventType("campaign.failed", "A campaign stopped for good on an error", False),
        EventType("template.status_changed", "A WhatsApp template review result", False),
        EventType("integration_account.connected", "A channel account was connected", False),
        EventType("integration_account.disconnected", "A channel account was disconnected", False),
        EventType("automation.alert_triggered", "An automation alert threshold was crossed", False),
        # Subscribable (e.g. by a monitoring endpoint); never delivered to the endpoint they
        # are about, and an exhausted delivery of a webhook.* event emits nothing (no loops).
        EventType(
            "webhook.delivery_exhausted", "A webhook delivery failed after every retry", False
        ),
        EventType("webhook.endpoint_disabled", "An outgoing webhook endpoint was disabled", False),
    )
}


def is_known(event_type: str) -> bool:
    return event_type in CATALOGUE
