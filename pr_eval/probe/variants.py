"""A protocol under an intervention: a named, fingerprinted variant, and what it does to a sample.

    base protocol + intervention name -> variant protocol ("<base>+<name>", its own fingerprint)
    sample + variant                   -> the sample the model sees (input edits), or DataError
                                          when the intervention does not apply to it
    crop returned by a tool            -> blank, or the image it was cut from (crop edits)

Pixel Reasoner's own crop ablations (blind-tool, blind-tool-blank) and its no-tool prompt are the
variants of its greedy protocol, so their published numbers stay comparable; every other family
(and Pixel Reasoner's other protocols) gets the same edits through `Protocol.intervention`, which
the loop reads for input edits (`intervene_sample`) and the families' `add_image` for crops.
"""

from __future__ import annotations

import dataclasses

from PIL import Image

from .. import benchmarks
from ..errors import DataError
from ..protocol import (BLIND_TOOL, BLIND_TOOL_BLANK, NO_TOOL, PIXEL_REASONER, PIXEL_REASONER_FAMILY,
                        Intervention, Protocol)
from ..scoring.answers import parse_options
from ..trajectory import ImageInfo, Sample
from . import interventions as edits

CROP_BLANK, CROP_UNCROPPED, NO_TOOL_NAME = "crop-blank", "crop-uncropped", "no-tool"
TARGET_MASKED, COUNTERFACTUAL = "target-masked", "counterfactual-edit"
# name -> (what it edits, exactly how); in the order a probe runs them
CATALOGUE = {
    CROP_BLANK: "every image a tool returns from a successful crop is replaced by a mid-grey "
                "(128, 128, 128) image of the crop's size",
    CROP_UNCROPPED: "every image a tool returns from a successful crop is replaced by the image it was "
                    "cut from, as the model was shown it",
    NO_TOOL_NAME: "the protocol's own prompt without tools (where the family has one)",
    TARGET_MASKED: edits.MASK_METHOD,
    COUNTERFACTUAL: "on a colour question, the target's colour changed to the next option's colour, so that "
                    "option becomes the answer the run is scored against: where the benchmark knows the colours it draws, " + edits.METHOD_REPAINT
                    + "; elsewhere " + edits.METHOD_RECOLOUR,
}
INPUT_EDITS = (TARGET_MASKED, COUNTERFACTUAL)
CROP_EDITS = (CROP_BLANK, CROP_UNCROPPED)
SEPARATOR = "+"
# Pixel Reasoner's greedy protocol: its own named ablations are these variants
OWN_VARIANTS = {CROP_BLANK: BLIND_TOOL_BLANK, CROP_UNCROPPED: BLIND_TOOL, NO_TOOL_NAME: NO_TOOL}


def variant(base: Protocol, name: str) -> Protocol:
    """`base` under intervention `name`. ValueError when the name is unknown or the protocol has no
    such variant: a no-tool prompt is Pixel Reasoner's only; a sampled protocol is not probed (its
    card would need per-rollout pairing); a counterfactual needs the options in the data's order."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown intervention {name!r}; choose from: {', '.join(CATALOGUE)}")
    if base.intervention is not None or base.blind is not None or not base.tools_enabled:
        raise ValueError(f"protocol {base.name!r} is already an ablation; probe its base protocol")
    if base.sampling is not None:
        raise ValueError(f"protocol {base.name!r} samples rollouts; probe a greedy protocol")
    if base.name == PIXEL_REASONER.name and name in OWN_VARIANTS:
        return OWN_VARIANTS[name]
    renamed = base.name + SEPARATOR + name
    if base.family == PIXEL_REASONER_FAMILY:  # its own mechanisms: the blind crops, the no-tool prompt
        if name in CROP_EDITS:
            return dataclasses.replace(base, name=renamed, blind="blank" if name == CROP_BLANK else "input")
        if name == NO_TOOL_NAME:
            return dataclasses.replace(base, name=renamed, system_prompt=NO_TOOL.system_prompt,
                                       guideline=NO_TOOL.guideline, tools_enabled=False)
    elif name == NO_TOOL_NAME:
        raise ValueError(f"protocol {base.name!r} has no no-tool prompt of its own")
    if name == COUNTERFACTUAL and getattr(base.rules, "option_order", "data") != "data":
        raise ValueError(f"protocol {base.name!r} reorders the options, so an edited answer's letter is not "
                         "the one it shows")
    return dataclasses.replace(base, name=renamed, intervention=Intervention(name=name, method=CATALOGUE[name]))


def applicable(base: Protocol) -> list[str]:
    """The interventions `variant` accepts for `base`, in the catalogue's order."""
    found = []
    for name in CATALOGUE:
        try:
            variant(base, name)
        except ValueError:
            continue
        found.append(name)
    return found


