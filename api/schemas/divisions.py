"""Request shapes of the Divisions group."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StringConstraints

from api.schemas.common import Input, Update
from api.schemas.notes import NoNul
from shared.inbox.divisions import MAX_AGENT_IDS

DivisionName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NoNul
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), NoNul]


class DivisionCreate(Input):
    name: DivisionName
    description: Description = ""


class DivisionUpdate(Update):
    name: DivisionName | None = None
    description: Description | None = None


class AgentIds(Input):
    agent_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_AGENT_IDS)
