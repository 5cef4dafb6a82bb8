"""Entry point for ``dramatiq workers.main``: the broker, every actor, the outbox publisher."""

from workers import publisher
from workers.actors import events  # noqa: F401
from workers.broker import broker

publisher.install()

__all__ = ["broker"]
