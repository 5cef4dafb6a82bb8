"""Ids a configuration body names must be the caller's tenant's: a 422 naming the field otherwise.

Like automation rules (and unlike path ids, which answer 404): the request is well
addressed, one of its fields is wrong.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.context import Ctx
from shared.errors import ValidationFailed
from shared.models import Division


def check_division(session: Session, ctx: Ctx, division_id: uuid.UUID | None, field: str) -> None:
    if division_id is None:
        return
    # NOTE: share-locked until commit, as automation rules lock the divisions they name:
    # a deletion not yet committed is waited for (then the division is gone: 422), and
    # a later one waits for this save and takes the division off the new row.
    found = session.scalar(
        select(Division.id)
        .where(Division.tenant_id == ctx.tenant_id, Division.id == division_id)
        .with_for_update(read=True, key_share=True)
    )
    if found is None:
        raise ValidationFailed.field(field, "no such division in this workspace")
