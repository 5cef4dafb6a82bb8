"""Feed the realtime streams: register the ``realtime`` dispatch target (no actor of its own).

Every dispatched event's envelope is added to its tenant's Redis stream after the
dispatch transaction commits (:mod:`shared.realtime.feed`); the ``stream`` process
serves it to inbox clients. Importing :mod:`shared.realtime.access` here also makes
this process's committed writes move the realtime access epochs.
"""

from __future__ import annotations

from shared import dispatch
from shared.realtime import access, feed

dispatch.register_target(feed.TARGET_NAME, feed.target, batch=True)

__all__ = ["access"]
