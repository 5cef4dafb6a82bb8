"""What endpoints may subscribe to: the event catalogue, with a sample payload per type."""

from __future__ import annotations

import datetime as dt
import typing
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from shared.channels.views import IntegrationAccountView
from shared.event_types import CATALOGUE
from shared.schemas.campaigns import CampaignCounts, CampaignView
from shared.schemas.csat import SurveyView
from shared.schemas.identity import AgentView, ApiKeyView, RoleView
from shared.schemas.inbox import ContactView, ConversationView
from shared.schemas.messages import MessageView
from shared.schemas.team import NoteView
from shared.schemas.timed import ScheduledMessageView
from shared.webhooks.views import WebhookView

#: Sent only by the test endpoint; not in the catalogue, so nobody subscribes to it.
TEST_EVENT = "webhook.test"

_SAMPLE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
_SAMPLE_AT = "2024-08-25T09:30:00Z"


def _example(view: type[BaseModel], **values: Any) -> dict[str, Any]:
    """A sample of ``view`` (the schema an event's emitter dumps), every field present: a
    nullable field is null, others a plausible value; ``values`` override by name. Built
    through the view itself, so a field added to it shows in the sample too."""
    data: dict[str, Any] = {}
    for name, field in view.model_fields.items():
        if name in values or name in _NAMED:
            data[name] = values.get(name, _NAMED.get(name))
            continue
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):  # Optional: null
            data[name] = None
            continue
        origin = typing.get_origin(annotation) or annotation
        if isinstance(origin, type) and issubclass(origin, BaseModel):
            data[name] = _example(origin)
        else:
            data[name] = _VALUES[origin]
    return view.model_validate(data).model_dump(mode="json")


_VALUES: dict[Any, Any] = {
    uuid.UUID: _SAMPLE_ID,
    dt.datetime: _SAMPLE_AT,
    str: "sample",
    int: 1,
    float: 1.0,
    bool: False,
    list: [],
    dict: {},
}
#: Plausible values of common field names (else a type's default above).
_NAMED: dict[str, Any] = {
    "channel": "whatsapp",
    "full_name": "Ada Agent",
    "email": "ada@example.com",
    "direction": "inbound",
    "sender_type": "contact",
    "content_type": "text",
    "body": "Hello!",
    "priority": "normal",
    "url": "https://example.com/hooks/omnistream",
    "timezone": "Europe/Paris",
    "prefix": "os_live_ab12",
}


def _conversation(**extra: Any) -> Callable[[], dict[str, Any]]:
    """A ``conversation.*`` event's ``data``: the conversation's view (its GET), with what
    the event adds (``extra``: field names and sample values)."""
    return lambda: _example(ConversationView, status="open", tags=["vip"]) | extra


_ID = str(_SAMPLE_ID)

