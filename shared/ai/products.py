"""Products an AI agent can recommend: validation, CRUD, and the hook that gets them embedded.

One validator (:class:`ProductFields`) serves the API body and every row of a bulk
import, so a row refused by the import would be refused by ``POST`` too, with the same
message. Prices are exact decimals (at most 2 places, never negative) answered as
strings; a price needs its ISO 4217 currency. A ``sku`` is unique per agent (409).

Embedding: products are embedded by the knowledge worker's ``embed_items``. Every
create, replace and import batch hands the product ids to :data:`EMBED_QUEUE` after
commit; the worker module that owns ``embed_items`` installs its enqueuer
(``EMBED_QUEUE.set_enqueuer``). Until it does, nothing is sent; the durable record of
the work is the products whose ``embedding`` is still null, which the scheduler's
``sweep_knowledge_embeddings`` sends again (:mod:`shared.ai.knowledge.embedding_sweep`).
"""

from __future__ import annotations

import decimal
import json
import math
import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import activity
from shared.after_commit_queue import AfterCommitQueue
from shared.ai import agents
from shared.ai.config_views import ProductView
from shared.ai.currencies import ISO_4217
from shared.context import Ctx
from shared.errors import Conflict
from shared.models import AiProduct
from shared.pagination import Page, paginate
from shared.sql import contains_pattern, tenant_row

FIELDS = (
    "sku",
    "name",
    "description",
    "price",
    "currency",
    "url",
    "image_url",
    "in_stock",
    "attributes",
)
#: Largest ``attributes`` object, as compact JSON.
MAX_ATTRIBUTES_BYTES = 8 * 1024

#: Product ids to embed, handed to ``embed_items`` after commit (see the module docstring).
EMBED_QUEUE: AfterCommitQueue[uuid.UUID] = AfterCommitQueue(
    "omnistream.ai_product_embeddings", "product embeddings"
)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _web_url(value: str) -> str:
    if not value.lower().startswith(("https://", "http://")):
        raise ValueError("an http:// or https:// URL")
    return value


def _currency(value: str) -> str:
    code = value.upper()
    if code not in ISO_4217:
        raise ValueError("an ISO 4217 currency code, such as USD or EUR")
    return code


def _unstorable(value: Any) -> str | None:
    """What in ``value`` jsonb refuses, if anything: NUL in a key or string, NaN or infinity.

    NOTE: not a search of ``json.dumps``, which writes NUL as the escape ``\\u0000``;
    a loop, not recursion, so deep nesting json could parse cannot overflow here.
    Python's json reads NaN and Infinity (an import's rows), which JSON itself has not.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            return "must not contain NUL characters"
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite (no NaN or Infinity)"
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _attributes(value: dict[str, Any]) -> dict[str, Any]:
    """At most MAX_ATTRIBUTES_BYTES of JSON as UTF-8, as stored and sent (``json.dumps``'s
    ASCII escapes counted 6 bytes a Greek or Cyrillic letter, 12 an emoji)."""
    stored = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if len(stored) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES_BYTES} bytes as JSON")
    if (problem := _unstorable(value)) is not None:
        raise ValueError(problem)
    return value


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_nul),
    ]


Sku = _text(120, 1)
ProductName = _text(300, 1)
Description = _text(10_000)
WebUrl = Annotated[_text(2048, 1), AfterValidator(_web_url)]
Currency = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_currency)]
Price = Annotated[decimal.Decimal, Field(ge=0, max_digits=14, decimal_places=2)]
Attributes = Annotated[dict[str, Any], AfterValidator(_attributes)]


class ProductFields(BaseModel):
    """A product as a body or an import row gives it; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Sku | None = None
    name: ProductName
    description: Description | None = None
    price: Price | None = None
    currency: Currency | None = Field(None, validate_default=True)
    url: WebUrl | None = None
    image_url: WebUrl | None = None
    in_stock: bool = True
    attributes: Attributes = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _price_has_currency(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("price") is not None:
            raise ValueError("required with a price")
        return value


def view(product: AiProduct) -> dict[str, Any]:
    return ProductView.data(product)


def request_embedding(session: Session, product_ids: list[uuid.UUID]) -> None:
    """Hand ``product_ids`` to ``embed_items`` once this transaction commits (the hook)."""
    EMBED_QUEUE.enqueue_after_commit(session, product_ids)


def list_products(
    session: Session,
    ctx: Ctx,
    agent_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    q: str | None = None,
    sku: str | None = None,
    in_stock: bool | None = None,
) -> Page[AiProduct]:
    agents.get_agent(session, ctx, agent_id)
    p = AiProduct
    query = select(p).where(p.tenant_id == ctx.tenant_id, p.ai_agent_id == agent_id)
    if q:
        query = query.where(p.name.ilike(contains_pattern(q)))
    if sku:
        query = query.where(p.sku == sku)
    if in_stock is not None:
        query = query.where(p.in_stock.is_(in_stock))
    return paginate(
        session, query, created_at=p.created_at, id_column=p.id, limit=limit, cursor=cursor
    )


def _get(session: Session, ctx: Ctx, agent_id: uuid.UUID, product_id: uuid.UUID) -> AiProduct:
    agents.get_agent(session, ctx, agent_id)
    return tenant_row(
        session,
        AiProduct,
        ctx.tenant_id,
        product_id,
        AiProduct.ai_agent_id == agent_id,
        missing="Product not found",
        lock=True,
    )


def _flush_unique(session: Session, sku: str | None) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        if "uq_ai_products_agent_sku" in str(exc.orig):
            raise Conflict(
                f"This AI agent has a product with SKU '{sku}'",
                details=[{"field": "sku", "message": "already used by this AI agent"}],
            ) from exc
        raise


def create_product(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, fields: ProductFields
) -> AiProduct:
    ctx.require(agents.MANAGE)
    agents.share_agent(session, ctx.tenant_id, agent_id)
    product = AiProduct(
        tenant_id=ctx.tenant_id, ai_agent_id=agent_id, **fields.model_dump(include=set(FIELDS))
    )
    session.add(product)
    _flush_unique(session, fields.sku)
    session.refresh(product)
    activity.record(
        session, ctx, "ai_product.created", "ai_product", product.id, after=view(product)
    )
    request_embedding(session, [product.id])
    return product


def replace_product(
    session: Session, ctx: Ctx, agent_id: uuid.UUID, product_id: uuid.UUID, fields: ProductFields
) -> AiProduct:
    ctx.require(agents.MANAGE)
    product = _get(session, ctx, agent_id, product_id)
    before = view(product)
    for name, value in fields.model_dump(include=set(FIELDS)).items():
        setattr(product, name, value)
    # NOTE: the text changed, so the old embedding no longer describes it.
    product.embedding = None
    # ...and the sweep's re-drives of the old text (given up or not) say nothing of it.
    product.embed_attempts, product.embed_swept_at, product.embed_gave_up_at = 0, None, None
    product.updated_at = func.now()
    _flush_unique(session, fields.sku)
    session.refresh(product)
    activity.record(
        session,
        ctx,
        "ai_product.updated",
        "ai_product",
        product.id,
        before=before,
        after=view(product),
    )
    request_embedding(session, [product.id])
    return product


def delete_product(session: Session, ctx: Ctx, agent_id: uuid.UUID, product_id: uuid.UUID) -> None:
    ctx.require(agents.MANAGE)
    product = _get(session, ctx, agent_id, product_id)
    activity.record(
        session, ctx, "ai_product.deleted", "ai_product", product.id, before=view(product)
    )
    session.delete(product)
    session.flush()
