"""Linux network namespaces standing in for machines: one per "host", joined by veth pairs.

Each namespace gets a veth pair to the root namespace on a /30 of its own inside one
private /24 picked per run (``10.211.<n>.0/24``), and a default route through its
root-side address. The root namespace keeps PostgreSQL, Redis and RabbitMQ on
127.0.0.1, which no other namespace can reach: :mod:`bench.tcp_forward` listens on the
*service address* (the first namespace's root-side address) and relays to them.
Because the root namespace accepts any of its own addresses on any interface, every
namespace reaches the service address through its own default route, so one URL
(a webhook receiver, the broker) is the same for every host.

Needs root (``ip netns``). Everything created is removed by :meth:`Network.close`,
also after a failure half-way: the processes still inside a namespace are SIGKILLed
first (a namespace with a process in it outlives ``ip netns del``).

Example::

    with Network(["api", "host1"]) as net:
        argv = net.exec_argv("host1", ["python", "-m", "workers"])
        net.kill_all("host1")
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass

#: Private /24s are picked among 10.211.0.0/16 (one per run, checked free).
_BLOCK = "10.211"


class NetnsUnavailable(RuntimeError):
    """``ip netns`` cannot be used here (not root, no ``ip``, no namespace support)."""


@dataclass(frozen=True)
class Host:
    """One namespace: its name, its own address and its root-side (gateway) address."""

    role: str
    namespace: str
    address: str
    gateway: str
    root_link: str


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` with the reason when namespaces cannot be made."""
    if shutil.which("ip") is None:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("creating network namespaces needs root (run as root)")
    probe = f"osprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` failed: {made.stderr.strip()}")
    _ip("netns", "del", probe, check=False)


def _used_third_octets() -> set[int]:
    used = set()
    out = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    for token in out.split():
        if token.startswith(_BLOCK + "."):
            with contextlib.suppress(ValueError, IndexError):
                used.add(int(token.split(".")[2].split("/")[0]))
    return used


class Network:
    """Namespaces for ``roles`` (e.g. ``["api", "host1", "host2"]``), created on enter."""

    def __init__(self, roles: list[str], run_id: str | None = None) -> None:
        if len(roles) > 60:
            raise ValueError("at most 60 namespaces per network")
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.roles = list(roles)
        self.hosts: dict[str, Host] = {}
        self._created_namespaces: list[str] = []
        self._created_links: list[str] = []
        self.subnet = ""

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Network:
        check_available()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _create(self) -> None:
        free = sorted(set(range(256)) - _used_third_octets())
        if not free:
            raise NetnsUnavailable(f"no free /24 left in {_BLOCK}.0.0/16")
        octet = random.choice(free)
        self.subnet = f"{_BLOCK}.{octet}.0/24"
        for index, role in enumerate(self.roles):
            namespace = f"os{self.run_id}-{role}"
            root_link = f"os{self.run_id}{index}"
            inner_link = f"os{self.run_id}{index}n"
            gateway = f"{_BLOCK}.{octet}.{4 * index + 1}"
            address = f"{_BLOCK}.{octet}.{4 * index + 2}"
            _ip("netns", "add", namespace)
            self._created_namespaces.append(namespace)
            _ip("link", "add", root_link, "type", "veth", "peer", "name", inner_link)
            self._created_links.append(root_link)
            _ip("link", "set", inner_link, "netns", namespace)
            _ip("addr", "add", f"{gateway}/30", "dev", root_link)
            _ip("link", "set", root_link, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", inner_link)
            _ip("-n", namespace, "link", "set", inner_link, "up")
            _ip("-n", namespace, "route", "add", "default", "via", gateway)
            self.hosts[role] = Host(role, namespace, address, gateway, root_link)

    def close(self) -> None:
        """Kill what runs inside, delete the namespaces and root-side links (idempotent)."""
        for namespace in reversed(self._created_namespaces):
            with contextlib.suppress(Exception):
                self._kill_namespace(namespace)
            _ip("netns", "del", namespace, check=False)
        for link in self._created_links:
            # NOTE: deleting the namespace deletes its veth end, and with it this one;
            # only a half-made pair (never moved into a namespace) is still here.
            _ip("link", "del", link, check=False)
        self._created_namespaces.clear()
        self._created_links.clear()

    # --- use ----------------------------------------------------------------------------

    @property
    def service_address(self) -> str:
        """The root-namespace address every namespace reaches (the first link's gateway)."""
        return self.hosts[self.roles[0]].gateway

    def exec_argv(self, role: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``role``'s namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.hosts[role].namespace, *argv]

    def pids(self, role: str) -> list[int]:
        return self._pids(self.hosts[role].namespace)

    def kill_all(self, role: str) -> list[int]:
        """SIGKILL every process of ``role``'s namespace at once: the host dies."""
        return self._kill_namespace(self.hosts[role].namespace)

    @staticmethod
    def _pids(namespace: str) -> list[int]:
        out = _ip("netns", "pids", namespace, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def _kill_namespace(self, namespace: str) -> list[int]:
        killed: list[int] = []
        for _ in range(20):  # a process forking while we kill: go round until none is left
            pids = self._pids(namespace)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.extend(pids)
            time.sleep(0.05)
        return killed

    def contains(self, address: str) -> bool:
        return ipaddress.ip_address(address) in ipaddress.ip_network(self.subnet)
