"""A fake Meta Graph API: records every request and answers like Meta, failures included.

Routes (any version segment): ``POST /{v}/{phone-number-id}/messages`` (WhatsApp),
``POST /{v}/me/messages`` (Messenger / Instagram), ``GET /{v}/{media-id}`` (media
info) and ``GET /media/{media-id}`` (the bytes, Bearer token required).

WhatsApp Business Account analytics, answered from :attr:`FakeGraph.waba` (see
:class:`WabaAnalytics`) and filtered by the requested range as Meta does:
``GET /{v}/{waba-id}?fields=analytics.start(s).end(e).granularity(DAY)``,
``GET /{v}/{waba-id}?fields=conversation_analytics.start(s).end(e)...``,
``GET /{v}/{waba-id}/message_templates`` and ``GET /{v}/{waba-id}/template_analytics``
(``start``, ``end``, ``template_ids`` as a JSON array of at most 10). Their failures
are scripted apart from the sends, with :meth:`FakeGraph.script_analytics`.

OAuth, Embedded Signup, Page subscriptions and the Messenger profile are answered
from :attr:`FakeGraph.meta` (see :mod:`tests.peers.graph_onboarding`), scripted apart.
Read receipts (WhatsApp ``{"status": "read", "message_id"}`` on ``/{phone-number-id}/messages``,
Messenger / Instagram ``{"sender_action": "mark_seen"}`` on ``/me/messages``) are answered
like Meta (``{"success": true}`` / ``{"recipient_id"}``), listed by :meth:`FakeGraph.receipts`
and scripted apart from the sends with :meth:`FakeGraph.script_receipts`.
:attr:`FakeGraph.next_wamids` names the ids the next WhatsApp sends answer.

Behaviour is scripted per test with :meth:`FakeGraph.script`: each send takes the
next behaviour (the last one repeats), one of ``"ok"``, a Meta error code from
:func:`tests.peers.meta_errors.meta_error` (``"131047"``, ``"190"``...),
``("sleep", seconds)`` (then ok), ``("raw", status, body)``, ``("throttle", code,
retry_after)`` (Meta's throttling error with a ``Retry-After`` header) or ``("hold",
event, then)`` (answer ``then`` once the test sets the :class:`threading.Event`, at most
5 s later: something happens while the send is out).
:meth:`FakeGraph.peak_in_flight` is the most sends one token had in flight at once.

Timing: every answer is written in one TCP segment's worth without Nagle's wait (the
handler's ``disable_nagle_algorithm``: ``http.server`` writes the headers and the body
apart, and with Nagle on, the body waited for the client's delayed ACK: 40 ms an answer).
:attr:`FakeGraph.latency` is how long a send (``POST .../messages``) takes to answer, as
Meta's own processing does; 0 (the tests') answers at once.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import http.server
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.peers.graph_onboarding import MetaOnboarding
from tests.peers.http_server import PeerServer
from tests.peers.meta_errors import meta_error


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, tuple[str | None, str | None, bytes]]:
        """A multipart body's parts: name -> (filename, content type, bytes)."""
        content_type = self.headers.get("Content-Type") or self.headers.get("content-type")
        parsed = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body,
            policy=email.policy.HTTP,
        )
        return {
            part.get_param("name", header="content-disposition"): (
                part.get_filename(),
                part.get_content_type() if part.get("Content-Type") else None,
                part.get_payload(decode=True),
            )
            for part in parsed.iter_parts()
        }

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization") or self.headers.get("authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None


@dataclass
class StoredMedia:
    content: bytes
    mime_type: str
    #: Fields that replace the media info answer's (a shape Meta does not document).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class WabaAnalytics:
    """What one WABA's analytics hold: Meta's data points, unfiltered."""

    #: ``{"start", "end", "sent", "delivered", ...}`` per day (``analytics``).
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"start", "end", "conversation", "conversation_type", "conversation_direction"}``.
    conversations: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"id", "name"}`` per message template, listed page by page as Meta does
    #: (``limit``, ``paging.cursors.after``; ``paging.next`` only when more follow).
    templates: list[dict[str, Any]] = field(default_factory=list)
    #: When set, the ``paging`` every ``message_templates`` page answers (a cursor
    #: that never moves on, say).
    template_paging: dict[str, Any] | None = None
    #: ``{"template_id", "start", "end", "sent", "delivered", "read", "clicked": [...]}``.
    template_points: list[dict[str, Any]] = field(default_factory=list)


