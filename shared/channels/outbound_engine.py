"""Send a batch of outbound messages: one claim, concurrent provider calls, one record.

The outbound counterpart of the webhook engine (:mod:`shared.webhooks.engine`), made
per batch of ``send_outbound_batch`` (up to :data:`MAX_BATCH` messages a transaction
committed) instead of one job, transaction and worker thread per message:

1. claim: one ``UPDATE outbound_sends ... FOR UPDATE SKIP LOCKED`` over the pending,
   due rows among the ids moves their ``next_attempt_at`` to the claim's expiry
   (``OUTBOUND_CLAIM_SECONDS``) and counts the attempt; their messages,
   conversations and contacts are loaded in one query, accounts once per batch;
   committed. While the claim lives no other job claims the message (a duplicate
   job, the sweeper's re-drive finds nothing due), so one message is never sent by
   two workers at once. A cancelled campaign's message is failed here, not sent.
2. send: outside any transaction, on this process's pool of send threads
   (``OUTBOUND_SEND_THREADS``) through the same transports as ever, each account
   within its slots, throttling pauses and pair holds (:mod:`.outbound_limits`). A send
   starts only while its claim has room left for the send's own time bound
   (:meth:`shared.config.Settings.send_bound_seconds`, which the settings keep under half
   the claim), so it ends before the claim can run out; what has no room left is put
   back (not an attempt).
3. record: in one transaction, of the claims still the latest of their sends
   (:func:`.outbound.hold_live`: one that ran out and was claimed again records nothing,
   and leaves its send marker), the sent ones batched (:func:`.outbound.record_sent_many`),
   transient failures back to pending for their retry time (a doubling backoff, or the
   provider's ``Retry-After`` when longer), the rest failed through the per-message path
   (:func:`.outbound.record_failed`, token rejection included). A message still failing
   after ``OUTBOUND_MAX_RETRIES`` retries is failed and dead-lettered, in that same
   transaction: never silently dropped. If that transaction fails, each message is
   recorded on its own.

The caller (the actor) re-enqueues every :data:`Outcome.RETRY` with its ``retry_in``
delay; a lost re-enqueue is the sweeper's, as a lost job always was.

A worker that dies after the provider accepted a message and before the record commits
leaves the claim to run out. Neither Meta nor SMTP has an idempotency key, so the next
claim does not send it again: :mod:`.send_markers` tells that the dead attempt reached
the provider call, and the message is failed as ``delivery_unknown`` (at most once; the
api channel, whose receivers deduplicate, is sent again). Sends claimed but never started
go out normally.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import ARRAY, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session

from shared.campaigns import tracking as campaign_tracking
from shared.channels import outbound, send_markers, transports
from shared.channels.graph import MAX_RETRY_AFTER_SECONDS
from shared.channels.graph_errors import is_pair_throttled, is_throttled
from shared.channels.outbound_limits import AccountLimits, account_limits
from shared.channels.send_errors import Outcome, Result, SendFailed, as_failure
from shared.config import Settings, get_settings
from shared.db import session_scope
from shared.models import Contact, Conversation, Message

log = logging.getLogger(__name__)

#: Messages per ``send_outbound_batch`` job at most.
MAX_BATCH = 50
#: What a batch may take past its claim's expiry: its record (one transaction, or one a
#: message when that fails).
RECORD_ALLOWANCE_SECONDS = 300.0


def batch_time_limit_ms(settings: Settings) -> int:
    """The time limit of a job that sends a batch: its claim, then its record; at least
    15 minutes.

    WHY: no send outlasts its claim, but the whole batch may run that long; a fixed 15
    minutes under a longer claim (the settings ask for one above twice the longest send,
    and an SMTP timeout of 300 s makes that 40 minutes) interrupted the job while it
    waited for its sends, so nothing was recorded: sends Meta or the relay had taken
    ended ``delivery_unknown``.
    """
    return int(max(15 * 60, settings.outbound_claim_seconds + RECORD_ALLOWANCE_SECONDS) * 1000)


#: An array of ids bound as one parameter.
_UUIDS = ARRAY(PG_UUID(as_uuid=True))

#: ``ORDER BY``: every worker locks in one order. ``now()`` is the transaction's start,
#: so the expiry is counted from before the rows were read. A suspended workspace's sends
#: are not claimed: they wait, and the sweeper re-drives them once it is reactivated.
_CLAIM = text(
    """
    WITH due AS MATERIALIZED (
        SELECT message_id FROM outbound_sends
         WHERE message_id = ANY(:ids) AND status = 'pending' AND next_attempt_at <= now()
           AND NOT EXISTS (SELECT 1 FROM tenants t
                            WHERE t.id = outbound_sends.tenant_id AND t.status <> 'active')
         ORDER BY message_id
         FOR UPDATE SKIP LOCKED
    )
    UPDATE outbound_sends s
       SET attempts = s.attempts + 1,
           last_attempt_at = now(),
           next_attempt_at = now() + make_interval(secs => :lease),
           sweep_at = now() + make_interval(secs => :sweep)
      FROM due
     WHERE s.message_id = due.message_id
    RETURNING s.message_id, s.tenant_id, s.attempts
    """
)


@dataclass(slots=True)
class Claim:
    """A message this job may send until ``deadline`` (monotonic) is past."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    #: This attempt's number (1 for the first).
    attempt: int
    deadline: float
    outgoing: transports.Outgoing | None = None
    #: Why it cannot even be tried (no account, a disabled one...).
    error: SendFailed | None = None

    @property
    def account_id(self) -> uuid.UUID | None:
        return self.outgoing.account.id if self.outgoing is not None else None

    @property
    def account_credentials(self) -> str | None:
        """The account's stored (encrypted) credentials as claimed: what the send used."""
        return self.outgoing.account.credentials_encrypted if self.outgoing is not None else None

    @property
    def recipient_id(self) -> uuid.UUID | None:
        """The contact sent to (a pair hold's recipient)."""
        return self.outgoing.contact.id if self.outgoing is not None else None


