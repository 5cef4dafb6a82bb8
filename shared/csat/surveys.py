"""Surveys: sent (by an agent, or on resolve), read, and rated once through the link's token.

A survey is its row, its outbound message (:func:`create_outbound_message`, so it is
sent by ``send_outbound`` like any reply) and its ``csat.survey_sent`` event, written
in one transaction. The resend rule is the same for both triggers: a conversation
whose latest survey was sent less than ``resend_window_hours`` ago gets no other
(an agent's POST answers 409, the resolve transition sends nothing). So is opting out:
a contact who opted out gets neither (409 ``opted_out``, nothing sent on resolve). A
survey due on resolve but not sent is logged with its reason (``csat.survey_skipped``).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shared import activity
from shared.channels import account_lookup, choices
from shared.context import Ctx
from shared.csat import links, replies
from shared.csat import settings as csat_settings
from shared.errors import Conflict, DomainError, NotFound
from shared.events import Actor, emit
from shared.inbox.access import get_conversation, require_visible
from shared.inbox.messages import AccountDeleted, create_outbound_message
from shared.models import Contact, Conversation, CsatSurvey, Message
from shared.schemas.csat import SurveyView

log = logging.getLogger(__name__)

#: Resolution reasons that send a survey: a person (or their automation) closed it.
#: An expired conversation was abandoned; asking then is noise.
SURVEYED_REASONS = frozenset({"resolved"})


class SurveyExists(Conflict):
    code = "survey_exists"


class AlreadyRated(Conflict):
    code = "already_rated"


class OptedOut(Conflict):
    code = "opted_out"


def _db_now(session: Session) -> dt.datetime:
    from shared.inbox.states import db_now

    return db_now(session)


def _recent(
    session: Session, tenant_id: uuid.UUID, conversation_id: uuid.UUID, window_hours: int, now
) -> CsatSurvey | None:
    """The conversation's latest survey if it was sent within the resend window.

    A survey whose message failed never reached the customer: it spares them nothing,
    so it does not count (an agent may send another, the next resolve asks again).
    """
    return session.scalars(
        select(CsatSurvey)
        .outerjoin(
            Message,
            and_(Message.tenant_id == CsatSurvey.tenant_id, Message.id == CsatSurvey.message_id),
        )
        .where(
            CsatSurvey.tenant_id == tenant_id,
            CsatSurvey.conversation_id == conversation_id,
            CsatSurvey.sent_at > now - dt.timedelta(hours=window_hours),
            or_(Message.id.is_(None), Message.status != "failed"),
        )
        .order_by(CsatSurvey.sent_at.desc())
        .limit(1)
    ).first()


def _send(
    session: Session,
    ctx: Ctx,
    conversation: Conversation,
    settings: csat_settings.Settings,
    *,
    trigger: str,
    now: dt.datetime,
) -> CsatSurvey:
    """Write the survey, its message and its event; the conversation is locked by the caller."""
    if _account_deleted(session, conversation):
        # As a reply is (409): the send would fail for good, yet count as a survey sent.
        raise AccountDeleted()
    survey_id = uuid.uuid4()
    token = links.new_token()
    agent_id, division_id = conversation.assignee_id, conversation.division_id
    body = csat_settings.render(settings.message_template, links.survey_link(survey_id, token))
    # NOTE: "system": the survey is the platform's message, and it is sent on a resolved
    # conversation, which refuses human replies.
    message = create_outbound_message(session, ctx, conversation, body=body, sender_type="system")
    # The ratings as the channel's reply buttons: a tap rates the survey (see .replies).
    message.metadata_ = {
        **(message.metadata_ or {}),
        choices.KEY: replies.choices_for(survey_id),
        choices.LABEL_KEY: replies.LABEL,
    }
    survey = CsatSurvey(
        id=survey_id,
        tenant_id=ctx.tenant_id,
        conversation_id=conversation.id,
        message_id=message.id,
        agent_id=agent_id,
        division_id=division_id,
        channel=message.channel,
        trigger=trigger,
        token_hash=links.hash_token(token),
        created_by=ctx.user_id,
        sent_at=now,
        rating=None,
        comment=None,
        rated_at=None,
    )
    session.add(survey)
    session.flush()
    data = SurveyView.data(survey)
    activity.record(session, ctx, "csat.survey_sent", "csat_survey", survey.id, after=data)
    emit(session, "csat.survey_sent", data, tenant_id=ctx.tenant_id, actor=ctx.actor)
    return survey


def _account_deleted(session: Session, conversation: Conversation) -> bool:
    """Whether the account the conversation names was deleted (its id outlives it)."""
    account_id = conversation.integration_account_id
    if account_id is None:
        return False
    return account_lookup.named_account(session, conversation.tenant_id, account_id) is None


def send(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> CsatSurvey:
    """``POST /api/conversations/{id}/csat``: 409 when a survey went out within the window.

    409 ``opted_out`` for a contact who opted out: an agent's survey is as unsolicited
    as the automatic one (:func:`on_resolved`), and opting out refuses both.
    """
    conversation = get_conversation(session, ctx, conversation_id, for_update=True)
    if _opted_out(session, conversation):
        raise OptedOut(
            "The contact opted out of messages; no survey is sent to them",
            details=[{"field": "contact_id", "message": "the contact opted out"}],
        )
    settings = csat_settings.load(session, ctx.tenant_id)
    now = _db_now(session)
    if _recent(session, ctx.tenant_id, conversation.id, settings.resend_window_hours, now):
        raise SurveyExists(
            "This conversation already has a CSAT survey",
            details=[{"field": "conversation_id", "message": "survey already sent"}],
        )
    return _send(session, ctx, conversation, settings, trigger="manual", now=now)


def on_resolved(
    session: Session, ctx: Ctx, conversation: Conversation, *, reason: str, now: dt.datetime
) -> CsatSurvey | None:
    """Called by the resolve transition (conversation locked): survey it if the tenant wants.

    A survey due on a channel the tenant surveys but not sent is logged with its reason
    in the activity log (``csat.survey_skipped``, against the conversation, in the
    resolve's transaction): the customer never wrote in it (``no_customer_message``), a
    survey went out within the resend window (``survey_exists``), the contact opted out
    (``opted_out``: an automatic survey is an unsolicited message), or the channel refused
    it (say, WhatsApp's 24-hour window is closed: skipped in a savepoint; resolving never
    fails because of its survey). A channel the tenant does not survey, and a conversation
    that expired (nobody resolved it), are not skips: nothing is logged.
    """
    if reason not in SURVEYED_REASONS:
        return None
    settings = csat_settings.for_transaction(session, ctx.tenant_id)
    if not settings.surveys(conversation.channel):
        return None
    if conversation.last_inbound_at is None:
        # The customer never wrote in it (a campaign's, an agent's first message): there
        # is no help of ours to rate, and resolving such conversations in bulk is cleanup.
        return _skipped(
            session,
            ctx,
            conversation,
            "no_customer_message",
            "the customer never wrote in this conversation",
        )
    if _recent(session, ctx.tenant_id, conversation.id, settings.resend_window_hours, now):
        return _skipped(
            session,
            ctx,
            conversation,
            SurveyExists.code,
            f"a survey was sent within the last {settings.resend_window_hours} hours",
        )
    if _opted_out(session, conversation):
        # They asked for no unsolicited messages; a survey is one.
        return _skipped(
            session, ctx, conversation, OptedOut.code, "the contact opted out of messages"
        )
    try:
        with session.begin_nested():
            return _send(session, ctx, conversation, settings, trigger="resolve", now=now)
    except DomainError as error:
        return _skipped(session, ctx, conversation, error.code, str(error))


def _skipped(
    session: Session, ctx: Ctx, conversation: Conversation, reason: str, message: str
) -> None:
    """Log why the survey due on resolve was not sent (``csat.survey_skipped``).

    WHY: a log line is not where an operator looks for why a customer got no survey; the
    activity log, against the conversation, is (and a skip left no trace at all but the
    channel's refusals).
    """
    log.info("csat survey not sent for conversation %s: %s %s", conversation.id, reason, message)
    activity.record(
        session,
        ctx,
        "csat.survey_skipped",
        "conversation",
        conversation.id,
        after={"reason": reason, "message": message[:2000]},
    )


def _opted_out(session: Session, conversation: Conversation) -> bool:
    """Whether the conversation's contact opted out (as campaigns skip them)."""
    return (
        session.scalar(
            select(Contact.opted_out_at).where(
                Contact.tenant_id == conversation.tenant_id,
                Contact.id == conversation.contact_id,
            )
        )
        is not None
    )


def latest(session: Session, ctx: Ctx, conversation_id: uuid.UUID) -> CsatSurvey:
    """``GET /api/conversations/{id}/csat``: the conversation's latest survey, or 404."""
    require_visible(session, ctx, conversation_id)
    survey = session.scalars(
        select(CsatSurvey)
        .where(CsatSurvey.tenant_id == ctx.tenant_id, CsatSurvey.conversation_id == conversation_id)
        .order_by(CsatSurvey.sent_at.desc())
        .limit(1)
    ).first()
    if survey is None:
        raise NotFound("This conversation has no CSAT survey")
    return survey


def submit(
    session: Session, survey_id: uuid.UUID, *, token: str, rating: int, comment: str | None
) -> CsatSurvey:
    """The public rating: the token must be this survey's; a survey is rated once.

    APPSEC: an unknown survey and a wrong token answer the same 404, so the endpoint
    does not say which survey ids exist; 409 is only told to the token's holder.
    """
    survey = session.scalars(
        select(CsatSurvey).where(CsatSurvey.id == survey_id).with_for_update()
    ).first()
    if survey is None or not links.token_matches(token, survey.token_hash):
        raise NotFound("CSAT survey not found")
    if survey.rating is not None:
        raise AlreadyRated("This survey was already rated")
    contact_id = session.scalar(
        select(Conversation.contact_id).where(Conversation.id == survey.conversation_id)
    )
    rate(session, survey, rating, comment, contact_id=contact_id)
    return survey


def rate(
    session: Session,
    survey: CsatSurvey,
    rating: int,
    comment: str | None,
    *,
    contact_id: uuid.UUID | None,
) -> None:
    """Record the contact's rating of an unrated survey (locked by the caller) and emit
    csat.submitted: the link's submit and a channel button reply both come here."""
    now = _db_now(session)
    survey.rating, survey.comment, survey.rated_at = rating, comment or None, now
    session.flush()
    actor = Actor("contact", contact_id)
    ctx = Ctx(tenant_id=survey.tenant_id, actor=actor)
    data = SurveyView.data(survey)
    activity.record(session, ctx, "csat.submitted", "csat_survey", survey.id, after=data)
    emit(session, "csat.submitted", data, tenant_id=survey.tenant_id, actor=actor)


def rate_by_reply(session: Session, answer: replies.Answer, contact_id: uuid.UUID) -> bool:
    """A channel button reply's rating (see :mod:`.replies`), unless the survey is rated
    already (the first rating stands, as through the link); whether it was recorded."""
    if answer.survey.rating is not None:
        log.info("csat survey %s was already rated; the button reply is kept", answer.survey.id)
        return False
    rate(session, answer.survey, answer.rating, None, contact_id=contact_id)
    return True
