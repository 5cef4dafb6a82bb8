"""Shapes shared by every group: request bodies, updates, list queries, pages and errors."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.time_bounds import EARLIEST_DAY, LATEST_DAY, NOT_A_DAY, written_as_day

T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: A date-only query parameter (``YYYY-MM-DD``): taken as text and read by the service with
#: :func:`shared.time_bounds.parse_day`, so every route answers the same 422 naming it.
#: (Pydantic's ``date`` also reads ``1704067200`` and ``2024-01-01T00:00:00Z`` as a day.)
DayParam = Annotated[str, Field(max_length=32, json_schema_extra={"format": "date"})]


def _in_supported_years(value: dt.datetime) -> dt.datetime:
    """Refuse a time in the years no request needs, where arithmetic leaves ``datetime``.

    Year 1 or 9999 with an offset falls outside Python's datetimes once converted to UTC,
    rounded to a bucket or moved by a day (:mod:`shared.time_bounds`). Compared by year,
    so a time without an offset (wall-clock time in a named zone) is checked the same way.
    """
    earliest, latest = EARLIEST_DAY.year, LATEST_DAY.year
    if not earliest <= value.year <= latest:
        raise PydanticCustomError(
            "datetime_out_of_range",
            "must be in the years {earliest} to {latest}",
            {"earliest": earliest, "latest": latest},
        )
    return value


#: An instant a client sends: RFC 3339 with an offset, in the years 1900 to 9000.
Instant = Annotated[AwareDatetime, AfterValidator(_in_supported_years)]
#: A time a client may send without an offset (then wall-clock time in a named timezone).
WallTime = Annotated[dt.datetime, AfterValidator(_in_supported_years)]


def _day_as_written(value: Any) -> Any:
    if not written_as_day(value):
        raise PydanticCustomError("date_format", NOT_A_DAY)
    return value


def _day_in_supported_years(value: dt.date) -> dt.date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise PydanticCustomError(
            "date_out_of_range",
            "must be between {earliest} and {latest}",
            {"earliest": str(EARLIEST_DAY), "latest": str(LATEST_DAY)},
        )
    return value


#: A day in a request body: ``YYYY-MM-DD`` only, as query parameters (:data:`DayParam`).
#: Pydantic's ``date`` alone read a Unix timestamp and a datetime at midnight as a day.
BodyDay = Annotated[
    dt.date, BeforeValidator(_day_as_written), AfterValidator(_day_in_supported_years)
]


#: Core schema types a body must send as themselves: pydantic's lax mode turned ``true`` into
#: 1, ``1`` into ``true`` and ``"5"`` into 5, so a type confusion (a flag where a limit or a
#: priority goes) passed as a value nobody meant.
_STRICT_TYPES = frozenset({"int", "bool", "float"})


#: Schemas of other classes (a nested model): built, and made strict if an Input, on their own.
_OWN_VALIDATOR = frozenset({"model", "dataclass", "typed-dict"})


def _make_scalars_strict(schema: Any, owner: type) -> None:
    """Set ``strict`` on each int, bool and float schema of ``owner``'s freshly built schema."""
    if isinstance(schema, list):
        for item in schema:
            _make_scalars_strict(item, owner)
        return
    if not isinstance(schema, dict):
        return
    # NOTE: a dict of fields may have a field named "type": only a string names a schema.
    kind = schema.get("type") if isinstance(schema.get("type"), str) else None
    if kind in _OWN_VALIDATOR and schema.get("cls") not in (None, owner):
        return
    if kind in _STRICT_TYPES:
        schema["strict"] = True
    for name, value in schema.items():
        if name != "metadata":
            _make_scalars_strict(value, owner)


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused, so typos never pass silently.

    Integers, numbers and booleans are strict (a JSON ``true`` is no 1, ``"5"`` no 5) and
    every other type stays lax: ``strict=True`` on the model would also refuse a UUID or a
    date given as a string, which is all JSON can give. Query strings are :class:`Query`
    models, all strings (``limit=25``), and keep lax parsing. The OpenAPI document is
    unchanged: it already says integer and boolean.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        _make_scalars_strict(schema, source)
        return schema


class _NullClears:
    """Marker in ``Annotated`` metadata: an explicit ``null`` clears the field."""

    def __repr__(self) -> str:
        return "NULL_CLEARS"


NULL_CLEARS = _NullClears()
#: ``Nullable[X]``: a field of an :class:`Update` that ``null`` clears (``X | None``).
Nullable = Annotated[T | None, NULL_CLEARS]


class Update(Input):
    """Base of PATCH (and upsert PUT) bodies: only the fields sent change.

    Every field is optional (``= None``: "not sent"). A field whose column or service
    cannot hold null is written ``X | None = None``, and an explicit ``null`` for it
    answers 422 naming the field; a field that ``null`` clears is written
    ``Nullable[X] = None``. The OpenAPI schema says the same: non-nullable fields
    carry neither ``null`` nor ``default: null``.

    Example::

        class AgentUpdate(Update):
            email: EmailStr | None = None           # null: 422 "may not be null"
            avatar_url: Nullable[AvatarUrl] = None  # null removes the avatar

    Services receive ``body.model_dump(exclude_unset=True)``: a key present with
    ``None`` can only be a nullable field. Decide nullability per field from the
    column and the service: null may clear an optional value, never a required one.
    Every PATCH/PUT body whose fields are all optional must derive from this class
    (``tests/api/test_update_nulls.py`` checks every route).
    """

    #: Fields that ``null`` clears; filled per subclass from the ``Nullable`` marker.
    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.nullable_fields = frozenset(
            name
            for name, field in cls.model_fields.items()
            if any(item is NULL_CLEARS for item in field.metadata)
        )

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_it_clears(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable_fields:
            raise PydanticCustomError(
                "null_not_allowed", "may not be null; leave the field out to keep its value"
            )
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        for name, prop in target.get("properties", {}).items():
            if name not in cls.nullable_fields:
                target["properties"][name] = _without_null(prop)
        return schema


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``prop`` (a property's JSON schema) with ``null`` taken out of its types and default."""
    prop = {k: v for k, v in prop.items() if not (k == "default" and v is None)}
    options = prop.get("anyOf")
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        del prop["anyOf"]
        if len(kept) == 1:
            prop = {**kept[0], **prop}
        else:
            prop["anyOf"] = kept
    return prop


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
