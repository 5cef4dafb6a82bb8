"""Response JSON is written by orjson, as pydantic wrote it; JSON from outside is read bounded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
import zoneinfo

import pydantic
import pydantic_core
import pytest

from shared import json_encoding
from shared.json_encoding import dumps

ID = uuid.UUID("4400735c-938a-42fb-8c59-19a0ca279e8c")
UTC = dt.UTC


class Status(enum.StrEnum):
    OPEN = "open"


class Priority(enum.IntEnum):
    HIGH = 2


@dataclasses.dataclass
class Ref:
    id: uuid.UUID
    at: dt.datetime


class View(pydantic.BaseModel):
    id: uuid.UUID
    at: dt.datetime
    amount: decimal.Decimal


SAME_AS_PYDANTIC = {
    "uuid": ID,
    "utc with microseconds": dt.datetime(2026, 12, 5, 20, 1, 2, 345678, tzinfo=UTC),
    "utc": dt.datetime(2026, 12, 5, 20, 1, 2, tzinfo=UTC),
    "zoneinfo utc": dt.datetime(2026, 12, 5, tzinfo=zoneinfo.ZoneInfo("UTC")),
    "zero offset, not utc": dt.datetime(2026, 12, 5, tzinfo=zoneinfo.ZoneInfo("Europe/London")),
    "offset": dt.datetime(2026, 12, 5, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata")),
    "naive": dt.datetime(2026, 12, 5, 20, 1, 2, 5),
    "date": dt.date(2026, 12, 5),
    "time": dt.time(10, 20, 30),
    "time with a zone": dt.time(10, 20, tzinfo=UTC),
    "timedelta": dt.timedelta(seconds=90),
    "decimal": decimal.Decimal("12.50"),
    "str enum": Status.OPEN,
    "int enum": Priority.HIGH,
    "set": {1},
    "tuple": (1, "a"),
    "bytes": b"abc",
    "dataclass": Ref(ID, dt.datetime(2026, 1, 1, tzinfo=UTC)),
    "pydantic model": View(id=ID, at=dt.datetime(2026, 1, 1, tzinfo=UTC), amount="1.10"),
    "uuid keys": {ID: 1},
    "int keys": {1: "a"},
    "floats": [0.1, 1e20, 1e-7, -0.0, 1.5e300, 3.0, 123456789.123],
    "integers": [-5, 2**63 - 1, 2**64 - 1],
    "integer past 64 bits": 2**70,
    "text": 'héllo 😀 </script> \u2028 \x01 "q" \\',
    "scalars": [None, True, False, ""],
    "an inbox page": {
        "items": [
            {
                "id": ID,
                "status": "open",
                "tags": ["vip"],
                "custom_attributes": {"plan": "pro", "seats": 3},
                "last_message_at": dt.datetime(2026, 12, 5, 20, 1, 2, 345678, tzinfo=UTC),
                "snoozed_until": None,
                "contact": {"id": ID, "name": "Ada", "avatar_url": None},
            }
        ]
        * 3,
        "next_cursor": "WyIyMDI2Il0",
    },
}


@pytest.mark.parametrize("value", SAME_AS_PYDANTIC.values(), ids=SAME_AS_PYDANTIC.keys())
def test_the_bytes_are_pydantics(value):
    assert dumps(value) == pydantic_core.to_json(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_json_cannot_hold_is_written_null(value):
    assert dumps({"ratio": value}) == b'{"ratio":null}'


def test_an_object_neither_can_write_fails_as_before():
    with pytest.raises(pydantic_core.PydanticSerializationError):
        dumps({"x": object()})


def test_reading_bounds_depth_as_a_value_error_and_keeps_every_digit():
    """What the body parser, the webhook receivers and the Graph and callback clients read
    with: a document too deep is a ValueError they already answer, never RecursionError."""
    deep = "[" * 5000 + "]" * 5000
    for raw in (deep, deep.encode()):
        with pytest.raises(json_encoding.TooDeep):
            json_encoding.loads(raw)
    assert issubclass(json_encoding.TooDeep, ValueError)
    at_bound = "[" * json_encoding.MAX_DEPTH + "]" * json_encoding.MAX_DEPTH
    assert json_encoding.loads(at_bound) is not None
    assert json_encoding.loads(b'{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890
    }
