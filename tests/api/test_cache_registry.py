"""Every process that opens sessions publishes the writes of every epoch cache.

Why: a cache learns of another process's write only if the *writing* process knows the
cache watches that table (shared.committed_writes). A process that never imported the
cache's module (a scheduler job suspending a tenant, say) would commit silently, and
every other process would serve the old value until the entry's TTL ran out.
"""

from __future__ import annotations

import json
import subprocess
import sys

_LIST_CACHES = """
import json, sys
from shared import epoch_cache
{prelude}
print(json.dumps(sorted((c.name, sorted(c.tables)) for c in epoch_cache._caches)))
"""

_EVERY_MODULE = """
import importlib, pkgutil, shared
for info in pkgutil.walk_packages(shared.__path__, "shared."):
    if ".migrations" not in info.name:
        importlib.import_module(info.name)
"""


def _caches(prelude: str) -> list:
    out = subprocess.run(
        [sys.executable, "-c", _LIST_CACHES.format(prelude=prelude)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_sessionmaker_registers_every_epoch_cache_in_shared():
    every = _caches(_EVERY_MODULE)
    assert every, "no epoch cache found: the walk is broken"
    registered = _caches("from shared.db import get_sessionmaker\nget_sessionmaker()")
    assert registered == every
