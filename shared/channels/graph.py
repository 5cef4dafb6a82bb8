"""A small Meta Graph API client: send WhatsApp / Messenger / Instagram messages, fetch media.

Base URL and version come from settings (``META_GRAPH_BASE_URL``,
``META_GRAPH_VERSION``), so tests and benchmarks aim it at a local fake. Every
call authenticates with ``Authorization: Bearer <token>`` and every failure
becomes a :class:`~shared.channels.send_errors.SendFailed` carrying Meta's
``error.code`` and ``error.message``, classified transient or permanent.

Onboarding and health reads pass ``retries``: a transient failure (5xx, 429, a
throttling code, a timeout) is tried again after a doubling backoff, or after
Meta's ``Retry-After`` when that is longer (up to ``GRAPH_MAX_RETRY_AFTER_SECONDS``).
Sends keep ``retries=0``: their worker retries with a durable backoff instead.
:mod:`.graph_errors` turns what is left into the API's answers.

APPSEC: tokens travel only in the ``Authorization`` header or a form body, never in
a message of ours; the ``httpx`` logger gets a filter (:class:`RedactSecrets`) that
blanks the secret query parameters some Graph reads need (``input_token``).

Example::

    client = graph_client()
    result = client.post(f"{phone_number_id}/messages", token, whatsapp_text("15551234567", "Hi"))
    result["messages"][0]["id"]  # "wamid.HBgL..."
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from shared import json_encoding
from shared.channels import json_post
from shared.channels.send_errors import SendFailed
from shared.channels.upload_deadline import UploadDeadline
from shared.config import get_settings
from shared.json_encoding import as_object

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Meta error codes worth retrying: throttling and temporary outages.
#: 1 unknown / 2 service unavailable, 4 / 17 / 32 / 613 app and user rate limits,
#: 80007 Messenger/Instagram rate limit, 130429 Cloud API throughput, 131000 something
#: went wrong, 131016 service overloaded, 131048 spam rate limit, 131056 pair rate limit.
TRANSIENT_CODES = frozenset(
    {"1", "2", "4", "17", "32", "613", "80007", "130429", "131000", "131016", "131048", "131056"}
)


#: Query parameters whose values are secrets (blanked in the ``httpx`` log lines).
SECRET_PARAMS = (
    "access_token",
    "input_token",
    "client_secret",
    "code",
    "fb_exchange_token",
    "appsecret_proof",
)
_SECRET_QUERY = re.compile(
    r"((?<![\w])(?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"']+", re.IGNORECASE
)


def redact(text: str) -> str:
    """``text`` with the values of :data:`SECRET_PARAMS` replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Blank secret query values in the records of ``httpx`` (it logs every URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(str(arg)) if isinstance(arg, str | httpx.URL) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, RedactSecrets) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(RedactSecrets())


class RetryPolicy:
    """How a call with ``retries`` waits: doubling from ``min_backoff`` up to ``max_backoff``
    seconds, or Meta's ``Retry-After`` when longer; a ``Retry-After`` past ``max_retry_after``
    is not waited for (the caller answers 429 at once)."""

    def __init__(self, min_backoff: float, max_backoff: float, max_retry_after: float):
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after

    def delay(self, attempt: int, failure: SendFailed) -> float | None:
        """Seconds to wait before try ``attempt + 1``; None: do not try again."""
        if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
            return None
        backoff = min(self.max_backoff, self.min_backoff * 2**attempt)
        return max(backoff, failure.retry_after or 0.0)