#: Sample ``data`` per event type, built from the schema its emitter uses (the resource's
#: view, plus the event's own fields) or, where the emitter writes a plain dict, the same
#: keys. tests/webhooks/test_event_samples.py compares each with a real event's keys.
_TYPED: dict[str, Callable[[], dict[str, Any]]] = {
    "conversation.created": _conversation(),
    "conversation.assigned": _conversation(previous_assignee_id=None),
    "conversation.unassigned": _conversation(previous_assignee_id=_ID),
    "conversation.status_changed": _conversation(previous_status="pending"),
    "conversation.tags_updated": _conversation(added=["vip"], removed=[]),
    "conversation.read": _conversation(reader_id=_ID, read_inbound_count=3),
    "conversation.transferred": _conversation(
        transfer_id=_ID,
        from_agent_id=_ID,
        from_division_id=None,
        to_agent_id=_ID,
        to_division_id=_ID,
        note="Billing question",
    ),
    "conversation.taken_over": _conversation(
        previous_assignee_id=None, from_ai=True, transfer_id=_ID
    ),
    "conversation.handed_off": _conversation(
        reason="customer_asked",
        detail="The customer asked for a person",
        ai_agent_id=_ID,
        message_id=_ID,
    ),
    "conversation.expired": _conversation(inactive_minutes=1440),
    "message.created": lambda: _example(MessageView, status="received"),
    "message.status_updated": lambda: (
        _example(MessageView, direction="outbound", sender_type="agent", status="delivered")
        | {"previous_status": "sent"}
    ),
    "contact.created": lambda: _example(ContactView, external_id="15550100", phone="+15550100"),
    "contact.updated": lambda: (
        _example(ContactView, external_id="15550100", phone="+15550100")
        | {"changed_fields": ["name"]}
    ),
    "note.created": lambda: _example(NoteView, body="Called them back"),
    "csat.survey_sent": lambda: _example(SurveyView, trigger="resolve"),
    "csat.submitted": lambda: _example(
        SurveyView, trigger="resolve", rating=5, comment="Quick!", rated_at=_SAMPLE_AT
    ),
    "sla.breached": lambda: {
        "id": _ID,
        "conversation_id": _ID,
        "policy_id": _ID,
        "policy_name": "Business hours",
        "kind": "first_response",
        "cycle_started_at": _SAMPLE_AT,
        "due_at": _SAMPLE_AT,
        "breached_at": _SAMPLE_AT,
    },
    "scheduled_message.failed": lambda: _example(
        ScheduledMessageView,
        status="failed",
        failed_at=_SAMPLE_AT,
        error_code="window_closed",
        error_message="The 24-hour window closed",
    ),
    "agent.created": lambda: _example(AgentView, status="offline"),
    "agent.updated": lambda: _example(AgentView, status="offline"),
    "agent.deleted": lambda: _example(AgentView, status="offline"),
    "agent.status_changed": lambda: (
        _example(AgentView, status="online") | {"previous_status": "offline"}
    ),
    "role.created": lambda: _example(RoleView, name="Supervisor", permissions=["inbox.view"]),
    "role.updated": lambda: _example(RoleView, name="Supervisor", permissions=["inbox.view"]),
    "role.deleted": lambda: _example(RoleView, name="Supervisor", permissions=["inbox.view"]),
    "api_key.created": lambda: _example(ApiKeyView, name="CRM sync"),
    "api_key.revoked": lambda: _example(ApiKeyView, name="CRM sync", revoked_at=_SAMPLE_AT),
    "template.status_changed": lambda: {
        "id": _ID,
        "integration_account_id": _ID,
        "meta_template_id": "1234567890",
        "name": "order_update",
        "language": "en_US",
        "status": "APPROVED",
        "previous_status": "PENDING",
        "reason": None,
        "source": "webhook",
    },
    "integration_account.connected": lambda: _integration_account(),
    "integration_account.disconnected": lambda: _integration_account(),
    "automation.alert_triggered": lambda: {
        "alert_id": _ID,
        "rule_id": _ID,
        "rule_name": "Route VIPs",
        "kind": "failure_rate",
        "observed": 0.5,
        "threshold": 0.2,
        "details": {},
        "triggered_at": _SAMPLE_AT,
    },
    "webhook.delivery_exhausted": lambda: {
        "delivery_id": _ID,
        "endpoint_id": _ID,
        "event_id": _ID,
        "event_type": "message.created",
        "attempts": 8,
        "last_status_code": 503,
        "last_error_kind": "status",
        "reason": "no 2xx after 8 attempts",
    },
    "webhook.endpoint_disabled": lambda: (
        _example(
            WebhookView,
            event_types=["message.created"],
            disabled_reason="failing_for_days",
            disabled_at=_SAMPLE_AT,
            max_concurrency=4,
            timeout_seconds=10.0,
        )
        | {"endpoint_id": _ID, "reason": "failing_for_days"}
    ),
}


def _integration_account() -> dict[str, Any]:
    """As ``accounts.account_view`` shows it: no signing secret outside its creation."""
    view = _example(IntegrationAccountView, external_id="15550100", status="active")
    view.pop("signing_secret")
    return view