_RANGE = re.compile(r"start\((\d+)\)\.end\((\d+)\)")


def _in_range(points: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    return [p for p in points if start <= p["start"] and p["end"] <= end]


@dataclass
class FakeGraph:
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    media: dict[str, StoredMedia] = field(default_factory=dict)
    #: When set, any other Bearer token answers Meta's 190 "invalid token".
    accepted_tokens: set[str] | None = None
    #: Seconds every media request takes (to make concurrent fetches overlap).
    media_delay: float = 0.0
    #: Seconds every send (``POST .../messages``, not a read receipt) takes to answer.
    latency: float = 0.0
    #: Seconds between the bytes of a WhatsApp media upload's answer (0: all at once): each
    #: read is quick, the whole answer slow, as a congested link is.
    upload_drip: float = 0.0
    #: Seconds between the bytes of a send's whole answer (``POST .../messages``), its status
    #: line first: a slow Meta that has not said yet whether it took the message.
    message_drip: float = 0.0
    #: The same for the body only, after a 200's status and headers: Meta took the message.
    message_body_drip: float = 0.0
    #: WABA id -> its analytics.
    waba: dict[str, WabaAnalytics] = field(default_factory=dict)
    #: OAuth, Embedded Signup, Pages and Messenger profiles (:mod:`.graph_onboarding`).
    meta: MetaOnboarding = field(default_factory=MetaOnboarding)
    _plan: list[Any] = field(default_factory=list)
    _analytics_plan: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # --- read receipts and scripted message ids (channel gaps) ---
    _receipt_plan: list[Any] = field(default_factory=list)
    #: Message ids the next WhatsApp sends answer, in order (then random ones).
    next_wamids: list[str] = field(default_factory=list)
    #: WA Templates: WABA id -> its message templates (see ``message_templates`` below).
    wa_templates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _templates_plan: list[Any] = field(default_factory=list)
    # --- concurrency seen per token (outbound engine) ---
    _in_flight: dict[str | None, int] = field(default_factory=dict)
    _peak: dict[str | None, int] = field(default_factory=dict)
    #: Sends in flight (any token) integrated over time, and when it last changed.
    _busy: list[float] = field(default_factory=lambda: [0.0, time.monotonic()])

    def in_flight_seconds(self) -> float:
        """Sends in flight (any token) integrated over time: its growth over a span divided
        by the span is the mean number of sends in flight (how full the pipe was kept)."""
        with self.lock:
            self._tick()
            return self._busy[0]

    def _tick(self) -> None:
        now = time.monotonic()
        self._busy[0] += self._in_flight.get(None, 0) * (now - self._busy[1])
        self._busy[1] = now

    def peak_in_flight(self, token: str | None = None) -> int:
        """The most sends (``/messages`` POSTs) in flight at once with ``token`` (None: any)."""
        with self.lock:
            return self._peak.get(token, 0)

    def _enter(self, token: str | None) -> None:
        with self.lock:
            self._tick()
            for k in (token, None):
                self._in_flight[k] = self._in_flight.get(k, 0) + 1
                self._peak[k] = max(self._peak.get(k, 0), self._in_flight[k])

    def _leave(self, token: str | None) -> None:
        with self.lock:
            self._tick()
            for k in (token, None):
                if k in self._in_flight:  # NOTE: not one a reset forgot (a late drip's)
                    self._in_flight[k] -= 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.media.clear()
            self._plan = []
            self._analytics_plan = []
            self.waba.clear()
            self.accepted_tokens = None
            self.media_delay = 0.0
            self.latency = 0.0
            self.upload_drip = 0.0
            self.message_drip = 0.0
            self.message_body_drip = 0.0
            self.meta = MetaOnboarding()
            self._receipt_plan = []
            self.next_wamids.clear()
            self.wa_templates.clear()
            self._templates_plan = []
            self._in_flight.clear()
            self._peak.clear()

    def script(self, *behaviours: Any) -> None:
        with self.lock:
            self._plan = list(behaviours)

    def script_analytics(self, *behaviours: Any) -> None:
        """Like :meth:`script`, for the analytics reads: ``"ok"``, a Meta code, ``("raw", ...)``."""
        with self.lock:
            self._analytics_plan = list(behaviours)

    def _next_analytics(self) -> Any:
        with self.lock:
            if not self._analytics_plan:
                return "ok"
            if len(self._analytics_plan) > 1:
                return self._analytics_plan.pop(0)
            return self._analytics_plan[0]

    def add_media(
        self, media_id: str, content: bytes, mime_type: str, info: dict[str, Any] | None = None
    ) -> None:
        """A WhatsApp media file; ``info`` replaces fields of its ``GET /{media-id}`` answer."""
        with self.lock:
            self.media[media_id] = StoredMedia(content, mime_type, info or {})

    def sent(self, path_suffix: str = "/messages") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path.endswith(path_suffix)]

    def gets(self, prefix: str = "") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "GET" and r.path.startswith(prefix)]

    def _next(self) -> Any:
        with self.lock:
            if not self._plan:
                return "ok"
            return self._plan.pop(0) if len(self._plan) > 1 else self._plan[0]

    # --- read receipts and scripted message ids (channel gaps) ---

    def script_receipts(self, *behaviours: Any) -> None:
        """Like :meth:`script`, for read receipts: ``"ok"``, a Meta code, ``("raw", ...)``."""
        with self.lock:
            self._receipt_plan = list(behaviours)

    def receipts(self) -> list[Recorded]:
        """Every read receipt received (answered ok or not), oldest first."""
        with self.lock:
            return [r for r in self.requests if _is_receipt(r)]

    def _next_receipt(self) -> Any:
        with self.lock:
            if not self._receipt_plan:
                return "ok"
            if len(self._receipt_plan) > 1:
                return self._receipt_plan.pop(0)
            return self._receipt_plan[0]

    def _take_wamid(self) -> str:
        with self.lock:
            if self.next_wamids:
                return self.next_wamids.pop(0)
        return "wamid.HBgL" + secrets.token_hex(16).upper()


