"""Rollout: a rule runs on a stable share of conversations, chosen by hash.

A conversation's *bucket* for a rule is a hash of (rule id, conversation id) into
0-99; the rule runs on it when ``bucket < rollout_percentage``. So a conversation
stays in as the percentage grows (10 % -> 50 % keeps the first 10 % and adds more),
different rules pick different conversations, and no state is stored. The hash is
BLAKE2b (uniform, stable across processes and Python versions, unlike ``hash()``).

Events without a conversation (``contact.*``) are bucketed by their subject's id
(the contact), else by the event's own id.
"""

from __future__ import annotations

import hashlib
import uuid

FULL = 100


def bucket(rule_id: uuid.UUID, subject_id: uuid.UUID) -> int:
    """The subject's bucket for the rule, 0-99 (the same everywhere, every time)."""
    digest = hashlib.blake2b(rule_id.bytes + subject_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def includes(percentage: int, rule_id: uuid.UUID, subject_id: uuid.UUID | None) -> bool:
    """Whether a rule rolled out to ``percentage`` % runs for ``subject_id``."""
    if percentage >= FULL:
        return True
    if percentage <= 0 or subject_id is None:
        return False
    return bucket(rule_id, subject_id) < percentage
