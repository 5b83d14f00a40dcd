"""Pixel Reasoner (TIGER-AI-Lab/Pixel-Reasoner@a3a6c3a): the paper's protocols.

The first user turn is the image(s) (or the video) and the question with the guideline appended;
images are shown resized into the protocol's input bounds and the tools cut from them as shown.
A turn is a tool request when it ends with `</tool_call>`; the call read is the LAST one of the
whole conversation (`tools.last_call_text`), parsed with `json` and run by `tools.execute`, whose
exceptions' texts are fed back as the reference feeds them. The verdict is the reference's rule
(`pr_eval.scoring.rules.reference_accuracy`) on the conversation after the first assistant header; it never
leaves a question undecided, so there is no judge. Settings: the fields of `pr_eval.protocol.Protocol`.
"""

from __future__ import annotations

from ..data.imaging import fit_image
from ..data.video import pad_frames
from ..errors import DataError
from ..loop import chat
from ..loop.tools import (CROP, SELECT_FRAMES, Call, blind, clean_text, error_kind, execute, is_tool_request,
                          journal_safe, last_call_text)
from ..protocol import BLIND_TOOL, BLIND_TOOL_BLANK, NO_TOOL, PIXEL_REASONER, PIXEL_REASONER_FAMILY, SAMPLED
from ..scoring import rules as scoring
from ..scoring.answers import extract_answer
from ..trajectory import ANSWERED, MAX_IMAGES, MAX_TOKENS, MAX_TOOL_CALLS, ImageInfo, ToolCall
from .base import Family, Verdict, add_image, feedback, finish, say, text_part, video_part


class PixelReasoner(Family):
    name = PIXEL_REASONER_FAMILY
    implementation = "TIGER-AI-Lab/Pixel-Reasoner@a3a6c3a"
    video = True

    def user_text(self, sample, protocol) -> str:
        return protocol.user_text(sample.question)

    def open(self, traj, sample, protocol) -> None:
        """Images resized into the input bounds; a video as its frames within the frame bounds, an
        odd count padded to even as the reference's qwen_vl_utils pads it, shown as image 1."""
        if protocol.system_prompt is not None:
            traj.messages.append({"role": "system", "content": protocol.system_prompt})
        text = text_part(self.user_text(sample, protocol))
        loaded = sample.load_images()
        if not loaded:
            raise DataError("the sample has no image")
        bounds = protocol.frame_pixels if sample.is_video else protocol.input_pixels
        shown = [fit_image(image, bounds) for image in loaded]
        if sample.is_video:
            shown = pad_frames(shown)
        stored = [list(image.size) for image in loaded]
        del loaded  # only the shown images are kept: nothing is cut from the full-resolution files
        if sample.is_video:
            traj.pixels.append(shown)
            traj.images.append(ImageInfo(kind="video", width=shown[0].width, height=shown[0].height))
            traj.messages.append({"role": "user", "content": [video_part(1), text]})
            return
        parts = [add_image(traj, image, ImageInfo(kind="input", width=image.width, height=image.height,
                                                   original_size=size))
                 for image, size in zip(shown, stored)]
        traj.messages.append({"role": "user", "content": parts + [text]})

    def max_generations(self, protocol) -> int:
        return protocol.caps.max_tool_calls + 1

    def step(self, traj, text, protocol) -> None:
        """The reference's order: the turn is a tool request when it ends with `</tool_call>`; a
        request is not run once the trajectory made `max_tool_calls` calls or the turn's prompt
        and output exceed the token cap; otherwise the conversation's last call is read and
        executed, and its result (or the error's text) is the next user turn."""
        generation = traj.generations[-1]
        turn = len(traj.generations) - 1
        say(traj, text)
        if not is_tool_request(text):
            return finish(traj, ANSWERED)
        if generation.prompt_tokens + generation.output_tokens > protocol.caps.max_total_tokens:
            return finish(traj, MAX_TOKENS)
        if len(traj.tool_calls) >= protocol.caps.max_tool_calls:
            return finish(traj, MAX_TOOL_CALLS)
        call = Call(raw=last_call_text(chat.render(traj.messages)))
        record = ToolCall(turn=turn, raw=clean_text(call.raw))
        traj.tool_calls.append(record)
        try:
            call.read()
            outcome = _execute(traj, call, protocol)
        except Exception as exc:  # noqa: BLE001 - the reference feeds ANY exception's text back
            _remember(record, call)
            record.error_kind, record.error = error_kind(exc, call.stage), clean_text(str(exc))
            return feedback(traj, protocol.feedback.error.format(message=record.error))
        _remember(record, call)
        if len(traj.pixels) + len(outcome.images) > protocol.caps.max_images:
            record.error_kind, record.error = "max_images", "image cap reached"
            return finish(traj, MAX_IMAGES)
        record.ok = True
        record.box_normalized = outcome.box_normalized
        parts = []
        for image, parent in zip(outcome.images, outcome.parents):
            parts.append(add_image(traj, image, _describe(traj, call.name, image, parent, outcome)))
            record.new_images.append(len(traj.pixels))
        feedback(traj, outcome.text, *parts)

    no_answer = "(none: no \\boxed{} answer)"

    def final_answer(self, traj) -> str | None:
        return extract_answer(traj.answer_text)

    def verdict(self, traj, target) -> Verdict:
        """The reference's rule on the conversation after the first assistant header."""
        return Verdict(scoring.reference_accuracy(traj.scored_text, target), traj.answer_text)


def _remember(record: ToolCall, call: Call) -> None:
    """What the record keeps of a call: its name and arguments when they were readable."""
    if isinstance(call.name, str):
        record.name = clean_text(call.name)
    if isinstance(call.arguments, dict):
        record.arguments = journal_safe(call.arguments)


def _execute(traj, call: Call, protocol):
    n_inputs = sum(1 for info in traj.images if info.kind == "input")
    result = execute(call, traj.pixels, n_inputs, traj.is_video, protocol)
    if call.name == SELECT_FRAMES:
        traj.frames_selected = True
    elif call.name == CROP and protocol.blind:
        result = blind(result, result.source, protocol.blind, protocol)
    return result


def _describe(traj, tool: str, image, parent: int, outcome) -> ImageInfo:
    """The ImageInfo of an image a tool added (`parent`: the crop's 1-based source image, or the
    selected frame's number)."""
    if tool == SELECT_FRAMES:
        return ImageInfo(kind="frame", width=image.width, height=image.height, parent=1, frame=parent)
    frame = outcome.frame if outcome.frame is not None else traj.images[parent - 1].frame
    return ImageInfo(kind="crop", width=image.width, height=image.height, box=list(outcome.box),
                     source_size=list(outcome.source_size), parent=parent, frame=frame)


FAMILY = PixelReasoner()
PROTOCOLS = (PIXEL_REASONER, NO_TOOL, BLIND_TOOL, BLIND_TOOL_BLANK, SAMPLED)
