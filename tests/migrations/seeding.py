"""Rows the migration tests seed before they move a revision up or down."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.models import Integration, Tenant


def tenant_with_integration(
    session: Session, name: str, channel: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new tenant named ``name`` with its ``channel`` integration: their ids."""
    tenant = Tenant(name=name, slug=f"{name.lower()}-{uuid.uuid4().hex[:8]}")
    session.add(tenant)
    session.flush()
    integration = Integration(tenant_id=tenant.id, channel=channel)
    session.add(integration)
    session.flush()
    return tenant.id, integration.id
