"""A template is a WhatsApp (or API channel) message: other channels cannot send one."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Message

TEMPLATE = {"name": "order_update", "language": "en_US"}


@pytest.mark.parametrize("channel", ["email", "messenger", "instagram"])
def test_a_template_on_a_channel_without_templates_is_422_and_stores_nothing(
    workspace, inbox, channel
):
    """Stored and queued, it was sent as an empty email, or failed on Messenger and
    Instagram ("nothing to send") after the 201."""
    conversation = inbox.conversation(channel=channel)
    resp = workspace.call(
        "POST", f"/api/conversations/{conversation['id']}/messages", json={"template": TEMPLATE}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"][0]["field"] == "template"
    with session_scope() as session:
        stored = session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == conversation["id"])
        )
    assert stored == 0
