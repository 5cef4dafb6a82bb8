"""Build the OpenAPI 3.1 document from the routes and their ``@endpoint`` declarations.

Nothing here is written by hand per endpoint: summaries, permissions, request and
response schemas, and the error statuses each operation can answer all come from
the same declarations that validate requests and produce those errors.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from api.endpoint import EndpointSpec
from api.schemas.common import ErrorResponse

_METHODS = ("get", "post", "put", "patch", "delete")
#: Methods whose bodies the request middleware bounds (413 past ``MAX_BODY_BYTES``, 411
#: without a length).
_BODY_METHODS = frozenset({"post", "put", "patch", "delete"})
_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
_REF = "#/components/schemas/{model}"

#: The endpoint groups in the order of the API reference (shared/API.md), each with
#: what it is for; the docs page lists them in this order.
TAGS: tuple[tuple[str, str], ...] = (
    ("Auth", "Register a workspace, log in and out, refresh a token, who am I."),
    ("Conversations", "The inbox: list, read, assign, change status, tag, bulk actions."),
    ("Jobs", "Status and result of work answered 202 (bulk actions)."),
    ("Messages", "A conversation's messages, sending replies, full-text search."),
    ("Contacts", "The people a workspace talks to, and their attributes."),
    ("Agents", "The workspace's human users."),
    ("Notes", "Private notes agents leave on a conversation."),
    ("Quick Replies", "Canned answers, personal or shared, with CSV import and export."),
    ("Analytics", "Counters and reports over conversations and agents."),
    ("Media", "Upload and download files sent or received in messages."),
    ("Divisions", "Teams of agents that conversations are routed to."),
    ("Transfers", "Hand a conversation to another agent or division."),
    ("Scheduled Messages", "Messages sent later by the scheduler."),
    ("CSAT", "Customer satisfaction surveys and their answers."),
    ("SLA", "Response and resolution targets and their breaches."),
    ("Outgoing Webhooks", "Signed, retried, SSRF-guarded HTTP callbacks for events."),
    ("Campaigns", "Bulk outbound messages to contact segments."),
    ("Integrations", "Channel integrations and the accounts connected through them."),
    ("Activity Logs", "The audit trail of every change."),
    ("WA Templates", "WhatsApp message templates."),
    ("Webhooks", "Provider callbacks (Meta, email): verified, stored, acknowledged."),
    ("Roles", "Roles and the permissions they grant."),
    ("API Keys", "Long-lived credentials acting as the user who created them."),
    ("Health", "Whether the API and its dependencies are well."),
    (
        "Operations",
        "The operators' console: busy workers, queues and pauses, retries, dead letters,"
        " scheduler jobs.",
    ),
    ("Automation", "Rules, their runs, the event queue, dry-runs and worker metrics."),
    ("Chat Expiration", "Closing idle conversations per channel."),
    ("AI Agents", "AI agents that answer conversations."),
    ("Working Hours", "When the workspace is open."),
    ("Super Admin", "Platform administration across workspaces."),
    ("Billing Admin", "Platform billing administration."),
    ("Billing", "The workspace's plan, usage and invoices."),
)

#: What each error status means; every one answers the ErrorResponse envelope.
ERRORS: dict[int, str] = {
    400: "Malformed JSON body or invalid query parameters",
    401: "Missing, invalid, expired or revoked credentials",
    402: "A plan limit is reached; `details` names the limit, its value and the usage",
    403: "The caller lacks the permission, or the user or workspace is suspended",
    404: "Unknown id, or another tenant's",
    409: "Conflicts with the current state, or a concurrent change (nothing was saved)",
    413: "The request body is larger than allowed",
    415: "The request body is not of a media type this operation reads",
    422: "Invalid fields; `details` lists each",
    429: "Too many attempts; `Retry-After` says when to try again",
    500: "Unexpected failure; the message quotes the request id",
    502: "An upstream provider (Meta's Graph API) failed; the message says how",
    503: "A dependency is down or the database timed out; retry later",
    410: "The link or token was used already or expired",
    411: "The body was sent without a Content-Length (chunked)",
}


def error_statuses(spec: EndpointSpec, method: str, has_path_params: bool) -> list[int]:
    """The error statuses an operation can answer, derived from what produces them.

    ``@endpoint`` answers 401/403 unless public (authentication, permission,
    suspension), 400/415/422 when it parses a body, 400 when it parses a query,
    404 for a path id; the middleware answers 411 and 413 to any body method; anything
    unexpected is a 500. Any operation may meet a database it cannot use now (503,
    :func:`api.errors.handle_database_error`), and a write one colliding with a
    concurrent transaction (409). ``spec.errors`` adds what the service raises on top.
    """
    found = {500, 503, *spec.errors}
    if not spec.public:
        found |= {401, 403}
    if spec.body is not None or spec.accepts:
        found |= {400, 415, 422}
    if spec.query is not None:
        found.add(400)
    if method in _BODY_METHODS:
        found |= {409, 411, 413}
    if has_path_params:
        found.add(404)
    return sorted(found)


class _Components:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def schema_for(self, annotation: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template=_REF, mode=mode)
        self.schemas.update(schema.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            name = annotation.__name__
            if "[" not in name:
                self.schemas[name] = schema
                return {"$ref": _REF.format(model=name)}
        return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _request_body(spec: EndpointSpec, components: _Components) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if spec.body is not None:
        content["application/json"] = {"schema": components.schema_for(spec.body, "validation")}
    for media_type in spec.accepts:
        if media_type == "multipart/form-data":
            schema = {
                "type": "object",
                "properties": {"file": {"type": "string", "contentMediaType": "*/*"}},
                "required": ["file"],
            }
        elif media_type == "application/json":
            schema = {"type": "object"}
        else:
            schema = {"type": "string"}
        content[media_type] = {"schema": schema}
    if not content:
        return None
    # NOTE: an empty JSON body reads as {} (api.endpoint._parse_body): a body whose every
    # field has a default may be left out, and the document says so.
    optional = not spec.accepts and not any(
        field.is_required() for field in spec.body.model_fields.values()
    )
    return {"required": not optional, "content": content}


def _success(spec: EndpointSpec, components: _Components) -> dict[str, Any]:
    if spec.produces is not None:
        answer = {
            "description": "Success",
            "content": {spec.produces: {"schema": {"type": "string"}}},
        }
    elif spec.response is not None:
        schema = components.schema_for(spec.response, "serialization")
        answer = {"description": "Success", "content": {"application/json": {"schema": schema}}}
    else:
        status = 204 if spec.status in (200, 204) else spec.status
        return {str(status): {"description": "Done"}}
    return {str(status): answer for status in (spec.status, *spec.also)}


def _operation(
    method: str, path_params: list[dict], spec: EndpointSpec, components: _Components
) -> dict:
    op: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags)}
    notes = []
    if spec.permission:
        notes.append(f"Requires permission `{spec.permission}`.")
    if spec.super_admin and not spec.public:
        notes.append("Requires a super-admin token (`sa: true`); tenant credentials get 403.")
    if spec.description:
        notes.append(spec.description)
    if notes:
        op["description"] = " ".join(notes)
    params = list(path_params)
    if spec.query is not None:
        params += _query_parameters(spec.query)
    if params:
        op["parameters"] = params
    if (body := _request_body(spec, components)) is not None:
        op["requestBody"] = body
    responses = _success(spec, components)
    error = {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}
    }
    for status in error_statuses(spec, method, bool(path_params)):
        responses.setdefault(str(status), {"description": ERRORS[status], **error})
    op["responses"] = responses
    op["security"] = (
        []
        if spec.public
        else [{"bearer": []}]
        if spec.super_admin
        else [{"bearer": []}, {"apiKey": []}, {"cookie": []}]
    )
    return op


def _tags(used: set[str]) -> list[dict[str, str]]:
    """The declared tags that operations use, in the reference's order; then any other."""
    declared = [{"name": name, "description": text} for name, text in TAGS if name in used]
    known = {name for name, _ in TAGS}
    return declared + [{"name": name} for name in sorted(used - known)]


def build_document(routes: list[tuple[str, object]], *, title: str, version: str) -> dict:
    components = _Components()
    components.schema_for(ErrorResponse, "serialization")
    paths: dict[str, Any] = {}
    used_tags: set[str] = set()
    for template, resource in routes:
        path_params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"}
                if conv == "uuid"
                else {"type": "string"},
            }
            for name, conv in _PARAM.findall(template)
        ]
        openapi_path = _PARAM.sub(r"{\1}", template)
        for method in _METHODS:
            responder = getattr(resource, f"on_{method}", None)
            spec = getattr(responder, "__endpoint__", None)
            if spec is not None:
                used_tags.update(spec.tags)
                paths.setdefault(openapi_path, {})[method] = _operation(
                    method, path_params, spec, components
                )
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "tags": _tags(used_tags),
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }
