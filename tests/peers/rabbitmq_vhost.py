"""A RabbitMQ virtual host of a run's own, so parallel runs never see each other's messages.

Why: Dramatiq's RabbitMQ broker has no key prefix like the Redis broker's namespace;
queue names are global within a vhost. Each test process (and each benchmark) makes
a vhost named after its run, grants the URL's user on it, and deletes it (queues and
messages with it) at the end. ``rabbitmqctl`` runs on the broker's machine, as root or
the rabbitmq user (the management plugin is not needed).
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse


def url_with_vhost(url: str, vhost: str) -> str:
    """``url`` pointing at ``vhost`` instead of its own."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(path="/" + urllib.parse.quote(vhost, safe="")).geturl()


def _ctl(*args: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        raise RuntimeError("rabbitmqctl is not installed: cannot make a vhost for this run")
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost(url: str, vhost: str) -> str:
    """Create ``vhost``, let the user of ``url`` use it, and return the URL of it."""
    user = urllib.parse.unquote(urllib.parse.urlsplit(url).username or "guest")
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return url_with_vhost(url, vhost)


def delete_vhost(vhost: str) -> None:
    """Delete ``vhost`` and every queue and message in it."""
    _ctl("delete_vhost", vhost)
