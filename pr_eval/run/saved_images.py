"""The images a run saves for people: what the model saw, per sample, in the run folder.

    images/<task>/<doc_id>/<k>.jpg          inputs down-scaled to at most 1024 px; crops at their size
    images/<task>/<doc_id>/<k>-f<j>.jpg     frame j of a video (image k)

The report draws them; no score ever reads them back.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..trajectory import Trajectory

IMAGES_DIR = "images"
MAX_SAVED_SIDE = 1024   # input images and frames are saved down-scaled to this long side (JPEG)
JPEG_QUALITY = 90
# Crops: JPEG at the size the model saw them, quality 95 without chroma subsampling (within ~3 of
# each pixel value even on noise); PNG cost ~9x the CPU (250 ms against 28 ms for a 1.3 MP crop).
CROP_JPEG = {"quality": 95, "subsampling": 0}


def image_file(task: str, doc_id, k: int, kind: str, frame: int | None = None) -> str:
    """The path (relative to the run folder) of image k of a sample, a JPEG (crops at the size the
    model saw them); frame j of a video (image k) as `<k>-f<j>.jpg`. The files are for people (the
    report); scores never read them back."""
    name = f"{k}-f{frame}" if frame is not None else str(k)
    return f"{IMAGES_DIR}/{task}/{doc_id}/{name}.jpg"


def saved_image(image: Image.Image, kind: str) -> Image.Image:
    """The image as it is saved, in RGB (or L): crops at their size; others down-scaled to
    MAX_SAVED_SIDE (an integer box reduction, then bicubic: half the CPU of bicubic alone for a
    V* photo, ~25 against ~55 ms, and a copy for people, never read back by a score)."""
    if kind != "crop" and max(image.size) > MAX_SAVED_SIDE:
        scale = MAX_SAVED_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def save_images(folder: Path, task: str, doc_id, traj: Trajectory) -> dict:
    """Write the images a trajectory showed the model (`traj.pixels`, conversation order) under
    images/<task>/<doc_id>/ (a rollout's under <doc_id>-r<rollout>/) and return {"<k>": path}
    ({"<k>": [paths of its frames]} for a video)."""
    written, doc_id = {}, doc_id if traj.rollout is None else f"{doc_id}-r{traj.rollout}"
    for k, (pixels, info) in enumerate(zip(traj.pixels, traj.images), start=1):
        frames = pixels if isinstance(pixels, list) else None
        paths = [image_file(task, doc_id, k, info.kind, j) for j in range(1, len(frames) + 1)] if frames \
            else [image_file(task, doc_id, k, info.kind)]
        for image, path in zip(frames or [pixels], paths):
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            out = saved_image(image, info.kind)
            out.save(target, format="JPEG", **(CROP_JPEG if info.kind == "crop" else {"quality": JPEG_QUALITY}))
        written[str(k)] = paths if frames else paths[0]
    return written
