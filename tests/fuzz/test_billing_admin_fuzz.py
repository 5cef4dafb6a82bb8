"""Fuzz the Billing Admin operations with a super-admin token.

``tests/fuzz`` calls every operation as a workspace admin, which /api/admin refuses (403)
before any input is read; here the same schemathesis checks run as a super admin, so odd
bodies and queries reach the catalogue's validation and services: never a 5xx, always a
documented answer.

NOTE: it lives here, not in tests/billing_catalogue: building the operations imports every
API resource and with them the actor modules, which take their retry settings when
declared; tests/channels_* set theirs at collection, and tests/fuzz is collected after them.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.billing_catalogue.conftest import code, plan_body, root  # noqa: F401  (fixture)
from tests.fuzz.refusals import DatabaseRefusals
from tests.fuzz.test_openapi_fuzz import CHECKS, DERANDOMIZE, EXAMPLES, OPERATIONS

pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")

ADMIN_BILLING = [
    (m, p) for m, p in OPERATIONS if p.startswith("/api/admin/billing/") and "/invoices/" not in p
]
#: Paths whose ``{id}`` names a catalogue row, and how to make one.
_MAKERS = {
    "/api/admin/billing/plans/{id}": ("/api/admin/billing/plans", lambda: plan_body()),
    "/api/admin/billing/coupons/{id}": (
        "/api/admin/billing/coupons",
        lambda: {"code": code("cp"), "percent_off": 10},
    ),
    "/api/admin/billing/add-ons/{id}": (
        "/api/admin/billing/add-ons",
        lambda: {"code": code("ao"), "name": "A", "currency": "USD", "price_amount": 1},
    ),
}


@pytest.fixture(scope="module")
def live_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def test_the_catalogue_and_analytics_operations_are_all_here():
    assert len(ADMIN_BILLING) == 18


@pytest.mark.parametrize(
    ("method", "path"), ADMIN_BILLING, ids=[f"{m} {p}" for m, p in ADMIN_BILLING]
)
def test_admin_operation_answers_as_documented(live_schema, root, method, path):  # noqa: F811
    operation = live_schema[path][method]
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    if path in _MAKERS:
        collection, body = _MAKERS[path]
        made = root.call("POST", collection, json=body())
        assert made.status_code == 201, made.text
        real = {"id": made.json["id"]}
        strategies += [operation.as_strategy(mode, path_parameters=real) for mode in GenerationMode]

    @given(case=st.one_of(strategies))
    @settings(
        # At least 20 (the catalogue is small); FUZZ_EXAMPLES digs deeper here too.
        max_examples=max(20, EXAMPLES),
        derandomize=DERANDOMIZE,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case):
        refused = DatabaseRefusals()
        with refused:
            response = case.call(headers={"Authorization": f"Bearer {root.token}"})
        assert not refused.seen, refused.seen
        case.validate_response(response, checks=CHECKS)
        assert response.status_code < 500, response.text

    answers_as_documented()
