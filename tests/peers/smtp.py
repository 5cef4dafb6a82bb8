"""A recording SMTP server (aiosmtpd) with optional AUTH, STARTTLS or implicit TLS.

``mode`` scripts the answers: ``"ok"``, ``"reject"`` (550 on every recipient),
``"transient"`` (451 after DATA) or ``"quit_fails"`` (the mail accepted, then 421 to
QUIT). Every accepted message is kept, parsed, with the login that sent it.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class SmtpPeer:
    host: str = "127.0.0.1"
    port: int = 0
    security: str = "none"  # "none" | "starttls" | "ssl"
    username: str | None = None
    password: str | None = None
    mode: str = "ok"
    received: list[ReceivedMail] = field(default_factory=list)
    auth_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.mode = "ok"
            self.auth_failures = 0

    # --- aiosmtpd handler hooks -------------------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "reject":
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "transient":
            return "451 4.3.0 Temporary local problem, try again later"
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        with self.lock:
            self.received.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login)
            )
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server, session, envelope):
        if self.mode == "quit_fails":
            return "421 4.3.2 Service shutting down"
        return "221 Bye"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        if not ok:
            with self.lock:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_smtp(
    *,
    security: str = "none",
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> SmtpPeer:
    """Start a peer; ``username`` turns AUTH on (required), ``tls`` is the server context."""
    peer = SmtpPeer(security=security, username=username, password=password)
    peer.port = _free_port()
    kwargs: dict = {}
    if username:
        kwargs.update(
            authenticator=peer.authenticate,
            auth_required=True,
            # NOTE: implicit TLS is TLS from the first byte, but aiosmtpd only counts STARTTLS
            # (and warns "Requiring AUTH while not requiring TLS"; pyproject ignores it)
            auth_require_tls=security == "starttls",
        )
    if security == "starttls":
        kwargs.update(tls_context=tls, require_starttls=True)
    if security == "ssl":
        kwargs.update(ssl_context=tls)
    controller = Controller(peer, hostname="127.0.0.1", port=peer.port, **kwargs)
    controller.start()
    peer.controller = controller
    return peer
