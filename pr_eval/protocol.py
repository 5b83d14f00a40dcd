"""The evaluation protocol: every setting that changes a score, as one named, fingerprinted object.

A number is only comparable to the Pixel-Reasoner paper when it ran under the paper's protocol,
so prompts, tool rules, caps, pixel bounds and decoding live here and nowhere else. Every result
records `protocol.name` and `protocol.fingerprint`; two runs with the same fingerprint ran under
byte-identical settings.

The prompt and feedback strings are data the model was trained on and are reproduced byte for
byte from the authors' evaluation code (see ../shared/notes/protocol.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

# --- Byte-exact strings of the reference (the model was trained on these) -----------------------

_TOOLS_BLOCK = (
    "# Tools\n"
    "\n"
    "You may call one or more functions to assist with the user query.\n"
    "\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n"
    '{"type": "function", "function": {"name": "crop_image_normalized", "description": "Zoom in on the '
    'image based on the bounding box coordinates. It is useful when the object or text in the image is '
    'too small to be seen.", "parameters": {"type": "object", "properties": {"bbox_2d": {"type": "array", '
    '"description": "coordinates for bounding box of the area you want to zoom in. Values should be within '
    '[0.0,1.0].", "items": {"type": "number"}}, "target_image": {"type": "number", "description": "The '
    "index of the image to crop. Index from 1 to the number of images. Choose 1 to operate on original "
    'image."}}, "required": ["bbox_2d", "target_image"]}}}\n'
    '{"type": "function", "function": {"name": "select_frames", "description": "Select frames from a '
    'video.", "parameters": {"type": "object", "properties": {"target_frames": {"type": "array", '
    '"description": "List of frame indices to select from the video (no more than 8 frames in total).", '
    '"items": {"type": "integer", "description": "Frame index from 1 to 16."}}}, "required": '
    '["target_frames"]}}}\n'
    "</tools>\n"
    "\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)

PIXEL_REASONER_SYSTEM_PROMPT = "You are a helpful assistant.\n\n" + _TOOLS_BLOCK

PIXEL_REASONER_GUIDELINE = (
    "\n\nGuidelines: Understand the given visual information and the user query. Determine if it is "
    "beneficial to employ the given visual operations (tools). For a video, we can look closer by "
    "`select_frames`. For an image, we can look closer by `crop_image`. Reason with the visual "
    "information step by step, and put your final answer within \\boxed{}."
)

NO_TOOL_GUIDELINE = "Please think step by step, and put your final answer within \\boxed{}."

QWEN_MIN_PIXELS = 401_408  # 512 * 28 * 28: the engine processor's lower clamp in the reference
QWEN_MAX_PIXELS = 4_014_080  # 5120 * 28 * 28: its upper clamp


@dataclass(frozen=True)
class PixelBounds:
    """Pixel-count bounds for Qwen's `smart_resize` (factor 28)."""

    min_pixels: int
    max_pixels: int


@dataclass(frozen=True)
class Decoding:
    """Sampling settings of every generation turn."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1  # off
    max_new_tokens: int = 2048
    stop_tokens: tuple[str, ...] = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>")
    seed: int = 0
    min_tokens: int = 1                 # the reference's SamplingParams: never an empty turn
    skip_special_tokens: bool = False   # special tokens stay in the text the loop and scorer read


@dataclass(frozen=True)
class Sampling:
    """A sampled protocol's rollouts: `rollouts` trajectories per question (Avg@k, pass@k), each
    with its own seed, derived by the rule named in `seeds` (`pr_eval.loop.sampling`) from the run's
    --seed, the question and the rollout index, so the same command gives the same rollouts."""

    rollouts: int = 1
    seeds: str = "sha256(run-seed/task/sample-id/rollout)[:31 bits], per turn sha256(seed/turn)"


@dataclass(frozen=True)
class Caps:
    """When a trajectory is stopped and scored on what it has."""

    max_tool_calls: int = 4  # "stops when it already made more than 3 calls": 4 executed, 5 generations
    max_images: int = 16
    max_total_tokens: int = 12 * 1024 - 200  # prompt + output of the latest turn


@dataclass(frozen=True)
class Feedback:
    """The text of the user turn that carries a tool's result back to the model."""

    crop: str = "\nHere is the cropped image (Image Size: {w}x{h}):"
    frames: str = "\nHere are the selected frames (Frame Size: {w}x{h}, Numbered {a} to {b}):"
    error: str = "\nExecution error:\n{message}\n"


