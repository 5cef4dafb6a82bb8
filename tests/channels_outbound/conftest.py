"""Fixtures for outbound sends and media: the real peers, accounts, contacts, conversations.

Settings that actors read when they are declared (retries, backoff) are set here at
import, before the ``broker`` fixture imports the actors; the peers' addresses are
known only once they start, so :func:`channel_settings` sets those and drops the
cached clients.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

os.environ.update(
    OUTBOUND_MAX_RETRIES="2",
    OUTBOUND_MIN_BACKOFF_MS="50",
    OUTBOUND_MAX_BACKOFF_MS="200",
    GRAPH_TIMEOUT_SECONDS="1.0",
    SMTP_TIMEOUT_SECONDS="5",
)

import pytest

from shared.config import get_settings

get_settings.cache_clear()

from shared.channels import accounts  # noqa: E402
from shared.context import Ctx  # noqa: E402
from shared.db import session_scope  # noqa: E402
from tests.inbox_messages.conftest import Inbox  # noqa: E402
from tests.peers.environment import environment  # noqa: E402
from tests.peers.fixtures import (  # noqa: E402, F401
    SMTP_PASSWORD,
    SMTP_USER,
    fake_graph,
    fake_graph_server,
    s3_server,
    smtp_peers,
    smtp_servers,
    smtp_tls_files,
)
from tests.waiting import wait_until  # noqa: E402

S3_BUCKET = "omnistream-test-media"


@pytest.fixture(scope="package", autouse=True)
def channel_settings(fake_graph_server, smtp_tls_files, s3_server, tmp_path_factory):  # noqa: F811
    """Point the Graph client, SMTP TLS trust, media root and S3 at this run's peers, for
    this folder's tests only."""
    import boto3

    with environment(
        META_GRAPH_BASE_URL=fake_graph_server.base_url,
        META_GRAPH_VERSION="v21.0",
        SMTP_CA_FILE=str(smtp_tls_files[0]),
        MEDIA_ROOT=str(tmp_path_factory.mktemp("media")),
        S3_ENDPOINT_URL=s3_server,
        S3_BUCKET=S3_BUCKET,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
    ):
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_server,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        # NOTE: set up again when this process comes back to the folder after another one.
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=S3_BUCKET)
        yield


class Channels(Inbox):
    """Inbox rows plus connected accounts for one tenant."""

    def account(
        self,
        channel: str,
        *,
        external_id: str | None = None,
        settings: dict[str, Any] | None = None,
        credentials: dict[str, str] | None = None,
        is_default: bool = False,
    ) -> uuid.UUID:
        external_id = external_id or (
            f"{uuid.uuid4().hex[:8]}@shop.example"
            if channel == "email"
            else str(uuid.uuid4().int)[:15]
        )
        with session_scope() as session:
            account = accounts.create_account(
                session,
                Ctx.system(self.tenant_id),
                channel=channel,
                name=f"{channel} account",
                external_id=external_id,
                settings=settings or {},
                credentials=credentials or {},
                is_default=is_default,
            )
            return account.id

    def account_row(self, account_id: uuid.UUID):
        from shared.models import IntegrationAccount

        return self.row(IntegrationAccount, account_id)


@pytest.fixture
def channels(request, worker) -> Channels:
    return Channels(request.getfixturevalue("workspace").tenant["id"])


def messages_of(workspace, conversation_id) -> list[dict[str, Any]]:
    resp = workspace.call("GET", f"/api/conversations/{conversation_id}/messages")
    assert resp.status_code == 200, resp.text
    return resp.json["items"]


def wait_for_status(workspace, conversation_id, message_id, *statuses: str, timeout=15.0):
    """Poll the API until the message reaches one of ``statuses``; return it."""

    def check():
        for item in messages_of(workspace, conversation_id):
            if item["id"] == str(message_id) and item["status"] in statuses:
                return item
        return None

    return wait_until(check, f"message {message_id} in {statuses}", timeout=timeout)


def redriven(message_id) -> bool:
    """Run the outbound sweeper once; whether it re-drove this send (its ``sweep_at`` moved).

    The sweeper is global: a send an earlier test left pending may come due during this
    one, so a test judges its own row rather than the sweeper's count."""
    from scheduler import jobs
    from shared.models.outbound import OutboundSend

    with session_scope() as session:
        before = session.get(OutboundSend, message_id).sweep_at
    with session_scope() as session:
        jobs.sweep_outbound_sends(session)
    with session_scope() as session:
        return session.get(OutboundSend, message_id).sweep_at != before


def sent_with(graph, token: str) -> list:
    """The messages posted to the shared fake Graph API with this account's token."""
    return [r for r in graph.sent() if r.token == token]
