"""Redis key layout of the console, shared by the writers (workers, scheduler) and readers.

``{ns}:ops:process:{identity}``
    JSON of one worker process (:mod:`shared.ops.processes`), written every
    :data:`BEAT_SECONDS` with a TTL of :data:`PROCESS_TTL_SECONDS`: a process that
    dies vanishes from the console by itself, as in Sidekiq's Busy page.
``{ns}:ops:processes``
    Sorted set of process identities by last beat (Unix seconds), so readers find
    the live ones without ``SCAN``.
``{ns}:ops:paused``
    Set of paused queue names; every worker stops fetching from them within a beat.
``{ns}:ops:cancelled``
    Sorted set of message ids an operator deleted or retried early while a worker
    held them in memory (delayed), scored by when the mark may be forgotten.
``{ns}:ops:claim:{message_id}``
    Held for a moment by the one request that retries or deletes a delayed message,
    so two at once (a double click, two operators) act once.
``{ns}:ops:ended:{nonce}``
    An operator's page session (``ops_session`` cookie) that logged out, kept until
    the cookie would have expired.
``{ns}:ops:scheduler:runs`` / ``{ns}:ops:scheduler:jobs``
    Hash of job name -> JSON of its last run; hash of job name -> its trigger.
"""

from __future__ import annotations

#: How often a worker process publishes its state.
BEAT_SECONDS = 1.0
#: A process whose state is older than this is gone (it died without saying so).
PROCESS_TTL_SECONDS = 10


def process_key(namespace: str, identity: str) -> str:
    return f"{namespace}:ops:process:{identity}"


def processes_key(namespace: str) -> str:
    return f"{namespace}:ops:processes"


def paused_key(namespace: str) -> str:
    return f"{namespace}:ops:paused"


def cancelled_key(namespace: str) -> str:
    return f"{namespace}:ops:cancelled"


def claim_key(namespace: str, message_id: str) -> str:
    return f"{namespace}:ops:claim:{message_id}"


def ended_session_key(namespace: str, nonce: str) -> str:
    return f"{namespace}:ops:ended:{nonce}"


def scheduler_runs_key(namespace: str) -> str:
    return f"{namespace}:ops:scheduler:runs"


def scheduler_jobs_key(namespace: str) -> str:
    return f"{namespace}:ops:scheduler:jobs"
