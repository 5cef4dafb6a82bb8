"""Shapes shared by every group: list queries, pages and errors."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT

T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListQuery(Query):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail | dict]


class ErrorResponse(BaseModel):
    error: ErrorBody
