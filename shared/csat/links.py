"""The survey link's token: 256 random bits, of which only the SHA-256 is stored.

APPSEC: the token is unguessable (``secrets``), so one hash without salt or stretching
is enough, as for invitation tokens; a dump of ``csat_surveys`` yields no usable link.
The link itself lives in the survey message the customer receives (that message is
the delivery), so it is as visible as any message the tenant's agents can read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from shared.config import get_settings

_DEFAULT_PAGE = "/csat/{survey_id}#token={token}"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison, so response times say nothing about the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def survey_link(survey_id: uuid.UUID, token: str) -> str:
    """``CSAT_SURVEY_URL`` filled in, else the API's public origin + the default page.

    NOTE: the token goes in the fragment by default: browsers never send it to a
    server, so it stays out of access logs and Referer headers.
    """
    settings = get_settings()
    template = settings.csat_survey_url or (
        (settings.public_base_url or "http://127.0.0.1:8000").rstrip("/") + _DEFAULT_PAGE
    )
    return template.replace("{survey_id}", str(survey_id)).replace("{token}", token)
