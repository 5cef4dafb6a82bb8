"""What one connected agent may receive: the conversations list's visibility rule, in memory.

A stream process cannot ask PostgreSQL about every event for every client, so each
connection keeps a :class:`Viewer` (the rule's shape, the agent and their
divisions) loaded once, and every entry carries its conversation's assignee and
division (:func:`shared.realtime.feed.scope_of`). The rule is
:mod:`shared.inbox.access`'s: everything with ``conversations.manage``; otherwise
what is assigned to them and the unassigned conversations of their divisions
(every unassigned one when they belong to none).

:data:`EPOCHS` is an epoch cache used only for its epochs: any committed write to
what a viewer is made of (users, roles, tenants, revoked tokens, API keys, division
memberships) gives the tenant a new epoch, and the stream process re-authenticates
that tenant's connections within a few seconds. A super admin deleted or whose
password is reset (which ends their impersonations) belongs to no tenant: the write
moves every tenant's epoch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import epoch_cache
from shared.context import Ctx
from shared.inbox import access
from shared.models import ApiKey, DivisionMember, RevokedToken, Role, SuperAdmin, Tenant, User

EPOCHS = epoch_cache.EpochCache(
    "realtime_access",
    tables=[
        model.__table__.name
        for model in (User, Role, Tenant, RevokedToken, ApiKey, DivisionMember, SuperAdmin)
    ],
    per_tenant=True,
    ignore={
        User.__table__.name: frozenset(
            {"last_login_at", "status", "full_name", "avatar_url", "updated_at"}
        ),
        ApiKey.__table__.name: frozenset({"last_used_at"}),
        SuperAdmin.__table__.name: frozenset({"last_login_at", "full_name", "updated_at"}),
    },
    max_entries=1,
    redis_key=("realtime", "access_epoch"),
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """One agent's visibility, as the stream applies it to each entry's scope."""

    tenant_id: uuid.UUID
    user_id: str | None
    shape: str
    divisions: frozenset[str]
    permissions: frozenset[str] = frozenset()

    def can_see(self, scope: dict[str, Any]) -> bool:
        if "c" not in scope and scope.get("p"):
            # NOTE: its own permission, not the conversations rule: a supervisor
            # (``conversations.manage``) received every role and webhook event.
            return scope["p"] in self.permissions
        if self.shape == access.EVERYTHING:
            return True
        if self.shape == access.NOTHING:
            return False
        if "c" not in scope:
            return bool(scope.get("t"))
        return self._sees(scope.get("a"), scope.get("d")) or self._sees(
            scope.get("pa"), scope.get("pd")
        )

    def sees_as(self, other: Viewer) -> bool:
        """Whether ``other`` admits the same conversations (no query: the rule's inputs).

        A re-check that finds a different answer owes the client a ``reset``: what it holds
        was chosen by the old rule. ``permissions`` is left out: of it, only
        ``conversations.manage`` decides conversations, and that is already ``shape``."""
        return (
            self.shape == other.shape
            and self.user_id == other.user_id
            and self.divisions == other.divisions
        )

    def loses(self, scope: dict[str, Any]) -> bool:
        """Whether the event takes its conversation out of this viewer's sight: they saw
        it before (``pa``/``pd``) and not after (``a``/``d``). Their client must drop it
        and hears nothing more of it (its next events carry the new scope)."""
        if "c" not in scope or self.shape != access.OWN_AND_DIVISIONS:
            return False
        before = self._sees(scope.get("pa"), scope.get("pd"))
        return before and not self._sees(scope.get("a"), scope.get("d"))

    def _sees(self, assignee: str | None, division: str | None) -> bool:
        if assignee is not None:
            return assignee == self.user_id
        return not self.divisions or division in self.divisions


def load_viewer(session: Session, ctx: Ctx) -> Viewer:
    """The caller's viewer: one query for their divisions (none when they see everything)."""
    shape, _ = access.visibility(ctx)
    divisions: frozenset[str] = frozenset()
    if shape == access.OWN_AND_DIVISIONS:
        divisions = frozenset(
            str(d)
            for d in session.scalars(
                select(DivisionMember.division_id).where(
                    DivisionMember.tenant_id == ctx.tenant_id,
                    DivisionMember.user_id == ctx.user_id,
                )
            )
        )
    user = str(ctx.user_id) if ctx.user_id else None
    return Viewer(ctx.tenant_id, user, shape, divisions, frozenset(ctx.permissions))


def epoch_tags(tenant_ids: list[Any]) -> dict[Any, tuple | None]:
    """Each tenant's access epoch now, in one Redis round trip (None: Redis cannot say)."""
    keys = tuple({k for t in tenant_ids for k in EPOCHS.epoch_keys(t)})
    epochs = epoch_cache.Epochs(epoch_cache._read(keys)) if keys else None
    return {t: epochs.tag(EPOCHS, t) if epochs else None for t in tenant_ids}
