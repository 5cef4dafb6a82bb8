"""Chained fuzzing: operations of one group run one after another on the rows they create.

Fuzzing one operation at a time (:mod:`tests.fuzz.test_openapi_fuzz`) reaches a row in
the state the seed left it. Here each example is a workspace and a chain of generated
requests (valid and invalid) within a group: a create's answer (its ``id``, and any
``<name>_id`` it names) becomes a path id of the next steps, so a conversation's notes,
assignment and status change after its messages, a campaign is paused after it was
scheduled, a knowledge source is reprocessed after it was deleted. Lists' items are
learnt too. Every answer must not be a 5xx, must conform to the document and must not
reach the database's safety net.

``CHAIN_EXAMPLES=200 CHAIN_STEPS=40 FUZZ_RANDOM=1 .venv/bin/pytest tests/fuzz/test_chained_fuzz.py``
hunts further than the suite's budget; ``CHAIN_TRACE=1`` (with ``-s``) prints each call and
its answer, to see which operations a chain reaches past their validation.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.fuzz.refusals import DatabaseRefusals
from tests.fuzz.seed import path_ids, seed
from tests.fuzz.test_openapi_fuzz import CHECKS, FUZZ_SETTINGS, OPERATIONS
from tests.inbox_conversations.conftest import add_conversation
from tests.workspaces import register

#: Chains per group, and requests per chain: the suite's bound (well under 30 s in all).
EXAMPLES = int(os.environ.get("CHAIN_EXAMPLES", "2"))
STEPS = int(os.environ.get("CHAIN_STEPS", "12"))
TRACE = os.environ.get("CHAIN_TRACE") == "1"

pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")

#: An api-channel account: what lets a chain create contacts, conversations and messages.
API_ACCOUNT = "/api/integration-accounts/{id}"

#: A messenger account and contact: what a campaign is sent from and to.
MESSENGER = "messenger"

#: Each group: the path prefixes its chain draws operations from, and the seeded rows
#: (seed keys) a chain starts with, for what the API cannot create (a conversation comes
#: from a channel).
GROUPS = {
    "inbox": (
        ("/api/contacts", "/api/conversations", "/api/messages", "/api/integration-accounts"),
        (
            "/api/conversations/{id}",
            "/api/contacts/{id}",
            "/api/conversations/{id}/notes/{note_id}",
            API_ACCOUNT,
        ),
    ),
    "automation": (
        ("/api/automation/rules", "/api/automation/control"),
        ("/api/automation/rules/{id}", "/api/conversations/{id}"),
    ),
    "campaigns": (
        ("/api/campaigns", "/api/integration-accounts/{id}/api/contacts"),
        ("/api/campaigns/{id}", MESSENGER),
    ),
    "divisions": (("/api/divisions", "/api/agents"), ("/api/divisions/{id}", "/api/agents/{id}")),
    "ai": (
        ("/api/ai-agents", "/api/ai-agent-assignments", "/api/ai-orchestration-rules"),
        (
            "/api/ai-agents/{id}",
            "/api/ai-agents/{id}/knowledge-sources/{source_id}",
            "/api/ai-agents/{id}/knowledge-sources/{source_id}/qna-pairs/{qna_id}",
            "/api/ai-agents/{id}/products/{product_id}",
            "/api/ai-agents/{id}/handoff-rules/{rule_id}",
            "/api/ai-agents/{id}/evaluations/{evaluation_id}",
            "/api/ai-agent-assignments/{id}",
            "/api/ai-orchestration-rules/{id}",
        ),
    ),
}

_PARAM = re.compile(r"{([^}]+)}")


def _key(path: str) -> str:
    """The row a path acts on: its template up to its last parameter (``""`` if none)."""
    ends = [match.end() for match in _PARAM.finditer(path)]
    return path[: ends[-1]] if ends else ""


#: Every row template (``/api/campaigns/{id}``) by the collection that creates its rows.
_ROW_TEMPLATES = {
    _key(path)[: _key(path).rfind("/")]: _key(path) for _method, path in OPERATIONS if _key(path)
}


class Rows:
    """The rows a chain knows, as path bindings by row template."""

    def __init__(self) -> None:
        self.by_template: dict[str, list[dict[str, str]]] = {}

    def add(self, template: str, binding: dict[str, str]) -> None:
        known = self.by_template.setdefault(template, [])
        if binding not in known and len(known) < 20:
            known.append(binding)

    def learn(self, method: str, path: str, binding: dict[str, str], body: object) -> None:
        """Record the rows an answer names: a create's id, ``<name>_id`` fields, list items."""
        child = _ROW_TEMPLATES.get(path)
        items = body.get("items") if isinstance(body, dict) else None
        rows = [body] if isinstance(body, dict) else []
        rows += [item for item in items or [] if isinstance(item, dict)]
        for row in rows:
            if child and method in ("POST", "GET") and isinstance(row.get("id"), str):
                name = _PARAM.findall(child)[-1]
                self.add(child, binding | {name: row["id"]})
            for field, value in row.items():
                template = f"/api/{field.removesuffix('_id')}s/{{id}}"
                if field.endswith("_id") and isinstance(value, str) and template in _ROWS_BY_ID:
                    self.add(template, {"id": value})

    def bindings(self, path: str) -> list[dict[str, str]]:
        key = _key(path)
        return self.by_template.get(key, []) if key else [{}]


