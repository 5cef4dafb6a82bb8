"""Products over HTTP: CRUD, prices and currencies, SKUs unique per agent, roles and tenants."""

from __future__ import annotations

import uuid

import pytest

from shared.ai import products
from shared.db import session_scope
from shared.models import AiProduct
from tests.ai_config.conftest import AGENTS, create_agent, fields

SHOE = {
    "sku": "SH-1",
    "name": "Trail shoe",
    "description": "Grippy soles",
    "price": "89.90",
    "currency": "eur",
    "url": "https://shop.example.com/sh-1",
    "attributes": {"sizes": [40, 41, 42]},
}


def test_a_product_is_created_listed_replaced_and_deleted(workspace):
    agent = create_agent(workspace)
    base = f"{AGENTS}/{agent['id']}/products"
    made = workspace.call("POST", base, json=SHOE)
    assert made.status_code == 201, made.text
    assert made.json["price"] == "89.90" and made.json["currency"] == "EUR"
    assert made.json["in_stock"] is True and made.json["attributes"] == {"sizes": [40, 41, 42]}
    assert [p["id"] for p in workspace.call("GET", base).json["items"]] == [made.json["id"]]
    assert workspace.call("GET", base, params={"sku": "nope"}).json["items"] == []
    assert len(workspace.call("GET", base, params={"q": "trail"}).json["items"]) == 1
    path = f"{base}/{made.json['id']}"
    put = workspace.call(
        "PUT", path, json={"name": "Trail shoe v2", "price": 10, "currency": "USD"}
    )
    assert put.status_code == 200, put.text
    assert (
        put.json["sku"] is None and put.json["price"] == "10.00" and put.json["description"] is None
    )
    assert workspace.call("DELETE", path).status_code == 204
    assert workspace.call("DELETE", path).status_code == 404


def test_creates_and_replaces_ask_for_embedding_after_commit(workspace):
    agent = create_agent(workspace)
    asked: list[uuid.UUID] = []
    installed = products.EMBED_QUEUE.enqueuer
    products.EMBED_QUEUE.set_enqueuer(asked.extend)
    try:
        made = workspace.call("POST", f"{AGENTS}/{agent['id']}/products", json=SHOE).json
        refused = workspace.call("POST", f"{AGENTS}/{agent['id']}/products", json=SHOE)
        assert refused.status_code == 409
    finally:
        products.EMBED_QUEUE.set_enqueuer(installed)  # the worker's, for later tests
    assert asked == [uuid.UUID(made["id"])]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "1.999"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": "1e20"}, "price"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "ABC"}, "currency"),
        ({"currency": None}, "currency"),
        ({"name": " "}, "name"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"image_url": "ftp://x/y.png"}, "image_url"),
        # Past the column's 2,048: the database refused it, and the answer named no field.
        ({"url": "https://shop.example.com/" + "a" * 2048}, "url"),
        ({"image_url": "https://cdn.example.com/\u0000.png"}, "image_url"),
        ({"in_stock": "perhaps"}, "in_stock"),
        # A JSON body is strict about booleans, as every other body is (a CSV import row,
        # all strings, keeps reading "yes" and "0").
        ({"in_stock": "yes"}, "in_stock"),
        ({"in_stock": 0}, "in_stock"),
        ({"attributes": {"blob": "x" * 9000}}, "attributes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_products_are_422_naming_the_field(workspace, change, field):
    agent = create_agent(workspace)
    resp = workspace.call("POST", f"{AGENTS}/{agent['id']}/products", json=SHOE | change)
    assert resp.status_code == 422, resp.text
    assert fields(resp) == [field]


def test_attributes_size_counts_the_bytes_of_their_json(workspace):
    """The 8 KiB bound is on the JSON's UTF-8 bytes, as stored and sent: measured on
    ``json.dumps``'s ASCII escapes, a Greek letter took 6 bytes, so 1,500 of them (3 KB)
    were refused as over 8 KB."""
    agent = create_agent(workspace)
    base = f"{AGENTS}/{agent['id']}/products"
    greek = {"description_el": "λ" * 1500}
    made = workspace.call("POST", base, json=SHOE | {"attributes": greek})
    assert made.status_code == 201, made.text
    assert made.json["attributes"] == greek
    over = workspace.call("POST", base, json=SHOE | {"attributes": {"el": "λ" * 4200}})
    assert over.status_code == 422 and fields(over) == ["attributes"]


def test_skus_are_unique_per_agent(workspace):
    agent, other = create_agent(workspace), create_agent(workspace)
    base = f"{AGENTS}/{agent['id']}/products"
    first = workspace.call("POST", base, json=SHOE).json
    clash = workspace.call("POST", base, json=SHOE | {"name": "Copy"})
    assert clash.status_code == 409 and fields(clash) == ["sku"]
    assert workspace.call("POST", f"{AGENTS}/{other['id']}/products", json=SHOE).status_code == 201
    second = workspace.call("POST", base, json=SHOE | {"sku": "SH-2"}).json
    moved = workspace.call("PUT", f"{base}/{second['id']}", json=SHOE)
    assert moved.status_code == 409
    with session_scope() as session:
        assert session.get(AiProduct, uuid.UUID(first["id"])).name == "Trail shoe"


def test_products_belong_to_their_agent_and_tenant(workspace, other_workspace):
    agent, other = create_agent(workspace), create_agent(workspace)
    made = workspace.call("POST", f"{AGENTS}/{agent['id']}/products", json=SHOE).json
    foreign = f"{AGENTS}/{other['id']}/products/{made['id']}"
    assert workspace.call("PUT", foreign, json=SHOE).status_code == 404
    assert workspace.call("DELETE", foreign).status_code == 404
    mine = f"{AGENTS}/{agent['id']}/products"
    assert other_workspace.call("GET", mine).status_code == 404
    assert other_workspace.call("POST", mine, json=SHOE).status_code == 404
    assert other_workspace.call("DELETE", f"{mine}/{made['id']}").status_code == 404
    _sup, supervisor = workspace.create_agent("supervisor")
    assert workspace.call("GET", mine, token=supervisor).status_code == 200
    assert workspace.call("POST", mine, json=SHOE, token=supervisor).status_code == 403
    assert workspace.call("DELETE", f"{mine}/{made['id']}", token=supervisor).status_code == 403
