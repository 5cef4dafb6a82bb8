"""The OpenAPI document and a Swagger UI page served from local assets (no CDN)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import falcon
import swagger_ui

#: Swagger UI's static files, shipped inside the swagger-ui-py package.
ASSETS_DIR = os.path.join(os.path.dirname(swagger_ui.__file__), "static")

_START = """
    window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui",
                                 deepLinking: true, withCredentials: true});
  """
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>OmniStream API</title>
  <link rel="stylesheet" href="/api/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/static/swagger-ui-bundle.js"></script>
  <script>{_START}</script>
</body>
</html>
"""
#: APPSEC: the page sends requests with the browser's cookies and takes tokens in its
#: Authorize dialog: it runs only our two scripts (the bundle, and the start above by its
#: hash), talks to this origin only, and no other site may frame it.
_START_HASH = base64.b64encode(hashlib.sha256(_START.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src 'self' 'sha256-{_START_HASH}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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
        resp.set_headers(_HEADERS)
        resp.text = _PAGE
