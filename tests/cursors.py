"""Cursors a client crafts: the JSON our cursors carry, with values we never write."""

from __future__ import annotations

import base64


def crafted(raw_json: str) -> str:
    """``raw_json`` encoded as our cursors are (URL-safe base64, no padding)."""
    return base64.urlsafe_b64encode(raw_json.encode()).decode().rstrip("=")
