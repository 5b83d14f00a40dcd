"""The seam between the loop and one model family's released evaluation code.

    Sample -> Family.open (system prompt, first user turn, image preprocessing)
           -> engine turn -> Family.step (is it a call? read it, run the tool, feedback or end)
           -> ... -> Family.verdict (scored text, answer extraction, rule) -> Family.judge_* (fallback)

A `Family` is the behaviour; a `Protocol` (pr_eval.protocol) is the data, with a fingerprint, and
names its family (`Protocol.family`). `loop`, `metrics`, the judge and the report ask the family;
none of them names a tool. One family is one module of this package plus one line of the registry
(`pr_eval.families.FAMILIES`); docs/adding-a-protocol.md adds one.

The helpers below are what every family needs to change a trajectory: append the assistant turn,
append a feedback turn holding new images, record a call, end the trajectory. They keep the
trajectory record's invariants (image indices, ImageInfo, ToolCall), so the report and the tool
statistics read any family's trajectories alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image

from ..loop.tools import clean_text
from ..probe.variants import intervene_crop
from ..trajectory import DATA_ERROR, ImageInfo, Sample, ToolCall, Trajectory

# --- What a family decides ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A family's rule on one finished trajectory."""

    score: float | None   # 1.0 or 0.0; None: the rule leaves the question to the family's judge
    answer: str           # what the rule read (shown in the report and sent to the judge)


@dataclass(frozen=True)
class JudgePrompt:
    """A family's own judge, as its released code calls it (the messages are `Family.judge_messages`,
    the reply is read by `Family.judge_score`). Recorded in the run's judge settings."""

    name: str                          # e.g. "deepeyes-judge"
    implementation: str                # the file (and commit) it reproduces
    model: str                         # the judge model its authors used (the run may name another)
    # One temperature per attempt: a reply `judge_score` cannot read (None) is asked again at the
    # next temperature; when none is left, the verdict is `unreadable`.
    temperatures: tuple[float, ...] = (0.0,)
    max_tokens: int | None = None      # None: the request sets none, as the released code
    unreadable: float | None = None    # the verdict after the last unreadable reply (None: lost)
    prompt_texts: tuple[str, ...] = () # the byte-exact templates (their digest is in the fingerprint)


class Family:
    """One model family's evaluation behaviour. Subclasses override what differs.

    Every method is a pure function of the trajectory, the sample and the protocol's data (the
    tools cut images; no engine, file or network is touched)."""

    name: str = ""
    implementation: str = ""     # the repository@commit whose behaviour is reproduced
    video: bool = False          # whether video benchmarks run under this family
    judge: JudgePrompt | None = None

    # -- the first prompt --------------------------------------------------------------------
    def user_text(self, sample: Sample, protocol) -> str:
        """The text of the first user turn (what a data error's record still shows)."""
        raise NotImplementedError

    def open(self, traj: Trajectory, sample: Sample, protocol) -> None:
        """Append the system prompt and the first user turn to `traj`, with the images as shown.
        Raise (a DataError, or a decoder's own exception) when the sample's data cannot be used."""
        raise NotImplementedError

    # -- one generated turn ------------------------------------------------------------------
    def step(self, traj: Trajectory, text: str, protocol) -> None:
        """Apply one assistant turn (its decoded text, already recorded in `traj.generations`):
        append it, run the call it holds and append the feedback turn, or end the trajectory."""
        raise NotImplementedError

    def max_generations(self, protocol) -> int:
        """The most generations a trajectory can make: the drivers never ask for more."""
        raise NotImplementedError

    def release(self, traj: Trajectory) -> None:
        """Drop what the family keeps beside a trajectory once it is handed on (pr_eval.loop.steps.finished)."""

    # -- the score ---------------------------------------------------------------------------
    no_answer = "(none)"   # what `pr-eval ask` prints when `final_answer` finds none

    def final_answer(self, traj: Trajectory) -> str | None:
        """The answer as the family's rule reads it, with no gold to compare (`pr-eval ask`)."""
        return self.verdict(traj, "").answer or None

    def verdict(self, traj: Trajectory, target) -> Verdict:
        """The family's rule on a finished trajectory (`target`: the benchmark's gold answer)."""
        raise NotImplementedError

    def judge_messages(self, traj: Trajectory, target, verdict: Verdict) -> list[dict]:
        """The chat messages the family's judge is sent for a question its rule left undecided."""
        raise NotImplementedError(f"protocol family {self.name!r} has no judge")

    def judge_score(self, reply: str) -> float | None:
        """The judge's reply read as the family's code reads it: 1.0, 0.0, or None when that code
        would try again (a reply it cannot read)."""
        raise NotImplementedError(f"protocol family {self.name!r} has no judge")


