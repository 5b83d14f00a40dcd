"""How the OpenAI engine sends images: lossless, each image encoded once per trajectory.

Two transports, one interface (`image_url(image)`, `video_url(frames)`, `close()`):
- `EncodedImages` (the default) inlines each image as a data URL: BMP to vLLM servers, PNG to
  others (`FORMATS`; the server decodes the exact pixels either way). The encoding is kept while
  the image lives, so a conversation sent again on every turn costs its images' encoding once;
  but the bytes still travel, as base64 inside the JSON, with every later turn.
- `SharedFolder` (`--media-dir DIR`) writes each image once, as a BMP file in a folder the server
  reads too, and sends a `file://` URL: a request is then a few kilobytes whatever its images.
  A `vllm serve` reads such URLs when started with `--allowed-local-media-path DIR`, and the
  folder must be at the same path on both sides (one machine, or a shared file system).
A video travels inline either way, as vLLM's frame-list data URL (`data:video/jpeg;base64,<f1>,
<f2>,...`, see pr_eval.engines.openai): a `file://` video would be a video file, which the
server decodes and samples by its own rules.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit
from urllib.request import url2pathname

from PIL import Image

from .base import EngineError, GenerationRequest

# How images travel. "bmp" (to vLLM servers): uncompressed, lossless, about 100x quicker to write
# than PNG (a 2240x1568 photo: ~5 ms against ~500 ms for PNG at compress level 1) and as quick to
# read; ~1.3x (noisy photos) to ~2x (clean ones) the bytes of PNG, which loopback and a LAN carry in
# milliseconds. "png" (compress level 1): for servers that take only the common formats (OpenAI's).
# Either way the server decodes the exact pixels (PIL reads both, whatever the data URL's label).
FORMATS = {"bmp": ("image/bmp", "BMP", {}), "png": ("image/png", "PNG", {"compress_level": 1})}


def _format(image: Image.Image, fmt: str) -> str:
    """`fmt`, or PNG for the modes BMP cannot hold losslessly."""
    return fmt if image.mode in ("RGB", "L") else "png"


def save_lossless(image: Image.Image, target, fmt: str) -> str:
    """Write the image to `target` (a path or a file object) in `fmt`, or as PNG in the modes BMP
    cannot hold losslessly; returns the format written."""
    fmt = _format(image, fmt)
    _mime, name, options = FORMATS[fmt]
    image.save(target, format=name, **options)
    return fmt


def encode_base64(image: Image.Image, fmt: str = "png") -> str:
    """The image's bytes in `fmt`, base64 (modes BMP cannot hold losslessly go as PNG)."""
    buffer = io.BytesIO()
    save_lossless(image, buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def file_path(url: str) -> str:
    """The local path of a `file://` URL (as `Path.as_uri` writes it and vLLM reads it)."""
    return url2pathname(urlsplit(url).path)


def mime_of(image: Image.Image, fmt: str) -> str:
    return FORMATS[_format(image, fmt)][0]


class ImageMemo:
    """One value per live image, made once: keyed by identity (a trajectory's pixels are never
    changed in place), dropped when its image is garbage-collected (a finished trajectory drops its
    pixels), so it holds only what the open trajectories need. Thread-safe. The lock is re-entrant
    because the garbage collector may run an image's callback (`_forget`) in a thread that is
    inside `get` already, holding it."""

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, str]] = {}
        self._lock = threading.RLock()
        self.made = 0  # values made (tests and benchmarks read it)

    def make(self, image: Image.Image) -> str:
        raise NotImplementedError

    def dropped(self, value: str) -> None:
        """The image of `value` is gone (SharedFolder removes its file)."""

    def get(self, image: Image.Image) -> str:
        key = id(image)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0]() is image:
            return entry[1]
        value = self.make(image)  # outside the lock: requests encode in parallel
        ref = weakref.ref(image, lambda dead, key=key: self._forget(key, dead))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is image:  # another thread made it meanwhile
                kept, value, stale = entry[1], None, value
            else:
                self._entries[key] = (ref, value)
                self.made += 1
                kept, stale = value, entry[1] if entry is not None else None
        if stale is not None:  # the loser of a race, or a dead image's entry left behind
            self.dropped(stale)
        return kept

    def _forget(self, key: int, dead: weakref.ref) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not dead:
                return
            del self._entries[key]
        self.dropped(entry[1])

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        pass


