"""The Graph client's retries, Retry-After, error mapping and log redaction, against the fake."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socketserver
import threading
import time
from pathlib import Path

import pytest

from shared.channels import graph_errors
from shared.channels.graph import GraphClient, RetryPolicy
from shared.channels.send_errors import SendFailed
from tests.peers.graph_onboarding import Grant
from tests.peers.http_server import PeerServer
from tests.peers.tls import make_self_signed, server_context


def _client(graph, sleeps: list[float], *, retries: int = 2) -> GraphClient:
    return GraphClient(
        f"{graph.base_url}/v21.0",
        timeout=2.0,
        retry=RetryPolicy(0.1, 0.3, 10.0),
        default_retries=retries,
        sleep=sleeps.append,
    )


def _user_token(graph) -> str:
    """A user token the fake knows."""
    token = "EAAtest-user-token"
    graph.meta.tokens[token] = Grant("100200300", "Grace Admin", pages=[], wabas=[])
    return token


def test_transient_failures_back_off_doubling_up_to_the_cap(meta_settings):
    graph, sleeps = meta_settings, []
    token = _user_token(graph)
    graph.meta.script("me", "503", "500", "503", "ok")
    answer = _client(graph, sleeps, retries=3).request("GET", "me", token)
    assert answer["name"] == "Grace Admin"
    assert sleeps == [0.1, 0.2, 0.3]
    assert len(graph.gets("/v21.0/me")) == 4


def test_a_longer_retry_after_is_honoured(meta_settings):
    graph, sleeps = meta_settings, []
    token = _user_token(graph)
    graph.meta.script("me", ("retry_after", 3, "4"), "ok")
    assert _client(graph, sleeps).request("GET", "me", token)["id"]
    assert sleeps == [3.0]


def test_a_retry_after_past_the_bound_is_not_waited_for(meta_settings):
    graph, sleeps = meta_settings, []
    token = _user_token(graph)
    graph.meta.script("me", ("retry_after", 600, "130429"))
    with pytest.raises(SendFailed) as failed:
        _client(graph, sleeps).request("GET", "me", token)
    assert (failed.value.code, failed.value.retry_after, sleeps) == ("130429", 600.0, [])
    error = graph_errors.domain_error(failed.value, what="reading the user")
    assert (error.status, error.code, error.retry_after) == (429, "meta_rate_limited", 600)


def test_permanent_errors_are_not_retried(meta_settings):
    graph, sleeps = meta_settings, []
    graph.meta.script("me", "100")
    with pytest.raises(SendFailed) as failed:
        _client(graph, sleeps).request("GET", "me", "EAAwhatever")
    assert failed.value.code == "100" and sleeps == [] and failed.value.attempts == 1
    assert len(graph.gets("/v21.0/me")) == 1


def test_the_send_methods_keep_their_single_try(meta_settings):
    graph, sleeps = meta_settings, []
    graph.script("503")
    with pytest.raises(SendFailed) as failed:
        _client(graph, sleeps).post("123/messages", "EAAtoken", {"to": "1"})
    assert failed.value.transient and sleeps == []
    assert len(graph.sent()) == 1


def test_an_unreachable_graph_is_a_transient_connection_error():
    sleeps: list[float] = []
    client = GraphClient(
        "http://127.0.0.1:9/v21.0",
        timeout=1.0,
        retry=RetryPolicy(0.01, 0.01, 1),
        sleep=sleeps.append,
    )
    with pytest.raises(SendFailed) as failed:
        client.request("GET", "me", "EAAtoken", retries=1)
    assert failed.value.code == "connection_error" and failed.value.attempts == 2
    error = graph_errors.domain_error(failed.value, what="reading the user")
    assert (error.status, error.code) == (502, "meta_api_error")
    assert "after 2 tries" in error.message


@pytest.mark.parametrize(
    ("code", "status", "http", "expected"),
    [
        ("190", 401, 409, "meta_token_invalid"),
        ("102", 400, 409, "meta_token_invalid"),
        ("10", 403, 409, "meta_permission_denied"),
        ("230", 400, 409, "meta_permission_denied"),
        ("100", 400, 422, "meta_rejected"),
        ("133005", 400, 422, "meta_rejected"),
        ("80007", 429, 429, "meta_rate_limited"),
        ("4", 400, 429, "meta_rate_limited"),
        ("1", 500, 502, "meta_api_error"),
        ("http_502", 502, 502, "meta_api_error"),
    ],
)
def test_meta_codes_map_to_clear_answers(code, status, http, expected):
    transient = status >= 500 or status == 429 or code in ("4", "1")
    failure = SendFailed(code, "Meta said no", transient=transient, http_status=status)
    error = graph_errors.domain_error(failure, what="doing it", field="x")
    assert (error.status, error.code) == (http, expected)
    assert error.details[0]["meta_code"] == code
    assert "Meta said no" in error.message


def test_secret_query_values_are_blanked_in_httpx_logs(meta_settings, caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    graph = meta_settings
    token = _user_token(graph)
    app_token = f"{graph.meta.app_id}|{graph.meta.app_secret}"
    _client(graph, []).request("GET", "debug_token", app_token, params={"input_token": token})
    assert "input_token=***" in caplog.text
    assert token not in caplog.text and graph.meta.app_secret not in caplog.text


class _OneAnswerPerConnection(socketserver.ThreadingTCPServer):
    """A Graph stand-in that answers each connection's first POST with keep-alive, then
    closes it: the client's idle connection is dead when the next send comes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.requests: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _AnswerOnceHandler)


