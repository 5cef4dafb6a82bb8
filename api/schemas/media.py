"""Media: the upload answer and the S3 upload answer."""

from __future__ import annotations

import datetime as dt
import uuid

from shared.schemas.base import View


class MediaView(View):
    id: uuid.UUID
    #: Where to download it through the API (authenticated).
    url: str
    mime_type: str | None
    size: int | None
    filename: str | None


class S3MediaView(MediaView):
    #: The object key in the configured bucket.
    key: str
    #: A time-limited GET URL signed for the bucket (no API credentials needed).
    presigned_url: str
    expires_at: dt.datetime