class EncodedImages(ImageMemo):
    """Images inlined as data URLs, each image's base64 encoding (in `fmt`) made once.

    A trajectory's conversation goes to the server whole on every turn, so without this each
    image would be encoded again on every later turn (a 4-turn trajectory encodes its input four
    times)."""

    def __init__(self, fmt: str = "png"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown image transport {fmt!r}; choose from: {', '.join(FORMATS)}")
        super().__init__()
        self.fmt = fmt

    def make(self, image: Image.Image) -> str:
        return encode_base64(image, self.fmt)

    def base64(self, image: Image.Image) -> str:
        return self.get(image)

    def image_url(self, image: Image.Image) -> str:
        return f"data:{mime_of(image, self.fmt)};base64,{self.base64(image)}"

    def video_url(self, frames: Sequence[Image.Image]) -> str:
        return "data:video/jpeg;base64," + ",".join(self.base64(f) for f in frames)


class SharedFolder(ImageMemo):
    """Images as lossless files in a folder the server reads too, sent as `file://` URLs.

    Each engine writes under its own new subfolder of `folder` (`pr-eval-XXXX/`, removed by
    `close`), with an `owner` file holding its process id; a file is removed when its image is
    gone. Subfolders left by a killed run (their owner process is gone) are removed when the next
    one starts: on /dev/shm they are RAM. Videos go inline (`frames`). A failure to write that
    is the machine's, not one image's (a full disk, the folder gone) stops the run (EngineError)
    so that --resume runs the samples it would have cost."""

    def __init__(self, folder: str | os.PathLike, fmt: str = "bmp"):
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise EngineError(f"media folder {folder}: no such folder; create it, and start the server with "
                              f"--allowed-local-media-path {root}")
        super().__init__()
        self.fmt = fmt
        remove_stale(root)
        try:
            self.folder = Path(tempfile.mkdtemp(prefix="pr-eval-", dir=root))
            os.chmod(self.folder, 0o755)  # a server running as another user reads it too
            (self.folder / OWNER).write_text(str(os.getpid()))
        except OSError as exc:
            raise EngineError(f"media folder {root}: cannot write there ({exc.strerror or exc})") from None
        # the folder goes even when nobody closes the engine (lmms-eval's own command line)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self.frames = EncodedImages(fmt)
        self._numbers = itertools.count(1)

    def make(self, image: Image.Image) -> str:
        path = self.folder / f"{next(self._numbers):08d}.{_format(image, self.fmt)}"
        try:
            save_lossless(image, path, self.fmt)
        except OSError as exc:
            if not self.folder.is_dir():  # no request can go any more: stop the run, say why
                raise EngineError(f"the media folder {self.folder} is gone (removed while the run used it); "
                                  "run again with --resume") from None
            # a full disk (a 64 MB /dev/shm fills fast), a read-only or forbidden folder: the
            # machine's failure, which every later sample would meet too
            path.unlink(missing_ok=True)
            raise EngineError(f"cannot write images to the media folder {self.folder.parent}: "
                              f"{exc.strerror or exc}; free space there or choose a larger --media-dir, "
                              "then run again with --resume") from None
        return path.as_uri()

    def dropped(self, value: str) -> None:
        try:
            os.unlink(file_path(value))
        except OSError:
            pass

    def image_url(self, image: Image.Image) -> str:
        return self.get(image)

    def video_url(self, frames: Sequence[Image.Image]) -> str:
        return self.frames.video_url(frames)

    def close(self) -> None:
        self._cleanup()


OWNER = "owner"  # a media subfolder's file naming the process that writes there


def remove_stale(root: Path) -> list[Path]:
    """Remove the `pr-eval-*` subfolders of `root` whose owner process is gone (a run killed
    before it could clean up); the removed ones. Folders of live processes, of other users, and
    without an owner file (written by an older pr-eval, or being made) are left alone."""
    removed = []
    for folder in root.glob("pr-eval-*"):
        try:
            pid = int((folder / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or alive under another user: PermissionError below)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except OSError:
            continue
    return removed


def image_data_url(image: Image.Image, fmt: str = "png") -> str:
    """A lossless data URL of the image, encoded afresh (an engine's memo keeps its encodings)."""
    return EncodedImages(fmt).image_url(image)


def video_data_url(frames: Sequence[Image.Image], fmt: str = "png") -> str:
    """Already-extracted frames as vLLM's frame-list data URL (see pr_eval.engines.openai): the
    server reads each frame with PIL, whatever its format."""
    return EncodedImages(fmt).video_url(frames)


def to_openai_messages(request: GenerationRequest, media: ImageMemo | None = None) -> list[dict]:
    """The neutral messages in the chat-completions format, each image as `media` sends it
    (default: inlined as PNG data URLs, encoded afresh)."""
    media = media if media is not None else EncodedImages()
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
                url = media.image_url(request.images[part["image"] - 1])
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif part["type"] == "video":
                url = media.video_url(request.images[part["video"] - 1])
                parts.append({"type": "video_url", "video_url": {"url": url}})
            else:
                raise ValueError(f"unknown content part type {part['type']!r}")
        chat.append({"role": message["role"], "content": parts})
    return chat
