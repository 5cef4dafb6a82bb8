"""The OpenAPI document and a Swagger UI page served from local assets (no CDN)."""

from __future__ import annotations

import json
import os

import falcon
import swagger_ui

#: Swagger UI's static files, shipped inside the swagger-ui-py package.
ASSETS_DIR = os.path.join(os.path.dirname(swagger_ui.__file__), "static")

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>OmniStream API</title>
  <link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui",
                                 deepLinking: true, withCredentials: true});
  </script>
</body>
</html>
"""


class OpenApiResource:
    def __init__(self, document: dict):
        # PERF: the document is built once at start-up and served as bytes.
        self._body = json.dumps(document).encode()

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body


class DocsResource:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_HTML
        resp.text = _PAGE
