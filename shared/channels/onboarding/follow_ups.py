"""Work a new connection asks of other domains, recorded by the connection's own event.

A WhatsApp account that arrives with a WhatsApp Business Account (Embedded Signup
sets ``settings.waba_id``) needs its message templates synced (``sync_wa_templates``,
owned by the WA Templates domain). This package does not import that domain: the
need travels in the ``integration_account.connected`` outbox event, written in the
transaction that creates the account, so it is as durable as the account itself.

The templates domain turns it into work with a dispatch target, registered where its
actor is declared (``workers/actors/...``)::

    def target(session, event):
        account_id = follow_ups.template_sync_account(event)
        if account_id is not None:
            ...  # record/enqueue sync_wa_templates(account_id) after commit

    dispatch.register_target("wa_templates.on_connected", target)

Dispatch runs every target once per event, in one transaction with the event's
``processed`` mark (:mod:`shared.dispatch`), so the sync is asked for exactly once,
and re-asked by the outbox sweeper if dispatch was lost.
"""

from __future__ import annotations

import uuid
from typing import Any

CONNECTED = "integration_account.connected"


def template_sync_account(event: Any) -> uuid.UUID | None:
    """The account whose templates must be synced because of ``event``, if any.

    ``event`` is an outbox row (``type``, ``data``): the connection of a WhatsApp
    account that has a ``settings.waba_id``.
    """
    if getattr(event, "type", None) != CONNECTED:
        return None
    data = getattr(event, "data", None) or {}
    if data.get("channel") != "whatsapp" or not (data.get("settings") or {}).get("waba_id"):
        return None
    try:
        return uuid.UUID(str(data.get("id")))
    except ValueError:
        return None
