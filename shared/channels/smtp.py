"""Outbound email over SMTP: a proper MIME message, threaded, sent with timeouts and TLS.

The account's settings name the relay (``smtp_host``, ``smtp_port``,
``smtp_security``: ``starttls``, ``ssl`` or ``none``; ``smtp_username``,
``from_name``); its password is the decrypted ``smtp_password``. TLS verifies
the server's certificate against the system store, or ``SMTP_CA_FILE``.
Failures become :class:`~shared.channels.send_errors.SendFailed` with the SMTP
reply code: 4xx and network trouble are transient, 5xx permanent.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import TypeVar

from shared.channels.send_errors import SendFailed

T = TypeVar("T")


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: str  # "starttls" | "ssl" | "none"
    username: str | None
    password: str | None
    from_address: str
    from_name: str | None = None

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class Attachment:
    filename: str
    mime_type: str
    content: bytes


def build_email(
    account: SmtpAccount,
    *,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    attachments: Iterable[Attachment] = (),
) -> EmailMessage:
    """A multipart message with a fresh ``Message-ID`` and the conversation's threading."""
    msg = EmailMessage()
    msg["From"] = formataddr((one_line(account.from_name or ""), account.from_address))
    msg["To"] = to
    msg["Subject"] = one_line(subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=account.domain)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    refs = [r for r in references if r]
    if in_reply_to and in_reply_to not in refs:
        refs.append(in_reply_to)
    if refs:
        msg["References"] = " ".join(refs)
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for item in attachments:
        maintype, _, subtype = item.mime_type.partition("/")
        msg.add_attachment(
            item.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=one_line(item.filename),
        )
    return msg


def one_line(text: str) -> str:
    """``text`` with its line breaks as spaces, for a header.

    WHY: a subject, sender name or file name with a line break made the email library
    refuse the header (no injection, but the send failed as an internal error, retried
    until it was dead-lettered).
    """
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def reply_subject(subject: str | None, *, is_reply: bool) -> str:
    subject = (subject or "").strip() or "(no subject)"
    if is_reply and not subject.lower().startswith("re:"):
        return f"Re: {subject}"
    return subject


