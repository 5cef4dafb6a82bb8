"""An approved template stored directly, for tests elsewhere that send one (no Meta needed)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from shared.db import session_scope
from shared.models import WaTemplate


def approved_template(
    tenant_id: uuid.UUID | str,
    integration_account_id: uuid.UUID | str,
    name: str,
    *,
    language: str = "en_US",
    body: str = "Your order {{1}} is on its way.",
    components: list[dict[str, Any]] | None = None,
) -> uuid.UUID:
    with session_scope() as session:
        template = WaTemplate(
            tenant_id=uuid.UUID(str(tenant_id)),
            integration_account_id=uuid.UUID(str(integration_account_id)),
            meta_template_id=str(secrets.randbelow(10**15)),
            name=name,
            language=language,
            category="UTILITY",
            status="APPROVED",
            components=components or [{"type": "BODY", "text": body}],
        )
        session.add(template)
        session.flush()
        return template.id
