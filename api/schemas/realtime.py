"""Request and response shapes of the realtime group (typing indicators)."""

from __future__ import annotations

import uuid

from api.schemas.common import Input
from shared.schemas.base import View


class TypingBody(Input):
    """Whether the caller is typing now (``false`` when they stop or send)."""

    typing: bool = True


class TypingView(View):
    conversation_id: uuid.UUID
    user_id: uuid.UUID | None
    typing: bool
