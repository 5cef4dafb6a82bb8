"""A copied database (what a benchmark run on a kept database measures) is the source's
data, apart from it; a source someone is connected to is refused, and nothing is left."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

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


def _exists(url: str) -> bool:
    engine = create_engine(make_url(url).set(database="postgres"))
    try:
        with engine.connect() as conn:
            found = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": make_url(url).database},
            )
            return found is not None
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


def test_a_source_with_a_session_open_is_refused_and_no_copy_is_left(scratch_url):  # noqa: F811
    copy_url = _copy_url(scratch_url)
    migrate.drop_database(copy_url)
    engine = create_engine(scratch_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            with pytest.raises(OperationalError) as refused:
                migrate.copy_database(scratch_url, copy_url)
        assert isinstance(refused.value.orig, psycopg.errors.ObjectInUse)
        assert not _exists(copy_url)
    finally:
        engine.dispose()
        migrate.drop_database(copy_url)
