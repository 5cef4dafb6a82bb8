"""Engine and sessions: one engine per process, one session per unit of work.

Every process (API, worker, scheduler) calls :func:`session_scope` or
:func:`get_sessionmaker`; nobody builds engines of their own, so pool sizes and
statement timeouts are set here once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import psycopg
import pydantic_core
from sqlalchemy import Connection, Engine, Executable, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from shared.config import get_settings

T = TypeVar("T")

#: A pooled connection idle longer than this is pinged before use (see :func:`_ping_if_idle`).
IDLE_PING_AFTER_SECONDS = 2.0
_LAST_USED = "omnistream.last_used"
#: Set on a held read connection given back to the pool: when it was really last used.
_IDLE_SINCE = "omnistream.idle_since"
#: A thread's read connection goes back to the pool at most this long after it was taken,
#: so the pool's recycling and invalidation reach it (see :class:`RequestReadSession`).
READ_CONNECTION_HOLD_SECONDS = 60.0


@functools.cache
def get_engine() -> Engine:
    """Return the process-wide engine, created on first use (after any fork)."""
    settings = get_settings()
    connect_args: dict[str, Any] = {"application_name": "omnistream"}
    # PERF: timestamps are read in UTC whatever the server's TimeZone setting. psycopg
    # gives a session in "UTC" the fixed datetime.timezone.utc, and any other zone
    # (the "Etc/UTC" of most server images included) a ZoneInfo, which made loading an
    # inbox page ~35 % slower (6 timestamps a row converted through it) for the same
    # instants and the same JSON. No SQL here depends on the session's zone.
    if settings.database_pgbouncer:
        # NOTE: PgBouncer in transaction mode hands each transaction to any server
        # connection: a statement psycopg prepared (after 5 uses) on one is missing on
        # the next ("prepared statement _pg3_0 does not exist"); PgBouncer 1.21's
        # max_prepared_statements would fix that, Debian 12 ships 1.18. It also refuses
        # the startup "options" packet: TimeZone is SET once instead (PgBouncer tracks
        # it and sets it on every server connection it lends us); statement_timeout is
        # not tracked and is left to the role (README: PgBouncer).
        connect_args["prepare_threshold"] = None
    else:
        # NOTE: JIT off: these are short OLTP statements, and a plan whose cost a bad
        # estimate pushed past jit_above_cost paid 30 ms-2 s of compilation (seen on message
        # searches, tables without statistics) for a statement that ran in milliseconds.
        options = ["-c TimeZone=UTC", "-c jit=off"]
        if settings.db_statement_timeout_ms:
            options.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
        connect_args["options"] = " ".join(options)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
        # PERF: the connection returned last is lent next (warm backend and caches): with
        # request threads holding their read connections (RequestReadSession), a write
        # then gets the one its thread just gave back. The mix's writes -1 to -8 % CPU.
        pool_use_lifo=True,
        connect_args=connect_args,
        # PERF: JSON columns are parsed by pydantic's Rust parser (0.1 us for an empty
        # object against 1.8 us for json.loads on bytes): an inbox page parses one per row.
        json_deserializer=pydantic_core.from_json,
    )
    if settings.database_pgbouncer:
        event.listen(engine, "connect", _set_utc)
    event.listen(engine, "checkout", _ping_if_idle)
    event.listen(engine, "checkin", _mark_used)
    return engine


def _set_utc(dbapi_connection, record) -> None:
    """Through PgBouncer: the session zone the startup options would have set."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("SET TimeZone TO 'UTC'")
    finally:
        dbapi_connection.autocommit = autocommit