@dataclass(slots=True)
class Attempted:
    """What became of a claim: sent (``provider_id``), refused (``error``) or put back."""

    provider_id: str | None = None
    error: SendFailed | None = None
    #: Not sent: pending again in this many seconds (a paused account, no room left).
    deferred: float | None = None


#: A send whose previous attempt called the provider and was never recorded.
DELIVERY_UNKNOWN = SendFailed(
    "delivery_unknown",
    "the worker sending this message stopped during the provider call, so it may or may not"
    " have been delivered; it was not sent again (resend it if the customer did not get it)",
    transient=False,
)


def retry_delay(attempt: int, error: SendFailed | None, settings: Settings) -> float:
    """Seconds before the next try after failed attempt ``attempt``: doubling, or the
    provider's ``Retry-After`` when longer, up to a day.

    WHY the bound: an api receiver's ``Retry-After`` of 400 digits is infinity; it
    overflowed the account's pause, and the batch was never recorded.
    """
    backoff = min(
        settings.outbound_max_backoff_ms, settings.outbound_min_backoff_ms * 2 ** (attempt - 1)
    )
    retry_after = error.retry_after if error is not None else None
    return max(backoff / 1000, min(retry_after or 0.0, MAX_RETRY_AFTER_SECONDS))


#: Why a campaign message is not sent when its send starts: its campaign was cancelled,
#: or its contact opted out, after the batch made it.
CAMPAIGN_STOPPED = {
    campaign_tracking.CANCELLED: SendFailed(
        campaign_tracking.CANCELLED,
        "the campaign was cancelled before this message was sent",
        transient=False,
    ),
    campaign_tracking.OPTED_OUT: SendFailed(
        campaign_tracking.OPTED_OUT,
        "the contact opted out before this campaign message was sent",
        transient=False,
    ),
}


# --- 1. claim ---------------------------------------------------------------------------------


