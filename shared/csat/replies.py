"""Ratings that arrive as a channel button reply instead of through the survey link.

A survey message offers the five ratings as reply choices (:mod:`shared.channels.choices`)
with ids ``csat:<survey id>:<rating>``. Inbound processing
(:func:`shared.channels.ingest.apply_message`) asks :func:`answered` whether a contact's
message picks one. It does only for a survey of the account's tenant, sent in a
conversation of that contact on that account: the channel vouches for who tapped, as the
token vouches for who opened the link, so a pasted or forged id rates nothing and the
message is handled as any other. Such a reply joins the surveyed conversation without
reopening it and rates the survey by the link's rules
(:func:`shared.csat.surveys.rate_by_reply`): once, a survey already rated keeps its rating.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.channels import choices
from shared.models import Conversation, CsatSurvey, IntegrationAccount

log = logging.getLogger(__name__)

PREFIX = "csat"
RATINGS = range(1, 6)
#: The button that opens WhatsApp's list of ratings: stars read in every language.
LABEL = "★ 1-5"


def choices_for(survey_id: uuid.UUID) -> list[dict[str, str]]:
    """The ratings a survey message offers, worst first, as stars."""
    return [choices.choice(f"{PREFIX}:{survey_id}:{n}", "★" * n) for n in RATINGS]


def _parse(choice_id: str | None) -> tuple[uuid.UUID, int] | None:
    parts = (choice_id or "").split(":")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in {str(n) for n in RATINGS}:
        return None
    try:
        return uuid.UUID(parts[1]), int(parts[2])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Answer:
    """A contact's button reply to one of their surveys: the survey (locked), the rating
    picked, and the surveyed conversation the reply joins."""

    survey: CsatSurvey
    rating: int
    conversation: Conversation


def answered(
    session: Session,
    account: IntegrationAccount,
    contact_id: uuid.UUID,
    metadata: dict[str, Any] | None,
) -> Answer | None:
    """The survey an inbound message rates, or None (not a rating, or not this contact's)."""
    parsed = _parse(choices.chosen(metadata))
    if parsed is None:
        return None
    survey_id, rating = parsed
    row = session.execute(
        select(CsatSurvey, Conversation)
        .join(Conversation, Conversation.id == CsatSurvey.conversation_id)
        .where(
            CsatSurvey.id == survey_id,
            CsatSurvey.tenant_id == account.tenant_id,
            Conversation.tenant_id == account.tenant_id,
            Conversation.contact_id == contact_id,
            Conversation.integration_account_id == account.id,
        )
        .with_for_update(of=CsatSurvey)
    ).first()
    if row is None:
        log.info("a csat button reply names survey %s, not one of this contact's", survey_id)
        return None
    return Answer(row[0], rating, row[1])