def _ping_if_idle(dbapi_connection, record, proxy) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    PERF: ``pool_pre_ping`` paid a ``SELECT 1`` round trip on every checkout,
    i.e. every request. A busy connection is almost never the stale one: a
    PostgreSQL restart leaves connections idle in the pool, and those are pinged
    here. A connection killed while busy fails its next statement instead;
    SQLAlchemy then invalidates the whole pool and ``api.endpoint`` retries
    GET/HEAD once on a fresh connection, so the next request still works.
    Raising ``DisconnectionError`` makes the pool discard it and connect anew.
    """
    last_used = record.info.get(_LAST_USED)
    if dbapi_connection.closed or getattr(dbapi_connection, "broken", False):
        raise exc.DisconnectionError("connection closed")
    if last_used is None or time.monotonic() - last_used < IDLE_PING_AFTER_SECONDS:
        return
    try:
        dbapi_connection.execute("SELECT 1")
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()
    except Exception as error:  # any failure means: not usable
        raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error


def _mark_used(dbapi_connection, record) -> None:
    # NOTE: a thread's held read connection comes back after sitting idle maybe; its
    # real last use decides whether the next checkout pings it.
    record.info[_LAST_USED] = record.info.pop(_IDLE_SINCE, None) or time.monotonic()


class ReadSession(Session):
    """An autocommit session whose ``connection()`` is a plain pooled connection.

    PERF: a read request's first query used to go through the session's transaction
    bookkeeping (a ``SessionTransaction`` begun on a new ``Connection``, then closed and
    rolled back at the end), ~40 us CPU of a ~600 us inbox page for a transaction an
    autocommit session never has. The hot reads only want the connection
    (:func:`fetch_rows`), so ``connection()`` checks one out directly; ORM queries and
    ``execute`` then run on that same connection (``get_bind``), and a session that
    started with them keeps the usual path. ``close()`` returns the connection.
    """

    _direct: Connection | None = None

    def connection(self, bind_arguments=None, execution_options=None) -> Connection:
        if self._direct is not None:
            return self._direct
        if self._transaction is not None or bind_arguments or execution_options:
            return super().connection(bind_arguments, execution_options)
        self._direct = self.bind.connect()  # type: ignore[union-attr]
        return self._direct

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        return self._direct if self._direct is not None else super().get_bind(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            direct, self._direct = self._direct, None
            if direct is not None:
                direct.close()


class _ThreadAnchor:
    """Lives in a thread's locals only: it goes when the thread ends (a finalizer's referent)."""

    __slots__ = ("__weakref__",)


class _HeldRead(threading.local):
    """The read connection this thread keeps between requests (:class:`RequestReadSession`)."""

    connection: Connection | None = None
    pool: Any = None
    pid: int = 0
    taken_at: float = 0.0
    last_used: float = 0.0
    #: Gives the connection back when the thread ends holding it (:func:`_thread_ended`).
    anchor: _ThreadAnchor | None = None
    on_thread_end: weakref.finalize | None = None


_held = _HeldRead()
#: Every thread's held read connection (for :func:`reset_engine`): thread -> (pid, connection).
_all_held: dict[int, tuple[int, Connection]] = {}
_all_held_lock = threading.Lock()


def _take_read_connection(engine: Engine) -> Connection:
    """This thread's read connection: the one it holds, or one checked out now and held."""
    held, now = _held, time.monotonic()
    connection = held.connection
    if connection is not None:
        usable = (
            held.pid == os.getpid()
            and held.pool is engine.pool
            and not connection.invalidated
            and not connection.closed
            and now - held.last_used < IDLE_PING_AFTER_SECONDS
            and now - held.taken_at < READ_CONNECTION_HOLD_SECONDS
        )
        if usable:
            return connection
        release_read_connection()
    connection = engine.connect()
    held.connection, held.pool, held.pid = connection, engine.pool, os.getpid()
    held.taken_at = held.last_used = now
    held.anchor = _ThreadAnchor()
    held.on_thread_end = weakref.finalize(
        held.anchor, _thread_ended, threading.get_ident(), held.pid, connection
    )
    with _all_held_lock:
        _all_held[threading.get_ident()] = (held.pid, connection)
    return connection


def _thread_ended(ident: int, pid: int, connection: Connection) -> None:
    """A thread ended holding its read connection: give it back to the pool.

    A server's request threads live as long as it does, but a thread made for a while
    (a pool that replaces its threads, a test's threads) would otherwise leave its
    connection checked out for good: :data:`_all_held` keeps it alive.
    """
    with _all_held_lock:
        if _all_held.get(ident, (0, None))[1] is connection:
            del _all_held[ident]
    if pid == os.getpid():
        with contextlib.suppress(Exception):
            connection.close()


