"""Entry point for ``dramatiq workers.main``: the broker, every actor, the outbox publisher.

Every module of :mod:`workers.actors` is imported, so a new job family is one new
module and no edit here.
"""

import importlib
import pkgutil

from workers import actors, publisher
from workers.broker import broker

for _module in sorted(pkgutil.iter_modules(actors.__path__), key=lambda m: m.name):
    importlib.import_module(f"{actors.__name__}.{_module.name}")

publisher.install()

__all__ = ["broker"]
