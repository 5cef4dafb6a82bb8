"""The pure parts: the SSRF guard, the retry schedule, signatures and secrets at rest."""

from __future__ import annotations

import ipaddress
import random
import socket

import pytest
from cryptography.fernet import Fernet

from shared import crypto
from shared.webhooks import schedule, signing
from shared.webhooks.ssrf import Policy, UnsafeUrl, check_url, resolve, vet_address
from shared.webhooks.transport import build_client

STRICT = Policy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 (a refused address, not a bind)
        "224.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "fd00::1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "fec0::1",  # site-local (deprecated, still routed inside some networks)
        "3fff::1",  # documentation (RFC 9637)
    ],
)
def test_internal_addresses_are_refused(address):
    with pytest.raises(UnsafeUrl):
        vet_address(address, STRICT)


def test_public_addresses_pass_and_the_allowlist_opens_loopback():
    assert str(vet_address("93.184.216.34", STRICT)) == "93.184.216.34"
    assert str(vet_address("2606:4700::1111", STRICT)) == "2606:4700::1111"
    dev = Policy(allow_http=True, networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert str(vet_address("127.0.0.1", dev)) == "127.0.0.1"
    with pytest.raises(UnsafeUrl):
        vet_address("127.0.0.2", dev)


def test_urls_are_checked_when_saved():
    assert check_url("https://hooks.example.com/x", STRICT)
    for url in ("http://hooks.example.com/x", "https://localhost/x", "https://10.0.0.1/"):
        with pytest.raises(UnsafeUrl):
            check_url(url, STRICT)
    assert check_url("http://hooks.example.com/x", Policy(allow_http=True))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in text)


def test_hosts_are_checked_in_the_form_clients_map_them_to():
    # IDNA mapping makes these 169.254.169.254, localhost and a .internal name.
    for host in ("169.254.169.254", "localhost", "a.local", "metadata.google.internal"):
        with pytest.raises(UnsafeUrl):
            check_url(f"https://{_fullwidth(host)}/x", STRICT)
    assert check_url(f"https://{_fullwidth('hooks')}.example.com/x", STRICT)


def test_names_are_resolved_and_vetted_at_send_time():
    # A public-looking name that resolves to loopback is what DNS rebinding does.
    with pytest.raises(UnsafeUrl):
        resolve("localhost", 80, STRICT)
    assert resolve("localhost", 80, Policy(hosts=frozenset({"localhost"})))


def test_the_client_never_connects_to_a_refused_address():
    client = build_client(STRICT)
    with pytest.raises(UnsafeUrl):
        client.post("http://127.0.0.1:9/x", content=b"{}", timeout=1)


def test_retry_schedule_with_jitter_floors_and_the_end():
    rng = random.Random(7)
    for attempt, base in enumerate(schedule.SCHEDULE[1:], start=1):
        delay = schedule.next_delay(attempt, status=500, rng=rng)
        assert base * 0.8 <= delay <= base * 1.2
    assert schedule.next_delay(8, status=500) is None
    assert schedule.next_delay(1, status=429, retry_after=2) >= 60
    assert schedule.next_delay(1, error_kind="timeout") >= 60
    assert schedule.next_delay(1, status=503, retry_after=900) == 900
    assert schedule.next_delay(1, status=503, retry_after=10**9) == schedule.MAX_RETRY_AFTER
    assert schedule.parse_retry_after("120") == 120
    assert schedule.parse_retry_after("soon") is None
    assert schedule.parse_retry_after("\u00b2") is None  # passes str.isdigit(), not float()
    assert schedule.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_signatures_follow_the_standard_webhooks_example():
    # The example of the Standard Webhooks specification's reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = signing.signed_headers([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signing.verify(secret, headers, body, now=1614265330)
    assert not signing.verify(secret, headers, body + b" ", now=1614265330)
    assert not signing.verify(secret, headers, body, now=1614265330 + 3600)


def test_secrets_at_rest_round_trip_and_rotate(monkeypatch):
    token = crypto.encrypt("whsec_abc")
    assert token != "whsec_abc" and crypto.decrypt(token) == "whsec_abc"
    from shared.config import get_settings

    old = crypto.derive_key(get_settings().secret_key).decode()
    new = Fernet.generate_key().decode()
    rotated = get_settings().model_copy(update={"encryption_key": f"{new},{old}"})
    monkeypatch.setattr(crypto, "get_settings", lambda: rotated)
    assert crypto.decrypt(token) == "whsec_abc"  # the old key still decrypts
    assert crypto.decrypt(crypto.reencrypt(token)) == "whsec_abc"
    only_new = get_settings().model_copy(update={"encryption_key": new})
    monkeypatch.setattr(crypto, "get_settings", lambda: only_new)
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(token)


def test_a_failed_lookup_says_why_in_the_error_the_http_client_shows(monkeypatch):
    """aiohttp shows an OSError's ``strerror`` only ("... ssl:default [<strerror>]"): the
    reason must be there, not in a message-only OSError whose strerror is None."""

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(OSError) as raised:
        resolve("hooks.example.com", 443, STRICT)
    assert raised.value.strerror == "cannot resolve hooks.example.com: Name or service not known"

    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [])
    with pytest.raises(OSError) as raised:
        resolve("hooks.example.com", 443, STRICT)
    assert raised.value.strerror == "hooks.example.com has no address"