_ROWS_BY_ID = {_key(path) for _method, path in OPERATIONS}


@pytest.fixture(scope="module")
def live_schema(app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


def _is_json(response) -> bool:
    return any("json" in value for value in response.headers.get("content-type", []))


def _without_other_credentials(case) -> None:
    """Drop a generated API key or session cookie: the chain acts as the workspace's admin
    (an invalid key answers 401 before anything of the chain is reached)."""
    for name in [name for name in case.headers or {} if name.lower() == "x-api-key"]:
        del case.headers[name]
    if case.cookies:
        case.cookies.pop("session", None)


def _one_of_rows(rows: Rows, template: str, fallback: str) -> st.SearchStrategy[str]:
    ids = [binding["id"] for binding in rows.by_template.get(template, [])]
    return st.sampled_from(ids or [fallback])


_TEXT = st.text(min_size=1, max_size=20)
_WORDS = st.sampled_from(["refund", "hello", "vip", "order 1234", "Ünïcode ✓"])


def _message(ws, rows):
    return st.fixed_dictionaries(
        {
            "contact": st.fixed_dictionaries(
                {"source_id": st.sampled_from(["c-1", "c-2", "c-3"]), "name": _WORDS}
            ),
            "content": _WORDS,
            "external_message_id": st.uuids().map(str),
        }
    )


def _campaign(ws, rows):
    return st.fixed_dictionaries(
        {"name": _WORDS, "channel": st.just("messenger"), "body": st.just("Hi {{name}}")}
    )


def _recipients(ws, rows):
    contacts = _one_of_rows(rows, "/api/contacts/{id}", str(uuid.uuid4()))
    return st.fixed_dictionaries({"contact_ids": st.lists(contacts, min_size=1, max_size=3)})


def _rule(ws, rows):
    return st.fixed_dictionaries(
        {
            "name": _WORDS,
            "trigger_event_types": st.just(["message.created"]),
            "actions": st.just([{"type": "add_tags", "params": {"tags": ["refund"]}}]),
        }
    )


def _dry_run(ws, rows):
    conversation = _one_of_rows(rows, "/api/conversations/{id}", str(uuid.uuid4()))
    return st.fixed_dictionaries(
        {"payload": st.fixed_dictionaries({"conversation_id": conversation, "body": _WORDS})}
    )


def _agent(ws, rows):
    return st.fixed_dictionaries(
        {
            "email": st.uuids().map(lambda u: f"a-{u.hex[:10]}@example.com"),
            "full_name": _WORDS,
            "role": st.sampled_from(["agent", "supervisor", "admin"]),
            "password": st.just("correct horse battery"),
        }
    )


def _members(ws, rows):
    agents = _one_of_rows(rows, "/api/agents/{id}", ws.admin["id"])
    return st.fixed_dictionaries({"agent_ids": st.lists(agents, min_size=1, max_size=3)})


def _orchestration(ws, rows):
    agent = _one_of_rows(rows, "/api/ai-agents/{id}", str(uuid.uuid4()))
    return st.fixed_dictionaries(
        {
            "name": _WORDS,
            "match_type": st.just("channel"),
            "channel": st.sampled_from(["email", "whatsapp", "api"]),
            "target_ai_agent_id": agent,
        }
    )


def _assignment(ws, rows):
    agent = _one_of_rows(rows, "/api/ai-agents/{id}", str(uuid.uuid4()))
    channel = st.sampled_from(["email", "whatsapp", "api"])
    return st.fixed_dictionaries({"ai_agent_id": agent, "channel": channel})


#: Valid bodies for the creates and transitions random bodies rarely get past the business
#: rules with (a campaign's recipients must be contacts of the workspace): half a chain's
#: calls of these operations use one, so the next steps find rows in every state.
RECIPES = {
    ("POST", "/api/integration-accounts/{id}/api/messages"): _message,
    ("POST", "/api/conversations/{id}/messages"): lambda ws, rows: st.fixed_dictionaries(
        {"body": _WORDS}
    ),
    ("PATCH", "/api/conversations/{id}/tags"): lambda ws, rows: st.fixed_dictionaries(
        {"tags": st.lists(st.sampled_from(["vip", "refund", "Late"]), max_size=3)}
    ),
    ("PATCH", "/api/conversations/{id}/assignment"): lambda ws, rows: st.fixed_dictionaries(
        {"assignee_id": st.sampled_from([ws.admin["id"], None])}
    ),
    ("PATCH", "/api/conversations/{id}/status"): lambda ws, rows: st.sampled_from(
        [{"status": "open"}, {"status": "resolved"}, {"status": "pending"}]
    ),
    ("POST", "/api/campaigns"): _campaign,
    ("POST", "/api/campaigns/{id}/recipients"): _recipients,
    ("POST", "/api/campaigns/{id}/send"): lambda ws, rows: st.just({}),
    ("POST", "/api/campaigns/{id}/pause"): lambda ws, rows: st.just({}),
    ("POST", "/api/campaigns/{id}/resume"): lambda ws, rows: st.just({}),
    ("POST", "/api/automation/rules"): _rule,
    ("POST", "/api/automation/rules/{id}/snooze"): lambda ws, rows: st.integers(1, 3000).map(
        lambda minutes: {"until": (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()}
    ),
    ("POST", "/api/automation/rules/{id}/dry-run"): _dry_run,
    ("POST", "/api/agents"): _agent,
    ("POST", "/api/divisions/{id}/agents"): _members,
    ("POST", "/api/ai-orchestration-rules"): _orchestration,
    ("POST", "/api/ai-agent-assignments"): _assignment,
}


def _messenger(ws, rows: Rows) -> None:
    body = {"channel": "messenger", "name": "Page", "external_id": str(uuid.uuid4().int)[:15]}
    resp = ws.call("POST", "/api/integration-accounts", json=body)
    assert resp.status_code == 201, resp.text
    conversation = add_conversation(ws, channel="messenger")
    contact = ws.call("GET", f"/api/conversations/{conversation}").json["contact"]["id"]
    rows.add("/api/contacts/{id}", {"id": contact})


def _api_account(ws) -> str:
    body = {
        "channel": "api",
        "name": "Backend",
        "settings": {"callback_url": "http://127.0.0.1:9/cb"},
    }
    resp = ws.call("POST", "/api/integration-accounts", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json["id"]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_chained_operations_answer_as_documented(live_schema, client, group):
    prefixes, seeded = GROUPS[group]
    operations = [(m, p) for m, p in OPERATIONS if p.startswith(prefixes)]

    @given(data=st.data())
    @settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
    def chain_answers_as_documented(data):
        ws = register(client)
        ids = seed(ws)
        rows = Rows()
        for template in seeded:
            if template == MESSENGER:
                _messenger(ws, rows)
            elif template == API_ACCOUNT:
                rows.add(template, {"id": _api_account(ws)})
            else:
                rows.add(template, path_ids(template, ids))
        for _step in range(STEPS):
            reachable = [(m, p) for m, p in operations if rows.bindings(p)]
            method, path = data.draw(st.sampled_from(reachable), label="operation")
            binding = data.draw(st.sampled_from(rows.bindings(path)), label="row")
            mode = data.draw(st.sampled_from(list(GenerationMode)), label="mode")
            operation = live_schema[path][method]
            case = data.draw(operation.as_strategy(mode, path_parameters=binding or None))
            _without_other_credentials(case)
            recipe = RECIPES.get((method, path))
            if recipe and data.draw(st.booleans(), label="recipe"):
                case.body = data.draw(recipe(ws, rows), label="body")
                case.media_type = "application/json"
            refused = DatabaseRefusals()
            with refused:
                response = case.call(headers=ws.headers)
            if TRACE:
                print("TRACE", group, method, path, response.status_code, response.content[:150])
            assert not refused.seen, refused.seen
            case.validate_response(response, checks=CHECKS)
            assert response.status_code < 500 or response.status_code == 503, response.text
            if response.status_code < 300 and _is_json(response):
                rows.learn(method, path, binding, response.json())

    chain_answers_as_documented()


def test_rows_are_learnt_from_answers():
    """A create's id binds its row's path; a named ``conversation_id`` binds the conversation's."""
    rows = Rows()
    note, conversation = str(uuid.uuid4()), str(uuid.uuid4())
    rows.learn("POST", "/api/conversations/{id}/notes", {"id": conversation}, {"id": note})
    rows.learn("POST", "/api/x", {}, {"conversation_id": conversation})
    assert rows.bindings("/api/conversations/{id}/notes/{note_id}") == [
        {"id": conversation, "note_id": note}
    ]
    assert rows.bindings("/api/conversations/{id}/messages") == [{"id": conversation}]