def intervene_sample(sample: Sample, protocol: Protocol) -> tuple[Sample, dict]:
    """The sample the model sees under the protocol's input edit, and the record of what was done
    (kept in the trajectory's meta). DataError when the edit does not apply to this question (no
    target box; for a counterfactual, no colour question or no pixel of the answer's colour)."""
    intervention = protocol.intervention
    if intervention is None or intervention.name not in INPUT_EDITS:
        return sample, {}
    boxes = [tuple(float(v) for v in box) for box in sample.meta.get("targets") or []]
    if not boxes:
        raise DataError(f"{intervention.name}: this question has no target box to edit")
    if sample.is_video:
        raise DataError(f"{intervention.name}: videos are not edited")
    record = {"name": intervention.name, "targets": [list(b) for b in boxes]}
    load = sample.load_images
    if intervention.name == TARGET_MASKED:
        def masked() -> list[Image.Image]:
            first, *rest = load()
            return [edits.mask_targets(first, boxes), *rest]
        return dataclasses.replace(sample, load_images=masked), record
    try:
        edit = edits.counterfactual(parse_options(sample.question), str(sample.answer or ""))
    except ValueError:  # the gold is not one of the options' letters
        edit = None
    if edit is None:
        raise DataError(f"{intervention.name}: the answer is not an option with a colour to change")
    letter, source, target = edit
    palette = getattr(benchmarks.of_task(sample.task), "palette", None) or {}
    exact = source in palette and target in palette  # a synthetic benchmark's own colours
    record.update({"original_answer": sample.answer, "edited_answer": letter, "from": source, "to": target,
                   "method": edits.METHOD_REPAINT if exact else edits.METHOD_RECOLOUR})

    def recoloured() -> list[Image.Image]:
        first, *rest = load()
        if exact:
            image, changed = edits.repaint(first, boxes, palette[source], palette[target])
        else:
            image, changed = edits.recolour(first, boxes, source, target)
        if not changed:
            raise DataError(f"{intervention.name}: no {source} pixel inside the target box")
        record["changed_pixels"] = changed
        return [image, *rest]
    # the edited picture's answer is the new option: the run scores against it (scoring.metrics)
    return dataclasses.replace(sample, answer=letter, load_images=recoloured), record


def intervene_crop(name: str | None, image: Image.Image, info: ImageInfo,
                   shown: list[Image.Image]) -> tuple[Image.Image, ImageInfo]:
    """A crop a tool returned, under a crop edit (`name`, from the trajectory's meta); other images
    and other edits pass unchanged. `shown`: the conversation's images so far."""
    if name not in CROP_EDITS or info.kind != "crop" or info.box is None:  # no box: not a successful crop
        return image, info
    if name == CROP_BLANK:
        image = edits.blank_like(image)
    else:
        parent = info.parent if info.parent and 0 < info.parent <= len(shown) else 1
        image = shown[parent - 1]
    return image, dataclasses.replace(info, width=image.width, height=image.height)
