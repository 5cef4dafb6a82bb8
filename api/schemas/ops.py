"""Query and answer shapes of the operators' console API (``/api/ops/...``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.schemas.common import Query
from shared.ops.console import DEFAULT_MINUTES


class OverviewQuery(Query):
    minutes: Annotated[int, Field(ge=1, le=24 * 60)] = DEFAULT_MINUTES


class DelayedQuery(Query):
    queue: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    kind: Literal["retry", "scheduled"] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class DeadLetterQuery(Query):
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    cursor: Annotated[str, Field(max_length=512)] | None = None
    include_requeued: bool = False
