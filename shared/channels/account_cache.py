"""A short-lived, per-process cache of inbound account resolution (the ack path's hot read).

Every Meta POST must find the account each unit is addressed to, and its app secret,
before anything is stored. The cache keeps ``(channel, external_id) -> AccountRef``
(ids and the decrypted app secret) for ``INBOUND_ACCOUNT_CACHE_SECONDS``, so a busy
account costs one INSERT per callback instead of a SELECT, a Fernet decryption and an
INSERT. Only hits are cached: an account connected a second ago resolves at once.

Staleness is bounded and safe: a deleted or disabled account (or one whose channel was
switched off) may still be accepted for the TTL, and ``process_inbound`` re-reads the
account and drops the row if it is gone or switched off; a rotated app secret that fails
against a cached one is re-read from the database before the request is refused (see
:func:`shared.channels.receive`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from shared.channels.accounts import decrypt_credentials, switched_on
from shared.config import get_settings
from shared.models import IntegrationAccount

Key = tuple[str, str]
#: Entries kept at most (oldest dropped first), so a flood of ids cannot grow it unbounded.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class AccountRef:
    """What the ack path needs of an account."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    channel: str
    external_id: str
    app_secret: str | None

    @classmethod
    def of(cls, account: IntegrationAccount) -> AccountRef:
        secret = decrypt_credentials(account).get("app_secret")
        return cls(account.id, account.tenant_id, account.channel, account.external_id, secret)


class AccountCache:
    def __init__(self) -> None:
        self._entries: dict[Key, tuple[float, AccountRef]] = {}
        self._lock = threading.Lock()

    def lookup(
        self, session: Session, keys: Iterable[Key], *, fresh: bool = False
    ) -> dict[Key, AccountRef]:
        """The active accounts of ``keys`` (absent keys match none); ``fresh`` skips the cache."""
        ttl = get_settings().inbound_account_cache_seconds
        now = time.monotonic()
        found: dict[Key, AccountRef] = {}
        missing = []
        with self._lock:
            for key in set(keys):
                entry = None if fresh or ttl <= 0 else self._entries.get(key)
                if entry is not None and entry[0] > now:
                    found[key] = entry[1]
                else:
                    missing.append(key)
        if missing:
            rows = session.scalars(
                select(IntegrationAccount).where(
                    tuple_(IntegrationAccount.channel, IntegrationAccount.external_id).in_(missing),
                    switched_on(),
                )
            )
            loaded = {(a.channel, a.external_id): AccountRef.of(a) for a in rows}
            found.update(loaded)
            if ttl > 0 and loaded:
                with self._lock:
                    if len(self._entries) + len(loaded) > MAX_ENTRIES:
                        self._entries.clear()
                    for key, ref in loaded.items():
                        self._entries[key] = (now + ttl, ref)
        return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The process's cache (web workers are threads of one process).
cache = AccountCache()
