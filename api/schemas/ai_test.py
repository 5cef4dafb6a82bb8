"""The AI agent test endpoint: a typed message in, the agent's answer and decision out."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.common import Input

TestText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class AiTestTurn(Input):
    """A made-up earlier message: the contact's, or the agent's own."""

    sender: Literal["contact", "agent"]
    text: TestText


class AiTestRequest(Input):
    message: TestText = Field(description="What the contact writes.")
    history: list[AiTestTurn] = Field(
        default_factory=list, max_length=50, description="Earlier messages, oldest first."
    )


class AiTestSource(BaseModel):
    kind: Literal["qna", "chunk", "product"]
    id: uuid.UUID
    source_id: uuid.UUID | None
    score: float


class AiTestHandoff(BaseModel):
    handoff: bool
    reason: (
        Literal[
            "keyword",
            "explicit_request",
            "max_turns",
            "low_confidence",
            "model_error",
            "usage_limit",
        ]
        | None
    ) = None
    division_id: uuid.UUID | None = None
    message: str | None = Field(None, description="What the contact would be told.")
    detail: str | None = None


class AiTestTokens(BaseModel):
    prompt: int
    completion: int
    total: int


class AiTestResult(BaseModel):
    reply: str | None = Field(description="The answer; null when the agent would hand off.")
    sources: list[AiTestSource]
    handoff: AiTestHandoff
    tokens: AiTestTokens
    provider: str
    model: str | None
