"""Where media bytes live: local disk (``MEDIA_ROOT``) or any S3-compatible store.

Keys are content-addressed per tenant (``<tenant>/<sha256[:2]>/<sha256>``): the
same file uploaded twice is stored once, and a key never names two contents.
Bytes always arrive through :func:`stage` first, which streams them to a
temporary file while hashing, sniffing and enforcing the size limit, so a
100 MB upload never sits in memory and nothing half-written is ever stored.

Example::

    staged = stage(req.bounded_stream, max_bytes=settings.media_max_bytes)
    key = media_key(tenant_id, staged.sha256)
    storage().put(key, staged.path, staged.mime_type)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from shared.channels.media_sniff import HEAD_BYTES
from shared.config import Settings, get_settings
from shared.errors import Conflict, DomainError

CHUNK = 256 * 1024


class MediaTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class S3NotConfigured(Conflict):
    code = "s3_not_configured"


@dataclass
class Staged:
    """A file received into a temporary path: its size, SHA-256 and first bytes."""

    path: Path
    size: int
    sha256: str
    head: bytes

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def stage(source: IO[bytes], *, max_bytes: int, directory: str | None = None) -> Staged:
    """Copy ``source`` to a temporary file, refusing more than ``max_bytes`` (413)."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, name = tempfile.mkstemp(prefix="media-", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as sink:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise MediaTooLarge(f"Files are limited to {max_bytes} bytes")
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                digest.update(chunk)
                sink.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path, size, digest.hexdigest(), head)


def media_key(tenant_id: uuid.UUID, sha256: str) -> str:
    return f"{tenant_id}/{sha256[:2]}/{sha256}"


class Storage(Protocol):
    backend: str

    def put(self, key: str, path: Path, mime_type: str) -> None: ...

    def open(self, key: str) -> Iterator[bytes]: ...

    def open_file(self, key: str) -> IO[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under ``root``; writes go to a temporary name first, then rename (atomic)."""

    backend = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:  # APPSEC: keys are ours, but never trust a path
            raise ValueError(f"media key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, path: Path, mime_type: str) -> None:
        target = self._path(key)
        if target.exists():
            return  # content-addressed: the same bytes are already there
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)

    def open(self, key: str) -> Iterator[bytes]:
        """Opened now (a missing file raises here, before any byte is sent), read lazily."""
        return _chunks(self._path(key).open("rb"))

    def open_file(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        """Remove the file; one already gone is no error."""
        self._path(key).unlink(missing_ok=True)


class S3Storage:
    """An S3-compatible bucket via boto3 (multipart uploads for large files)."""

    backend = "s3"

    def __init__(self, settings: Settings):
        import boto3  # imported lazily: deployments without S3 never load botocore
        from botocore.config import Config

        if not settings.s3_bucket:
            raise S3NotConfigured("S3 is not configured: set S3_BUCKET (and S3_ENDPOINT_URL)")
        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def put(self, key: str, path: Path, mime_type: str) -> None:
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": mime_type})

    def open(self, key: str) -> Iterator[bytes]:
        return _chunks(self.open_file(key))

    def open_file(self, key: str) -> IO[bytes]:
        """A readable stream of the object (close it when done)."""
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the object (S3 answers success for a missing key too)."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def presigned_url(self, key: str, *, expires: int, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := handle.read(CHUNK):
            yield chunk
    finally:
        handle.close()


@functools.cache
def s3_storage() -> S3Storage:
    """The configured bucket (409 ``s3_not_configured`` without ``S3_BUCKET``)."""
    return S3Storage(get_settings())


@functools.cache
def local_storage() -> LocalStorage:
    return LocalStorage(get_settings().media_root)


def storage() -> Storage:
    """The backend new media goes to: S3 when ``S3_MEDIA_STORAGE`` is on, else local disk."""
    return s3_storage() if get_settings().s3_media_storage else local_storage()


def storage_for(backend: str) -> Storage:
    """The backend a stored row names (rows keep working after the default changes)."""
    return s3_storage() if backend == "s3" else local_storage()


def reset_storage() -> None:
    """Forget the cached backends (tests that change the settings)."""
    s3_storage.cache_clear()
    local_storage.cache_clear()
