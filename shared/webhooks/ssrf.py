"""The SSRF guard: which URLs an endpoint may have and which addresses we may connect to.

A URL is checked twice. When an endpoint is saved, :func:`check_url` refuses bad
schemes, credentials in the URL, hosts that are not written in one unambiguous
form (:func:`canonical_host`) and IP literals or names that are internal. At
send time the host is resolved again and *every* address vetted by
:func:`vet_address` (see :mod:`shared.webhooks.transport`), because DNS may have
changed since (DNS rebinding): only a vetted address is ever connected to.

``WEBHOOK_SSRF_ALLOWLIST`` (CIDRs or host names) lets development and tests reach
loopback; production leaves it empty.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from shared.config import Settings, get_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges refused on top of what ``ipaddress`` calls non-global: CGNAT, cloud metadata,
#: NAT64 and 6to4 (which can embed any IPv4 address), benchmarking and documentation,
#: IPv6 site-local (deprecated but still routed inside some networks) and the newer IPv6
#: documentation range, both of which ``ipaddress`` calls global.
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "3fff::/20",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
#: Names that always mean "inside": refused at save time without a DNS lookup.
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
INTERNAL_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal"})


#: A DNS label as HTTP clients accept it (letters, digits, hyphen; underscore tolerated).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
#: A last label that makes a host an IPv4 address to URL parsers (WHATWG "ends in a number").
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


class UnsafeUrl(ValueError):
    """The URL or one of its addresses may not be reached; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What the guard allows: http or not, and the allowlisted networks and hosts."""

    allow_http: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Policy:
        settings = settings or get_settings()
        networks, hosts = [], set()
        for item in (p.strip() for p in settings.webhook_ssrf_allowlist.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(settings.webhook_allow_http, tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


def _canonical(address: IPAddress) -> IPAddress:
    # APPSEC: ::ffff:127.0.0.1 is 127.0.0.1 to the kernel; vet the IPv4 inside.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_host(host: str) -> str:
    """Return ``host`` (lower-cased, ASCII, no trailing dot) if it has one reading, else raise.

    APPSEC: ``0177.0.0.1``, ``127.1``, ``0x7f.1`` and ``2130706433`` all mean 127.0.0.1
    to ``inet_aton`` and so to ``getaddrinfo``, while URL parsers refuse some of them
    and a literal check that knows only dotted quads takes them for names. A host
    that ends in a number must therefore be a dotted-quad IPv4 address; an IPv6
    literal must parse; a name must be a valid (IDNA) DNS name. Both the save-time
    check and every send-time resolution apply this same rule.
    """
    name = host.strip("[]").rstrip(".").lower()
    if ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError as exc:
            raise UnsafeUrl(f"host {host} is not a valid IPv6 address") from exc
        return name
    ascii_name = _mapped(host, name)
    labels = ascii_name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            ipaddress.IPv4Address(ascii_name)
        except ValueError:
            raise UnsafeUrl(_odd_ipv4(host, ascii_name)) from None
        return ascii_name
    valid = len(ascii_name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    if valid and any(label.startswith("xn--") for label in labels):
        try:
            idna.decode(ascii_name)
        except idna.IDNAError:
            valid = False
    if not valid:
        raise UnsafeUrl(f"host {host} is not a valid host name")
    return ascii_name


def _mapped(host: str, name: str) -> str:
    """``name`` as HTTP clients connect to it: a non-ASCII one through IDNA (UTS 46) mapping.

    APPSEC: the mapping turns 127.0.0.1 in fullwidth digits and dots into the IPv4 address
    and a fullwidth ``localhost`` into ``localhost``: every rule applies to this form.
    """
    if name.isascii():
        return name
    try:
        return idna.encode(name, uts46=True).decode().rstrip(".")
    except idna.IDNAError as exc:
        raise UnsafeUrl(f"host {host} is not a valid host name ({exc})") from exc


def _odd_ipv4(host: str, name: str) -> str:
    try:
        means = socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        return f"host {host} is not a valid IPv4 address"
    return f"host {host} is an IPv4 address in a non-standard form; write it as {means}"


def vet_address(address: str | IPAddress, policy: Policy) -> IPAddress:
    """Return ``address`` if we may connect to it, else raise :class:`UnsafeUrl`."""
    ip = _canonical(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if any(ip in network for network in policy.networks):
        return ip
    if (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in network for network in BLOCKED_NETWORKS)
    ):
        raise UnsafeUrl(f"address {ip} is not a public address")
    return ip


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_url(url: str, policy: Policy) -> str:
    """Validate an endpoint URL when it is saved; return it or raise :class:`UnsafeUrl`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("the URL must start with https://")
    if parts.scheme == "http" and not policy.allow_http:
        raise UnsafeUrl("the URL must use https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("credentials in the URL are not allowed; verify the signature instead")
    if port == 0:
        raise UnsafeUrl("port 0 is not a valid port")
    if not (parts.hostname or "").rstrip("."):
        raise UnsafeUrl("the URL has no host")
    host = canonical_host(parts.hostname)
    if policy.allows_host(host):
        return url
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        vet_address(literal, policy)
        return url
    lowered = host.lower()
    if lowered in INTERNAL_NAMES or lowered.endswith(INTERNAL_SUFFIXES) or "." not in lowered:
        raise UnsafeUrl(f"host {host} is an internal name")
    return url


def resolve(host: str, port: int, policy: Policy) -> list[tuple[int, tuple]]:
    """Resolve ``host`` and vet every address; return ``(family, sockaddr)`` pairs to try.

    APPSEC: one unsafe address refuses the whole host: a name that resolves to both
    a public and a private address is exactly what a rebinding attack looks like.
    The refusal names the host, never the address: the tenant reads it, and an
    address would make any name they choose a probe of our internal DNS.
    """
    canonical_host(host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        # NOTE: with an errno, so the reason is the OSError's strerror: the HTTP client's
        # connection error shows only that ("... ssl:default [None]" without it).
        raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host}: {exc.strerror}") from exc
    allowed_by_name = policy.allows_host(host)
    vetted = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if not allowed_by_name:
            try:
                vet_address(sockaddr[0].split("%", 1)[0], policy)
            except UnsafeUrl:
                if _is_literal(host):
                    raise  # the caller wrote this address: naming it tells nothing
                raise UnsafeUrl(f"host {host} resolves to an address that is not public") from None
        vetted.append((family, sockaddr))
    if not vetted:
        raise OSError(errno.EHOSTUNREACH, f"{host} has no address")
    return vetted
