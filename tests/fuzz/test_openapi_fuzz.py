"""Property-based fuzzing of every operation the API documents (schemathesis).

Every operation of the live ``/api/openapi.json`` gets generated requests, valid
and invalid, sent in-process through the WSGI app as a workspace admin and as an
agent. Each answer must not be a 5xx and must conform to the document: a documented
status code, the documented content type and the documented body schema.

Path ids are either generated (unknown ids: 404) or the real rows of a seeded
workspace (:mod:`tests.fuzz.seed`), so updates and deletes reach the services.
Reads share one workspace seeded with every kind of row; every other operation gets
a fresh one, seeded with the rows its path names, and every example a fresh token,
so a logout, a deleted row or a changed password in one example cannot decide what
the next one sees.
"""

from __future__ import annotations

import os
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import API_TITLE, API_VERSION, routes
from api.openapi import build_document
from shared.identity.security import issue_access_token
from tests.fuzz.refusals import DatabaseRefusals
from tests.fuzz.seed import path_ids, seed
from tests.workspaces import Workspace, register

CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Generated requests per operation (valid and invalid together); the suite's bound.
#: ``FUZZ_EXAMPLES=200 .venv/bin/pytest tests/fuzz`` digs deeper before a release.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
#: The suite draws the same examples every run (CI stays reproducible); ``FUZZ_RANDOM=1``
#: draws new ones each run, to look where the fixed ones never go (pass
#: ``--hypothesis-seed=N`` to replay a run's seed, which hypothesis prints on a failure).
DERANDOMIZE = os.environ.get("FUZZ_RANDOM") != "1"
#: Hypothesis's settings for every fuzz test but the example count: no deadline (a
#: request's time is the database's), no example database, every health check off.
FUZZ_SETTINGS = {
    "derandomize": DERANDOMIZE,
    "deadline": None,
    "database": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": list(HealthCheck),
}

# NOTE: schemathesis draws some values with `random` inside its strategies (derandomize
# still fixes hypothesis's own choices); hypothesis warns about it on every operation.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")

#: (method, path) of every documented operation, from the builder the app serves.
OPERATIONS = [
    (method.upper(), path)
    for path, methods in build_document(routes(), title=API_TITLE, version=API_VERSION)[
        "paths"
    ].items()
    for method in methods
]


@pytest.fixture(scope="module")
def live_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@pytest.fixture(scope="module")
def read_workspace(app):
    import falcon.testing

    ws = register(falcon.testing.TestClient(app))
    return ws, dict(seed(ws))  # every kind of row, for the lists to show them


#: Whose token the examples carry: the workspace's admin, and an agent, so the branches
#: that depend on permissions and on what a member may see are fuzzed too (an agent's
#: examples mostly answer 403, so that pass is short). ``FUZZ_ROLE=supervisor`` (or any
#: one role) fuzzes as that role alone.
ROLES = (os.environ["FUZZ_ROLE"],) if os.environ.get("FUZZ_ROLE") else ("admin", "agent")
_members: dict[tuple[str, str], str] = {}


def _fresh_token(ws: Workspace, role: str) -> str:
    if role == "admin":
        user_id = ws.admin["id"]
    else:
        key = (ws.tenant["id"], role)
        if key not in _members:
            _members[key] = ws.create_agent(role=role)[0]["id"]
        user_id = _members[key]
    return issue_access_token(uuid.UUID(user_id), uuid.UUID(ws.tenant["id"])).token


def test_every_operation_is_fuzzed():
    """The list is the live document's: a new route is fuzzed without an edit here."""
    assert len(OPERATIONS) > 100
    assert ("PATCH", "/api/agents/{id}") in OPERATIONS


def test_seeded_rows_reach_most_operations_with_ids(read_workspace):
    """Fuzzing only unknown ids would test little but 404s: keep the seed in step."""
    _ws, ids = read_workspace
    with_ids = [path for _method, path in OPERATIONS if "{" in path]
    reached = [path for path in with_ids if path_ids(path, ids)]
    assert len(reached) >= 0.8 * len(with_ids), sorted(set(with_ids) - set(reached))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_answers_as_documented(live_schema, read_workspace, client, method, path, role):
    operation = live_schema[path][method]
    if method == "GET":
        ws, ids = read_workspace
    else:
        ws = register(client)
        ids = seed(ws)
    strategies = [operation.as_strategy(mode) for mode in GenerationMode]
    real = path_ids(path, ids)
    if real:
        strategies += [operation.as_strategy(mode, path_parameters=real) for mode in GenerationMode]

    @given(case=st.one_of(strategies))
    @settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
    def answers_as_documented(case):
        refused = DatabaseRefusals()
        with refused:
            response = case.call(headers={"Authorization": f"Bearer {_fresh_token(ws, role)}"})
        assert not refused.seen, refused.seen
        case.validate_response(response, checks=CHECKS)
        # NOTE: a documented 503 (health naming what is down) is an answer, not a failure.
        assert response.status_code < 500 or response.status_code == 503, response.text

    answers_as_documented()
