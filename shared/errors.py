"""Domain errors. Services raise these; the API maps each to its HTTP status and code."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class Unauthenticated(DomainError):
    status, code = 401, "unauthenticated"


class PlanLimitReached(DomainError):
    """A write would exceed the workspace's plan (seats, messages, AI replies, storage).

    ``details`` is one ``{"limit", "value", "usage"}``: which limit, its value and the
    usage that the write would have exceeded.
    """

    status, code = 402, "plan_limit_reached"

    def __init__(self, limit: str, *, value: int, usage: int):
        super().__init__(
            f"The plan's {limit} limit ({value}) is reached; upgrade the plan or add an add-on",
            details=[{"limit": limit, "value": value, "usage": usage}],
        )
        self.limit = limit


class ValidationFailed(DomainError):
    """Input that is well-formed but invalid; ``details`` holds one entry per field."""

    status, code = 422, "validation_error"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DependencyUnavailable(DomainError):
    """PostgreSQL, Redis, the broker or a provider is down; the caller may retry later."""

    status, code = 503, "dependency_unavailable"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message, details=details)
        #: Seconds after which a retry may succeed (``Retry-After``), when known.
        self.retry_after = retry_after