@dataclass(frozen=True)
class ErrorTexts:
    """The reference's messages for tool calls it refuses (the model was trained on them: byte for
    byte). Every other failure is fed back as the text of the Python exception it raises."""

    frames_of_image: str = ("Execution Error: You attempted to `select_frames` from **image** not "
                            "**video**. You should use `crop_image_normalized` instead for inspecting "
                            "**image**.")
    too_many_frames: str = ("Execution Error: You have selected {k} frames in total. Think again which "
                            "frames you need to check in details (no more than 8 frames)")
    frames_out_of_range: str = ("Execution Error: There are {n} frames numbered in range [1,{n}]. Your "
                                "selection `target_frames={frames}` is out of range.")
    video_frame_target: str = ("Execution Error: Incorrect `target_image` argument in "
                               "`crop_image_normalized` operation. You can only pick an image **from** the "
                               "video within [1,{n}], but the current argument `target_image={target}`.")
    video_image_target: str = ("Execution Error: Incorrect `target_image` argument in "
                               "`crop_image_normalized` operation. You can only pick an image within range "
                               "[2,{n}], but the current argument `target_image={target}`.")
    image_target: str = ("Execution Error: Incorrect `target_image` argument in `crop_image_normalized` "
                         "operation. You can only pick an image within [1,{n}]")
    crop_too_small: str = "Cropped image is too small: {w}x{h}"


@dataclass(frozen=True)
class Reference:
    """Which behaviours of the reference implementation a protocol reproduces, by name.

    The code of pr_eval implements one rule per name; the names are settings (so they are in the
    fingerprint) because a rule change moves scores even when no number above changes."""

    implementation: str = "TIGER-AI-Lab/Pixel-Reasoner@a3a6c3a"  # the commit whose behaviour is reproduced
    scoring: str = "rule_reward"          # pr_eval.scoring.rules.reference_accuracy on chat.scored_text
    scored_text: str = "conversation-after-first-assistant"  # the decoded conversation, special tokens kept
    chat_template: str = "qwen2.5-vl"     # how the conversation is rendered for scoring and tool parsing
    tool_request: str = "ends-with-close-tag"   # output minus <|im_end|> ends exactly with </tool_call>
    tool_parse: str = "last-open-tag-of-conversation"
    tool_errors: str = "reference-messages"     # the reference's texts; Python's own for other failures
    crop_source: str = "shown-image"      # crops are cut from images as the model was shown them
    video_target: str = "frames-until-any-image-added"
    resize: str = "qwen_vl_utils.smart_resize+to_rgb"
    # A video's frames as qwen_vl_utils 0.0.11 hands a list of frames on: any number of them, an
    # odd count padded to even by repeating the last frame (its FRAME_FACTOR 2); the tools index
    # the padded list.
    video_frames: str = "as-given-odd-padded-by-last"
    # How the engine pixel bounds and the video time step reach a model behind `--engine openai`:
    # sent with every request (vLLM's per-request mm_processor_kwargs and media_io_kwargs), and
    # checked once per server before any question by counting the prompt tokens of known images
    # and a video; a server that shows them otherwise is refused.
    served_media: str = "per-request-kwargs+token-count-check"


PIXEL_REASONER_FAMILY = "pixel-reasoner"
# What every family's protocol records: engines read decoding, pixel bounds, caps and the context
# length; the family's own behaviour is in `rules`.
SHARED_SETTINGS = ("name", "version", "family", "rules", "system_prompt", "decoding", "caps", "engine_pixels",
                   "max_model_len", "differences", "sampling", "intervention")


@dataclass(frozen=True)
class Intervention:
    """A faithfulness probe's edit of what the model sees (pr_eval.probe): its name and exactly how
    it edits, so a probe's result can never pass for a plain run's (its fingerprint differs)."""

    name: str     # e.g. "target-masked", "counterfactual-edit", "crop-blank", "crop-uncropped"
    method: str   # one sentence: what is changed, and how


