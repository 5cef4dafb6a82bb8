"""Settings pointed at the test peers for a while, then put back as they were.

WHY: the settings are read from the environment once per process and cached, and the
Graph client and media storage keep what they read. A fixture that only sets variables
leaves them for every later test of the same xdist process, so a test's world depends on
which folders that process ran first (a fake Graph API answering sends for tests that
expected none was one such flake). :func:`environment` sets them, rebuilds the cached
readers, and on the way out restores the previous values and rebuilds them again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (``None``: unset) these variables; the previous values when the block ends."""
    previous = {name: os.environ.get(name) for name in values}
    _apply(values)
    try:
        yield
    finally:
        _apply(previous)


def _apply(values: dict[str, str | None]) -> None:
    from shared.channels.graph import reset_graph_client
    from shared.channels.media_storage import reset_storage
    from shared.config import get_settings

    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()
    reset_graph_client()
    reset_storage()