class _Watchdog:
    """Ends an SMTP session at its deadline: shuts its socket down, whatever step it is in.

    WHY: ``timeout`` bounds each step (a connect, a reply), and a session has about ten
    (banner, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, the message, QUIT): a relay
    answering each one just in time held the send several times longer than the bound
    its claim counts on, until the claim could run out mid-session.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends_at = time.monotonic() + seconds
        self.expired = False
        self.client: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self.client = None  # NOTE: a session over is never shut down late

    def left(self) -> float:
        """Seconds the session has left (0 once it is up)."""
        return max(self.ends_at - time.monotonic(), 0.0)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self.client.sock if self.client is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _watched(base: type[smtplib.SMTP], watchdog: _Watchdog | None) -> type[smtplib.SMTP]:
    """``base`` whose sockets ``watchdog`` can shut down (from the connect on)."""
    if watchdog is None:
        return base

    class Watched(base):
        def _get_socket(self, host, port, timeout):
            sock = _connect_resolved(super()._get_socket, host, port, timeout, watchdog)
            with watchdog._lock:
                if watchdog.expired:
                    sock.close()
                    raise TimeoutError("the SMTP session's time is up")
                watchdog.client = self
            return sock

    return Watched


def _within(seconds: float, what: str, call: Callable[[], T]) -> T:
    """``call()``'s result if it comes within ``seconds``, else a :class:`TimeoutError`.

    For name lookups: ``getaddrinfo`` cannot be interrupted, so it runs on a daemon
    thread that is left to the resolver's own timeouts when the session's time is up.
    """
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(call())
        except BaseException as exc:  # NOTE: handed to the waiting session, not lost
            done.set_exception(exc)

    threading.Thread(target=run, name="smtp-resolve", daemon=True).start()
    try:
        return done.result(timeout=seconds)
    except TimeoutError:
        if done.done():
            raise  # the lookup's own timeout
        raise TimeoutError(f"{what} took longer than the SMTP session's time") from None


def _connect_resolved(connect, host: str, port: int, timeout: float, watchdog: _Watchdog):
    """``connect`` to ``host``'s addresses, looked up within the session's time.

    WHY: the relay's name was resolved inside ``socket.create_connection``, before the
    watchdog had a socket to shut down: a slow resolver (a dead DNS server, tried again
    per search domain) held the send past its bound, and past its claim's room. The TLS
    layer still checks the certificate against the name (``server_hostname``).
    """
    addresses = _within(
        watchdog.left(),
        f"resolving {host}",
        lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM),
    )
    failure: OSError | None = None
    for address in dict.fromkeys(info[4][0] for info in addresses):
        try:
            return connect(address, port, min(timeout, watchdog.left()) or 0.001)
        except OSError as exc:
            failure = exc
    raise failure or OSError(f"{host} has no address")


_local_name: str | None = None


def local_hostname(watchdog: _Watchdog | None) -> str | None:
    """The name this host gives in ``EHLO``, as smtplib would work it out, but looked up
    within the session's time and once per process (None: smtplib's own, unbounded).

    WHY: smtplib resolves it (``getfqdn``, then ``gethostbyname``) after connecting, where
    neither a step's timeout nor the watchdog reaches.
    """
    global _local_name
    if _local_name is None and watchdog is not None:
        _local_name = _within(watchdog.left(), "resolving this host's name", _smtplib_name)
    return _local_name


def _smtplib_name() -> str:
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    try:
        return f"[{socket.gethostbyname(socket.gethostname())}]"
    except OSError:
        return "[127.0.0.1]"


def send_email(
    account: SmtpAccount,
    msg: EmailMessage,
    *,
    timeout: float,
    ca_file: str | None = None,
    deadline: float | None = None,
) -> str:
    """Send ``msg`` through the account's relay; return its ``Message-ID``.

    ``timeout`` bounds each step; ``deadline`` (seconds), the whole session, name
    lookups included: a session still going then is cut off and fails as a ``timeout``.
    """
    context = ssl.create_default_context(cafile=ca_file)
    with contextlib.ExitStack() as stack:
        watchdog = stack.enter_context(_Watchdog(deadline)) if deadline is not None else None
        try:
            return _session(account, msg, timeout, context, watchdog)
        except SendFailed as exc:
            if watchdog is None or not watchdog.expired:
                raise
            raise SendFailed(
                "timeout", f"the SMTP session took longer than {deadline:g} s", transient=True
            ) from exc


def _session(
    account: SmtpAccount,
    msg: EmailMessage,
    timeout: float,
    context: ssl.SSLContext,
    watchdog: _Watchdog | None,
) -> str:
    try:
        name = local_hostname(watchdog)
        if account.security == "ssl":
            client: smtplib.SMTP = _watched(smtplib.SMTP_SSL, watchdog)(
                account.host, account.port, name, timeout=timeout, context=context
            )
        else:
            client = _watched(smtplib.SMTP, watchdog)(
                account.host, account.port, name, timeout=timeout
            )
        try:
            client.ehlo()
            if account.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if account.username:
                client.login(account.username, account.password or "")
            refused = client.send_message(msg)
        finally:
            _quit(client)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        raise _reply_failure(code, reply) from exc
    except smtplib.SMTPResponseException as exc:
        raise _reply_failure(exc.smtp_code, exc.smtp_error) from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise SendFailed("connection_error", str(exc) or "disconnected", transient=True) from exc
    except smtplib.SMTPException as exc:  # NOTE: an OSError subclass: caught before OSError
        raise SendFailed("smtp_error", str(exc), transient=False) from exc
    except ssl.SSLError as exc:
        raise SendFailed("tls_error", str(exc), transient=False) from exc
    except TimeoutError as exc:
        raise SendFailed("timeout", f"SMTP timed out: {exc}", transient=True) from exc
    except OSError as exc:
        raise SendFailed("connection_error", str(exc), transient=True) from exc
    if refused:
        code, reply = next(iter(refused.values()))
        raise _reply_failure(code, reply)
    return str(msg["Message-ID"])


def _quit(client: smtplib.SMTP) -> None:
    """End the session, whatever the relay answers to ``QUIT``.

    WHY: once ``DATA`` is accepted the mail is the relay's; a 421 or a timeout on ``QUIT``
    (``with client`` raised them) failed the send, and its retry mailed the customer again.
    """
    try:
        client.quit()
    except OSError:  # NOTE: smtplib's errors are OSErrors
        client.close()


def _reply_failure(code: int, reply: bytes | str) -> SendFailed:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return SendFailed(str(code), text[:2000], transient=400 <= code < 500)
