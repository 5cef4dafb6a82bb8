"""Who is acting: the context every service receives along with its session."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.errors import Forbidden
from shared.events import Actor, Causation


@dataclass(frozen=True, slots=True)
class Ctx:
    """The caller of a service: its tenant, identity, permissions and request metadata.

    The API builds one per authenticated request; workers and the scheduler build
    one with :meth:`system` so the same services serve all three processes.
    """

    tenant_id: uuid.UUID
    actor: Actor
    user_id: uuid.UUID | None = None
    role: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None
    ip: str | None = None
    #: Set when the caller authenticated with an API key.
    api_key_id: uuid.UUID | None = None
    #: Set when the caller authenticated with a JWT (logout revokes it).
    token_jti: uuid.UUID | None = None
    token_expires_at: dt.datetime | None = None
    #: When that JWT was issued (a refresh checks it against a password change).
    token_issued_at: dt.datetime | None = None
    #: The login session of that JWT (refreshes continue it; logout revokes all of it).
    session_id: uuid.UUID | None = None
    #: The super admin acting through an impersonation token (the ``imp`` claim).
    impersonator_id: uuid.UUID | None = None

    @classmethod
    def system(cls, tenant_id: uuid.UUID, *, actor: Actor | None = None) -> Ctx:
        """A context for background work: every permission, acting as the system."""
        from shared.identity.permissions import ALL_KEYS

        return cls(tenant_id=tenant_id, actor=actor or Actor.system(), permissions=ALL_KEYS)

    @classmethod
    def automation(
        cls,
        tenant_id: uuid.UUID,
        rule_id: uuid.UUID,
        causation: Causation,
        *,
        user_id: uuid.UUID | None = None,
    ) -> Ctx:
        """A context for a rule's actions: every permission, acting as the rule.

        Its events carry ``causation`` (the chain they extend); ``user_id`` (the
        rule's creator) authors what only a person can, such as notes.
        """
        from shared.identity.permissions import ALL_KEYS

        actor = Actor("automation", rule_id, causation)
        return cls(tenant_id=tenant_id, actor=actor, user_id=user_id, permissions=ALL_KEYS)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` unless the caller holds ``permission``."""
        if permission not in self.permissions:
            raise Forbidden(f"This action needs the '{permission}' permission")

    def require_all(self, permissions: Iterable[str], action: str) -> None:
        """Raise :class:`Forbidden` unless the caller holds every one of ``permissions``.

        APPSEC: nobody grants a permission they lack, or acts on someone who holds one (a
        manager of agents must not make anyone, themselves included, an admin).
        """
        missing = sorted(set(permissions) - self.permissions)
        if missing:
            raise Forbidden(
                f"{action} needs permissions you do not hold: {', '.join(missing)}",
                details=[{"permission": key, "message": "not held"} for key in missing],
            )

    def refuse_impersonation(self, action: str) -> None:
        """Raise :class:`Forbidden` for a super admin acting through an impersonation token.

        APPSEC: an impersonation lasts its hour and ends with its grant or its super admin;
        a credential made during it (an API key, a password) would outlive both.
        """
        if self.impersonator_id is not None:
            raise Forbidden(f"{action} is not allowed while impersonating")

    def refuse_api_key(self, action: str) -> None:
        """Raise :class:`Forbidden` for a caller authenticated by an API key.

        APPSEC: a key is revoked to end what it can do; a credential it made (another
        key, a password it knows) would outlive the revocation, so a leaked key could
        never be taken back. Those need a logged-in session.
        """
        if self.api_key_id is not None:
            raise Forbidden(f"{action} needs a logged-in session, not an API key")

    def is_self(self, user_id: uuid.UUID) -> bool:
        return self.user_id is not None and self.user_id == user_id
