"""Build the OpenAPI 3.1 document from the routes and their ``@endpoint`` declarations.

Nothing here is written by hand per endpoint: summaries, permissions, request and
response schemas all come from the same declarations that validate requests.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter

from api.endpoint import EndpointSpec
from api.schemas.common import ErrorResponse

_METHODS = ("get", "post", "put", "patch", "delete")
_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
_REF = "#/components/schemas/{model}"

_ERRORS = {
    "400": "Malformed JSON or query parameters",
    "401": "Missing, invalid, expired or revoked credentials",
    "403": "The caller lacks the permission",
    "404": "Unknown id, or another tenant's",
    "409": "Conflicts with the current state",
    "422": "Invalid fields; `details` lists each",
}


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


def _operation(path_params: list[dict], spec: EndpointSpec, components: _Components) -> dict:
    op: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags)}
    notes = []
    if spec.permission:
        notes.append(f"Requires permission `{spec.permission}`.")
    if spec.description:
        notes.append(spec.description)
    if notes:
        op["description"] = " ".join(notes)
    params = list(path_params)
    if spec.query is not None:
        params += _query_parameters(spec.query)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": components.schema_for(spec.body, "validation")}
            },
        }
    responses: dict[str, Any] = {}
    if spec.response is not None:
        responses[str(spec.status)] = {
            "description": "Success",
            "content": {
                "application/json": {
                    "schema": components.schema_for(spec.response, "serialization")
                }
            },
        }
    else:
        responses["204" if spec.status in (200, 204) else str(spec.status)] = {
            "description": "Done"
        }
    error = {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}
    }
    for status, description in _ERRORS.items():
        if status in ("401", "403") and spec.public:
            continue
        responses[status] = {"description": description, **error}
    op["responses"] = responses
    op["security"] = [] if spec.public else [{"bearer": []}, {"apiKey": []}, {"cookie": []}]
    return op


def build_document(routes: list[tuple[str, object]], *, title: str, version: str) -> dict:
    components = _Components()
    components.schema_for(ErrorResponse, "serialization")
    paths: dict[str, Any] = {}
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
                paths.setdefault(openapi_path, {})[method] = _operation(
                    path_params, spec, components
                )
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
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