# --- Changing a trajectory ----------------------------------------------------------------------

def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def image_part(index: int) -> dict:
    return {"type": "image", "image": index}


def video_part(index: int) -> dict:
    return {"type": "video", "video": index}


def add_image(traj: Trajectory, image: Image.Image, info: ImageInfo) -> dict:
    """Put an image into the conversation's image list; returns the content part that shows it.
    Under a probe's crop edit (the trajectory's meta), a crop is replaced here, for every family."""
    if traj.meta.get("intervention"):
        image, info = intervene_crop(traj.meta["intervention"].get("name"), image, info, traj.pixels)
    traj.pixels.append(image)
    traj.images.append(info)
    return image_part(len(traj.pixels))


def say(traj: Trajectory, text: str) -> None:
    """Append the assistant turn."""
    traj.messages.append({"role": "assistant", "content": [text_part(text)]})


def feedback(traj: Trajectory, *parts) -> None:
    """Append a user turn of `parts`: strings become text parts, dicts (from `add_image`) stay."""
    traj.messages.append({"role": "user", "content": [text_part(p) if isinstance(p, str) else p for p in parts]})


def new_call(traj: Trajectory, raw: str) -> ToolCall:
    """Record a tool call of the latest turn (its raw text as the family read it)."""
    call = ToolCall(turn=len(traj.generations) - 1, raw=clean_text(raw))
    traj.tool_calls.append(call)
    return call


def failed(call: ToolCall, kind: str, message: str) -> None:
    """Mark a call failed (`kind`: one of metrics.CALL_ERROR_KINDS; `message`: what happened)."""
    call.ok, call.error_kind, call.error = False, kind, clean_text(message)[:2000]


def crop_info(image: Image.Image, box, source_size, parent: int) -> ImageInfo:
    """The ImageInfo of a crop: `box` [left, top, right, bottom] in the source's pixels."""
    return ImageInfo(kind="crop", width=image.width, height=image.height, box=[int(round(v)) for v in box],
                     source_size=[int(v) for v in source_size], parent=parent)


def normalized(box, size) -> list[float]:
    """A pixel box as fractions of `size` (for the tool statistics' crop area and the report)."""
    w, h = size
    return [float(box[0]) / w, float(box[1]) / h, float(box[2]) / w, float(box[3]) / h]


def finish(traj: Trajectory, reason: str) -> None:
    traj.stop_reason = reason


def data_error(traj: Trajectory, message: str) -> None:
    traj.stop_reason, traj.error = DATA_ERROR, message


def last_response(traj: Trajectory) -> str:
    """The text of the trajectory's last generated turn, whether or not the family kept it in the
    conversation (`Generation.dropped`)."""
    if traj.generations and traj.generations[-1].dropped is not None:
        return traj.generations[-1].dropped
    for message in reversed(traj.messages):
        if message["role"] == "assistant":
            content = message["content"]
            return content if isinstance(content, str) else "".join(
                p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def released_for(family: str, benchmarks: str) -> str:
    """The deliberate difference of a family whose authors released evaluation code for some
    benchmarks only: the others (HR-Bench 4K/8K, ...) are run in that code's V* layout."""
    return (f"{family}'s released evaluation code covers {benchmarks} only; every other benchmark (HR-Bench "
            f"4K/8K, the field's others) is run with its V* prompt layout, loop and rule. Effect: unknown; such "
            f"scores are this protocol's, not numbers its authors made with released code.")


# --- Multiple-choice questions as the benchmarks store them -------------------------------------

_OPTION_LINE = re.compile(r"^\(([A-Z])\) ?(.*)$")


@dataclass(frozen=True)
class Choices:
    """A multiple-choice question split into its stem and lettered options (as pr-eval's
    benchmarks render them: the stem, then one "(A) text" line per option, then a suffix)."""

    stem: str
    options: tuple[tuple[str, str], ...]   # (letter, text) in the data's order
    suffix: str

    def text_of(self, letter: str) -> str | None:
        return next((text for l, text in self.options if l == letter), None)


def choices(question: str) -> Choices | None:
    """The question's stem, options and suffix; None when it has no "(A)" line (not multiple
    choice): the stem is the text before the first "(A)" line, the options the consecutive
    "(X) text" lines from there, the suffix what follows them."""
    lines = question.split("\n")
    first = next((i for i, line in enumerate(lines) if line.startswith("(A)")), None)
    if first is None:
        return None
    options = []
    end = first
    while end < len(lines) and (m := _OPTION_LINE.match(lines[end])):
        options.append((m.group(1), m.group(2)))
        end += 1
    return Choices("\n".join(lines[:first]), tuple(options), "\n".join(lines[end:]))
