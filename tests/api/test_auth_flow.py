"""The life of a workspace through HTTP: register, log in, work, lock down, log out."""

from __future__ import annotations

import uuid

from tests.workspaces import PASSWORD, register


def test_register_login_me_agents_keys_logout(client):
    ws = register(client, organization_name="Acme Flow", timezone="Europe/Madrid")
    assert ws.tenant["slug"].startswith("acme-flow")
    assert ws.tenant["timezone"] == "Europe/Madrid"
    assert ws.admin["role"]["name"] == "admin"

    login = client.simulate_post(
        "/api/auth/login", json={"email": ws.admin["email"].upper(), "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    assert login.json["token_type"] == "bearer"
    cookie = login.cookies["session"]
    assert cookie.http_only and cookie.secure and cookie.same_site.lower() == "lax"
    token = login.json["access_token"]

    me = ws.call("GET", "/api/auth/me", token=token)
    assert me.status_code == 200
    assert me.json["id"] == ws.admin["id"]
    assert me.json["tenant"]["id"] == ws.tenant["id"]
    assert "agents.manage" in me.json["permissions"]

    agent, agent_token = ws.create_agent(role="agent", full_name="Alan Agent")
    listing = ws.call("GET", "/api/agents", token=token)
    assert {a["id"] for a in listing.json["items"]} == {ws.admin["id"], agent["id"]}

    forbidden = ws.call(
        "POST",
        "/api/agents",
        token=agent_token,
        json={"email": "x@example.com", "full_name": "X", "role": "agent"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json["error"]["code"] == "forbidden"

    other = register(client)
    foreign = ws.call("GET", f"/api/agents/{other.admin['id']}", token=token)
    assert foreign.status_code == 404
    assert foreign.json["error"]["code"] == "not_found"

    created = ws.call("POST", "/api/api-keys", token=token, json={"name": "CI"})
    assert created.status_code == 201
    key = created.json["key"]
    assert key.startswith("osk_") and created.json["prefix"] == key[:12]
    via_key = client.simulate_get("/api/agents", headers={"X-API-Key": key})
    assert via_key.status_code == 200
    assert len(via_key.json["items"]) == 2
    keys = ws.call("GET", "/api/api-keys", token=token).json["items"]
    assert [k["id"] for k in keys] == [created.json["id"]]
    assert "key" not in keys[0] and keys[0]["last_used_at"] is not None

    assert ws.call("DELETE", f"/api/api-keys/{created.json['id']}", token=token).status_code == 204
    revoked = client.simulate_get("/api/agents", headers={"X-API-Key": key})
    assert revoked.status_code == 401

    logout = ws.call("POST", "/api/auth/logout", token=token)
    assert logout.status_code == 204
    assert "session" in logout.cookies and logout.cookies["session"].value == ""
    refused = ws.call("GET", "/api/auth/me", token=token)
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "unauthenticated"
    # Other sessions of the same user stay valid.
    assert ws.call("GET", "/api/auth/me").status_code == 200


def test_cookie_session_and_refresh(client):
    ws = register(client)
    login = client.simulate_post(
        "/api/auth/login", json={"email": ws.admin["email"], "password": PASSWORD}
    )
    cookie = login.cookies["session"].value
    me = client.simulate_get("/api/auth/me", cookies={"session": cookie})
    assert me.status_code == 200
    fresh = client.simulate_get("/api/auth/refresh", cookies={"session": cookie})
    assert fresh.status_code == 200
    assert fresh.json["access_token"] != cookie
    assert fresh.cookies["session"].value == fresh.json["access_token"]
    assert ws.call("GET", "/api/auth/me", token=fresh.json["access_token"]).status_code == 200


def test_login_failures_are_uniform_and_rate_limited(client):
    ws = register(client)
    wrong = client.simulate_post(
        "/api/auth/login", json={"email": ws.admin["email"], "password": "wrong password!"}
    )
    unknown = client.simulate_post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "wrong password!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["error"]["message"] == unknown.json["error"]["message"]
    for _ in range(12):
        last = client.simulate_post(
            "/api/auth/login", json={"email": ws.admin["email"], "password": "wrong password!"}
        )
    assert last.status_code == 429
    assert last.headers["retry-after"] == "60"
    assert last.json["error"]["code"] == "rate_limited"


def test_same_email_in_two_workspaces_needs_the_slug(client):
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    first = register(client, email=email)
    second = register(client, email=email)
    ambiguous = client.simulate_post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert ambiguous.status_code == 422
    assert ambiguous.json["error"]["details"][0]["field"] == "tenant"
    chosen = client.simulate_post(
        "/api/auth/login",
        json={"email": email, "password": PASSWORD, "tenant": second.tenant["slug"]},
    )
    assert chosen.status_code == 200
    assert chosen.json["user"]["id"] == second.admin["id"] != first.admin["id"]


def test_an_email_in_several_workspaces_is_told_nothing_without_its_password(client):
    """A wrong password answers 401 as for an unknown email, not 'say which workspace'
    (which confirmed the email without the password); a password that opens one of the
    workspaces logs into that one."""
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    register(client, email=email)
    second = register(client, email=email, password="the second one's passphrase")

    def login(password):
        return client.simulate_post("/api/auth/login", json={"email": email, "password": password})

    wrong = login("wrong password!")
    unknown = client.simulate_post(
        "/api/auth/login", json={"email": f"x{email}", "password": "wrong password!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    only_second = login("the second one's passphrase")
    assert only_second.status_code == 200, only_second.text
    assert only_second.json["user"]["id"] == second.admin["id"]


def test_bad_credentials_are_401(client):
    cases = [
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"X-API-Key": "osk_unknown"},
        {},
    ]
    for headers in cases:
        resp = client.simulate_get("/api/agents", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json["error"]["code"] == "unauthenticated"


def test_password_change_logs_out_other_sessions(client):
    ws = register(client)
    agent, agent_token = ws.create_agent()
    changed = ws.call(
        "PATCH",
        f"/api/agents/{agent['id']}",
        token=agent_token,
        json={"password": "a brand new password", "current_password": PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    assert ws.call("GET", "/api/auth/me", token=agent_token).status_code == 401
    relogin = client.simulate_post(
        "/api/auth/login", json={"email": agent["email"], "password": "a brand new password"}
    )
    assert relogin.status_code == 200


def test_register_refuses_bad_input_and_taken_slug(client):
    bad = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "",
            "full_name": "X",
            "email": "not-an-email",
            "password": "short",
            "timezone": "Mars/Olympus",
            "colour": "red",
        },
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json["error"]["details"]}
    assert fields == {"organization_name", "email", "password", "timezone", "colour"}
    slug = f"taken-{uuid.uuid4().hex[:6]}"
    register(client, slug=slug)
    again = client.simulate_post(
        "/api/auth/register",
        json={
            "organization_name": "Other",
            "full_name": "X",
            "email": "x@example.com",
            "password": PASSWORD,
            "slug": slug,
        },
    )
    assert again.status_code == 409


def test_password_hashes_carry_their_cost_so_a_changed_setting_breaks_no_login(client, monkeypatch):
    from argon2 import extract_parameters

    from shared.config import Settings, get_settings

    # Production gets RFC 9106's argon2id; only the suite lowers it (tests/conftest.py).
    for name in ("TIME_COST", "MEMORY_KIB", "PARALLELISM"):
        monkeypatch.delenv(f"PASSWORD_HASH_{name}")
    defaults = Settings()
    assert (defaults.password_hash_time_cost, defaults.password_hash_memory_kib) == (3, 65_536)
    monkeypatch.undo()

    email = f"cost-{uuid.uuid4().hex[:8]}@example.com"
    register(client, email=email)  # hashed at the suite's cost
    try:
        monkeypatch.setenv("PASSWORD_HASH_TIME_COST", "2")
        monkeypatch.setenv("PASSWORD_HASH_MEMORY_KIB", "128")
        get_settings.cache_clear()
        login = client.simulate_post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        wrong = client.simulate_post("/api/auth/login", json={"email": email, "password": "nope"})
        assert wrong.status_code == 401

        from shared.identity.security import hash_password

        made = extract_parameters(hash_password("another secret"))
        assert (made.time_cost, made.memory_cost) == (2, 128)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_long_organization_name_gets_a_slug_login_accepts(client):
    """A name cut at 48 characters right after a word made a slug ending in '-', which
    the login's ``tenant`` field (a slug never ends in '-') refused with 422."""
    email = f"long-{uuid.uuid4().hex[:8]}@example.com"
    name = "a" * 47 + f" Corp {uuid.uuid4().hex[:6]}"
    ws = register(client, email=email, organization_name=name)
    register(client, email=email)  # the email is in two workspaces: the slug is needed
    slug = ws.tenant["slug"]
    assert not slug.endswith("-"), slug
    login = client.simulate_post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "tenant": slug}
    )
    assert login.status_code == 200, login.text
    assert login.json["user"]["id"] == ws.admin["id"]


def test_a_workspace_whose_slug_was_made_ending_in_a_dash_can_still_be_named(client):
    """Workspaces registered before the slug fix kept a slug ending in '-': the login's
    ``tenant`` field names existing slugs, so it accepts theirs too."""
    from sqlalchemy import update

    from shared.db import session_scope
    from shared.models import Tenant

    email = f"legacy-{uuid.uuid4().hex[:8]}@example.com"
    ws = register(client, email=email)
    register(client, email=email)
    legacy = f"legacy-{uuid.uuid4().hex[:8]}-"
    with session_scope() as session:
        session.execute(
            update(Tenant).where(Tenant.id == uuid.UUID(ws.tenant["id"])).values(slug=legacy)
        )
    login = client.simulate_post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "tenant": legacy}
    )
    assert login.status_code == 200, login.text
    assert login.json["user"]["id"] == ws.admin["id"]


def test_the_scheduler_forgets_revocations_of_tokens_expired_anyway(client):
    """A logout keeps its token's revocation until the token would have expired; then the
    scheduler's job deletes it, so ``revoked_tokens`` does not grow with every logout."""
    from sqlalchemy import func, select, update

    from scheduler.jobs import JOBS
    from shared.db import session_scope
    from shared.models import RevokedToken

    ws = register(client)
    (gone, gone_token), (kept, kept_token) = ws.create_agent(), ws.create_agent()
    for token in (gone_token, kept_token):
        assert ws.call("POST", "/api/auth/logout", token=token).status_code == 204
    with session_scope() as session:
        session.execute(
            update(RevokedToken)
            .where(RevokedToken.user_id == uuid.UUID(gone["id"]))
            .values(expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
        )
    purge = next(job.func for job in JOBS if job.name == "purge_expired_revocations")
    with session_scope() as session:
        assert purge(session) >= 1
    with session_scope() as session:
        left = session.scalars(
            select(RevokedToken.user_id).where(
                RevokedToken.user_id.in_([uuid.UUID(gone["id"]), uuid.UUID(kept["id"])])
            )
        ).all()
    assert left == [uuid.UUID(kept["id"])]
    assert ws.call("GET", "/api/auth/me", token=kept_token).status_code == 401