@dataclass(frozen=True)
class Protocol:
    """A complete, named evaluation protocol. Frozen: a variant is a new object with a new name."""

    name: str
    version: str
    system_prompt: str | None
    guideline: str  # appended to the question after "\n\n"
    tools_enabled: bool = True    # False: no tool block in the system prompt (a call is still run)
    # Blind-tool ablation: calls are checked and succeed as usual, but the image returned is the
    # uncropped source ("input") or a blank image of the crop's size ("blank"). Whether accuracy
    # drops tells if a model really uses what it zooms into.
    blind: str | None = None
    crop_padding: float = 0.1  # normalized units added on every side of a crop box
    min_crop_side: int = 28  # a crop must be MORE than this many pixels wide and high
    input_pixels: PixelBounds = PixelBounds(256 * 28 * 28, 8000 * 28 * 28)
    crop_pixels: PixelBounds = PixelBounds(256 * 28 * 28, 5120 * 28 * 28)
    # Video frames: the reference caps each at 512*28*28 and sets no minimum of its own; 4*28*28
    # is smart_resize's smallest sensible size (a frame is never upscaled in practice).
    frame_pixels: PixelBounds = PixelBounds(4 * 28 * 28, 512 * 28 * 28)
    engine_pixels: PixelBounds = PixelBounds(QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)
    num_video_frames: int = 16   # frames taken from a video FILE (--data official); a row's own frames are used as given
    # The frame rate the processor is told a video's frames have. The reference passed none, so
    # the transformers of its time (4.49) used 2.0: seconds per temporal grid step =
    # temporal_patch_size 2 / 2.0 = 1.0, and the video tokens' M-RoPE time positions step by
    # 1.0 x tokens_per_second (0, 2, 4, ... on Qwen2.5-VL). Its training used 2.0 as well.
    video_fps: float = 2.0
    max_selected_frames: int = 8
    caps: Caps = Caps()
    decoding: Decoding = Decoding()
    feedback: Feedback = Feedback()
    errors: ErrorTexts = ErrorTexts()
    max_model_len: int = 18192
    reference: Reference = Reference()
    # Where pr_eval does not follow the reference on purpose, and the expected effect of each.
    differences: tuple[str, ...] = ()
    # None: one greedy trajectory per question (the paper's protocols). Set: sampled rollouts.
    sampling: Sampling | None = None
    notes: str = field(default="", compare=False)
    # The model family whose behaviour the protocol runs (pr_eval.families: prompt layout, call
    # grammar, tools, feedback, scoring), and that family's own settings (a frozen dataclass of its
    # module; None for Pixel Reasoner, whose settings are the fields above).
    family: str = PIXEL_REASONER_FAMILY
    rules: Any = None
    # A faithfulness probe's intervention (pr_eval.probe.variants); None for every plain protocol.
    intervention: Intervention | None = None

    def settings(self) -> dict:
        """Every setting that can change a score, as plain JSON-able data. Settings added after a
        protocol was published (`sampling`, `family`, `intervention`) appear only where they are not the default,
        so published fingerprints stay. Another family's protocol keeps the settings every engine
        reads (SHARED_SETTINGS) and its own `rules`; the Pixel-Reasoner fields it does not use are
        left out."""
        data = dataclasses.asdict(self)
        data.pop("notes")
        if data["sampling"] is None:
            data.pop("sampling")
        if data["intervention"] is None:
            data.pop("intervention")
        if self.family == PIXEL_REASONER_FAMILY:
            data.pop("family")
            data.pop("rules")
            return data
        return {k: v for k, v in data.items() if k in SHARED_SETTINGS}

    @property
    def rollouts(self) -> int:
        """Trajectories per question: 1 for a greedy protocol."""
        return self.sampling.rollouts if self.sampling is not None else 1

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.settings())

    def user_text(self, question: str) -> str:
        """The text part of the first user turn (the reference keeps a literal `<image>` in place)."""
        return question + "\n\n" + self.guideline

    def record(self) -> dict:
        """What every result file stores about the protocol it ran under."""
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint,
                "settings": self.settings()}