class _AnswerOnceHandler(socketserver.StreamRequestHandler):
    def handle(self):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.rfile.readline()
            if not line:
                return
            head += line
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        body = self.rfile.read(length)
        self.server.requests.append(body)
        answer = b'{"messages":[{"id":"wamid.%d"}]}' % len(self.server.requests)
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
        )
        self.wfile.flush()
        time.sleep(0.05)  # the answer is read; then the server closes the kept-alive connection


def test_a_send_on_a_connection_the_server_closed_goes_out_once_on_a_new_one():
    server = _OneAnswerPerConnection()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = GraphClient(f"http://127.0.0.1:{server.server_address[1]}/v21.0", timeout=2.0)
        first = client.post("123/messages", "EAAtoken", {"to": "1"})
        time.sleep(0.2)  # the server has closed the connection the client keeps
        second = client.post("123/messages", "EAAtoken", {"to": "2"})
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert (first["messages"][0]["id"], second["messages"][0]["id"]) == ("wamid.1", "wamid.2")
    assert [json.loads(body)["to"] for body in server.requests] == ["1", "2"]


def test_a_send_the_graph_does_not_answer_in_time_is_a_transient_timeout(meta_settings):
    graph = meta_settings
    graph.script(("sleep", 1.5))
    client = GraphClient(f"{graph.base_url}/v21.0", timeout=0.5)
    with pytest.raises(SendFailed) as failed:
        client.post("123/messages", "EAAtoken", {"to": "1"})
    client.close()
    assert failed.value.code == "timeout" and failed.value.transient


def _tls_graph(tmp_path) -> tuple[PeerServer, Path]:
    """A Graph stand-in over TLS with a self-signed certificate for localhost."""
    cert, key = make_self_signed(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            data = b'{"messages":[{"id":"wamid.tls"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = PeerServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, cert


def test_sends_over_tls_go_to_a_trusted_certificate_only(tmp_path, monkeypatch):
    server, cert = _tls_graph(tmp_path)
    root = f"https://localhost:{server.server_address[1]}/v21.0"
    try:
        with pytest.raises(SendFailed) as refused:  # not in the trusted store
            GraphClient(root, timeout=2.0).post("123/messages", "EAAtoken", {"to": "1"})
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        client = GraphClient(root, timeout=2.0)
        answers = [client.post("123/messages", "EAAtoken", {"to": str(n)}) for n in range(2)]
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.code == "connection_error" and "CERTIFICATE" in refused.value.message
    assert [a["messages"][0]["id"] for a in answers] == ["wamid.tls", "wamid.tls"]
