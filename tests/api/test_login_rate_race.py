"""Failed logins are limited even when the guesses arrive all at once."""

from __future__ import annotations

import threading
import uuid

from argon2 import PasswordHasher
from sqlalchemy import update

from shared.config import get_settings
from shared.db import session_scope
from shared.errors import RateLimited, Unauthenticated
from shared.identity import auth
from shared.models import User
from tests.workspaces import register


def test_parallel_wrong_passwords_get_no_more_guesses_than_the_limit(client):
    ws = register(client)
    # A hash at a production-like cost: each check takes long enough for every guess
    # to arrive while the first ones are still being checked (a parallel burst).
    slow = PasswordHasher(time_cost=3, memory_cost=32 * 1024, parallelism=1).hash("not it at all")
    with session_scope() as session:
        session.execute(
            update(User).where(User.id == uuid.UUID(ws.admin["id"])).values(password_hash=slow)
        )
    limit = get_settings().login_rate_limit_per_minute
    guesses = limit * 3
    start = threading.Barrier(guesses)
    answers: list[str] = []

    def guess(n: int) -> None:
        start.wait()
        try:
            with session_scope() as session:
                auth.login(session, email=ws.admin["email"], password=f"try {n}", ip="203.0.113.9")
        except Unauthenticated:
            answers.append("checked")
        except RateLimited:
            answers.append("limited")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == guesses
    assert answers.count("checked") <= limit, answers
