"""A fake OpenAI-compatible model server: records every prompt, answers as scripted.

Routes (any prefix, e.g. ``/v1``): ``POST .../chat/completions`` and ``POST .../embeddings``.

Behaviour is scripted per test with :meth:`FakeLLM.script`: each chat call takes the
next behaviour (the last one repeats), one of:

- ``"ok"``: the answer :attr:`FakeLLM.answer` (default ``"Scripted answer."``);
- ``("answer", text)``: that answer;
- ``("status", code)`` or ``("status", code, {"Retry-After": "1"})``: an error answer;
- ``("malformed",)``: 200 with a body that is not JSON; ``("shape",)``: JSON without choices;
- ``("sleep", seconds)``: wait, then answer ok (a slow model; past the client's timeout
  the client gives up);
- ``("echo_system",)``: answer with the system prompt (an instruction leak);
- ``("raw", body)``: 200 with exactly ``body`` (bytes).

:attr:`FakeLLM.embeddings_body`, when set, is the 200 body of every embeddings call.

:attr:`FakeLLM.delay` makes every chat call take that long (the benchmark's model);
:attr:`FakeLLM.embeddings_delay` every embeddings call (a struggling endpoint).
Usage is reported as word counts so token accounting is checkable.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.peers.http_server import PeerServer


@dataclass
class LLMRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body.get("messages", [])

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization") or self.headers.get("authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None


@dataclass
class FakeLLM:
    port: int = 0
    requests: list[LLMRequest] = field(default_factory=list)
    answer: str = "Scripted answer."
    delay: float = 0.0
    embeddings_delay: float = 0.0
    embeddings_body: bytes | None = None
    _plan: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self._plan = []
            self.embeddings_body = None
            self.answer = "Scripted answer."
            self.delay = 0.0
            self.embeddings_delay = 0.0

    def script(self, *behaviours: Any) -> None:
        with self.lock:
            self._plan = list(behaviours)

    def chats(self) -> list[LLMRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self) -> Any:
        with self.lock:
            if not self._plan:
                return "ok"
            return self._plan.pop(0) if len(self._plan) > 1 else self._plan[0]


def _words(text: str) -> int:
    return len(text.split())


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255, 4) for b in digest[:dims]]


def _handler(llm: FakeLLM):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        #: NOTE: headers and body are two writes; Nagle held the body for the client's
        #: delayed ACK (40 ms an answer).
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "bad json"}})
                return
            recorded = LLMRequest(self.path, dict(self.headers.items()), body, time.time())
            with llm.lock:
                llm.requests.append(recorded)
            if self.path.endswith("/embeddings") and llm.embeddings_delay:
                time.sleep(llm.embeddings_delay)
            if self.path.endswith("/embeddings") and llm.embeddings_body is not None:
                self._send(200, llm.embeddings_body)
                return
            if self.path.endswith("/embeddings"):
                inputs = body.get("input") or []
                inputs = [inputs] if isinstance(inputs, str) else inputs
                self._send(
                    200,
                    {
                        "object": "list",
                        "model": body.get("model"),
                        "data": [
                            {"object": "embedding", "index": i, "embedding": _vector(t)}
                            for i, t in enumerate(inputs)
                        ],
                        "usage": {"prompt_tokens": sum(_words(t) for t in inputs)},
                    },
                )
                return
            if not self.path.endswith("/chat/completions"):
                self._send(404, {"error": {"message": "unknown route"}})
                return
            if llm.delay:
                time.sleep(llm.delay)
            behaviour = llm._next()
            answer = llm.answer
            if isinstance(behaviour, tuple) and behaviour[0] == "sleep":
                time.sleep(behaviour[1])
                behaviour = "ok"
            if isinstance(behaviour, tuple) and behaviour[0] == "status":
                headers = behaviour[2] if len(behaviour) > 2 else {}
                self._send(behaviour[1], {"error": {"message": "scripted failure"}}, headers)
                return
            if behaviour == ("malformed",):
                self._send(200, b'{"choices": [ this is not json')
                return
            if isinstance(behaviour, tuple) and behaviour[0] == "raw":
                self._send(200, behaviour[1])
                return
            if behaviour == ("shape",):
                self._send(200, {"object": "chat.completion", "choices": []})
                return
            if isinstance(behaviour, tuple) and behaviour[0] == "answer":
                answer = behaviour[1]
            if behaviour == ("echo_system",):
                answer = next(
                    (m["content"] for m in body.get("messages", []) if m["role"] == "system"), ""
                )
            prompt_words = sum(_words(m.get("content", "")) for m in body.get("messages", []))
            self._send(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_words,
                        "completion_tokens": _words(answer),
                        "total_tokens": prompt_words + _words(answer),
                    },
                },
            )

    return Handler


def start_fake_llm() -> tuple[FakeLLM, PeerServer]:
    llm = FakeLLM()
    server = PeerServer(("127.0.0.1", 0), _handler(llm))
    llm.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True, name="fake-llm").start()
    return llm, server
