"""Provider callbacks (public): Meta's verification handshakes and the inbound POST receivers.

Every POST is verified over its raw body, stored and acknowledged with 200 at once;
``process_inbound`` does the rest in a worker. See :mod:`shared.channels.receive` for
the signature rules, the dedupe and what happens to unknown recipients.
"""

from __future__ import annotations

import types

import falcon
from pydantic import BaseModel

from api.endpoint import Plain, endpoint
from api.request_parts import raw_body
from shared.channels import receive

# NOTE: importing the actor installs the after-commit enqueuer of process_inbound.
from workers.actors import channels_inbound as _process_inbound  # noqa: F401

TAGS = ("Webhooks",)


class Ack(BaseModel):
    """Counts of the units of the callback: new, already received, and dropped."""

    stored: int
    duplicates: int
    dropped: int


def _headers(req: falcon.Request) -> dict[str, str]:
    """The request headers the ack path reads or keeps (not all of them: a cheaper dict)."""
    found = ((name, req.get_header(name)) for name in receive.KEPT_HEADERS)
    return {name: value for name, value in found if value is not None}


def _verify(resource, req, resp):
    resp.content_type = falcon.MEDIA_TEXT
    resp.text = receive.verify_subscription(req.context.db, req.params)


def _receive_meta(resource, req, resp):
    receipt = receive.receive_meta(req.context.db, resource.route, raw_body(req), _headers(req))
    # PERF: plain ints; the suite still checks them against Ack (VALIDATE_RESPONSES).
    return Plain(receipt.as_dict())


class MetaReceiver:
    """A Meta webhook URL: GET answers the handshake, POST receives callbacks.

    ``route`` fixes which ``object`` values the POST accepts (see ``receive.ROUTE_OBJECTS``).
    """

    def __init__(self, route: str, verify_summary: str, receive_summary: str):
        self.route = route
        verify = endpoint(
            verify_summary,
            public=True,
            produces="text/plain",
            errors=(403,),
            description="Echoes hub.challenge (text/plain) when hub.verify_token is known; 403.",
            tags=TAGS,
        )(_verify)
        post = endpoint(
            receive_summary,
            public=True,
            response=Ack,
            accepts=("application/json",),
            errors=(401,),
            description="Verified by X-Hub-Signature-256 over the raw body (401 otherwise).",
            tags=TAGS,
        )(_receive_meta)
        self.on_get = types.MethodType(verify, self)
        self.on_post = types.MethodType(post, self)


class EmailReceiver:
    @endpoint(
        "Receive inbound email webhook",
        public=True,
        response=Ack,
        accepts=("application/json",),
        errors=(401,),
        description=(
            'Body {"recipient", "mime": base64 of the raw message}; header X-Inbound-Signature:'
            ' t=<unix>,v1=<hex HMAC-SHA256(inbound_signing_key, "<t>." + raw body)>.'
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp):
        return Plain(receive.receive_email(req.context.db, raw_body(req), _headers(req)).as_dict())


ROUTES = [
    (
        "/api/webhooks/meta",
        MetaReceiver(
            "meta", "Meta webhook verification", "Receive Meta webhook (WhatsApp + Instagram)"
        ),
    ),
    (
        "/api/webhooks/messenger",
        MetaReceiver(
            "messenger",
            "Meta webhook verification for Messenger",
            "Receive Messenger inbound webhook events",
        ),
    ),
    (
        "/api/webhooks/instagram",
        MetaReceiver(
            "instagram",
            "Meta webhook verification for Instagram",
            "Receive Instagram inbound webhook events",
        ),
    ),
    ("/api/webhooks/email", EmailReceiver()),
]