def fingerprint_of(settings: dict) -> str:
    """A protocol's fingerprint: the first 16 hex digits of the SHA-256 of the canonical JSON of its
    settings (sorted keys, no spaces, ASCII escapes). Submissions recompute it from stored settings."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Where pr_eval does not follow the reference on purpose (each with its expected effect). Listed in
# every protocol record and in the README; the reference's verdicts are otherwise reproduced bug
# for bug (tests/test_conformance_scoring.py and tests/test_tools.py).
DIFFERENCES = (
    "A request the engine refuses (e.g. a prompt past max_model_len after a large crop) ends that "
    "trajectory as engine_error and the run goes on; the reference's run would stop. Effect: none on "
    "runs the reference could finish.",
    "An input that smart_resize refuses (an aspect ratio above 200) or that cannot be decoded is a "
    "data_error of its sample; the reference's run would stop. Effect: as above.",
    "math_verify runs without its signal-based timeouts (they work only in a main thread, and would "
    "make a verdict depend on machine speed): values too large for sympy to compare in reasonable "
    "time (towers such as 9^{9^{9}}, factorials past 1000, exponents past 10000) count as "
    "unparsable. The reference's 5-second timeouts give the same verdict (no parse: wrong) on such "
    "inputs. Effect: none unless a real gold answer is that large.",
    "A list of golds with an item that is not a string scores with str(item) where the reference "
    "raises AttributeError and stops its run. Effect: none on the paper's data (every list gold "
    "is a list of strings).",
    "Python's own exception texts fed back for odd calls are those of CPython 3.11, the locked "
    "interpreter; the reference's Python version is not recorded, and a few texts differ between "
    "versions (3.10 says 'string indices must be integers' without ', not 'str''). Effect: a "
    "different error text on such rare calls only.",
    "The text that is scored is rendered from the trajectory with the Qwen2.5-VL chat template "
    "instead of being decoded from the engine's token ids, so every engine gets the same verdict. "
    "Effect: none where the tokenizer round-trips text, which Qwen's byte-level BPE does; a stop "
    "string that ends inside a token (only <|eot_id|>, written as plain text) is kept whole.",
    "--data official: an MVBench video file is shown as 16 frames pr-eval picks itself (the middle "
    "frame of 16 equal segments of the question's window, as MVBench's own loader does); the "
    "reference evaluated the frames the authors extracted into their hub copy (--data hub), whose "
    "rule is not published. Effect: unknown, possibly a few points on order and motion questions; "
    "only --data hub shows the reference's frames.",
    "A model behind --engine openai is refused when a check at connect finds that the server does "
    "not show images and videos at the protocol's pixel bounds (the reference ran vLLM in-process "
    "and never met the question). Effect: none on a run that goes ahead.",
)

PIXEL_REASONER = Protocol(
    name="pixel-reasoner-v3",
    version="3",
    system_prompt=PIXEL_REASONER_SYSTEM_PROMPT,
    guideline=PIXEL_REASONER_GUIDELINE,
    differences=DIFFERENCES,
    notes="Wang et al. 2025 (arXiv 2505.15966 v3): the behaviour of the authors' released evaluation "
          "code, its scoring bugs included.",
)

NO_TOOL = dataclasses.replace(
    PIXEL_REASONER, name="no-tool", system_prompt=None, guideline=NO_TOOL_GUIDELINE, tools_enabled=False,
    notes="The paper's baseline prompt for plain Qwen2.5-VL: no tool block (the chat template's default "
          "system message), the step-by-step suffix. As in the reference, a turn that still ends with "
          "</tool_call> is executed.")

BLIND_TOOL = dataclasses.replace(
    PIXEL_REASONER, name="blind-tool", blind="input",
    notes="Ablation: crops succeed but return the uncropped source image.")

BLIND_TOOL_BLANK = dataclasses.replace(
    PIXEL_REASONER, name="blind-tool-blank", blind="blank",
    notes="Ablation: crops succeed but return a blank image of the crop's size.")

# Mini-o3's sampling settings (its code's defaults when sampling; it reports Avg@32, and re-scored
# Pixel Reasoner that way), over the paper's prompt, tools and caps.
SAMPLED = dataclasses.replace(
    PIXEL_REASONER, name="pixel-reasoner-sampled",
    decoding=dataclasses.replace(PIXEL_REASONER.decoding, temperature=1.0, top_p=1.0, top_k=-1),
    sampling=Sampling(),
    notes="The paper's prompt, tools and caps with Mini-o3's sampling (temperature 1.0, top_p 1, top_k "
          "off); --samples-per-question K runs K seeded rollouts per question for Avg@K and pass@k.")

# The Pixel-Reasoner family's protocols; every family's are in pr_eval.families.PROTOCOLS.
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (PIXEL_REASONER, NO_TOOL, BLIND_TOOL, BLIND_TOOL_BLANK,
                                                      SAMPLED)}
DEFAULT_PROTOCOL = PIXEL_REASONER.name

# Protocols that can no longer be run: results made with them stay readable (their records carry
# their settings, so fingerprints can still be recomputed), but their scores are not the
# reference's and they are not comparable with runs of the protocols above. (no-tool, blind-tool
# and blind-tool-blank kept their names when they moved onto v2 and then v3; their v1
# fingerprints were 98aefe9c9924ef83, ed046a79a7ef6023 and 2bc281d03e088eb9, their v2 ones
# 88c67661599f6427, 76d3e60fb6590c54 and cd8c3347abb88c87, and pixel-reasoner-sampled's v2 one
# 3c58e8ae007f2e36.)
RETIRED: dict[str, dict] = {
    "pixel-reasoner-v1": {
        "fingerprint": "33125809b7aa1036", "successor": "pixel-reasoner-v2", "retired": "2026-12-01",
        "reason": "its accuracy was not the reference's verdict (last <answer> tag, Answer: lines, "
                  "plain-text fallback), crops of an input were cut from the full-resolution file, and "
                  "tool errors were reworded",
    },
    "pixel-reasoner-v2": {
        "fingerprint": "d69c2e1ba41c3ffa", "successor": "pixel-reasoner-v3", "retired": "2026-12-07",
        "reason": "video frames were handed to the processor at 1 fps where the reference's stack assumed 2 "
                  "(M-RoPE time steps twice the reference's on every MVBench sample), a model behind "
                  "--engine openai was shown images and videos at the server's own pixel bounds, and "
                  "video rows without exactly 16 frames were refused; its offline image results equal v3's, its "
                  "video results and its results over --engine openai are not comparable",
    },
}


# The overrides a protocol's name can carry ("mini-o3+max_tool_calls=3,samples=8", as
# `with_overrides` names it) and the argument of `with_overrides` each stands for.
OVERRIDES = {"max_tool_calls": "max_tool_calls", "max_images": "max_images", "max_new_tokens": "max_new_tokens",
             "samples": "samples_per_question"}
_OVERRIDE = re.compile(r"(max_tool_calls|max_images|max_new_tokens|samples)=(0|[1-9][0-9]{0,6})")


def parse_overrides(name: str) -> tuple[str, dict[str, int]] | None:
    """(base name, `with_overrides` arguments) of a name `with_overrides` gives, or None for a name
    without overrides or with anything else after its "+" (a probe's variant, a mistyped value)."""
    base, plus, changed = name.partition("+")
    if not plus:
        return None
    options = {}
    for part in changed.split(","):
        match = _OVERRIDE.fullmatch(part)
        if match is None:
            return None
        options[OVERRIDES[match.group(1)]] = int(match.group(2))
    return base, options


def with_overrides(protocol: Protocol, max_tool_calls: int | None = None, max_images: int | None = None,
                   max_new_tokens: int | None = None, samples_per_question: int | None = None) -> Protocol:
    """The protocol with caps (or a sampled protocol's rollouts per question) changed. The name
    says what changed and the fingerprint changes, so a result under overridden settings can never
    pass for one under the named protocol. ValueError: rollouts asked of a greedy protocol (its
    rollouts would all be the same trajectory)."""
    caps = {k: v for k, v in (("max_tool_calls", max_tool_calls), ("max_images", max_images)) if v is not None}
    decoding = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
    sampling = protocol.sampling
    if samples_per_question is not None and samples_per_question != protocol.rollouts:
        if sampling is None:
            raise ValueError(f"protocol {protocol.name!r} decodes greedily, so its {samples_per_question} samples "
                             f"per question would all be the same; use a sampled protocol, e.g. --protocol "
                             f"{SAMPLED.name}")
        sampling = dataclasses.replace(sampling, rollouts=samples_per_question)
    rollouts = {"samples": samples_per_question} if sampling is not protocol.sampling else {}
    if not caps and not decoding and not rollouts:
        return protocol
    changed = ",".join(f"{k}={v}" for k, v in {**caps, **decoding, **rollouts}.items())
    return dataclasses.replace(protocol, name=f"{protocol.name}+{changed}",
                               caps=dataclasses.replace(protocol.caps, **caps),
                               decoding=dataclasses.replace(protocol.decoding, **decoding), sampling=sampling)
