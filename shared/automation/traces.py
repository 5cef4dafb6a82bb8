"""A run's condition trace, rebuilt on read from what the run stored.

Runs written since migration 0027 keep one character per condition leaf
(:func:`shared.automation.engine.outcomes`) instead of the trace: the trace is the
tracing walk of the run's rule snapshot over its facts and changes, with each leaf's
outcome as stored (:func:`shared.automation.engine.rebuild_trace`). The snapshot is
compiled once per content digest and process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from shared.automation.engine import Compiled, compile_conditions, rebuild_trace

log = logging.getLogger(__name__)

#: Compiled conditions by snapshot digest; cleared when it grows past the bound.
_COMPILED: dict[str, Compiled] = {}
_COMPILED_MAX = 4096
_LOCK = threading.Lock()


def _conditions(digest: str | None, snapshot: dict[str, Any]) -> Compiled:
    compiled = _COMPILED.get(digest) if digest else None
    if compiled is None:
        compiled = compile_conditions(snapshot["conditions"])
        if digest:
            with _LOCK:
                if len(_COMPILED) >= _COMPILED_MAX:
                    _COMPILED.clear()
                _COMPILED[digest] = compiled
    return compiled


def rebuilt_trace(run: Any) -> list[dict[str, Any]]:
    """The trace of ``run`` (an :class:`~shared.models.AutomationRun` with
    ``condition_outcomes``); empty when its snapshot no longer compiles (an attribute
    since removed from the catalogue), as its replay would fail too."""
    try:
        compiled = _conditions(run.snapshot_digest, run.rule_snapshot)
    except (KeyError, TypeError, ValueError):
        log.warning("run %s: its rule snapshot does not compile; no trace", run.id, exc_info=True)
        return []
    changes = {name: (pair[0], pair[1]) for name, pair in (run.changes or {}).items()}
    return rebuild_trace(compiled, run.facts or {}, changes, run.condition_outcomes)