def claim(ids: Sequence[uuid.UUID]) -> tuple[list[Claim], dict[uuid.UUID, Result]]:
    """Claim the pending due sends among ``ids``; (claims, outcomes of those already done).

    An id in neither is not ours now: sent or failed, claimed elsewhere, waiting for
    its retry time, or unknown.
    """
    settings = get_settings()
    lease = settings.outbound_claim_seconds
    done: dict[uuid.UUID, Result] = {}
    with session_scope() as session:
        # NOTE: read before the statement: the lease runs from the transaction's start
        # (``now()``), and a claim read after a slow statement thought it had more left.
        started = time.monotonic()
        rows = session.execute(
            _CLAIM,
            {
                "ids": list(ids),
                "lease": lease,
                "sweep": lease + settings.outbound_sweep_after_seconds,
            },
        ).all()
        if not rows:
            return [], done
        attempts = {row.message_id: row.attempts for row in rows}
        doubtful = send_markers.in_doubt(attempts)
        by_tenant = {row.message_id: row.tenant_id for row in rows}
        keys = [(tenant_id, message_id) for message_id, tenant_id in by_tenant.items()]
        loaded = _load(session, keys)
        claims: list[Claim] = []
        finished: dict[str, list[uuid.UUID]] = defaultdict(list)
        accounts: dict[tuple, tuple] = {}
        stopped = campaign_tracking.stopped_sends(session, [m for m, _, _ in loaded])
        for message, conversation, contact in loaded:
            if message.status != "queued":  # failed or moved on by some other path
                finished["failed" if message.status == "failed" else "sent"].append(message.id)
                done[message.id] = Result(Outcome.DONE)
                continue
            # NOTE: the settings keep every bound under half the claim (refused otherwise),
            # so a send started before this deadline ends before the claim runs out.
            item = Claim(
                message.id,
                message.tenant_id,
                attempts[message.id],
                started + lease - settings.send_bound_seconds(message.channel),
            )
            if message.id in doubtful and message.channel not in send_markers.EXEMPT_CHANNELS:
                item.error = DELIVERY_UNKNOWN
                claims.append(item)
                continue
            if message.id in stopped:
                item.error = CAMPAIGN_STOPPED[stopped[message.id]]
                claims.append(item)
                continue
            try:
                account, credentials = _account(session, accounts, message, conversation)
                item.outgoing = transports.Outgoing(
                    message, conversation, contact, account, credentials
                )
            except Exception as exc:
                item.error = as_failure(exc, f"send {message.id}")
            claims.append(item)
        gone = set(attempts) - {m.id for m, _, _ in loaded} - set(done)
        for message_id in gone:  # its conversation or contact was deleted: nobody to send to
            item = Claim(message_id, by_tenant[message_id], attempts[message_id], started)
            item.error = SendFailed(
                "recipient_gone", "the conversation or contact was deleted", transient=False
            )
            claims.append(item)
        for status, finished_ids in finished.items():
            outbound.finish(session, finished_ids, status)
    return claims, done


def _load(session: Session, keys: list[tuple[uuid.UUID, uuid.UUID]]) -> list[tuple]:
    """``(message, conversation, contact)`` of each ``(tenant_id, message_id)`` that has all
    three, in the messages' order.

    PERF: the contacts are read by primary key alone, in their own query. Joined with a
    tenant condition, a table without statistics yet (a contact import minutes ago, before
    autovacuum analyzed it) had the planner read them by the tenant index: every contact
    of the tenant scanned for every message (1 s a claim of 50 at 10,000 contacts). The
    tenant is checked on the loaded rows instead, so no other tenant's contact is used.
    The messages too are read by id (``= ANY`` of one array: a short statement whatever
    the batch, which psycopg and SQLAlchemy cache; a tuple ``IN`` of 100 parameters was
    parsed again for every batch) and kept only under their claimed tenant.
    """
    wanted_pairs = set(keys)
    pairs = session.execute(
        select(Message, Conversation)
        .join(
            Conversation,
            (Conversation.id == Message.conversation_id)
            & (Conversation.tenant_id == Message.tenant_id),
        )
        .where(Message.id == any_(bindparam("ids", type_=_UUIDS)))
        .order_by(Message.created_at, Message.id),
        {"ids": [message_id for _, message_id in keys]},
    ).all()
    pairs = [(m, c) for m, c in pairs if (m.tenant_id, m.id) in wanted_pairs]
    wanted = list({conversation.contact_id for _, conversation in pairs})
    contacts = {
        contact.id: contact
        for contact in session.scalars(
            select(Contact).where(Contact.id == any_(bindparam("ids", type_=_UUIDS))),
            {"ids": wanted},
        )
    }
    return [
        (message, conversation, contact)
        for message, conversation in pairs
        if (contact := contacts.get(conversation.contact_id)) is not None
        and contact.tenant_id == message.tenant_id
    ]


def _account(session: Session, memo: dict[tuple, tuple], message, conversation) -> tuple:
    """The message's account and credentials, looked up (and decrypted) once per batch."""
    memo_key = (message.tenant_id, conversation.integration_account_id, message.channel)
    if memo_key not in memo:
        try:
            memo[memo_key] = (outbound.account_of(session, message, conversation), None)
        except SendFailed as exc:
            memo[memo_key] = (None, exc)
    found, error = memo[memo_key]
    if error is not None:
        raise error
    return found