def _is_receipt(recorded: Recorded) -> bool:
    """A WhatsApp mark-as-read or a Messenger / Instagram sender action."""
    content_type = recorded.headers.get("Content-Type") or recorded.headers.get("content-type")
    if recorded.method != "POST" or "json" not in (content_type or ""):
        return False
    try:
        body = recorded.json
    except ValueError:
        return False
    return isinstance(body, dict) and (body.get("status") == "read" or "sender_action" in body)


def _handler(graph: FakeGraph):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: NOTE: the headers and the body are two writes; with Nagle the body waited for
        #: the client's delayed ACK (40 ms an answer, whatever the client).
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet
            pass

        def _record(self) -> Recorded:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                body = self._read_chunked()
            else:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            recorded = Recorded(
                self.command, self.path, dict(self.headers.items()), body, time.time()
            )
            with graph.lock:
                graph.requests.append(recorded)
            return recorded

        def _read_chunked(self) -> bytes:
            """A ``Transfer-Encoding: chunked`` body (a streamed upload has no length)."""
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()  # the blank line after the last chunk
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def _send(
            self,
            status: int,
            body: Any,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self._left()
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _drip(self, body: Any, every: float, *, whole: bool = False) -> None:
            """A 200 whose body comes a byte every ``every`` seconds; ``whole``: its status
            line and headers too (nothing tells the client it was accepted until the end)."""
            data = json.dumps(body).encode()
            try:
                if whole:
                    self.close_connection = True
                    head = (
                        f"{self.protocol_version} 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                    )
                    data = head.encode() + data
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.flush()
                for i in range(len(data)):
                    time.sleep(every)
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up

        def _left(self) -> None:
            leaving, self._leaving = getattr(self, "_leaving", None), None
            if leaving is not None:
                leaving()

        def _authorized(self, recorded: Recorded) -> bool:
            token = recorded.token
            ok = token is not None and (
                graph.accepted_tokens is None or token in graph.accepted_tokens
            )
            if not ok:
                self._send(*meta_error("190"))
            return ok

        def _onboarding(self, recorded: Recorded) -> bool:
            """Answer an onboarding route (:mod:`.graph_onboarding`); whether it was one."""
            answer = graph.meta.handle(
                recorded.method, recorded.path, recorded.headers, recorded.body
            )
            if answer is None:
                return False
            status, body, headers = answer
            self._send(status, body, headers=headers)
            return True

        def do_DELETE(self):
            recorded = self._record()
            if not self._onboarding(recorded):
                self._send(*meta_error("100"))

        def do_POST(self):
            recorded = self._record()
            if self._onboarding(recorded):
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            if _is_templates(graph, parts):
                if self._authorized(recorded):
                    self._send(*_create_template(graph, parts[1], recorded))
                return
            if len(parts) != 3 or parts[2] not in ("messages", "media"):
                self._send(*meta_error("100"))
                return
            if not self._authorized(recorded):
                return
            if parts[2] == "messages" and _is_receipt(recorded):
                self._receipt(parts)
                return
            if parts[2] == "media":  # a WhatsApp media upload
                answer = {"id": str(secrets.randbelow(10**15))}
                if graph.upload_drip:
                    self._drip(answer, graph.upload_drip)
                else:
                    self._send(200, answer)
                return
            # NOTE: it leaves as the answer starts (see _send): a client that got its
            # answer and sends again never overlaps the request it waited for.
            graph._enter(recorded.token)
            self._leaving = lambda: graph._leave(recorded.token)
            try:
                self._answer_send(parts, recorded)
            finally:
                self._left()

        def _answer_send(self, parts: list[str], recorded: Recorded) -> None:
            if graph.latency:
                time.sleep(graph.latency)
            behaviour = graph._next()
            if isinstance(behaviour, tuple) and behaviour[0] == "hold":
                behaviour[1].wait(5.0)
                behaviour = behaviour[2]
            if isinstance(behaviour, tuple) and behaviour[0] == "sleep":
                time.sleep(behaviour[1])
                behaviour = "ok"
            if isinstance(behaviour, tuple) and behaviour[0] == "throttle":
                status, body = meta_error(behaviour[1])
                self._send(status, body, headers={"Retry-After": str(behaviour[2])})
                return
            if isinstance(behaviour, tuple) and behaviour[0] == "raw":
                self._send(behaviour[1], behaviour[2])
                return
            if behaviour != "ok":
                self._send(*meta_error(behaviour))
                return
            multipart = "multipart/" in (self.headers.get("Content-Type") or "")
            if multipart:
                form = recorded.form
                payload = {"recipient": json.loads(form["recipient"][2]), "to": None}
            else:
                payload = recorded.json
            if parts[1] == "me":
                answer = {
                    "recipient_id": payload["recipient"]["id"],
                    "message_id": "m_" + secrets.token_urlsafe(24),
                }
            else:
                answer = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": payload.get("to"), "wa_id": payload.get("to")}],
                    "messages": [{"id": graph._take_wamid()}],
                }
            if graph.message_drip:
                self._drip(answer, graph.message_drip, whole=True)
            elif graph.message_body_drip:
                self._drip(answer, graph.message_body_drip)
            else:
                self._send(200, answer)

        def _receipt(self, parts: list[str]) -> None:
            """Answer a read receipt as Meta does, or as scripted."""
            behaviour = graph._next_receipt()
            if isinstance(behaviour, tuple) and behaviour[0] == "raw":
                self._send(behaviour[1], behaviour[2])
            elif behaviour != "ok":
                self._send(*meta_error(behaviour))
            elif parts[1] == "me":
                self._send(200, {"recipient_id": "psid"})
            else:
                self._send(200, {"success": True})

        def do_GET(self):
            recorded = self._record()
            if self._onboarding(recorded):
                return
            if not self._authorized(recorded):
                return
            parts = self.path.split("?")[0].strip("/").split("/")
            if _is_templates(graph, parts):
                self._send(*_list_templates(graph, parts[1], self.path))
                return
            if len(parts) in (2, 3) and parts[1] in graph.waba:
                self._analytics(parts, graph.waba[parts[1]])
                return
            if graph.media_delay:
                time.sleep(graph.media_delay)
            if len(parts) == 2 and parts[0] == "media":
                stored = graph.media.get(parts[1])
                if stored is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, stored.content, stored.mime_type)
                return
            if len(parts) == 2:
                stored = graph.media.get(parts[1])
                if stored is None:
                    self._send(*meta_error("100"))
                    return
                self._send(
                    200,
                    {
                        "messaging_product": "whatsapp",
                        "url": f"{graph.base_url}/media/{parts[1]}",
                        "mime_type": stored.mime_type,
                        "sha256": hashlib.sha256(stored.content).hexdigest(),
                        "file_size": len(stored.content),
                        "id": parts[1],
                    }
                    | stored.info,
                )
                return
            self._send(*meta_error("100"))

        def _analytics(self, parts: list[str], waba: WabaAnalytics) -> None:
            behaviour = graph._next_analytics()
            if isinstance(behaviour, tuple) and behaviour[0] == "raw":
                self._send(behaviour[1], behaviour[2])
                return
            if behaviour != "ok":
                self._send(*meta_error(behaviour))
                return
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if len(parts) == 2:
                fields = query.get("fields", "")
                found = _RANGE.search(fields)
                if not found:
                    self._send(*meta_error("100"))
                    return
                start, end = int(found.group(1)), int(found.group(2))
                if fields.startswith("analytics."):
                    points = _in_range(waba.messages, start, end)
                    body = {"analytics": {"granularity": "DAY", "data_points": points}}
                elif fields.startswith("conversation_analytics."):
                    points = _in_range(waba.conversations, start, end)
                    body = {"conversation_analytics": {"data": [{"data_points": points}]}}
                else:
                    self._send(*meta_error("100"))
                    return
                self._send(200, body | {"id": parts[1]})
            elif parts[2] == "message_templates":
                try:
                    body = _templates_page(waba.templates, parts[1], query)
                except ValueError:
                    self._send(*meta_error("100"))
                    return
                if waba.template_paging is not None:
                    body["paging"] = waba.template_paging
                self._send(200, body)
            elif parts[2] == "template_analytics":
                try:
                    start, end = int(query["start"]), int(query["end"])
                    ids = json.loads(query["template_ids"])
                except (KeyError, ValueError):
                    self._send(*meta_error("100"))
                    return
                if not ids or len(ids) > 10:
                    self._send(*meta_error("100"))
                    return
                points = [
                    p
                    for p in _in_range(waba.template_points, start, end)
                    if p["template_id"] in ids
                ]
                self._send(200, {"data": [{"granularity": "DAILY", "data_points": points}]})
            else:
                self._send(*meta_error("100"))

    return Handler


