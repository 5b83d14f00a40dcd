"""Crop grounding: does the model look at the right place? Pure functions of a trajectory and the
benchmark's target boxes.

    trajectory crops (boxes in their parents' pixels) -> boxes in input 1's normalized frame
    target boxes (pixels of input 1 as stored)        -> the same frame  -> hits, best IoU

Where a benchmark gives target boxes (TreeBench's `target_instances`, V*'s annotated objects),
every crop the model made of the first input image, directly or as a crop of a crop, is mapped
into that image's frame (0..1 on both axes; the protocol's resize keeps relative positions).
Three figures follow:
- `crop_hit_rate` (per crop): the share of crops that hold a target, meaning they cover at least
  half of some target box's area (HIT_COVERAGE); covering is asked, not equality, because the
  protocol pads every crop and a good zoom is larger than the object;
- `crop_iou` (per sample): for each target the best IoU of any crop, averaged over the targets
  (TreeBench's mIoU rule: a sample without a crop scores 0);
- `accuracy_crop_hit` / `accuracy_crop_miss`: the paper-compatible accuracy of the samples whose
  crops held a target, and of those that cropped but never held one.
"""

from __future__ import annotations

from ..trajectory import Trajectory

HIT_COVERAGE = 0.5
Box = tuple[float, float, float, float]


def input_frame_boxes(traj: Trajectory) -> list[Box]:
    """The boxes of the trajectory's crops of input image 1, in its normalized frame."""
    placed: dict[int, Box] = {}
    for position, info in enumerate(traj.images, start=1):
        if info.kind == "input" and position == 1:
            placed[1] = (0.0, 0.0, 1.0, 1.0)
        if info.kind != "crop" or info.parent not in placed or not info.box or not info.source_size:
            continue
        width, height = info.source_size
        if not width or not height:
            continue
        px1, py1, px2, py2 = placed[info.parent]
        x1, y1, x2, y2 = (info.box[0] / width, info.box[1] / height, info.box[2] / width, info.box[3] / height)
        placed[position] = (px1 + x1 * (px2 - px1), py1 + y1 * (py2 - py1),
                            px1 + x2 * (px2 - px1), py1 + y2 * (py2 - py1))
    return [box for position, box in placed.items() if position != 1]


def normalized_targets(targets, size) -> list[Box]:
    """Target boxes [x1, y1, x2, y2] in pixels of an image of `size` (width, height), normalized;
    boxes that are not four numbers with x2 > x1 and y2 > y1 are left out."""
    if not size or not size[0] or not size[1]:
        return []
    width, height = size
    boxes = []
    for box in targets or []:
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            continue
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            continue
        if x2 > x1 and y2 > y1:
            boxes.append((x1 / width, y1 / height, x2 / width, y2 / height))
    return boxes


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def coverage(crop: Box, target: Box) -> float:
    """The share of the target's area inside the crop."""
    area = _area(target)
    return _intersection(crop, target) / area if area > 0 else 0.0


def holds_target(crop: Box, targets: list[Box]) -> bool:
    return any(coverage(crop, target) >= HIT_COVERAGE for target in targets)


def figures(traj: Trajectory, targets: list[Box]) -> dict:
    """The sample's grounding figures: (value, weight) pairs as pr_eval.scoring.metrics aggregates them,
    weight 0 where the sample does not count (no targets, or no crop for the hit rate)."""
    crops = input_frame_boxes(traj) if targets else []
    hits = [holds_target(crop, targets) for crop in crops]
    best = [max((iou(crop, target) for crop in crops), default=0.0) for target in targets]
    return {
        "crop_hit_rate": (sum(hits) / len(hits) if hits else 0.0, float(len(hits))),
        "crop_iou": (sum(best) / len(best) if best else 0.0, 1.0 if targets else 0.0),
        "hit": any(hits),
        "cropped": bool(crops),
    }
