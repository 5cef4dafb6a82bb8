"""An inbound email's HTML, made safe to render before it is stored.

The HTML is the sender's, and a sender may be hostile: scripts, event handlers,
``javascript:`` links, forms asking for a password, frames, and remote images (a tracking
pixel tells the sender when and from where an agent opened the email). What is kept on
the message (``metadata.html``) is cleaned once, at ingest, with nh3 (the ammonia
allowlist cleaner): text formatting, lists, tables and links stay, links open without a
referrer, and an image stays only when showing it makes no request (an inline part,
``cid:``, or a ``data:`` image). The plain-text body is not touched.
"""

from __future__ import annotations

import nh3

#: Schemes a link may use; anything else (``javascript:``, ``data:``, ``file:``) is dropped.
LINK_SCHEMES = ("http:", "https:", "mailto:")
#: Sources an image may have: the email's own parts, or bytes in the attribute (raster
#: formats only: an SVG image can carry scripts).
IMAGE_SOURCES = tuple(["cid:"] + [f"data:image/{kind};" for kind in ("png", "gif", "jpeg", "webp")])
#: What the cleaner lets through at all (then narrowed per attribute by _keep).
_SCHEMES = {"http", "https", "mailto", "cid", "data"}


def clean(html: str) -> str:
    """``html`` with only what renders safely (see the module's docstring)."""
    return nh3.clean(html, url_schemes=_SCHEMES, attribute_filter=_keep)


def _keep(tag: str, attribute: str, value: str) -> str | None:
    """The attribute's value if it may stay; ``None`` drops the attribute."""
    lowered = value.strip().lower()
    if attribute == "src":
        return value if tag == "img" and lowered.startswith(IMAGE_SOURCES) else None
    if attribute in ("href", "cite", "longdesc", "action"):
        return value if lowered.startswith(LINK_SCHEMES) else None
    return value
