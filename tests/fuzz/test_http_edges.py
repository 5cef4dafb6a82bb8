"""The HTTP layer's edges, swept over every documented operation.

schemathesis (:mod:`tests.fuzz.test_openapi_fuzz`) draws values the schemas describe;
what it rarely sends is what no schema describes: a body that is JSON but not an object,
a Content-Type that only starts like JSON or names another charset, bytes that are not
UTF-8 in a body, a path or a query, a path id that is not a UUID, repeated and
out-of-range ``limit``, cursors that are not ours, methods a route lacks. Each must
answer a clear 4xx in the error envelope: never a 5xx, never a body that is not JSON.

The operations are the live document's, so a new route is swept without an edit here.
Bodies are invalid and ids unknown, so nothing is changed: one workspace serves all.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from api.app import API_TITLE, API_VERSION, routes
from api.openapi import _PARAM, build_document
from tests.admin.conftest import create_super_admin, login
from tests.fuzz.refusals import DatabaseRefusals
from tests.fuzz.seed import path_ids, seed
from tests.workspaces import register

DOCUMENT = build_document(routes(), title=API_TITLE, version=API_VERSION)
#: OpenAPI path -> the router's template, which names each parameter's converter.
TEMPLATES = {_PARAM.sub(r"{\1}", template): template for template, _resource in routes()}
OPERATIONS = [
    (method.upper(), path, operation)
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
]
_IDS = [f"{method} {path}" for method, path, _op in OPERATIONS]
WITH_BODY = [(m, p, op) for m, p, op in OPERATIONS if "requestBody" in op]
#: Operations whose body is a JSON object the endpoint parses (not an upload or a raw
#: provider callback, which read their bodies themselves).
JSON_BODY = [
    (m, p, op)
    for m, p, op in WITH_BODY
    if list(op["requestBody"]["content"]) == ["application/json"]
    and "$ref" in op["requestBody"]["content"]["application/json"]["schema"]
]
WITH_UUID_PARAM = [(m, p, op) for m, p, op in OPERATIONS if ":uuid}" in TEMPLATES[p]]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _query_names(operation: dict) -> list[str]:
    return [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]


WITH_QUERY = [(m, p, op) for m, p, op in OPERATIONS if _query_names(op)]
WITH_LIMIT = [(m, p, op) for m, p, op in WITH_QUERY if "limit" in _query_names(op)]
WITH_CURSOR = [(m, p, op) for m, p, op in WITH_QUERY if "cursor" in _query_names(op)]


def _ids(operations) -> list[str]:
    return [f"{m} {p}" for m, p, _op in operations]


def _path(path: str, *, uuid_value: str | None = None, real: dict | None = None) -> str:
    """``path`` with its parameters filled: the ``real`` rows' ids, else uuids fresh
    (unknown: 404) or ``uuid_value``."""

    def value(match) -> str:
        name, converter = match.group(1), match.group(2)
        if real and name in real:
            return real[name]
        if converter == "uuid":
            return uuid_value if uuid_value is not None else str(uuid.uuid4())
        return {"channel": "whatsapp", "queue": "default"}.get(name, "x")

    return _PARAM.sub(value, TEMPLATES[path])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Caller:
    """Calls as a workspace admin, or as a super admin on /api/admin."""

    def __init__(self, client, workspace, root):
        self.client, self.workspace, self.root = client, workspace, root
        self.rows = seed(workspace)

    def real_path(self, path: str) -> tuple[str, bool]:
        """``path`` naming seeded rows (their lists' checks are reached), and whether all
        its parameters could be."""
        real = path_ids(path, self.rows)
        return _path(path, real=real), real is not None or "{" not in path

    def __call__(self, method: str, path: str, *, anonymous: bool = False, **kwargs):
        token = self.root.token if path.startswith("/api/admin") else self.workspace.token
        headers = {} if anonymous else {"Authorization": f"Bearer {token}"}
        refused = DatabaseRefusals()
        with refused:
            resp = self.client.simulate_request(
                method, path, headers=headers | kwargs.pop("headers", {}), **kwargs
            )
        # A value the database refused is one the request's parsing let through.
        assert not refused.seen, (method, path, refused.seen)
        return resp


@pytest.fixture(scope="module")
def call(app):
    import falcon.testing

    client = falcon.testing.TestClient(app)
    return Caller(client, register(client), login(client, create_super_admin()))


def assert_error(resp, status: int | None = None, code: str | None = None) -> None:
    """A 4xx (``status`` if given) in the error envelope, JSON all through."""
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    if status is not None:
        assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    if code is not None:
        assert body["error"]["code"] == code, body


def test_the_sweep_reaches_every_kind_of_operation():
    assert len(OPERATIONS) > 200
    assert len(JSON_BODY) > 80 and len(WITH_UUID_PARAM) > 100
    assert len(WITH_LIMIT) > 20 and len(WITH_CURSOR) > 20


NOT_OBJECTS = ("[]", "[{}]", '"text"', "1", "-1.5", "null", "true")


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BODY, ids=_ids(WITH_BODY))
def test_a_json_body_that_is_not_an_object_is_400(call, method, path, operation):
    json_object = (method, path, operation) in JSON_BODY
    for body in NOT_OBJECTS:
        resp = call(method, _path(path), body=body, headers={"Content-Type": "application/json"})
        if json_object:
            assert_error(resp, 400, "bad_request")
        else:
            assert_error(resp)


#: Bytes that are not UTF-8: Latin-1 "café", a lone continuation byte, a truncated sequence.
NOT_UTF8 = (b'{"name": "caf\xe9"}', b'{"name": "\x80"}', b'{"name": "\xe2\x82"}')


@pytest.mark.parametrize(("method", "path", "operation"), WITH_BODY, ids=_ids(WITH_BODY))
def test_a_body_that_is_not_utf8_is_400(call, method, path, operation):
    for body in NOT_UTF8:
        resp = call(method, _path(path), body=body, headers={"Content-Type": "application/json"})
        if (method, path, operation) in JSON_BODY:
            assert_error(resp, 400, "bad_request")
        else:
            assert_error(resp)


#: Media types that are not JSON, though some start like it, and JSON in another charset.
NOT_JSON_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/jsonx",
    "application/json-seq",
    "application/json-patch+json",
    "application/json; charset=iso-8859-1",
    "application/json; charset=utf-16",
)


@pytest.mark.parametrize(("method", "path", "operation"), JSON_BODY, ids=_ids(JSON_BODY))
def test_a_body_that_is_not_utf8_json_is_415(call, method, path, operation):
    for content_type in NOT_JSON_TYPES:
        resp = call(method, _path(path), body="{}", headers={"Content-Type": content_type})
        assert_error(resp, 415, "unsupported_media_type")


#: How clients also spell JSON: media types and charset names are case-insensitive.
JSON_SPELLINGS = (
    "Application/JSON",
    "application/json; charset=UTF-8",
    'application/json;charset="utf-8"',
    "APPLICATION/JSON ; Charset=utf8",
)


@pytest.mark.parametrize(("method", "path", "operation"), JSON_BODY, ids=_ids(JSON_BODY))
def test_json_however_spelled_is_read(call, method, path, operation):
    """``[]`` is read as JSON under each spelling (400: not an object), not refused (415)."""
    for content_type in JSON_SPELLINGS:
        resp = call(method, _path(path), body="[]", headers={"Content-Type": content_type})
        assert_error(resp, 400, "bad_request")


BAD_IDS = (
    "not-a-uuid",
    "a" * 3000,
    "%00",
    f"{uuid.UUID(int=1)}%00",
    "%FF%FE",
    "\xff\xfe",  # raw bytes, as a server hands them over (PEP 3333: Latin-1)
    "..",
    "%20",
    str(uuid.UUID(int=1))[:-1],
)


@pytest.mark.parametrize(
    ("method", "path", "operation"), WITH_UUID_PARAM, ids=_ids(WITH_UUID_PARAM)
)
def test_a_path_id_that_is_not_a_uuid_is_404(call, method, path, operation):
    for bad in BAD_IDS:
        resp = call(method, _path(path, uuid_value=bad))
        assert_error(resp, 404, "not_found")


@pytest.mark.parametrize(("method", "path", "operation"), WITH_QUERY, ids=_ids(WITH_QUERY))
def test_odd_query_strings_are_never_a_5xx(call, method, path, operation):
    names = _query_names(operation)
    odd = [
        "&".join(f"{n}=%FF%FE" for n in names),
        "&".join(f"{n}=\xff" for n in names),  # raw bytes
        "&".join(f"{n}=%" for n in names),  # a broken escape
        "&".join(f"{n}=%00" for n in names),
        "%00=1&%FF=2",
        *(f"{n}=1&{n}=2" for n in names),
        *(f"{n}=" + "9" * 3000 for n in names),
    ]
    where, _reached = call.real_path(path)
    for query_string in odd:
        resp = call(method, where, query_string=query_string)
        if resp.status_code >= 400:
            assert_error(resp)
        else:
            assert resp.headers["content-type"].startswith(("application/json", "text/csv"))


BAD_LIMITS = ("0", "-1", "1e3", "1.5", "99999999999999999999", "", "%00", "1&limit=2")


@pytest.mark.parametrize(("method", "path", "operation"), WITH_LIMIT, ids=_ids(WITH_LIMIT))
def test_a_limit_out_of_range_is_400(call, method, path, operation):
    where, _reached = call.real_path(path)
    for limit in BAD_LIMITS:
        resp = call(method, where, query_string=f"limit={limit}")
        assert_error(resp, 400, "bad_request")


_ID = str(uuid.UUID(int=7)).encode()
BAD_CURSORS = (
    _b64(bytes(range(7, 40))),  # random bytes
    _b64(b"hello world"),  # not JSON
    _b64(b"\xff\xfe["),  # not UTF-8
    "!!!***",  # not base64
    *(_b64(raw) for raw in (b"[]", b"[1,2,3]", b'{"a": 1}', b'"x"', b"null", b"1e999")),
    _b64(b"[" * 380),  # as deep as 512 characters reach
    _b64(b'["2020-01-01T00:00:00Z", "\\u0000"]'),
    _b64(b'["\\ud800", "' + _ID + b'"]'),  # half an emoji
    _b64(b'["shortcut", "\\ud800", "' + _ID + b'"]'),  # quick replies' shape
    _b64(b'["most_used", 99999999999999999999, "a", "' + _ID + b'"]'),
    _b64(b'[true, "abc"]'),  # search's shape
    "-1",
)


@pytest.mark.parametrize(("method", "path", "operation"), WITH_CURSOR, ids=_ids(WITH_CURSOR))
def test_a_cursor_we_did_not_write_is_400(call, method, path, operation):
    where, reached = call.real_path(path)
    for cursor in BAD_CURSORS:
        resp = call(method, where, query_string=f"cursor={cursor}")
        assert_error(resp, 400 if reached else None)


PATHS = list(DOCUMENT["paths"].items())


@pytest.mark.parametrize(("path", "operations"), PATHS, ids=[p for p, _ops in PATHS])
def test_a_method_the_route_lacks_is_405_with_allow(call, path, operations):
    allowed = {method.upper() for method in operations}
    for method in (*METHODS, "TRACE", "HEAD"):
        if method in allowed:
            continue
        resp = call(method, _path(path))
        assert resp.status_code == 405, (method, resp.status_code)
        assert {m.strip() for m in resp.headers["allow"].split(",")} - {"OPTIONS"} == allowed
        if method == "HEAD":  # the same headers as a GET would have, and no body
            assert resp.headers["content-type"].startswith("application/json")
            continue
        assert_error(resp, 405, "method_not_allowed")


MULTIPART = [
    (m, p, op) for m, p, op in WITH_BODY if "multipart/form-data" in op["requestBody"]["content"]
]
_FORM = (
    b"--xx\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n"
    b"shortcut,title,content\r\nhi,Hello,Hello there\r\n"
    b"--xx--\r\n"
)


@pytest.mark.parametrize(("method", "path", "operation"), MULTIPART, ids=_ids(MULTIPART))
def test_a_form_however_spelled_is_read(call, method, path, operation):
    """``Multipart/Form-Data`` is a form too: read, not refused (415)."""
    assert MULTIPART
    where, _reached = call.real_path(path)
    for content_type in ("multipart/form-data; boundary=xx", "Multipart/Form-Data; boundary=xx"):
        resp = call(method, where, body=_FORM, headers={"Content-Type": content_type})
        assert resp.status_code < 500 and resp.status_code != 415, (content_type, resp.text)


#: Every route and method the app serves, the pages (/ops, /csat, /realtime) included.
SERVED = [
    (method, template)
    for template, resource in routes()
    for method in METHODS
    if hasattr(resource, f"on_{method.lower()}")
]


@pytest.mark.parametrize(("method", "template"), SERVED, ids=[f"{m} {t}" for m, t in SERVED])
def test_a_host_header_that_does_not_parse_is_never_a_5xx(call, method, template):
    """A port that is not a number (Falcon's ``req.host`` and ``req.port`` raise on it)."""
    path = _PARAM.sub(lambda m: str(uuid.UUID(int=1)) if m.group(2) == "uuid" else "x", template)
    for host in ("example.com:abc", "example.com:", "[::1"):
        resp = call(
            method,
            path,
            anonymous=True,
            body="token=x",
            headers={
                "Host": host,
                "Origin": f"http://{host}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert resp.status_code < 500 or resp.status_code == 503, (host, resp.text[:300])


@pytest.mark.parametrize("path", ["/ops/login", "/ops/actions"])
def test_a_console_form_field_holding_nul_is_400(call, path):
    """The console's forms are parsed by hand, not by @endpoint: NUL reached the database."""
    for form in (
        "email=a%00b@example.com&password=x",
        "email=a@example.com&tenant=a%00b",
        "action=requeue&id=%00",
        "action=pause&queue=a%00",
    ):
        resp = call(
            "POST", path, body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert resp.status_code == 400, (form, resp.status_code, resp.text[:200])
        assert resp.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("method", "path", "operation"), WITH_QUERY, ids=_ids(WITH_QUERY))
def test_a_query_parameter_without_a_name_is_named_query_not_body(call, method, path, operation):
    """``?=x`` (a parameter whose name is empty) was reported as a field named ``body``."""
    where, _reached = call.real_path(path)
    resp = call(method, where, query_string="=x")
    assert_error(resp, 400, "bad_request")
    assert {"field": "query", "message": "unknown field"} in resp.json["error"]["details"]