# --- 2. send ----------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _send_pool() -> ThreadPoolExecutor:
    """This process's send threads (again in a forked child; rebuilt when resized)."""
    global _pool
    size = get_settings().outbound_send_threads
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != size:
            _pool = (
                os.getpid(),
                size,
                ThreadPoolExecutor(size, thread_name_prefix="outbound-send"),
            )
        return _pool[2]


def _interleaved(claims: Iterable[Claim]) -> list[Claim]:
    """One account's claims between the others': a throttled account delays only its own."""
    queues: dict[uuid.UUID | None, deque[Claim]] = defaultdict(deque)
    for item in claims:
        queues[item.account_id].append(item)
    ordered: list[Claim] = []
    while queues:
        for account_id in list(queues):
            ordered.append(queues[account_id].popleft())
            if not queues[account_id]:
                del queues[account_id]
    return ordered


def send_all(claims: Sequence[Claim]) -> dict[uuid.UUID, Attempted]:
    """Send every claim that may be sent, concurrently; what became of each."""
    limits = account_limits()
    out = {c.message_id: Attempted(error=c.error) for c in claims if c.outgoing is None}
    ready = [c for c in claims if c.outgoing is not None]
    limits.load_pauses((c.account_id, c.recipient_id) for c in ready)
    pool = _send_pool()
    futures: dict[uuid.UUID, Future[Attempted]] = {}
    for item in _interleaved(ready):
        account_id, recipient_id = item.account_id, item.recipient_id
        room = item.deadline - time.monotonic()
        paused = limits.pause_left(account_id, recipient_id)
        if paused > 0 or room <= 0:
            out[item.message_id] = Attempted(deferred=paused)
            continue
        slot = limits.slot(account_id)
        if not slot.acquire(timeout=room):
            out[item.message_id] = Attempted(deferred=0.0)
            continue
        paused = limits.pause_left(account_id, recipient_id)  # throttled meanwhile?
        if paused > 0:
            slot.release()
            out[item.message_id] = Attempted(deferred=paused)
            continue
        try:
            future = pool.submit(_send_one, item, limits)
        except BaseException:
            slot.release()
            raise
        future.add_done_callback(lambda _done, held=slot: held.release())
        futures[item.message_id] = future
    for message_id, future in futures.items():
        out[message_id] = future.result()
    return out


class _NoRoomLeft(Exception):
    """The claim has no room left for the send's provider call: it is put back."""


def _send_one(item: Claim, limits: AccountLimits) -> Attempted:
    """One provider call; a throttling answer pauses the account, the pair rate limit
    holds back its recipient only (never raises).

    A send that waited for a send thread until its claim had no room left is put back:
    its claim may run out mid-call, and another worker may send it meanwhile (the room
    checked when it was queued said nothing of when a thread would take it).
    """
    assert item.outgoing is not None
    if time.monotonic() >= item.deadline:
        return Attempted(deferred=0.0)
    marked = item.outgoing.message.channel not in send_markers.EXEMPT_CHANNELS

    def ready() -> None:
        """Right before the first provider call, after the reads the send needs.

        WHY checked again: those reads (a wait for a pooled connection, a stored file)
        are not in the send's bound; a send they held past its claim's room called the
        provider anyway and could still be in flight when its claim ran out.
        """
        if time.monotonic() >= item.deadline:
            raise _NoRoomLeft
        if marked:
            send_markers.mark(item.message_id, item.attempt)

    try:
        if not transports.reads_database(item.outgoing):  # PERF: no session to open and close
            return Attempted(provider_id=transports.send(None, item.outgoing, ready))
        with session_scope() as session:
            return Attempted(provider_id=transports.send(session, item.outgoing, ready))
    except _NoRoomLeft:
        return Attempted(deferred=0.0)
    except Exception as exc:
        error = as_failure(exc, f"send {item.message_id}")
        if is_throttled(error):
            delay = retry_delay(item.attempt, error, get_settings())
            # NOTE: the pair rate limit holds back this recipient only, not the number.
            recipient = item.recipient_id if is_pair_throttled(error) else None
            limits.pause(item.outgoing.account.id, delay, recipient)
        return Attempted(error=error)


# --- 3. record --------------------------------------------------------------------------------


