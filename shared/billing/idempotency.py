"""``Idempotency-Key`` on the billing POSTs that charge money (API.md: a repeat within 24 h
returns the first response).

The key is claimed in Redis (``SET NX``, a short lease) before the request does anything;
the response is stored over the claim after the request's transaction commits, and the
claim is dropped if it rolls back (the request failed: a retry runs again). A repeat while
the first request is still running answers 409. Keys are per workspace and per route.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from shared import db
from shared.errors import Conflict
from shared.redis_client import get_redis, key

#: How long a claimed key may stay in flight (claimed, not yet committed).
LEASE_SECONDS = 60
#: How long a committed response is replayed.
KEEP_SECONDS = 24 * 3600
_PENDING = b"pending"


@dataclass(frozen=True, slots=True)
class Claim:
    name: str


def _name(tenant_id: uuid.UUID, route: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return key("billing", "idempotency", str(tenant_id), route, digest)


def claim_or_replay(
    session: Session, tenant_id: uuid.UUID, route: str, idempotency_key: str | None
) -> tuple[Claim | None, Any]:
    """``(claim, None)`` to go on (claim None without a key), or ``(None, first response)``."""
    if idempotency_key is None:
        return None, None
    name = _name(tenant_id, route, idempotency_key)
    client = get_redis()
    for _ in range(2):  # the first request's claim may expire between SET and GET
        if client.set(name, _PENDING, nx=True, ex=LEASE_SECONDS):
            db.after_rollback(session, lambda: client.delete(name))
            return Claim(name), None
        found = client.get(name)
        if found == _PENDING:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress; retry shortly"
            )
        if found is not None:
            return None, json.loads(found)
    raise Conflict("A request with this Idempotency-Key is still in progress; retry shortly")


def remember(session: Session, claim: Claim | None, body: Any) -> Any:
    """Store ``body`` as the key's response once the transaction commits; return ``body``."""
    if claim is not None:
        stored = json.dumps(body, default=str)
        db.after_commit(session, lambda: get_redis().set(claim.name, stored, ex=KEEP_SECONDS))
    return body
