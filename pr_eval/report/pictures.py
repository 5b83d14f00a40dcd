"""The pictures of the HTML report: the images a model saw, inlined small, with its crop boxes.

    run folder images/<task>/<doc_id>/<k>.<ext> (pr_eval.run.store) + a sample's ImageInfo
        -> [pictures here: data URIs, SVG box overlays, figures] -> the trajectory viewer

The page has no files beside it: each saved image is re-encoded to a small JPEG data URI. A box
is drawn on the image its crop was cut from, scaled from the pixels that were cut, so
down-scaling keeps it right. Anything wrong with a file gives a placeholder, never an exception.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..scoring import grounding
from ..trajectory import ImageInfo, Trajectory
from .escape import esc
from .view import RunView, SampleView

BOX_COLOUR = "#ff00ff"     # crop boxes drawn on their parent image (tests look for this colour)
IMAGE_SIDE = 560           # inlined images are re-encoded to at most this many pixels a side
FRAME_SIDE = 160           # ... and a video's frames to this (a 200-sample task stays near 10 MB)


@dataclass
class Picture:
    """An image ready to inline, or why it cannot be shown (`uri` None)."""

    uri: str | None
    width: int
    height: int
    problem: str = ""


def picture(folder: Path, relative: str | None, side: int, fallback: tuple[int, int]) -> Picture:
    """A saved image re-encoded small as a data URI. Anything wrong (missing, outside the run
    folder, unreadable) gives a placeholder of the size the model saw, never an exception."""
    if not relative:
        return Picture(None, *fallback, "not saved")
    root = folder.resolve()
    path = (root / str(relative)).resolve()
    if not path.is_relative_to(root):
        return Picture(None, *fallback, "path outside the run folder")
    try:
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
            image.thumbnail((side, side))
            rgb = image.convert("RGB")
    except FileNotFoundError:
        return Picture(None, *fallback, "file missing")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return Picture(None, *fallback, f"unreadable ({type(exc).__name__})")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=80)
    return Picture("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), *rgb.size)


def image_path(sample: SampleView, index: int, frame: int | None = None) -> str | None:
    """Where image `index` (or frame `frame` of the video `index`) of a sample was saved, from the
    image map the store wrote with it ({"<k>": path}, a video's {"<k>": [frame paths]}); None when
    it was not saved."""
    saved = sample.images.get(str(index))
    if frame is None and isinstance(saved, str):
        return saved
    if frame is not None and isinstance(saved, list) and 1 <= frame <= len(saved) and isinstance(saved[frame - 1], str):
        return saved[frame - 1]
    return None


def crops_on(traj: Trajectory, index: int, frame: int | None = None) -> list[int]:
    """The crops cut from image `index` (1-based), or from frame `frame` of the video `index`."""
    images = traj.images
    if not 1 <= index <= len(images):
        return []
    is_video = images[index - 1].kind == "video"
    return [k for k, info in enumerate(images, start=1)
            if info.kind == "crop" and info.parent == index and (not is_video or info.frame == frame)]


def box_overlay(traj: Trajectory, crops: list[int], width: int, height: int) -> str:
    """SVG boxes of `crops` over an image displayed at width x height: each box is scaled from
    the pixels of the image that was cut (ImageInfo.source_size), so down-scaling keeps it right."""
    shapes = []
    for k in crops:
        info = traj.images[k - 1]
        box, size = info.box, info.source_size
        if not (isinstance(box, list) and len(box) == 4 and isinstance(size, list) and len(size) == 2
                and all(isinstance(v, (int, float)) for v in box + size) and size[0] > 0 and size[1] > 0):
            continue
        x1, y1 = box[0] / size[0] * width, box[1] / size[1] * height
        x2, y2 = box[2] / size[0] * width, box[3] / size[1] * height
        rect = f'x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 1):.1f}" height="{max(y2 - y1, 1):.1f}"'
        shapes.append(f'<rect class="halo" {rect}/><rect class="box" {rect}/>'
                      f'<text x="{x1 + 4:.1f}" y="{y1 + 4:.1f}" dy="1em">{k}</text>')
    if not shapes:
        return ""
    return (f'<svg class="overlay" viewBox="0 0 {width} {height}" preserveAspectRatio="none" aria-hidden="true">'
            + "".join(shapes) + "</svg>")


def target_overlay(traj: Trajectory, width: int, height: int) -> str:
    """The benchmark's target boxes (meta "targets", pixels of the image as stored), dashed, over
    input image 1 displayed at width x height ("" when the sample has none)."""
    info = traj.images[0] if traj.images else None
    if info is None or info.kind != "input":
        return ""
    shapes = []
    for x1, y1, x2, y2 in grounding.normalized_targets(traj.meta.get("targets"), info.original_size):
        rect = (f'x="{x1 * width:.1f}" y="{y1 * height:.1f}" width="{max((x2 - x1) * width, 1):.1f}" '
                f'height="{max((y2 - y1) * height, 1):.1f}"')
        shapes.append(f'<rect class="target" {rect}/>')
    if not shapes:
        return ""
    return (f'<svg class="overlay" viewBox="0 0 {width} {height}" preserveAspectRatio="none" aria-hidden="true">'
            + "".join(shapes) + "</svg>")


def figure(view: RunView, sample: SampleView, index: int, frame: int | None = None) -> str:
    """Image `index` of a sample (or one frame of its video) with the boxes of its crops."""
    traj = sample.traj
    info = traj.images[index - 1] if 1 <= index <= len(traj.images) else None
    key = f"{index}-f{frame}" if frame else str(index)
    size = (info.width, info.height) if info else (4, 3)
    fallback = size if all(isinstance(v, int) and v > 0 for v in size) else (4, 3)
    pic = picture(view.folder, image_path(sample, index, frame), FRAME_SIDE if frame else IMAGE_SIDE,
                  fallback)
    overlay = box_overlay(traj, crops_on(traj, index, frame), pic.width, pic.height)
    if index == 1 and not frame:
        overlay += target_overlay(traj, pic.width, pic.height)
    caption = f"frame {frame}" if frame else _caption(traj, index, info)
    if pic.uri:
        body = f'<img src="{pic.uri}" width="{pic.width}" height="{pic.height}" alt="image {index}">'
    else:
        body = (f'<div class="missing" style="aspect-ratio:{pic.width}/{pic.height}">'
                f'<span>image {key}<br>{esc(pic.problem)}</span></div>')
    return (f'<figure class="{"frame" if frame else "image"}"><div class="pic">{body}{overlay}</div>'
            f'<figcaption>{esc(caption)}</figcaption></figure>')


def _caption(traj: Trajectory, index: int, info: ImageInfo | None) -> str:
    if info is None:
        return f"image {index}"
    size = f"{info.width}\u00d7{info.height}"
    if info.kind == "crop":
        parent = traj.images[info.parent - 1] if info.parent and 1 <= info.parent <= len(traj.images) else None
        source = f"frame {info.frame} of image {info.parent}" if parent and parent.kind == "video" else f"image {info.parent}"
        return f"image {index}: crop of {source}, box {info.box} of {info.source_size}, shown {size}"
    if info.kind == "frame":
        return f"image {index}: frame {info.frame} of the video, shown {size}"
    return f"image {index} ({info.kind}), shown {size}"


def images_html(view: RunView, sample: SampleView, indices: list[int]) -> str:
    parts = []
    for index in indices:
        info = sample.traj.images[index - 1] if 1 <= index <= len(sample.traj.images) else None
        if info is not None and info.kind == "video":
            frames = "".join(figure(view, sample, index, f) for f in range(1, _frame_count(sample, index) + 1))
            parts.append(f'<div class="video"><div class="label">image {index}: video</div>'
                         f'<div class="frames">{frames}</div></div>')
        else:
            parts.append(figure(view, sample, index))
    return f'<div class="images">{"".join(parts)}</div>' if parts else ""


def _frame_count(sample: SampleView, index: int) -> int:
    """A video's frames: as many as were saved, else as many as the protocol shows (16)."""
    saved = sample.images.get(str(index))
    return len(saved) if isinstance(saved, list) and saved else 16
