"""A send never outlasts its claim: settings whose send bound reaches half the claim are
refused at start (naming what to change), and an api account's own callback timeout
stays within the bound the settings allow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from shared.channels import api_account, outbound_engine
from shared.config import Settings


@pytest.mark.parametrize(
    ("setting", "times", "channel"),
    [
        ("GRAPH_TIMEOUT_SECONDS", 2, "whatsapp"),  # an upload and a send
        ("SMTP_TIMEOUT_SECONDS", 4, "email"),  # an SMTP session's steps
        ("WEBHOOK_TIMEOUT_SECONDS", 2, "api"),
    ],
)
def test_a_send_bound_of_half_the_claim_or_more_is_refused(monkeypatch, setting, times, channel):
    monkeypatch.setenv("OUTBOUND_CLAIM_SECONDS", "160")
    for name in ("GRAPH_TIMEOUT_SECONDS", "SMTP_TIMEOUT_SECONDS", "WEBHOOK_TIMEOUT_SECONDS"):
        monkeypatch.setenv(name, "1")
    timeout = 80 // times
    monkeypatch.setenv(setting, str(timeout))  # its send's bound: exactly half the claim

    with pytest.raises(ValidationError) as refused:
        Settings()

    message = str(refused.value)
    assert f"{setting}={timeout} lets one" in message and "= 80 s" in message
    assert "OUTBOUND_CLAIM_SECONDS=160 (80 s)" in message
    assert f"Lower {setting} below {timeout}" in message  # what to change, either way
    assert "raise OUTBOUND_CLAIM_SECONDS above 160" in message

    monkeypatch.setenv(setting, str(timeout - 0.5))  # just under half: accepted
    assert Settings().send_bound_seconds(channel) == times * (timeout - 0.5)


def test_the_preflight_refuses_to_start_and_says_why():
    env = dict(os.environ, SMTP_TIMEOUT_SECONDS="60", OUTBOUND_CLAIM_SECONDS="300")
    done = subprocess.run(
        [sys.executable, "-m", "shared.preflight"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("The settings are refused:\n  - SMTP_TIMEOUT_SECONDS=60 lets")
    assert "Traceback" not in done.stderr


def test_an_api_accounts_callback_timeout_is_capped_by_the_webhook_timeout():
    assert api_account.timeout_of({"timeout_seconds": 60}, 15.0) == 15.0
    assert api_account.timeout_of({"timeout_seconds": 5}, 15.0) == 5.0
    assert api_account.timeout_of({}, 15.0) == 15.0


def test_a_batch_job_may_run_past_its_claim_to_record_it(monkeypatch):
    from workers.actors.channels_outbound import send_outbound, send_outbound_batch

    for actor in (send_outbound, send_outbound_batch):  # the suite's claim: the 15 min floor
        assert actor.options["time_limit"] == 15 * 60_000
    monkeypatch.setenv("OUTBOUND_CLAIM_SECONDS", "2400")  # e.g. for SMTP_TIMEOUT_SECONDS=300
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "290")
    limit = outbound_engine.batch_time_limit_ms(Settings())
    assert limit >= (2400 + outbound_engine.RECORD_ALLOWANCE_SECONDS) * 1000
