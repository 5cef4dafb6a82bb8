"""What every application connection is started with (engine's startup options)."""

from sqlalchemy import text

from shared.db import session_scope


def test_application_sessions_read_utc_and_never_jit_compile():
    with session_scope() as session:
        assert session.scalar(text("SHOW TimeZone")) == "UTC"
        # A short OLTP statement whose estimate went wrong must not pay for compilation.
        assert session.scalar(text("SHOW jit")) == "off"