def _campaign_sample(event_type: str) -> dict[str, Any]:
    """A ``campaign.*`` event's ``data``: the campaign's view (its GET, with counts), built
    with :class:`CampaignView` as the real events are, in the state the event leaves it.

    WHY: the sample was the generic ``{id, created_at}``; receivers written from it never
    saw the status, counts or, on ``campaign.failed``, the reason the real event carries.
    """
    status = event_type.split(".", 1)[1]
    ended = {"completed": _SAMPLE_AT} if status == "completed" else {}
    failure = (
        {"error_code": "template_refused", "error_message": "The template is no longer approved"}
        if status == "failed"
        else {}
    )
    counts = CampaignCounts(total=3, sent=2, delivered=2, read=1, replied=1, failed=1)
    if status == "started":
        counts = CampaignCounts(total=3, pending=3)
    view = {
        "id": _SAMPLE_ID,
        "name": "Spring sale",
        "status": "running" if status == "started" else status,
        "channel": "whatsapp",
        "integration_account_id": _SAMPLE_ID,
        "body": None,
        "template": {
            "name": "order_update",
            "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{name}}"}]}],
        },
        "scheduled_at": None,
        "timezone": None,
        "started_at": _SAMPLE_AT,
        "completed_at": None,
        "cancelled_at": _SAMPLE_AT if status == "cancelled" else None,
        "error_code": None,
        "error_message": None,
        "created_by": _SAMPLE_ID,
        "created_at": _SAMPLE_AT,
        "updated_at": _SAMPLE_AT,
        "counts": counts,
    }
    return CampaignView.model_validate(view | ended | failure).model_dump(mode="json")


def sample_data(event_type: str) -> dict[str, Any]:
    """A sample of ``event_type``'s ``data``, shaped as its emitter shapes the real one.

    WHY: the samples were hand-written per family (a ``message.*`` one had ``type``/``text``,
    the real events ``content_type``/``body``/``sender_type``/``attachments``...), and
    receivers written from them parsed fields that are never sent.
    """
    if event_type.startswith("campaign."):
        return _campaign_sample(event_type)
    return _TYPED[event_type]()


def envelope(
    event_id: uuid.UUID,
    event_type: str,
    occurred_at: dt.datetime | str,
    data: dict[str, Any],
    *,
    tenant_id: uuid.UUID | None = None,
    actor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body every attempt POSTs: Standard Webhooks' type/timestamp/data, plus context.

    ``occurred_at`` is API.md's name for the time; ``timestamp`` Standard Webhooks'. Both are
    sent, the same value, so a receiver written from either reads it.
    """
    timestamp = occurred_at if isinstance(occurred_at, str) else rfc3339(occurred_at)
    return {
        "id": str(event_id),
        "type": event_type,
        "occurred_at": timestamp,
        "timestamp": timestamp,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "actor": actor or {"type": "system", "id": None},
        "data": data,
    }


def envelope_of(event: Any) -> dict[str, Any]:
    """The envelope of a stored outbox event (``OutboxEvent``): what its deliveries POST."""
    return envelope(
        event.id,
        event.type,
        event.occurred_at,
        event.data,
        tenant_id=event.tenant_id,
        actor=actor_of(event),
    )


def actor_of(event: Any) -> dict[str, Any]:
    """The envelope's ``actor`` of a stored outbox event, with ``impersonated_by`` if set."""
    actor = {"type": event.actor_type, "id": str(event.actor_id) if event.actor_id else None}
    if getattr(event, "impersonated_by", None):
        actor["impersonated_by"] = event.impersonated_by
    return actor


def rfc3339(value: dt.datetime) -> str:
    """API.md's form of a time: RFC 3339 in UTC with ``Z``."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def event_types() -> list[dict[str, Any]]:
    """The subscribable types, with a description and a sample envelope each."""
    return [
        {
            "type": e.name,
            "description": e.description,
            "sample": envelope(_SAMPLE_ID, e.name, _SAMPLE_AT, sample_data(e.name)),
        }
        for e in CATALOGUE.values()
    ]


def is_subscribable(event_type: str) -> bool:
    return event_type in CATALOGUE
