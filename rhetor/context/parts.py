"""Non-text parts of stored messages (images): what a context keeps of them, and how they come back.

A stored message keeps its text in `content` and its images in `metadata["parts"]`, one dict per image, in order:
- `{"type": "image", "url": ...}` — an image given by URL (kept as is: a URL is small);
- `{"type": "image", "media_type": ..., "data": <base64>, "bytes": N}` — a base64 image of at most
  `MAX_KEPT_IMAGE_BYTES` decoded bytes, kept whole and re-sent when the conversation is continued;
- `{"type": "image", "media_type": ..., "bytes": N, "ref": "sha256:<hex>"}` — a larger one: a placeholder only (the
  database would grow by the image on every turn that carried it), replayed as a short text note so the model
  still knows an image was there.
Pure functions; knows the normalized types, nothing of storage backends, providers or HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Final

from rhetor.types import Image, Message

MAX_KEPT_IMAGE_BYTES: Final = 256 * 1024  # a base64 image up to this size (decoded) is stored and re-sent
WHERE: Final = "an image stored in the context"  # how a replayed image is named in errors


def _size(data: str) -> int:
    """Decoded size of base64 `data`, without decoding it."""
    stripped = data.rstrip("=")
    return len(stripped) * 3 // 4


def _ref(data: str) -> str:
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raw = data.encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def stored_parts(images: list[Image] | None) -> list[dict[str, Any]]:
    """What a context keeps of `images` (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for image in images or []:
        if image.url is not None:
            out.append({"type": "image", "url": image.url})
            continue
        data = image.data or ""
        size = _size(data)
        media = image.media_type or "image/png"
        if size <= MAX_KEPT_IMAGE_BYTES:
            out.append({"type": "image", "media_type": media, "data": data, "bytes": size})
        else:
            out.append({"type": "image", "media_type": media, "bytes": size, "ref": _ref(data)})
    return out


def parts_metadata(message: Message) -> dict[str, Any]:
    """The metadata a stored copy of `message` carries for its non-text parts ({} when it has none)."""
    parts = stored_parts(message.images)
    return {"parts": parts} if parts else {}


def note(part: dict[str, Any]) -> str:
    """The text a placeholder is replayed as."""
    return (f"[image not kept by Rhetor: {part.get('media_type', 'image')}, {part.get('bytes', 0)} bytes, "
            f"ref {part.get('ref', '?')}]")


def replayed(content: str, metadata: dict[str, Any] | None) -> tuple[str, list[Image] | None]:
    """(text, images) of a stored message: kept images come back as images, placeholders as notes in the text."""
    parts = metadata.get("parts") if metadata else None
    if not isinstance(parts, list) or not parts:
        return content, None
    images: list[Image] = []
    notes: list[str] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != "image":
            continue
        if isinstance(part.get("url"), str):
            images.append(Image(url=part["url"], where=WHERE))
        elif isinstance(part.get("data"), str):
            images.append(Image(data=part["data"], media_type=str(part.get("media_type") or "image/png"), where=WHERE))
        else:
            notes.append(note(part))
    text = "\n".join([content, *notes]) if content and notes else content or "\n".join(notes)
    return text, images or None


def stored_message(role: str, content: str, metadata: dict[str, Any] | None) -> Message:
    """A stored user/assistant message as a model message, its parts replayed."""
    text, images = replayed(content, metadata)
    return Message("user" if role == "user" else "assistant", text, images=images)


__all__ = ["MAX_KEPT_IMAGE_BYTES", "note", "parts_metadata", "replayed", "stored_message", "stored_parts"]
