"""Attachment checks: the type is sniffed from the file's first bytes, never trusted
from its name or the browser's content type."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile


class AttachmentRefused(ValueError):
    pass


ALLOWED = "a photo (JPEG, PNG, WebP, HEIC) or a PDF"


def sniff(head: bytes) -> str:
    """The content type the bytes really are, or '' when it is not one we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in {b"heic", b"heix", b"mif1", b"heim", b"heis"}:
        return "image/heic"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return ""


def max_bytes() -> int:
    return int(settings.SUBMETER["DISPUTE_ATTACHMENT_MAX_BYTES"])


def attachment_check(upload: UploadedFile) -> str:
    """The sniffed content type of an acceptable upload; raises AttachmentRefused."""
    name = upload.name or "file"
    limit = max_bytes()
    if upload.size is None or upload.size > limit:
        raise AttachmentRefused(f"{name} is larger than {limit // (1024 * 1024)} MB.")
    if upload.size == 0:
        raise AttachmentRefused(f"{name} is empty.")
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    kind = sniff(head)
    if not kind:
        raise AttachmentRefused(f"{name} is not {ALLOWED}.")
    return kind