def release_read_connection() -> None:
    """Give this thread's held read connection back to the pool (if it holds one).

    Called when the held connection is not fit for use as it is (idle, old, lost, a
    write's that could not be switched back to autocommit) and by tests.
    """
    held = _held
    connection, held.connection = held.connection, None
    if connection is None:
        return
    if held.on_thread_end is not None:
        held.on_thread_end.detach()
    held.anchor = held.on_thread_end = None
    with _all_held_lock:
        if _all_held.get(threading.get_ident(), (0, None))[1] is connection:
            del _all_held[threading.get_ident()]
    if held.pid != os.getpid():
        return  # NOTE: a forked child's copy: the parent's connection, not ours to close
    with contextlib.suppress(Exception):
        if not connection.invalidated and not connection.closed:
            connection.connection.info[_IDLE_SINCE] = held.last_used
        connection.close()


def release_request_connection(session: Session) -> None:
    """End ``session`` and give the thread's held connection back before a long wait.

    For a request that is about to wait on something outside (a provider) in a session
    of its own: the thread then holds that session's connection only, one at a time as
    :mod:`shared.db_budget` counts web threads, not the held one idle beside it. The
    next read takes a connection again. Outside the API's threads it only closes
    ``session``.
    """
    session.close()
    release_read_connection()


def _invalidate_held_read_connections() -> None:
    """Close every thread's held read connection (engine reset: tests, forked children)."""
    with _all_held_lock:
        held = list(_all_held.values())
        _all_held.clear()
    for pid, connection in held:
        if pid == os.getpid():  # NOTE: a forked child leaves its parent's connections alone
            with contextlib.suppress(Exception):
                connection.invalidate()


class RequestReadSession(ReadSession):
    """The API's read session: its connection stays with the request thread afterwards.

    PERF: checking a connection out of the pool and back for every read request (pool
    events, the AUTOCOMMIT isolation level set and reset, a different backend each
    time) cost ~0.1 ms CPU of a 0.4-0.9 ms read request (in-process replay of the inbox
    mix, held + LIFO pool: reads -7 to -21 %, the mix -9 %). A request thread keeps its read
    connection while it is busy (a write request runs its transaction on it,
    :class:`RequestWriteSession`); it goes back to the pool when it sat idle for
    ``IDLE_PING_AFTER_SECONDS`` (the pool pings it before lending it again, as before),
    after ``READ_CONNECTION_HOLD_SECONDS`` (recycling), and when it was invalidated (a
    lost connection: the GET is retried on a fresh one, ``api.endpoint``).
    """

    def connection(self, bind_arguments=None, execution_options=None) -> Connection:
        if bind_arguments or execution_options:
            return super().connection(bind_arguments, execution_options)
        return self.get_bind()

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        # NOTE: ORM queries too: a session that starts with one uses the held connection,
        # so a request thread never holds a second one for a read.
        if self._direct is None:
            self._direct = _take_read_connection(self.bind.engine)  # type: ignore[union-attr]
        return self._direct

    def close(self) -> None:
        direct, self._direct = self._direct, None
        try:
            # PERF: most read requests only ran statements on the driver (fetch_rows): the
            # session holds no object and no transaction, and Session.close would still walk
            # its empty identity map and fire its detach hooks (~10-20 us a request).
            if len(self.identity_map) or self.in_transaction() or self.new or self.deleted:
                Session.close(self)
        finally:
            if direct is not None:
                _held.last_used = time.monotonic()
                # NOTE: a statement run on the Connection itself began a (no-op, autocommit)
                # transaction there; end it, so the next request starts as a fresh one would.
                if direct.in_transaction() and not direct.invalidated:
                    with contextlib.suppress(Exception):
                        direct.rollback()


