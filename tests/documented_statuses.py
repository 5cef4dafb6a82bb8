"""The app under test, refusing any answer its OpenAPI document does not declare.

The document lists each operation's error statuses from the declarations that produce
them (``api.openapi.error_statuses``); a service that raises something else (a 422
from a cross-field check, a 409) must say so with ``@endpoint(errors=...)``. Every
request of the suite goes through this check, so the behaviour tests that reach an
error path also prove it is documented, far beyond what the fuzzer's few examples per
operation find. ``DOCUMENTED_STATUSES_SURVEY=/tmp/undocumented.txt`` appends each
undocumented answer to that file instead of failing, to list them all in one run.
"""

from __future__ import annotations

import os
from typing import Any

from api.app import API_TITLE, API_VERSION, routes
from api.openapi import _PARAM, build_document

SURVEY = os.environ.get("DOCUMENTED_STATUSES_SURVEY")


class UndocumentedStatus(AssertionError):
    pass


class DocumentedStatuses:
    """A WSGI wrapper of the Falcon app; other attributes are the app's own."""

    def __init__(self, app: Any):
        self._app = app
        document = build_document(routes(), title=API_TITLE, version=API_VERSION)
        self._documented = {
            (method.upper(), path): {int(status) for status in operation["responses"]}
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def __call__(self, environ, start_response):
        def checked(status: str, headers, exc_info=None):
            self._check(environ, int(status[:3]))
            return start_response(status, headers, exc_info)

        return self._app(environ, checked)

    def _check(self, environ, status: int) -> None:
        found = self._app._router.find(environ.get("PATH_INFO", ""))
        if found is None:
            return  # no route: the router's own 404
        method = environ["REQUEST_METHOD"]
        key = (method, _PARAM.sub(r"{\1}", found[3]))
        documented = self._documented.get(key)
        if documented is None or status in documented or status == 405:
            return  # a route added by a test, or a method the resource lacks
        message = f"{method} {key[1]} answered {status}, documented {sorted(documented)}"
        if SURVEY:
            with open(SURVEY, "a") as out:
                out.write(message + "\n")
            return
        raise UndocumentedStatus(message)
