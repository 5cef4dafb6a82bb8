"""Base model for representations: built from ORM rows, dumped as JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def data(cls, obj: Any) -> dict[str, Any]:
        """The JSON-ready dict of ``obj`` (an event's ``data``, an activity log's after)."""
        return cls.model_validate(obj).model_dump(mode="json")
