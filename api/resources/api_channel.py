"""The api channel: a tenant's own system posts contacts, conversations, messages and
delivery statuses into an ``api`` integration account; replies go to its callback URL.

Every route needs ``integrations.manage``; another tenant's account (or one of another
channel) is 404, a disabled account 409 ``account_disabled``, an account of the switched-off
api channel (its integration ``enabled: false``) 409 ``channel_disabled``. The domain is
:mod:`shared.channels.api_channel`; outbound delivery :mod:`shared.channels.api_callback`.
"""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.api_channel import (
    ApiContact,
    ApiConversationCreate,
    ApiMessageCreate,
    ApiStatusReport,
    CallbackTested,
    SecretRotated,
)
from shared.channels import api_channel
from shared.schemas.inbox import ContactView, ConversationView
from shared.schemas.messages import MessageView

TAGS = ("Integrations",)
MANAGE = api_channel.PERMISSION


class ApiContactsResource:
    @endpoint(
        "Create or update a contact of an api-channel account",
        permission=MANAGE,
        errors=(409,),
        body=ApiContact,
        response=ContactView,
        also=(201,),
        description=(
            "The contact is keyed by `source_id` (your id for it) on this account: another"
            " api account's same `source_id` is another contact. Answers 201 when it created"
            " the contact (contact.created), 200 when it existed; name, email and phone sent"
            " replace the stored ones (contact.updated)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: ApiContact):
        contact, created = api_channel.upsert_contact(req.context.db, ctx, id, body.identity())
        if created:
            resp.status = 201
        return contact


class ApiConversationsResource:
    @endpoint(
        "Open a conversation on an api-channel account",
        permission=MANAGE,
        errors=(409,),
        body=ApiConversationCreate,
        response=ConversationView,
        status=201,
        description=(
            "Creates the contact if new and opens a new conversation with it (even when one is"
            " open); emits conversation.created. Post messages into it with `conversation_id`."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: ApiConversationCreate):
        return api_channel.open_conversation(
            req.context.db, ctx, id, body.contact.identity(), subject=body.subject
        )


class ApiMessagesResource:
    @endpoint(
        "Post an inbound message to an api-channel account",
        permission=MANAGE,
        errors=(409,),
        body=ApiMessageCreate,
        response=MessageView,
        also=(201,),
        description=(
            "Stores a message from the contact exactly as a provider's inbound message is"
            " stored: the contact is created or updated, the message joins `conversation_id`"
            " (reopened if resolved), else the contact's open conversation on the account, else"
            " a new one; emits contact.created, conversation.created and message.created, so"
            " automation and outgoing webhooks see it. `content`, `attachments` (media ids from"
            " POST /api/media) or both. Answers 201, or 200 with the stored message when"
            " `external_message_id` was already posted (nothing is created twice)."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, body: ApiMessageCreate):
        posted = api_channel.post_message(
            req.context.db,
            ctx,
            id,
            contact=body.contact.identity() if body.contact else None,
            conversation_id=body.conversation_id,
            content=body.content,
            attachments=[a.media_id for a in body.attachments],
            external_message_id=body.external_message_id,
            subject=body.subject,
            choice=body.choice,
        )
        if posted.created:
            resp.status = 201
        return posted.message


class ApiMessageStatusResource:
    @endpoint(
        "Report the delivery status of an api-channel message",
        permission=MANAGE,
        errors=(409,),
        body=ApiStatusReport,
        response=MessageView,
        description=(
            "`delivered`, `read` or `failed` (with `error_code`/`error_message`) for an outbound"
            " message of the account. Statuses only move forward (queued < sent < delivered <"
            " read; failed only from queued or sent): a late or repeated report changes nothing"
            " and answers the message as it is. A change emits message.status_updated."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id, message_id, body: ApiStatusReport):
        return api_channel.report_status(
            req.context.db, ctx, id, message_id, **body.model_dump(exclude_none=True)
        )


class ApiRotateSecretResource:
    @endpoint(
        "Rotate the signing secret of an api-channel account",
        permission=MANAGE,
        response=SecretRotated,
        description=(
            "Answers the new `whsec_` secret, shown only here. For 24 hours callbacks carry two"
            " signatures (new and previous secret) in `webhook-signature`, so the receiver can"
            " switch without losing a message."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        _account, secret, expires = api_channel.rotate_secret(req.context.db, ctx, id)
        return Plain({"signing_secret": secret, "previous_secret_expires_at": expires})


class ApiTestCallbackResource:
    @endpoint(
        "Send a test callback from an api-channel account",
        permission=MANAGE,
        errors=(409, 429),
        response=CallbackTested,
        description=(
            "POSTs a signed `webhook.test` event to the account's callback_url now (one attempt,"
            " not retried; also on a disabled account) and answers what was sent and received;"
            " 409 when the account has no callback_url. The request waits for the receiver, so"
            " each server process lets a few test sends and agent tests wait at once and"
            " answers 429 with `Retry-After` beyond them."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx, id):
        return Plain(api_channel.send_test(req.context.db, ctx, id))


_BASE = "/api/integration-accounts/{id:uuid}/api"

ROUTES = [
    (f"{_BASE}/contacts", ApiContactsResource()),
    (f"{_BASE}/conversations", ApiConversationsResource()),
    (f"{_BASE}/messages", ApiMessagesResource()),
    (f"{_BASE}/messages/{{message_id:uuid}}/status", ApiMessageStatusResource()),
    (f"{_BASE}/rotate-secret", ApiRotateSecretResource()),
    (f"{_BASE}/test-callback", ApiTestCallbackResource()),
]