def start_fake_graph() -> tuple[FakeGraph, PeerServer]:
    graph = FakeGraph()
    server = PeerServer(("127.0.0.1", 0), _handler(graph))
    graph.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True, name="fake-graph").start()
    return graph, server


# --- WA Templates: message_templates of a WABA (list with paging, create) ---------------------
#
# ``GET /{v}/{waba-id}/message_templates?fields=...&limit=N&after=<cursor>`` pages through
# :attr:`FakeGraph.wa_templates` as Meta does (``paging.cursors.after``; ``paging.next``
# only when more pages follow; only the ``fields`` asked, ``id`` always);
# ``POST /{v}/{waba-id}/message_templates`` stores a new template ``PENDING`` and answers
# ``{"id", "status", "category"}``; a name and language the WABA has answers Meta's
# 2388024. Both take the next of :meth:`FakeGraph.script_templates` (``"ok"``, a Meta code,
# ``"template_exists"``, ``"template_invalid"``, ``("raw", status, body)``).
# Only WABAs present in ``wa_templates`` are served here.

#: The largest page Meta gives, whatever ``limit`` asks.
TEMPLATES_MAX_LIMIT = 1000


def _script_templates(graph: FakeGraph, *behaviours: Any) -> None:
    with graph.lock:
        graph._templates_plan = list(behaviours)