def record(
    claims: Sequence[Claim], attempted: dict[uuid.UUID, Attempted]
) -> dict[uuid.UUID, Result]:
    """Record every claim's outcome: together, else (that failed) one by one."""
    items = [(c, attempted[c.message_id]) for c in claims]
    if not items:
        return {}
    try:
        with session_scope() as session:
            results = _record(session, items)
        # NOTE: a claim that ran out recorded nothing: its marker stays, so a provider call
        # it made is still in doubt for whoever holds the send now.
        send_markers.clear(
            {c.message_id: c.attempt for c in claims if results[c.message_id] is not OUTLIVED}
        )
        return results
    except Exception:
        if len(items) == 1:
            log.exception(
                "recording send %s failed; sent again once its claim runs out", claims[0].message_id
            )
            return {claims[0].message_id: Result(Outcome.BUSY)}
        log.exception("recording %d sends together failed; recording them one by one", len(items))
    results: dict[uuid.UUID, Result] = {}
    for item in items:
        results.update(record([item[0]], {item[0].message_id: item[1]}))
    return results


#: The outcome of a claim that ran out before its record: another worker claimed the send
#: since (or it is settled), so nothing was recorded (:func:`.outbound.hold_live`).
OUTLIVED = Result(Outcome.BUSY)


def _record(session: Session, items: Sequence[tuple[Claim, Attempted]]) -> dict[uuid.UUID, Result]:
    settings = get_settings()
    results: dict[uuid.UUID, Result] = {}
    sent: list[tuple[Claim, str]] = []
    later: list[outbound.Reschedule] = []
    failed: list[tuple[Claim, SendFailed, bool]] = []
    live = outbound.hold_live(session, {item.message_id: item.attempt for item, _ in items})
    for item, attempt in items:
        if item.message_id not in live:
            _outlived(session, item, attempt)
            results[item.message_id] = OUTLIVED
            continue
        error = attempt.error
        if attempt.provider_id is not None:
            sent.append((item, attempt.provider_id))
        elif error is None:  # not sent: put back, and it was no attempt
            delay = attempt.deferred or 0.0
            later.append(
                outbound.Reschedule(item.message_id, item.attempt, delay, undo_attempt=True)
            )
            results[item.message_id] = Result(Outcome.RETRY, retry_in=delay)
        elif error.transient and item.attempt <= settings.outbound_max_retries:
            delay = retry_delay(item.attempt, error, settings)
            log.info("send %s: transient %s, retry in %.2fs", item.message_id, error.code, delay)
            later.append(outbound.Reschedule(item.message_id, item.attempt, delay, error=error))
            results[item.message_id] = Result(Outcome.RETRY, error, retry_in=delay)
        else:
            failed.append((item, error, error.transient))
            results[item.message_id] = Result(Outcome.FAILED, error)
    if sent:
        outbound.record_sent_many(
            session,
            [(c.tenant_id, c.message_id, pid, c.outgoing.message.channel) for c, pid in sent],
        )
        for item, provider_id in sent:
            results[item.message_id] = Result(Outcome.SENT, provider_message_id=provider_id)
    if later:
        outbound.reschedule(session, later)
    for item, error, exhausted in failed:
        outbound.record_failed(
            session,
            item.tenant_id,
            item.message_id,
            error,
            account_id=item.account_id,
            sent_credentials=item.account_credentials,
            attempts=item.attempt if exhausted else None,
        )
    return results


def _outlived(session: Session, item: Claim, attempt: Attempted) -> None:
    """Say what a claim that ran out learned and did not record (an operator may need it);
    the provider's id of a send failed meanwhile is kept (:func:`.outbound.keep_late_provider_id`).
    """
    if attempt.provider_id is not None:
        kept = item.outgoing is not None and outbound.keep_late_provider_id(
            session,
            item.tenant_id,
            item.message_id,
            attempt.provider_id,
            item.outgoing.message.channel,
        )
        log.warning(
            "send %s: attempt %d was accepted by the provider as %s after its claim ran out;"
            " the send is another claim's now (or settled), so this is not recorded%s",
            item.message_id,
            item.attempt,
            attempt.provider_id,
            " (the id is kept on the failed message, for its receipts)" if kept else "",
        )
    elif attempt.error is not None:
        log.warning(
            "send %s: attempt %d failed (%s) after its claim ran out; not recorded",
            item.message_id,
            item.attempt,
            attempt.error.code,
        )


# --- all three --------------------------------------------------------------------------------


def send_batch(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Result]:
    """Claim, send and record the due sends among ``ids``; each claimed id's outcome.

    Ids not claimed are left out (or ``already_done`` when their message moved on).
    """
    claims, results = claim(ids)
    if claims:
        results.update(record(claims, send_all(claims)))
    return results


def chunks(ids: Sequence[uuid.UUID], size: int = MAX_BATCH) -> list[list[uuid.UUID]]:
    """``ids`` cut into batches of at most ``size``, in order."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]
