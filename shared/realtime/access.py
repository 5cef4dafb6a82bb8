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

An access *mark* dates, in the tenant stream's positions, the last change of what one
agent sees (:data:`MARK_LUA`): a client resuming from before it was chosen by another
rule, whatever happened while it was disconnected, and is sent a ``reset`` first.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import epoch_cache
from shared.context import Ctx
from shared.inbox import access
from shared.models import ApiKey, DivisionMember, RevokedToken, Role, SuperAdmin, Tenant, User
from shared.realtime import feed
from shared.redis_client import key

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


def principal(viewer: Viewer, api_key_id: Any) -> str:
    """Whose visibility ``viewer`` is: the agent's (every tab, token or impersonation of
    them shares it), or the API key's."""
    return viewer.user_id or f"key:{api_key_id}"


def fingerprint(viewer: Viewer) -> str:
    """What :meth:`Viewer.sees_as` compares, short: equal fingerprints, same conversations."""
    rule = "|".join((viewer.shape, viewer.user_id or "", *sorted(viewer.divisions)))
    return hashlib.sha256(rule.encode()).hexdigest()[:16]


def mark_key(tenant_id: Any, who: str) -> str:
    """The Redis hash of one principal's access: its fingerprint and its mark."""
    return key("realtime", "access_mark", str(tenant_id), str(who))


#: KEYS: the tenant's stream, the principal's hash. ARGV: fingerprint, principal, MINID,
#: the hash's and the stream's expiry. Returns the mark: unchanged while the fingerprint is
#: the one recorded, else a new entry XADDed to the stream (so later than every id a client
#: of the old rule holds) and recorded with the new fingerprint.
#: NOTE: no record (never written, expired, lost by Redis) counts as a change: a resume
#: then resets, never keeps a list the old rule chose.
MARK_LUA = """
local recorded = redis.call('HMGET', KEYS[2], 'fp', 'mark')
local mark = recorded[2]
if recorded[1] ~= ARGV[1] or not mark then
  mark = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[3], '*',
    'kind', 'access', 'principal', ARGV[2], 'fp', ARGV[1])
  redis.call('HSET', KEYS[2], 'fp', ARGV[1], 'mark', mark)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return mark
"""


def mark_call(tenant_id: Any, viewer: Viewer, api_key_id: Any) -> tuple[list[str], list[Any]]:
    """``MARK_LUA``'s keys and args for one client's viewer."""
    who = principal(viewer, api_key_id)
    keys = [feed.stream_key(tenant_id), mark_key(tenant_id, who)]
    expiry = feed.IDLE_EXPIRY_SECONDS
    return keys, [fingerprint(viewer), who, feed.min_id(), expiry, expiry]
