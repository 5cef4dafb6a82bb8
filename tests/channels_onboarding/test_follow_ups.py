"""Which connections ask for a WhatsApp template sync (the hook the templates domain reads)."""

from __future__ import annotations

import types
import uuid

import pytest

from shared.channels.onboarding.follow_ups import template_sync_account

ACCOUNT = str(uuid.uuid4())


def _event(type_="integration_account.connected", channel="whatsapp", settings=None):
    data = {"id": ACCOUNT, "channel": channel, "settings": settings or {}}
    return types.SimpleNamespace(type=type_, data=data)


def test_a_whatsapp_account_with_a_waba_asks_for_a_sync():
    assert template_sync_account(_event(settings={"waba_id": "1"})) == uuid.UUID(ACCOUNT)


@pytest.mark.parametrize(
    "event",
    [
        _event(),  # no WABA: nothing to sync
        _event(channel="messenger", settings={"waba_id": "1"}),
        _event(type_="integration_account.disconnected", settings={"waba_id": "1"}),
        types.SimpleNamespace(type="message.created", data=None),
    ],
)
def test_other_events_ask_for_nothing(event):
    assert template_sync_account(event) is None
