"""A copied database (what a benchmark run on a kept database measures) is the source's
data, apart from it.

NOTE: no test of a source with a session open: PostgreSQL waits 5 s for the session to
leave before it refuses (``ObjectInUse``), which is its behaviour, not ours, at 5 s of the
suite's budget.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from shared import migrate
from tests.migrations.test_up_down_up import scratch_url  # noqa: F401 (fixture)


def _copy_url(source_url: str) -> str:
    name = f"{make_url(source_url).database}_copy"
    return make_url(source_url).set(database=name).render_as_string(hide_password=False)


def _rows(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(text("SELECT x FROM numbers ORDER BY x")))
    finally:
        engine.dispose()


def test_a_copy_holds_the_sources_rows_and_its_writes_stay_in_it(scratch_url):  # noqa: F811
    engine = create_engine(scratch_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE numbers (x int)"))
        conn.execute(text("INSERT INTO numbers VALUES (1), (2)"))
    engine.dispose()
    copy_url = _copy_url(scratch_url)
    migrate.drop_database(copy_url)
    try:
        migrate.copy_database(scratch_url, copy_url)
        copied = create_engine(copy_url)
        with copied.begin() as conn:
            conn.execute(text("INSERT INTO numbers VALUES (3)"))
        copied.dispose()
        assert _rows(copy_url) == [1, 2, 3]
        assert _rows(scratch_url) == [1, 2]
    finally:
        migrate.drop_database(copy_url)