class GraphClient:
    """Thread-safe; one per process (:func:`graph_client`) so connections are reused.

    ``sleep`` waits between retries (tests pass a recorder instead of sleeping).
    """

    def __init__(
        self,
        root: str,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        default_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.root = root.rstrip("/")
        self.retry = retry or RetryPolicy(0.5, 4.0, 10.0)
        #: What ``retries=None`` means in :meth:`request`.
        self.default_retries = default_retries
        self._sleep = sleep
        self._timeout = timeout
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,
        )
        #: Calls with a deadline through httpx, each on its own connection
        #: (:mod:`.upload_deadline`): the uploads, and the sends when httpx makes them.
        self._uploads = httpx.Client(
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=0),
            follow_redirects=False,
        )
        #: PERF: the sends' JSON POSTs, at a third of httpx's CPU (:mod:`.json_post`);
        #: None when a transport is injected or a proxy applies (httpx handles those).
        self._poster = (
            json_post.JsonPoster(self.root, timeout=timeout)
            if transport is None and not _proxied(self.root)
            else None
        )

    def close(self) -> None:
        self._http.close()
        self._uploads.close()
        if self._poster is not None:
            self._poster.close()

    def post(
        self, path: str, token: str, payload: dict[str, Any], *, within: float | None = None
    ) -> dict[str, Any]:
        """POST JSON to ``{root}/{path}``; the parsed answer, or :class:`SendFailed`.

        ``within`` (seconds) bounds the whole call, not only each step: one still going
        then is cut off and fails as a transient ``timeout``, unless a 2xx had come (Meta
        took it: ``bad_response``, as for any 2xx that cannot be read).
        """
        url = f"{self.root}/{path.lstrip('/')}"
        if within is None:
            return self._post(url, token, payload, None)
        return self._within(
            within, "the Graph API call", lambda d: self._post(url, token, payload, d)
        )

    def _post(
        self, url: str, token: str, payload: dict[str, Any], deadline: UploadDeadline | None
    ) -> dict[str, Any]:
        if self._poster is None:
            return self._json(self._call("POST", url, token, payload, deadline))
        try:
            answer = self._poster.post(url, _auth(token), payload, deadline=deadline)
        except json_post.PostTimeout as exc:
            raise SendFailed("timeout", f"Graph API timed out: {exc}", transient=True) from exc
        except json_post.BodyLost as exc:
            if exc.status >= 300:
                raise SendFailed("connection_error", str(exc), transient=True) from exc
            raise SendFailed("bad_response", f"Graph API {exc}", transient=True) from exc
        except json_post.PostFailed as exc:
            raise SendFailed("connection_error", str(exc), transient=True) from exc
        if answer.status >= 300:
            raise classify(answer.as_httpx("POST", url))
        return _parsed(answer.body)

    def _within(self, within: float, what: str, call: Callable[[UploadDeadline], T]) -> T:
        """``call(deadline)``, its connection shut down after ``within`` seconds
        (:mod:`.upload_deadline`): a call cut off then is a transient ``timeout``, but for
        an answer Meta gave with a 2xx (``bad_response``: it took the request)."""
        deadline = UploadDeadline(within)
        try:
            with deadline:
                return call(deadline)
        except SendFailed as exc:
            if not deadline.expired or exc.code == "bad_response":
                raise
            raise SendFailed(
                "timeout", f"{what} took longer than {within:.3g} s", transient=True
            ) from exc

    def post_form(
        self,
        path: str,
        token: str,
        fields: dict[str, str],
        file: tuple[str, IO[bytes], str],
        *,
        file_field: str = "file",
        within: float | None = None,
    ) -> dict[str, Any]:
        """POST multipart/form-data (a media upload): ``file`` is (filename, stream, type).

        ``within`` (seconds) bounds the whole call, not only each step: one still going
        then is cut off and fails as a transient ``timeout``.
        """
        url = f"{self.root}/{path.lstrip('/')}"
        if within is None:
            with _transport_errors():
                response = self._http.post(
                    url, headers=_auth(token), data=fields, files={file_field: file}
                )
        else:
            response = self._upload_within(within, url, token, fields, {file_field: file})
        if response.status_code >= 300:
            raise classify(response)
        return self._json(response)

    def _upload_within(
        self, within: float, url: str, token: str, fields: dict[str, str], files: dict
    ) -> httpx.Response:
        def upload(deadline: UploadDeadline) -> httpx.Response:
            with _transport_errors():
                return self._uploads.post(
                    url,
                    headers=_auth(token),
                    data=fields,
                    files=files,
                    timeout=min(self._timeout, within),
                    extensions={"trace": deadline.trace},
                )

        return self._within(within, "the media upload", upload)

    def get(self, path: str, token: str, *, timeout: float | None = None) -> dict[str, Any]:
        """GET ``{root}/{path}``; ``timeout`` bounds each step below ``GRAPH_TIMEOUT_SECONDS``."""
        url = f"{self.root}/{path.lstrip('/')}"
        if timeout is None:
            return self._json(self._call("GET", url, token, None))
        with _transport_errors():
            response = self._http.get(url, headers=_auth(token), timeout=timeout)
        if response.status_code >= 300:
            raise classify(response)
        return self._json(response)

    def request(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """One Graph call, retried on transient failures; the parsed answer or :class:`SendFailed`.

        ``token`` goes in the ``Authorization`` header (None: no header, e.g. the OAuth
        code exchange, whose secrets ride in ``form``); ``retries`` defaults to
        ``GRAPH_MAX_RETRIES``. A retried :class:`SendFailed` carries ``attempts``.
        """
        url = f"{self.root}/{path.lstrip('/')}"
        budget = self.default_retries if retries is None else retries
        attempt = 0
        while True:
            try:
                with _transport_errors():
                    response = self._http.request(
                        method,
                        url,
                        headers=_auth(token) if token else None,
                        params=params,
                        json=json_body,
                        data=form,
                    )
                if response.status_code >= 300:
                    raise classify(response)
                return self._json(response)
            except SendFailed as failure:
                failure.attempts = attempt + 1
                delay = self.retry.delay(attempt, failure) if failure.transient else None
                if attempt >= budget or delay is None:
                    raise
                log.info(
                    "Graph %s %s failed (%s), try %d of %d in %.2fs",
                    method,
                    path.split("?")[0],
                    failure.code,
                    attempt + 2,
                    budget + 1,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def download(
        self,
        url: str,
        token: str | None,
        sink: IO[bytes],
        *,
        max_bytes: int,
        http: httpx.Client | None = None,
        deadline: float | None = None,
    ) -> tuple[int, str]:
        """Stream a media URL into ``sink``; (size, sha256 hex). WhatsApp media URLs need the
        Bearer token; CDN URLs (Messenger, Instagram) get none, and go through ``http``
        (the SSRF-vetted client: the URL is the callback's sender's to choose).

        Refuses more than ``max_bytes`` (permanent ``media_too_large``) without
        buffering the body. ``deadline`` (``time.monotonic()``) bounds the whole download:
        past it, a transient ``timeout``. WHY: httpx's timeout bounds each read, so a peer
        trickling a byte at a time held the caller for as long as it liked. Each step's
        timeout is cut to the time left, and the deadline is checked between chunks (a read
        that started just before it ends at most one step's timeout late).
        """
        digest = hashlib.sha256()
        size = 0
        with _transport_errors():
            headers = _auth(token) if token else {}
            timeout = self._timeout if deadline is None else _time_left(deadline, self._timeout)
            with (http or self._http).stream(
                "GET", url, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 300:
                    response.read()
                    raise classify(response)
                # NOTE: the chunks as they arrive (iter_bytes(n) would gather n bytes first,
                # with no deadline check in between).
                for chunk in response.iter_bytes():
                    if deadline is not None:
                        _time_left(deadline, self._timeout)
                    size += len(chunk)
                    if size > max_bytes:
                        raise SendFailed(
                            "media_too_large",
                            f"the provider's file is larger than {max_bytes} bytes",
                            transient=False,
                        )
                    digest.update(chunk)
                    sink.write(chunk)
        return size, digest.hexdigest()

    def _call(
        self,
        method: str,
        url: str,
        token: str,
        payload: dict[str, Any] | None,
        deadline: UploadDeadline | None = None,
    ) -> httpx.Response:
        """One call through httpx; with a ``deadline``, on a fresh connection it watches."""
        with _transport_errors():
            if deadline is None:
                response = self._http.request(method, url, headers=_auth(token), json=payload)
            else:
                response = self._uploads.request(
                    method,
                    url,
                    headers=_auth(token),
                    json=payload,
                    extensions={"trace": deadline.trace},
                )
        if response.status_code >= 300:
            raise classify(response)
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        return _parsed(response.content)


def next_cursor(page: dict[str, Any], asked: set[str]) -> str | None:
    """The ``after`` cursor of a Graph listing's next page (added to ``asked``); None on
    its last page (no ``paging.next``, or no cursor).

    The next page is asked for on our own base URL with ``after``, never at
    ``paging.next``: an absolute URL, which the token would follow wherever it points.
    A cursor seen before, or one that is not text, is a listing that never ends:
    :class:`SendFailed` ``bad_paging``; paging of another shape ``bad_response``.
    """
    paging = page.get("paging") or {}
    cursors = paging.get("cursors") or {} if isinstance(paging, dict) else None
    if not isinstance(cursors, dict):
        raise SendFailed("bad_response", "Graph's paging is not an object", transient=True)
    after = cursors.get("after") if paging.get("next") else None
    if not after:
        return None
    if not isinstance(after, str) or after in asked:
        raise SendFailed(
            "bad_paging", "Meta's paging repeated a cursor or gave no usable one", transient=False
        )
    asked.add(after)
    return after


def _parsed(body: bytes) -> dict[str, Any]:
    """A Graph answer's JSON object, or a transient ``bad_response``."""
    try:
        data = json_encoding.loads(body)
    except ValueError as exc:
        raise SendFailed(
            "bad_response", "Graph API answered with invalid JSON", transient=True
        ) from exc
    if not isinstance(data, dict):
        raise SendFailed("bad_response", "Graph API answered a non-object", transient=True)
    return data


def _proxied(root: str) -> bool:
    """Whether the environment routes ``root`` through a proxy (as httpx's ``trust_env``
    would): then the sends keep httpx, which speaks to proxies."""
    parts = urlsplit(root)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


@contextlib.contextmanager
def _transport_errors() -> Iterator[None]:
    """Timeouts and connection failures as transient :class:`SendFailed`."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise SendFailed("timeout", f"Graph API timed out: {exc}", transient=True) from exc
    except httpx.TransportError as exc:
        raise SendFailed("connection_error", str(exc), transient=True) from exc


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def classify(response: httpx.Response) -> SendFailed:
    """Meta's error body (``{"error": {"code", "message", ...}}``) as a :class:`SendFailed`."""
    status = response.status_code
    error = as_object(as_object(_readable(response.content)).get("error"))
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or response.reason_phrase or "Graph API error")
    details = as_object(error.get("error_data")).get("details")
    if details is not None and not isinstance(details, str):
        # NOTE: not a string: ``in`` raised TypeError, and a refusal was retried as a bug.
        details = json.dumps(details)[:500]
    if details and details not in message:
        message = f"{message}: {details}"
    # NOTE: ``is_transient`` counts only as the boolean Meta documents: bool("false") is
    # True, and retried a refusal until its retries ran out.
    transient = (
        status >= 500
        or status == 429
        or code in TRANSIENT_CODES
        or error.get("is_transient") is True
    )
    retry_after = _retry_after(response.headers.get("Retry-After"))
    failure = SendFailed(
        code, message[:2000], transient=transient, http_status=status, retry_after=retry_after
    )
    # Meta's error_subcode tells apart refusals that share a code (100: a template name
    # and language that already exist is 2388024); kept for callers that need it.
    failure.subcode = str(error["error_subcode"]) if error.get("error_subcode") else None
    return failure


def _readable(body: bytes) -> Any:
    """An error answer's JSON, or None: its shape is Meta's to get wrong, not a crash of ours."""
    try:
        return json_encoding.loads(body)
    except ValueError:
        return None


#: The longest ``Retry-After`` believed; a longer one is held to it.
MAX_RETRY_AFTER_SECONDS = 86400.0


def _retry_after(raw: str | None) -> float | None:
    """Seconds to wait, at most :data:`MAX_RETRY_AFTER_SECONDS`.

    WHY: an unbounded one (``1e999`` is infinity) overflowed the account's pause and the
    retry's timestamp: the batch went unrecorded and the account stopped sending.
    """
    try:
        seconds = float(raw) if raw else None
    except ValueError:
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


_client: tuple[object, GraphClient] | None = None
_client_lock = threading.Lock()


def _time_left(deadline: float, most: float) -> float:
    """Seconds until ``deadline`` (at most ``most``); a transient ``timeout`` once it passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise SendFailed("timeout", "the download took longer than allowed", transient=True)
    return min(left, most)


def graph_client() -> GraphClient:
    """The process's Graph client, built once for the current settings.

    NOTE: keyed by the settings object, not a bare cache: when tests change the
    settings, a client another thread built from the old ones (and stored after the
    reset) is never handed out again.
    """
    global _client
    settings = get_settings()
    current = _client
    if current is not None and current[0] is settings:
        return current[1]
    with _client_lock:
        if _client is None or _client[0] is not settings:
            _client = (
                settings,
                GraphClient(
                    settings.graph_api_root,
                    timeout=settings.graph_timeout_seconds,
                    retry=RetryPolicy(
                        settings.graph_retry_min_backoff_ms / 1000,
                        settings.graph_retry_max_backoff_ms / 1000,
                        settings.graph_max_retry_after_seconds,
                    ),
                    default_retries=settings.graph_max_retries,
                ),
            )
        return _client[1]


def reset_graph_client() -> None:
    """Close and forget the process client (tests that change the Graph settings)."""
    global _client
    with _client_lock:
        previous, _client = _client, None
    if previous is not None:
        previous[1].close()


# --- payloads --------------------------------------------------------------------------------


def whatsapp_text(to: str, body: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
    }


def whatsapp_template(to: str, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` is the stored ``{"name", "language", "components"}``."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": template["name"],
            "language": {"code": template["language"]},
            "components": template.get("components") or [],
        },
    }


def whatsapp_media(
    to: str,
    kind: str,
    *,
    link: str | None = None,
    media_id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """An image / video / audio / document / sticker message by ``link`` or uploaded ``id``."""
    media: dict[str, Any] = {"id": media_id} if media_id else {"link": link}
    if caption and kind in ("image", "video", "document"):
        media["caption"] = caption
    if filename and kind == "document":
        media["filename"] = filename
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: media,
    }


def whatsapp_choices(
    to: str, body: str, choices: list[dict[str, str]], label: str
) -> dict[str, Any]:
    """Text with reply choices, as an interactive list (up to 10 rows) that ``label`` opens."""
    rows = [{"id": c["id"], "title": c["title"]} for c in choices]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": body},
            "action": {"button": label, "sections": [{"rows": rows}]},
        },
    }


def page_text(
    recipient_id: str, body: str, choices: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A Messenger or Instagram reply (``/me/messages``) inside the standard window; its
    ``choices`` as quick replies."""
    message: dict[str, Any] = {"text": body}
    if choices:
        message["quick_replies"] = [
            {"content_type": "text", "title": c["title"], "payload": c["id"]} for c in choices
        ]
    return {"recipient": {"id": recipient_id}, "messaging_type": "RESPONSE", "message": message}


def page_attachment_upload(recipient_id: str, kind: str) -> dict[str, str]:
    """The form fields of a Messenger / Instagram send whose file rides along as ``filedata``."""
    return {
        "recipient": json.dumps({"id": recipient_id}),
        "messaging_type": "RESPONSE",
        "message": json.dumps({"attachment": {"type": kind, "payload": {"is_reusable": True}}}),
    }
