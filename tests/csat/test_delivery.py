"""The survey message goes out like any reply: send_outbound posts it to the channel."""

from __future__ import annotations

from tests.channels_api.conftest import ApiChannel
from tests.channels_outbound.conftest import wait_for_status
from tests.csat.conftest import enable, link_of, set_status, survey_messages
from tests.waiting import wait_until
from tests.webhooks.conftest import path, receiver  # noqa: F401


def test_the_survey_on_resolve_reaches_the_customer_through_the_channel(
    ws,
    receiver,  # noqa: F811
    path,  # noqa: F811
    client,
):
    enable(ws, ["api"])
    api = ApiChannel(ws, receiver.url(path))
    conversation_id = api.inbound("Where is my parcel?")["conversation_id"]
    receiver.plan(path, ("status", 200, {}, b'{"id": "crm-1"}'))

    set_status(ws, conversation_id, "resolved")
    (message,) = survey_messages(ws, conversation_id)
    wait_for_status(ws, conversation_id, message["id"], "sent")
    delivered = wait_until(lambda: receiver.at(path), "the survey callback")
    assert link_of(message)[1] in delivered[0].body.decode()

    survey_id, token = link_of(message)
    resp = client.simulate_patch(
        f"/api/public/csat-surveys/{survey_id}", json={"token": token, "rating": 5}
    )
    assert resp.status_code == 200, resp.text
