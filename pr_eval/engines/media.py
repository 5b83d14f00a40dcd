"""How the OpenAI engine sends images: lossless data URLs, each image encoded once.

Images travel as BMP to vLLM servers and as PNG to others (`FORMATS`; the server decodes the
exact pixels either way); a video as vLLM's frame-list data URL (`data:video/jpeg;base64,<f1>,
<f2>,...`, see pr_eval.engines.openai). `EncodedImages` keeps each image's encoding while the image
lives, so a conversation sent again on every turn costs its images' encoding once.
"""

from __future__ import annotations

import base64
import io
import threading
import weakref
from typing import Sequence

from PIL import Image

from .base import GenerationRequest


# How images travel. "bmp" (to vLLM servers): uncompressed, lossless, about 100x quicker to write
# than PNG (a 2240x1568 photo: ~5 ms against ~500 ms for PNG at compress level 1) and as quick to
# read; ~1.3x (noisy photos) to ~2x (clean ones) the bytes of PNG, which loopback and a LAN carry in
# milliseconds. "png" (compress level 1): for servers that take only the common formats (OpenAI's).
# Either way the server decodes the exact pixels (PIL reads both, whatever the data URL's label).
FORMATS = {"bmp": ("image/bmp", "BMP", {}), "png": ("image/png", "PNG", {"compress_level": 1})}


def encode_base64(image: Image.Image, fmt: str = "png") -> str:
    """The image's bytes in `fmt`, base64 (modes BMP cannot hold losslessly go as PNG)."""
    _mime, name, options = FORMATS[fmt if image.mode in ("RGB", "L") else "png"]
    buffer = io.BytesIO()
    image.save(buffer, format=name, **options)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mime_of(image: Image.Image, fmt: str) -> str:
    return FORMATS[fmt if image.mode in ("RGB", "L") else "png"][0]


class EncodedImages:
    """Each image's base64 encoding (in `fmt`), made once while the image lives.

    A trajectory's conversation goes to the server whole on every turn, so without this each
    image would be encoded again on every later turn (a 4-turn trajectory encodes its input four
    times). Images are keyed by identity (a trajectory's pixels are never changed in place) and
    an entry goes when its image is garbage-collected (a finished trajectory drops its pixels),
    so the cache holds only the images of open trajectories. Thread-safe."""

    def __init__(self, fmt: str = "png"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown image transport {fmt!r}; choose from: {', '.join(FORMATS)}")
        self.fmt = fmt
        self._entries: dict[int, tuple[weakref.ref, str]] = {}
        self._lock = threading.Lock()
        self.encoded = 0  # images encoded (tests and benchmarks read it)

    def base64(self, image: Image.Image) -> str:
        key = id(image)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0]() is image:
            return entry[1]
        data = encode_base64(image, self.fmt)
        ref = weakref.ref(image, lambda dead, key=key: self._forget(key, dead))
        with self._lock:
            self._entries[key] = (ref, data)
            self.encoded += 1
        return data

    def _forget(self, key: int, dead: weakref.ref) -> None:
        with self._lock:
            if key in self._entries and self._entries[key][0] is dead:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def image_data_url(image: Image.Image, cache: EncodedImages | None = None, fmt: str = "png") -> str:
    """A lossless data URL of the image (in the cache's format, or `fmt`)."""
    fmt = cache.fmt if cache is not None else fmt
    data = cache.base64(image) if cache is not None else encode_base64(image, fmt)
    return f"data:{mime_of(image, fmt)};base64,{data}"


def video_data_url(frames: Sequence[Image.Image], cache: EncodedImages | None = None, fmt: str = "png") -> str:
    """Already-extracted frames as vLLM's frame-list data URL (see pr_eval.engines.openai): the
    server reads each frame with PIL, whatever its format."""
    return "data:video/jpeg;base64," + ",".join(cache.base64(f) if cache is not None else encode_base64(f, fmt)
                                                for f in frames)


def to_openai_messages(request: GenerationRequest, cache: EncodedImages | None = None) -> list[dict]:
    """The neutral messages in the chat-completions format, media inlined where they stand
    (encoded once per image with a `cache`)."""
    chat = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            chat.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif part["type"] == "image":
                url = image_data_url(request.images[part["image"] - 1], cache)
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif part["type"] == "video":
                url = video_data_url(request.images[part["video"] - 1], cache)
                parts.append({"type": "video_url", "video_url": {"url": url}})
            else:
                raise ValueError(f"unknown content part type {part['type']!r}")
        chat.append({"role": message["role"], "content": parts})
    return chat
