"""What an ``Idempotency-Key`` is bound to: its caller and the request it first named.

A key reused with different parameters is another request and is refused (Stripe's
rule): replaying the first answer would report as done something that was never done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from shared.context import Ctx


def fingerprint(params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a request's parameters (equal requests, equal prints)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def caller_scope(ctx: Ctx) -> tuple[str, ...]:
    """Whose keys these are: the API key, else the user; system callers share the tenant's.

    Two integrations of one workspace that both number their requests 1, 2, 3... must not
    replay each other's answers.
    """
    if ctx.api_key_id is not None:
        return ("api_key", str(ctx.api_key_id))
    if ctx.user_id is not None:
        return ("user", str(ctx.user_id))
    return ()