FakeGraph.script_templates = _script_templates  # type: ignore[attr-defined]


def _next_templates(graph: FakeGraph) -> Any:
    with graph.lock:
        plan = graph._templates_plan
        if not plan:
            return "ok"
        return plan.pop(0) if len(plan) > 1 else plan[0]


def _is_templates(graph: FakeGraph, parts: list[str]) -> bool:
    return len(parts) == 3 and parts[2] == "message_templates" and parts[1] in graph.wa_templates


def template_error(name: str) -> tuple[int, dict[str, Any]]:
    """Meta's refusals of a template create, as the Graph API sends them."""
    if name == "template_exists":
        return _meta_body(
            400,
            100,
            "Invalid parameter",
            error_subcode=2388024,
            error_user_title="Content in This Language Already Exists",
            error_user_msg="There is already English (US) content for this template.",
        )
    if name == "template_invalid":
        return _meta_body(
            400,
            100,
            "Invalid parameter",
            error_subcode=2388043,
            error_user_title="Message template body has variables but no examples",
            error_data={"details": "Add sample text for the variables of the body."},
        )
    return meta_error(name)


def _meta_body(status: int, code: int, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    error = {"message": message, "type": "OAuthException", "code": code, "is_transient": False}
    error.update(extra, fbtrace_id="A" + secrets.token_hex(10))
    return status, {"error": error}


def _scripted(graph: FakeGraph) -> tuple[int, Any] | None:
    behaviour = _next_templates(graph)
    if isinstance(behaviour, tuple) and behaviour[0] == "raw":
        return behaviour[1], behaviour[2]
    if isinstance(behaviour, tuple) and behaviour[0] == "sleep":
        time.sleep(behaviour[1])
        return None
    if behaviour != "ok":
        return template_error(behaviour)
    return None


def _list_templates(graph: FakeGraph, waba_id: str, path: str) -> tuple[int, Any]:
    failure = _scripted(graph)
    if failure is not None:
        return failure
    query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
    with graph.lock:
        templates = list(graph.wa_templates[waba_id])
    try:
        return 200, _templates_page(templates, waba_id, query)
    except ValueError:
        return meta_error("100")


def _templates_page(
    templates: list[dict[str, Any]], waba_id: str, query: dict[str, str]
) -> dict[str, Any]:
    """One page of ``message_templates`` as Meta answers it; ValueError for a bad
    ``limit`` or cursor (Meta's 100)."""
    limit = min(int(query.get("limit", 25)), TEMPLATES_MAX_LIMIT)
    start = int(query["after"].removeprefix("c")) if "after" in query else 0
    fields = [f for f in query.get("fields", "id,name,status,language").split(",") if f]
    page = templates[start : start + limit]
    data = [{k: t[k] for k in ["id", *fields] if k in t} for t in page]
    body: dict[str, Any] = {"data": data, "paging": {"cursors": {}}}
    if page:
        body["paging"]["cursors"] = {"before": f"c{start}", "after": f"c{start + len(page)}"}
    if start + len(page) < len(templates):
        after = f"c{start + len(page)}"
        body["paging"]["next"] = (
            f"https://graph.facebook.com/v21.0/{waba_id}/message_templates?limit={limit}"
            f"&after={after}"
        )
    return body


def _create_template(graph: FakeGraph, waba_id: str, recorded: Recorded) -> tuple[int, Any]:
    failure = _scripted(graph)
    if failure is not None:
        return failure
    try:
        payload = recorded.json
        name, language, category = payload["name"], payload["language"], payload["category"]
        components = payload["components"]
    except (ValueError, KeyError, TypeError):
        return meta_error("100")
    with graph.lock:
        templates = graph.wa_templates[waba_id]
        if any(t["name"] == name and t["language"] == language for t in templates):
            return template_error("template_exists")
        template = {
            "id": str(secrets.randbelow(10**15) + 10**14),
            "name": name,
            "language": language,
            "category": category,
            "status": "PENDING",
            "components": components,
            "parameter_format": payload.get("parameter_format", "POSITIONAL"),
        }
        templates.append(template)
    return 200, {"id": template["id"], "status": "PENDING", "category": category}
