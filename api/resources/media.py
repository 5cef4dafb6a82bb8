"""Media: multipart uploads (local disk or S3), and the download / provider proxy."""

from __future__ import annotations

import falcon

from api.endpoint import Plain, endpoint
from api.request_parts import multipart_form
from api.schemas.media import MediaView, S3MediaView
from shared.channels import media
from shared.channels.media_sniff import well_formed
from shared.config import get_settings
from shared.errors import ValidationFailed

TAGS = ("Media",)
#: Types a browser may render inline; everything else downloads (no stored XSS).
#: APPSEC: raster images only: an SVG is a document whose scripts run on the API's origin,
#: and an inbound file keeps the type its sender declared when its bytes tell nothing.
_INLINE = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/",
    "audio/",
    "application/pdf",
)
#: A download that is opened anyway (a browser's "open", a type it sniffs) runs nothing.
_DOWNLOAD_CSP = "default-src 'none'; sandbox"


def _file_part(req: falcon.Request):
    """The multipart ``file`` part, positioned at its content (nothing buffered)."""
    refusal = "Send the file as multipart/form-data in a field named 'file'"
    for part in multipart_form(req, refusal):
        if part.name == "file":
            return part
    raise ValidationFailed.field("file", "required (a multipart field named 'file')")


class _Uploads:
    @property
    def max_body_bytes(self) -> int:
        # NOTE: the multipart envelope adds a little to the file itself.
        return get_settings().media_max_bytes + 64 * 1024

    @staticmethod
    def save(req: falcon.Request, ctx, *, s3: bool):
        part = _file_part(req)
        return media.save_upload(
            req.context.db,
            ctx,
            part.stream,
            filename=part.filename,
            declared_type=part.content_type,
            s3=s3,
        )


class MediaUploadResource(_Uploads):
    @endpoint(
        "Upload a media file",
        response=MediaView,
        status=201,
        accepts=("multipart/form-data",),
        errors=(402, 503),
        description=(
            "multipart/form-data with the file in the field `file` (max `MEDIA_MAX_BYTES`,"
            " 100 MB by default: 413), with a Content-Length (411 without). The type is"
            " sniffed from the bytes: one outside `MEDIA_ALLOWED_TYPES` answers 415, one"
            " contradicting the part's declared type 422. Stored on local disk, or in S3 when"
            " `S3_MEDIA_STORAGE` is on."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx):
        return Plain(media.view(self.save(req, ctx, s3=False)))


class MediaS3Resource(_Uploads):
    @endpoint(
        "Upload a file to S3/MinIO",
        response=S3MediaView,
        status=201,
        accepts=("multipart/form-data",),
        errors=(402, 409, 503),
        description=(
            "Like `POST /api/media`, but always stored in the configured S3-compatible bucket;"
            " answers the object key and a presigned GET URL valid `S3_PRESIGN_SECONDS`."
            " 409 `s3_not_configured` when no bucket is set."
        ),
        tags=TAGS,
    )
    def on_post(self, req, resp, *, ctx):
        return Plain(media.presigned(self.save(req, ctx, s3=True)))


class MediaFileResource:
    @endpoint(
        "Download or proxy a media file",
        produces="*/*",
        errors=(503,),
        description=(
            "Streams the stored bytes. Inbound media not fetched yet is fetched from the"
            " provider with the account's token first (once, even for concurrent requests)."
        ),
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id):
        row, chunks = media.open_media(req.context.db, ctx, id)
        mime = well_formed(row.mime_type) or "application/octet-stream"
        resp.content_type = mime
        resp.stream = chunks
        if row.size is not None:
            resp.content_length = row.size
        if row.sha256:
            resp.etag = row.sha256
        resp.cache_control = ["private", "max-age=3600"]
        resp.set_header("X-Content-Type-Options", "nosniff")
        disposition = "inline" if mime.lower().startswith(_INLINE) else "attachment"
        if disposition == "attachment":
            resp.set_header("Content-Security-Policy", _DOWNLOAD_CSP)
        filename = media.clean_filename(row.filename) or str(row.id)
        resp.set_header("Content-Disposition", f'{disposition}; filename="{filename}"')


ROUTES = [
    ("/api/media", MediaUploadResource()),
    ("/api/media/s3", MediaS3Resource()),
    ("/api/media/{id:uuid}", MediaFileResource()),
]