class RequestWriteSession(Session):
    """The API's write session: its transaction runs on the request thread's held connection.

    PERF: a write request gave its thread's held read connection back to the pool and
    checked one out again (the same one, the pool being LIFO), and the next read request
    did both again: two check-ins and two check-outs, each with the pool's events and the
    isolation level reset and set (in-process replay of the inbox mix, old and new
    alternating: writes -8 to -12 % CPU, the mix -3 to -6 %). Now
    the write takes the held connection (:func:`_take_read_connection`, with its idle,
    recycling and invalidation rules) and switches the driver out of autocommit for its
    transaction, and back when the session closes; the thread still uses one pooled
    connection at a time, as the connection budget counts (``shared.db_budget``).

    The writes a commit made are reported to the read caches right after it
    (``shared.committed_writes``), as the pool's check-in used to do.
    """

    _direct: Connection | None = None

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        direct = self._direct
        if direct is None:
            direct = _take_read_connection(self.bind.engine)  # type: ignore[union-attr]
            if direct.in_transaction():
                direct.rollback()
            # NOTE: the driver's own switch, not the Connection's isolation_level option:
            # that one queues a reset on the pooled record at every call, held for minutes.
            direct.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]
            self._direct = direct
        return direct

    def commit(self) -> None:
        super().commit()
        if self._direct is not None:
            from shared import committed_writes

            committed_writes.report_committed(self._direct)

    def close(self) -> None:
        direct, self._direct = self._direct, None
        try:
            Session.close(self)
        finally:
            if direct is not None:
                _held.last_used = time.monotonic()
                _back_to_autocommit(direct)


def _back_to_autocommit(connection: Connection) -> None:
    """A write's held connection returns to reads: the driver in autocommit, no transaction."""
    try:
        if connection.invalidated or connection.closed:
            raise exc.DisconnectionError("lost")
        if connection.in_transaction():
            connection.rollback()
        dbapi = connection.connection.dbapi_connection
        if dbapi.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:  # type: ignore[union-attr]
            dbapi.rollback()  # type: ignore[union-attr]
        dbapi.autocommit = True  # type: ignore[union-attr]
    except Exception:
        # NOTE: not fit for the next read as it is: the pool resets it, or discards it.
        if _held.connection is connection:
            release_read_connection()


