"""Video frames: the 16 uniformly spaced frames a video file is shown as, and the padding every
video's frames get.

    read_frames(path, 16, start, end) -> [PIL.Image] * 16

`path` is a video file (decoded with decord, only the chosen frames) or a folder of frame images
(MVBench's TVQA clips are stored as `00001.jpg`, `00002.jpg`, ... at 3 frames per second).
`start`/`end` (seconds) narrow the window the frames are taken from; None means the whole video.

Frame choice: the window's frames are cut into `num_frames` equal segments and the middle frame of
each segment is taken, as MVBench's reference loader does. Anything that keeps the sample from
being shown as exactly `num_frames` frames (a missing or unreadable file, a truncated video, a
video with fewer frames than asked for, a window outside the video) is a DataError saying why.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from PIL import Image

from ..errors import DataError
from .imaging import load_image

NUM_FRAMES = 16          # the protocol's `num_video_frames`: a video is shown as 16 frames
FRAME_FOLDER_FPS = 3.0   # MVBench's frame folders (tvqa/frames_fps3_hq) hold 3 frames per second
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def pad_frames(frames: list) -> list:
    """A video's frames as the reference shows them: an odd count padded to even by repeating the
    last frame (qwen_vl_utils 0.0.11 `fetch_video` on a list of frames, FRAME_FACTOR 2), so 15
    frames are shown, and numbered by the tools, as 16. Pure."""
    return list(frames) + list(frames[-1:]) * (len(frames) % 2)


def frame_indices(total: int, fps: float, num_frames: int = NUM_FRAMES,
                  start: float | None = None, end: float | None = None) -> list[int]:
    """The 0-based indices of `num_frames` frames spread uniformly over [start, end] seconds of a
    video of `total` frames at `fps` (segment midpoints). Pure; raises DataError when the video
    is too short or the window lies outside it."""
    if total < num_frames:
        raise DataError(f"the video has {total} frame(s), fewer than the {num_frames} a sample needs "
                        f"(truncated?)")
    first, last = 0, total - 1
    if start is not None and start >= 0:
        first = max(first, round(start * fps))
    if end is not None and end >= 0:
        last = min(last, round(end * fps))
    if first > last:
        duration = total / fps if fps > 0 else float("nan")
        raise DataError(f"the window {_seconds(start, '0')}..{_seconds(end, 'end')} s lies outside the video "
                        f"({total} frames, {duration:.2f} s)")
    span = last - first + 1
    # Windows shorter than num_frames repeat frames, as the MVBench reference does.
    return [first + min(span - 1, math.floor((k + 0.5) * span / num_frames)) for k in range(num_frames)]


def read_frames(path: str | os.PathLike, num_frames: int = NUM_FRAMES, start: float | None = None,
                end: float | None = None) -> list[Image.Image]:
    """`num_frames` RGB frames of the video file or frame folder at `path` (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        return _read_frame_folder(path, num_frames, start, end)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    return _read_video_file(path, num_frames, start, end)


def _read_video_file(path: Path, num_frames: int, start: float | None, end: float | None) -> list[Image.Image]:
    import decord  # imported here: only video samples need it

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total, fps = len(reader), float(reader.get_avg_fps())
    except Exception as exc:  # noqa: BLE001 - decord raises RuntimeError, DECORDError (not one), ...
        raise DataError(f"unreadable video {path}: {_first_line(exc)}") from None
    if not (total > 0 and math.isfinite(fps) and fps > 0):
        raise DataError(f"unreadable video {path}: {total} frames at {fps} fps")
    indices = frame_indices(total, fps, num_frames, start, end)
    try:
        batch = reader.get_batch(indices).asnumpy()
    except Exception as exc:  # noqa: BLE001 - frames listed but not decodable
        raise DataError(f"cannot decode frames {indices[0]}..{indices[-1]} of {path} "
                        f"(truncated or corrupt?): {_first_line(exc)}") from None
    if len(batch) != num_frames:
        raise DataError(f"decoded {len(batch)} frames of {path}, expected {num_frames}")
    return [Image.fromarray(frame).convert("RGB") for frame in batch]


def _read_frame_folder(folder: Path, num_frames: int, start: float | None, end: float | None) -> list[Image.Image]:
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise DataError(f"the frame folder {folder} holds no .jpg/.png frames")
    indices = frame_indices(len(frames), FRAME_FOLDER_FPS, num_frames, start, end)
    images = []
    for k, index in enumerate(indices, start=1):
        try:
            images.append(load_image(frames[index]))
        except DataError as exc:
            raise DataError(f"frame {k} of {num_frames}: {exc}") from None
    return images


def _seconds(value: float | None, default: str) -> str:
    return default if value is None or value < 0 else f"{value:g}"


def _first_line(exc: BaseException) -> str:
    """The first line of the message (300 characters at most), after the exception's type unless
    that is one of decord's usual kinds; the type alone when there is no message."""
    lines = str(exc).strip().splitlines()
    kind = type(exc).__name__
    if not lines:
        return kind
    return lines[0][:300] if kind in ("RuntimeError", "OSError", "ValueError") else f"{kind}: {lines[0][:300]}"
