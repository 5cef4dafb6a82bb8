"""A fake Stripe API: the subset billing uses, over real HTTP, recording every charge.

Routes (form-encoded bodies, as the official client sends them):
``POST /v1/customers``, ``GET /v1/payment_methods/{pm}``, ``POST /v1/payment_methods/{pm}/attach``
and ``/detach``, ``POST /v1/payment_intents`` (``confirm=true``, ``off_session=true``) and
``POST /v1/refunds`` (``payment_intent``, ``amount``).

``Idempotency-Key`` works as at Stripe: a repeat with the same parameters answers the first
response (header ``Idempotent-Replayed: true``) and moves no money; the same key with other
parameters is a 400 ``idempotency_error``. So :attr:`FakeStripe.charges` is what really
moved: the proof that nobody was charged twice.

Payment methods: ``pm_card_visa`` (any ``pm_...``) charges fine; a token containing
``chargeDeclined`` attaches but declines its charges (402 ``card_error``, as Stripe's test
cards); one containing ``invalid`` is refused at attach (400 ``resource_missing``).

Faults on demand: :attr:`down` drops every connection unanswered; :meth:`fail_next` answers
the next *n* calls with a 500; :attr:`hold_charges` makes a charge wait, *after* it is
recorded, until :attr:`release` is set (a worker can be killed between the provider's
charge and its own commit).

Webhooks: every charge and refund queues its Stripe event in :attr:`events`;
:meth:`signed` makes the body and the ``Stripe-Signature`` header (``t=..,v1=..``, HMAC-SHA256
with :attr:`webhook_secret`) for one, and :meth:`deliver` POSTs it to a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.peers.http_server import PeerServer


def _nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``metadata[payment_id]=x`` -> ``{"metadata": {"payment_id": "x"}}`` (one level)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            out.setdefault(outer, {})[inner] = value
        else:
            out[key] = value
    return out


def _error(status: int, kind: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": kind, "message": message, **extra}}


@dataclass
class FakeStripe:
    port: int = 0
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(16))
    down: bool = False
    hold_charges: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    #: Every charge that moved money (one per idempotency key), in order.
    charges: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    #: Stripe events, in the order they happened; nothing is delivered unless asked.
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Every request: (method, path, idempotency key or None).
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _fail: int = 0
    #: Answers given before the API's, in order (see answer_next).
    _scripted: list[tuple[int, Any]] = field(default_factory=list)
    _replies: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self.lock:
            self.down = self.hold_charges = False
            self.release = threading.Event()
            self._fail = 0
            self._scripted.clear()
            for name in ("charges", "refunds", "events", "calls"):
                getattr(self, name).clear()
            self._replies.clear()

    def fail_next(self, n: int) -> None:
        with self.lock:
            self._fail = n

    def answer_next(self, status: int, body: Any) -> None:
        """The next request not yet answered gets ``status`` and ``body`` (an object sent as
        JSON, or raw bytes), and moves no money: Stripe answering in a shape it should not."""
        with self.lock:
            self._scripted.append((status, body))

    def charged(self, invoice_id: Any) -> list[dict[str, Any]]:
        """The charges that moved money for one invoice (from their metadata)."""
        with self.lock:
            return [
                c
                for c in self.charges
                if c["metadata"].get("invoice_id") == str(invoice_id) and c["status"] == "succeeded"
            ]

    # --- webhooks ------------------------------------------------------------------------

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append(
            {
                "id": "evt_" + secrets.token_hex(12),
                "object": "event",
                "type": kind,
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": json.loads(json.dumps(obj))},
            }
        )

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == kind]

    def signed(
        self, event: dict[str, Any], *, secret: str | None = None, at: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        t = int(time.time()) if at is None else at
        mac = hmac.new(
            (secret or self.webhook_secret).encode(), f"{t}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return body, {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}

    def deliver(self, url: str, event: dict[str, Any]) -> httpx.Response:
        body, headers = self.signed(event)
        return httpx.post(url, content=body, headers=headers, timeout=10)

    # --- the API -------------------------------------------------------------------------

    def handle(self, method: str, path: str, key: str | None, params: dict[str, Any]):
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v1"]:
            return _error(404, "invalid_request_error", f"Unrecognized request URL {path}")
        parts = parts[1:]
        if method == "POST" and parts == ["customers"]:
            customer = {"id": "cus_" + secrets.token_hex(8), "object": "customer", **params}
            self.customers[customer["id"]] = customer
            return 200, customer
        if parts[:1] == ["payment_methods"] and len(parts) >= 2:
            return self._payment_method(method, parts[1], parts[2:], params)
        if method == "POST" and parts == ["payment_intents"]:
            return self._charge(key, params)
        if method == "POST" and parts == ["refunds"]:
            return self._refund(key, params)
        return _error(404, "invalid_request_error", f"Unrecognized request URL {path}")

    def _method_object(self, pm: str, customer: str | None) -> dict[str, Any]:
        digits = str(int(hashlib.sha256(pm.encode()).hexdigest(), 16))[-4:]
        return {
            "id": pm,
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "card": {"brand": "visa", "last4": digits, "exp_month": 12, "exp_year": 2030},
        }

    def _payment_method(self, method: str, pm: str, rest: list[str], params: dict[str, Any]):
        if not pm.startswith("pm_") or "invalid" in pm:
            return _error(
                400,
                "invalid_request_error",
                f"No such PaymentMethod: '{pm}'",
                code="resource_missing",
                param="payment_method",
            )
        if method == "GET" and not rest:
            return 200, self.methods.get(pm) or self._method_object(pm, None)
        if method == "POST" and rest == ["attach"]:
            self.methods[pm] = self._method_object(pm, params.get("customer"))
            return 200, self.methods[pm]
        if method == "POST" and rest == ["detach"]:
            found = self.methods.pop(pm, None) or self._method_object(pm, None)
            return 200, {**found, "customer": None}
        return _error(404, "invalid_request_error", "Unrecognized request URL")

    def _charge(self, key: str | None, params: dict[str, Any]):
        pm = params.get("payment_method", "")
        intent = {
            "id": "pi_" + secrets.token_hex(10),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "currency": params.get("currency"),
            "customer": params.get("customer"),
            "payment_method": pm,
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
            "last_payment_error": None,
        }
        record = {
            "id": intent["id"],
            "idempotency_key": key,
            "amount": intent["amount"],
            "currency": intent["currency"],
            "customer": intent["customer"],
            "payment_method": pm,
            "metadata": intent["metadata"],
        }
        if "chargeDeclined" in pm:
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            self.charges.append({**record, "status": "failed"})
            self.intents[intent["id"]] = intent
            self._event("payment_intent.payment_failed", intent)
            return _error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="generic_decline",
                payment_intent=intent,
            )
        intent["amount_received"] = intent["amount"]
        intent["refunded"] = 0
        self.charges.append({**record, "status": "succeeded"})
        self.intents[intent["id"]] = intent
        self._event("payment_intent.succeeded", intent)
        return 200, intent

    def _refund(self, key: str | None, params: dict[str, Any]):
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return _error(
                400,
                "invalid_request_error",
                "No such payment_intent",
                code="resource_missing",
                param="payment_intent",
            )
        amount = int(params.get("amount") or intent["amount"] - intent["refunded"])
        if amount > intent["amount"] - intent["refunded"]:
            return _error(
                400,
                "invalid_request_error",
                "Refund amount is greater than unrefunded",
                code="amount_too_large",
                param="amount",
            )
        intent["refunded"] += amount
        refund = {
            "id": "re_" + secrets.token_hex(10),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
        }
        self.refunds.append({**refund, "idempotency_key": key})
        self._event("refund.created", refund)
        charge = {
            "id": "ch_" + intent["id"][3:],
            "object": "charge",
            "payment_intent": intent["id"],
            "amount_refunded": intent["refunded"],
            "refunds": {"data": [refund]},
        }
        self._event("charge.refunded", charge)
        return 200, refund

    def answer(self, method: str, path: str, key: str | None, params: dict[str, Any]):
        """Idempotency first (as Stripe: per key, same parameters -> same answer)."""
        with self.lock:
            self.calls.append((method, path, key))
            if self._scripted:
                return self._scripted.pop(0), False
            if self._fail > 0:
                self._fail -= 1
                return _error(500, "api_error", "Something went wrong on Stripe's end."), False
            fingerprint = json.dumps([method, path, params], sort_keys=True)
            if key is not None and key in self._replies:
                first, status, body = self._replies[key]
                if first != fingerprint:
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same"
                        " parameters they were first used with.",
                    ), False
                return (status, body), True
            status, body = self.handle(method, path, key, params)
            if key is not None and status < 500:
                self._replies[key] = (fingerprint, status, body)
            return (status, body), False


def _handler(state: FakeStripe):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: NOTE: headers and body are two writes; Nagle held the body for the client's
        #: delayed ACK (40 ms an answer).
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if state.down:
                self.close_connection = True
                self.connection.shutdown(2)  # a provider that is down: no answer at all
                return
            split = urlsplit(self.path)
            pairs = parse_qsl(raw.decode() if method == "POST" else split.query)
            key = self.headers.get("Idempotency-Key")
            (status, body), replayed = state.answer(method, split.path, key, _nested(pairs))
            if split.path == "/v1/payment_intents" and state.hold_charges and not replayed:
                state.release.wait(60)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(8))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the caller is gone (killed)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_DELETE(self):
            self._serve("DELETE")

    return Handler


def start_fake_stripe() -> tuple[FakeStripe, PeerServer]:
    state = FakeStripe()
    server = PeerServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server