@functools.cache
def get_sessionmaker(
    *, read_only: bool = False, request_thread: bool = False
) -> sessionmaker[Session]:
    """Sessions on the shared engine; ``read_only`` ones autocommit each statement.

    ``request_thread``: for the API's request threads only (the connection outlives the
    session): :class:`RequestReadSession` with ``read_only``, else
    :class:`RequestWriteSession`.

    NOTE: expire_on_commit=False so objects stay readable for serialization after
    the commit that the API performs at the end of a request.
    """
    # NOTE: imported here (not at the top: they import the models) so that every process
    # that opens sessions, workers and scheduler included, publishes the writes that make
    # these caches stale (shared.epoch_cache).
    # tests/api/test_cache_registry.py checks that this list names every such cache.
    from shared import dispatch_facts  # noqa: F401
    from shared.admin import tenant_state  # noqa: F401
    from shared.identity import agents_list_cache, auth_cache  # noqa: F401
    from shared.realtime import access  # noqa: F401

    engine = get_engine()
    if read_only:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        session_class = RequestReadSession if request_thread else ReadSession
        return sessionmaker(bind=engine, class_=session_class, expire_on_commit=False)
    if request_thread:
        # NOTE: the engine the held connection is taken from (reads take it first mostly).
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        return sessionmaker(bind=engine, class_=RequestWriteSession, expire_on_commit=False)
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """Open a session, commit on success, roll back on any exception, always close."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# NOTE: bounded: statements are built once per filter combination and page size, but a
# client walking many combinations must not grow this without end.
@functools.lru_cache(maxsize=4096)
def _driver_statement(
    statement: Executable,
) -> tuple[str, dict[str, Any], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """The statement's SQL for the driver, the values of its literal parameters, and the
    parameters whose type converts a Python value for the driver (JSON columns)."""
    dialect = get_engine().dialect
    compiled = statement.compile(dialect=dialect)
    # NOTE: a value given in the statement (``values(x=None)`` too), not a parameter to bind.
    literals = {
        compiled.bind_names[bind]: bind.value
        for bind in compiled.binds.values()
        if not bind.required
    }
    processors = tuple(
        (compiled.bind_names[bind], process)
        for bind in compiled.binds.values()
        if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    sql = str(compiled)
    if "POSTCOMPILE" in sql:
        raise ValueError("a list expanded per execution (IN) cannot run on the driver")
    return sql, literals, processors


def _driver_params(
    literals: dict[str, Any],
    processors: tuple[tuple[str, Callable[[Any], Any]], ...],
    params: dict[str, Any],
) -> dict[str, Any]:
    """``params`` (with the statement's literals) as SQLAlchemy would bind them."""
    if not processors:
        return {**literals, **params} if literals else params
    bound = {**literals, **params}
    for name, process in processors:
        if name in bound:
            bound[name] = process(bound[name])
    return bound


#: The attribute of a psycopg connection holding the cursor the driver-level helpers reuse.
_KEPT_CURSOR = "_omnistream_kept_cursor"


def _kept_cursor(driver: psycopg.Connection) -> psycopg.Cursor:
    """The driver connection's one reusable cursor (:func:`fetch_rows`, :func:`write_rows`).

    PERF: a new cursor starts with no adapters and looks up a dumper per parameter and a
    loader per column again (~25 us of a 100 us one-row read on a loaded host). A
    connection is used by one thread at a time, and each caller reads the whole result,
    so nothing is left behind.
    """
    cursor = driver.__dict__.get(_KEPT_CURSOR)
    if cursor is None or cursor.closed:
        cursor = driver.__dict__[_KEPT_CURSOR] = driver.cursor()
    return cursor


def fetch_rows(connection: Connection, statement: Executable, params: dict[str, Any]) -> list:
    """Run a prebuilt statement on the driver's cursor and return its rows as plain tuples.

    PERF: for the hottest statements only (agent lists, the inbox list, a conversation's
    messages, a reply's write): skips SQLAlchemy's per-execution and result machinery
    (~0.15 ms CPU for a 100-row page). ``statement`` must be built once (its SQL is
    compiled once per object; literals in it are bound with their values). Parameters
    go through their types' bind processors as SQLAlchemy's would (JSON values are
    serialized); result rows are not processed: psycopg returns UUIDs, datetimes, text,
    arrays and JSON as they are.
    PERF: rows come in PostgreSQL's binary format: the server skips formatting each
    timestamp, UUID and array as text and psycopg skips parsing it back (an inbox page
    -4 % app CPU, the inbox and message lists -5.5 % PostgreSQL CPU, ``--profile-ab``);
    the Python values are the same.
    A dropped connection is handed to SQLAlchemy by running the statement through it
    again, so the pool is invalidated and the error is the usual ``DBAPIError`` (see
    ``api.endpoint``); any other refusal is raised as SQLAlchemy's too (:func:`_refused`).
    """
    driver = connection.connection.driver_connection
    sql, literals, processors = _driver_statement(statement)
    try:
        cursor = _kept_cursor(driver)
        cursor.execute(sql, _driver_params(literals, processors, params), binary=True)
        return cursor.fetchall()
    except psycopg.Error as error:
        if not _dropped(driver, error):
            raise _refused(sql, params, error) from error
    return list(connection.execute(statement, params).tuples())


def write_rows(connection: Connection, statement: Executable, params: dict[str, Any]) -> int:
    """Run a prebuilt ``INSERT``/``UPDATE`` without ``RETURNING`` on the driver's cursor; its
    row count.

    PERF: :func:`fetch_rows` for the dispatch hot path's writes (its queue rows, its
    ``processed`` marks): SQLAlchemy's execution machinery cost more than the statement.
    NOTE: :mod:`shared.committed_writes` sees no statement run here, so a statement that
    writes a table a cache watches goes through SQLAlchemy instead.
    """
    from shared import committed_writes

    sql, literals, processors = _driver_statement(statement)
    if committed_writes.writes_watched(sql):
        return connection.execute(statement, params).rowcount
    driver = connection.connection.driver_connection
    try:
        cursor = _kept_cursor(driver)
        cursor.execute(sql, _driver_params(literals, processors, params))
        return cursor.rowcount
    except psycopg.Error as error:
        if not _dropped(driver, error):
            raise _refused(sql, params, error) from error
    return connection.execute(statement, params).rowcount


def _dropped(driver: psycopg.Connection, error: psycopg.Error) -> bool:
    """True when ``error`` lost the connection (run again through SQLAlchemy, which sees it)."""
    return isinstance(error, psycopg.OperationalError) and (driver.closed or driver.broken)


def _refused(sql: str, params: dict[str, Any], error: psycopg.Error) -> exc.DBAPIError:
    """``error`` as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``...).

    WHY: what catches a database's refusal (the API's error handlers: a deadlock or a
    lock timeout is a 409, the statement timeout a 503, a constraint a 409; the workers'
    retries) catches SQLAlchemy's classes. The driver's own went past them all: a status
    change that waited past the statement timeout behind another transaction was a 500.
    """
    return exc.DBAPIError.instance(sql, params, error, psycopg.Error, hide_parameters=True)


def is_disconnect(error: BaseException) -> bool:
    """True when ``error`` is a lost database connection (the pool has been invalidated)."""
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def failure_reason(error: BaseException) -> str:
    """An error as a person reads it on a stored row: its type, then what went wrong.

    For a statement the database refused, the driver's message: SQLAlchemy's own appends
    the SQL text and its parameters, which buried the reason under a cut.
    """
    reason = error.orig if isinstance(error, exc.StatementError) and error.orig else error
    return f"{type(error).__name__}: {str(reason).strip()}"


def reset_engine() -> None:
    """Dispose of the engine and forget it (tests and forked children call this)."""
    _invalidate_held_read_connections()
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


# --- after commit / after rollback --------------------------------------------------------
#: ``session.info`` keys of the callbacks waiting for the current transaction's end.
_ON_COMMIT = "omnistream.on_commit"
_ON_ROLLBACK = "omnistream.on_rollback"

log = logging.getLogger(__name__)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction commits; never if it rolls back.

    This is how work leaves a transaction only when its rows exist: the outbox
    publishes, jobs and webhook deliveries are enqueued. A callback that raises is
    logged and the others still run: the transaction is committed, and every
    caller has a sweeper that re-drives what a lost enqueue left behind.
    """
    session.info.setdefault(_ON_COMMIT, []).append(callback)


def after_rollback(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` if the session's transaction rolls back (to release outside claims)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(callback)


def collected_until_commit(
    session: Session, key: str, flush: Callable[[list[Any]], None]
) -> list[Any]:
    """A list to append to during the transaction, handed to ``flush`` once it commits.

    PERF: a transaction that emits many events (or deliveries) enqueues them in
    one batch after its commit, not one by one.
    """
    items = session.info.get(key)
    if items is None:
        items = session.info[key] = []
        after_commit(session, lambda: flush(session.info.pop(key, [])))
        after_rollback(session, lambda: session.info.pop(key, None))
    return items


_MEMO = "omnistream.transaction_memo"


def memo_for_transaction(session: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``'s answer for ``key``, computed once per transaction.

    PERF: dispatch's targets ask the same question for every event of a batch (has this
    tenant rules for this event type? endpoints? AI agents?); one transaction asks it
    once. A change committed by someone else meanwhile is seen by the next batch, as if
    this one had run a moment earlier.
    """
    memo = session.info.get(_MEMO)
    if memo is None:
        memo = session.info[_MEMO] = {}
        after_commit(session, lambda: session.info.pop(_MEMO, None))
        after_rollback(session, lambda: session.info.pop(_MEMO, None))
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def probe_for_transaction(
    session: Session, key: Hashable, statement: Executable, params: dict[str, Any]
) -> bool:
    """Whether the prebuilt ``SELECT EXISTS`` ``statement`` is true, asked once per transaction.

    PERF: dispatch's targets ask a few such questions per batch (rules? endpoints? AI
    agents?); through :func:`fetch_rows` each costs a third of the CPU of ``session.scalar``,
    which at 2,000 events/s was a tenth of a core for answers that are nearly always no.
    """
    return memo_for_transaction(
        session, key, lambda: bool(fetch_rows(session.connection(), statement, params)[0][0])
    )


def _run(callbacks: list[Callable[[], None]], when: str) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("a callback %s failed", when)


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    # NOTE: SQLAlchemy also fires after_commit when a savepoint is released; the rows are
    # not committed yet then, so the callbacks wait for the outermost transaction.
    if session.in_nested_transaction():
        return
    session.info.pop(_ON_ROLLBACK, None)
    _run(session.info.pop(_ON_COMMIT, []), "after commit")


@event.listens_for(Session, "after_soft_rollback")
def _on_rollback(session: Session, previous_transaction: Any) -> None:
    # NOTE: a rolled-back savepoint leaves the outer transaction's callbacks in place.
    if previous_transaction.nested:
        return
    session.info.pop(_ON_COMMIT, None)
    _run(session.info.pop(_ON_ROLLBACK, []), "after rollback")
