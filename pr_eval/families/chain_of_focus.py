"""Chain-of-Focus (xtong-zhang/Chain-of-Focus@431ff0d): its released V* evaluation, quirks included.

    eval/vstar/vllm_inference.py (the loop, the zoom tool) -> eval/vstar/judge_result.py (the rule, the judge)

The input is converted to RGB and smart-resized into 112²..3840² (LANCZOS); that resized image is
what the model sees, what its boxes refer to (absolute pixels) and what every crop is cut from. A
turn holding `<tool_call>` anywhere is a tool turn (no stop string: it ran to EOS); the FIRST
`<tool_call>…</tool_call>` is read with json, its box is enlarged 1.5x about its centre, clipped,
truncated, cut, scaled 2x and smart-resized. The reference never reports a bad call to the model:
an unreadable or invalid box shows the whole input scaled up (its `crop(None)`), an exception
shows the input as is. Here those calls are recorded as failed (ok False, the fallback named in
`error`) while the image the reference showed is still shown. The feedback is a user turn
[image, user prompt]. Six tool turns end the question with the answer "". The verdict is
judge_result.py's rule on the last non-tool turn; what it leaves open goes to its judge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from PIL import Image

from ..data.imaging import reference_size
from ..errors import DataError
from ..loop.tools import journal_safe
from ..protocol import Caps, Decoding, PixelBounds, Protocol
from ..trajectory import ANSWERED, MAX_IMAGES, MAX_TOOL_CALLS, ImageInfo
from .base import (Family, JudgePrompt, Verdict, add_image, crop_info, failed, feedback, finish,
                   last_response, new_call, normalized, released_for, say, text_part)

IMPLEMENTATION = "xtong-zhang/Chain-of-Focus@431ff0d"

# --- Byte-exact strings (vllm_inference.py:17-31; judge_result.py:57-131) -----------------------

COF_SYSTEM = (
    'You are a helpful assistant.\n\n# Tools\nYou may call one or more functions to assist with the user '
    'query.\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n'
    '{"type": "function", "function": {"name":"image_zoom_in_tool","description":"Zoom in on a specific '
    'region of an image by cropping it based on a bounding box (bbox_2d) and an optional object label.",'
    '"parameters":{"properties":{"bbox_2d":{"type":"array","items":{"type":"number"},"minItems":4,'
    '"maxItems":4,"description":"The bounding box of the region to zoom in, as [x1, y1, x2, y2], where '
    '(x1, y1) is the top-left corner and (x2, y2) is the bottom-right corner."},"label":{"type":"string",'
    '"description":"The name or label of the object in the specified bounding box (optional)."}},'
    '"required":["bbox_2d"], "type":"object"},"args_format": "Format the arguments as a JSON object."}}\n'
    '</tools>\n\nFor the function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    '<args-json-object>}\n</tool_call>'
)
COF_USER_PROMPT = (
    "\nThink in the mind first, and then decide whether to call tools one or more times OR provide final "
    "answer. Format strictly as: <think>...</think> <tool_call>...</tool_call> <tool_call>...</tool_call> "
    "(if any tools needed) OR <answer>...</answer> (if no tools needed)."
)
JUDGE_SYSTEM = "You are a helpful assistant."
JUDGE_TEMPLATE = (
    "\nBelow are two answers to a question. Question is [Question], [Standard Answer] is the standard "
    "answer to the question, and [Model_answer] is the answer extracted from a model's output to this "
    "question.  Determine whether these two answers are consistent.\nNote that [Model Answer] is "
    "consistent with [Standard Answer] whenever they are essentially the same. If the meaning is "
    "expressed in the same way, it is considered consistent, for example, 'pink' and 'it is pink'.\n"
    "If they are consistent, Judement is 1; if they are different, Judement is 0. Just output Judement "
    "and don't output anything else.\n\n\n"
)
JUDGE_EXAMPLES = (
    "\n[Question]: Is the countertop tan or blue?\n[Standard Answer]: (A) The countertop is tan.\n"
    "[Model_answer] : tan\nJudgement: 1\n",
    "\n[Question]: On which side of the picture is the barrier?\n[Standard Answer]: B. The barrier is on "
    "the left side of the picture.\n[Model_answer] : B\nJudgement: 1\n",
    "\n[Question]: Is the kite brown and large?\n[Standard Answer]: (A) Yes, the kite is brown and large.\n"
    "[Model_answer] : Yes\nJudgement: 1\n",
    "\n[Question]: Are the spots on a giraffe?\n[Standard Answer]: C. No, the spots are on a banana.\n"
    "[Model_answer] : no\nJudgement: 1\n",
    "\n[Question]: Who is wearing pants?\n[Standard Answer]: (D) The boy is wearing pants.\n"
    "[Model_answer] : (D) The girl in the picture is wearing pants.\nJudgement: 0\n",
    "\n[Question]: Is the man phone both blue and closed?\n[Standard Answer]: (B) Yes, the man phone is "
    "both blue and closed.\n[Model_answer] : No.\nJudgement: 0\n",
    "\n[Question]: What color is the towel in the center of the picture?\n[Standard Answer]: (A) The "
    "towel in the center of the picture is blue.\n[Model_answer] : The towel in the center of the "
    "picture is pink.\nJudgement: 0\n",
)
JUDGE_QUERY = "\n[Question]: {question}\n[Standard Answer]: {ground_truth}\n[Model_answer] : {predict_str}\nJudgement:"

TOOL_TAG = "<tool_call>"
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)       # vllm_inference.py:153-154
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>")                   # judge_result.py:49, no DOTALL
_OPTIONS = re.compile(r"\(([A-D])\)\s+([^\n]+)")                        # judge_result.py:136


@dataclass(frozen=True)
class ChainOfFocusRules:
    """Chain-of-Focus' own settings (in the fingerprint); the names are rules this module implements."""

    implementation: str = IMPLEMENTATION
    question: str = "Question: {text}{user_prompt}"      # l.286; the image part comes first
    user_prompt: str = COF_USER_PROMPT                    # also the text of every feedback turn (l.348)
    image_mode: str = "PIL.convert('RGB')"                # l.288
    input_pixels: PixelBounds = PixelBounds(112 * 112, 3840 * 3840)   # --min_resolution 112; l.35
    crop_pixels: PixelBounds = PixelBounds(112 * 112, 3840 * 3840)
    resample: str = "LANCZOS"
    tool_request: str = "'<tool_call>' in text"           # l.321
    tool_parse: str = "first <tool_call>(.*?)</tool_call> DOTALL, strip, json.loads, arguments.bbox_2d"
    coordinates: str = "absolute pixels of the resized input"
    enlarge: float = 1.5                                  # --enlarge_factor 1.5, then clip, int()
    scale_up: float = 2.0                                 # --scaleup_factor 2 (argparse float)
    bad_box: str = "crop(None): whole input x2, smart-resized"         # find returns None
    exception: str = "the resized input as is"                         # an exception in find or do_crop
    answer: str = "last non-tool turn, else ''; boxed split; <answer> without DOTALL"
    rule: str = "judge_result.process: len 1, len 2 with '.', len 3 with (), '(X) text' in answer"


# --- The pure pieces (each reproduces one function of the reference) ----------------------------

@dataclass(frozen=True)
class Reading:
    """What find_absolute_bboxes (l.130-194) makes of a tool turn."""

    box: list[int] | None                 # the enlarged, clipped, truncated box; None: no usable box
    escaped: bool = False                 # it raised (the loop's except at l.331 shows the input as is)
    kind: str | None = None               # the call's error kind for the statistics
    why: str = ""
    data: object = None                   # the parsed JSON, when there was some


def box_problem(box: list, width: int, height: int) -> str | None:
    """check_absolute_bbox_format (l.96-127): why `box` is refused, None when it is valid."""
    if not all(isinstance(v, (int, float)) for v in box):
        return f"bbox_2d values must be numbers: {box!r}"
    x0, y0, x1, y1 = box
    if not (0 <= x0 < width and 0 <= y0 < height and 0 < x1 <= width and 0 < y1 <= height):
        return f"bbox_2d {box!r} is outside the {width}x{height} image"
    if x1 <= x0 or y1 <= y0:
        return f"bbox_2d {box!r} is empty or reversed"
    return None


def enlarge(box, width: int, height: int, factor: float) -> list[int]:
    """l.178-194: the box scaled about its centre, clipped to the image, truncated by int()."""
    x0, y0, x1, y1 = box
    if factor != 1:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bw, bh = (x1 - x0) * factor, (y1 - y0) * factor
        x0, y0 = max(0, cx - bw / 2), max(0, cy - bh / 2)
        x1, y1 = min(width, cx + bw / 2), min(height, cy + bh / 2)
    return [int(x0), int(y0), int(x1), int(y1)]


def read_call(text: str, width: int, height: int, factor: float) -> Reading:
    """The FIRST call of the turn, as find_absolute_bboxes reads it (the tool name is not checked)."""
    found = _CALL.search(text)
    if found is None:
        return Reading(None, kind="malformed", why="no </tool_call> closes the call")
    try:
        data = json.loads(found.group(1).strip())
    except json.JSONDecodeError as exc:
        return Reading(None, kind="malformed", why=f"invalid JSON: {exc}")
    except (ValueError, RecursionError) as exc:  # not a JSONDecodeError: escapes find (l.168 catches only that)
        return Reading(None, escaped=True, kind="malformed", why=f"json.loads raised {type(exc).__name__}: {exc}")
    try:
        x0, y0, x1, y1 = data["arguments"]["bbox_2d"]
    except (KeyError, TypeError, ValueError) as exc:
        kind = "bad_arguments" if isinstance(data, dict) else "malformed"
        return Reading(None, escaped=True, kind=kind, why=f"{type(exc).__name__}: {exc}", data=data)
    problem = box_problem([x0, y0, x1, y1], width, height)
    if problem is not None:
        return Reading(None, kind="bad_arguments", why=problem, data=data)
    return Reading(enlarge([x0, y0, x1, y1], width, height, factor), data=data)


def resized(image: Image.Image, bounds: PixelBounds) -> Image.Image:
    """resize_image (l.35-72): smart_resize (factor 28) then LANCZOS; raises smart_resize's error."""
    return image.resize(reference_size(image.width, image.height, bounds), Image.Resampling.LANCZOS)


def zoom(source: Image.Image, box: list[int] | None, rules: ChainOfFocusRules) -> Image.Image:
    """do_crop (l.221-230): cut (`None`: the whole image), scale, smart-resize, LANCZOS, RGB. Raises
    smart_resize's ValueError (aspect above 200) or ZeroDivisionError (a crop 0 pixels wide or high)."""
    piece = source.crop(box)
    size = reference_size(piece.width * rules.scale_up, piece.height * rules.scale_up, rules.crop_pixels)
    return piece.resize(size, Image.Resampling.LANCZOS).convert("RGB")


def extract_answer(pred: str) -> str:
    """judge_result.py:164-169: the `\\boxed{` split (a `\\boxed` without `{`: "", see differences),
    `<|im_end|>` removed, the first <answer>…</answer> on one line, else ""."""
    if "\\boxed" in pred:
        parts = pred.split("\\boxed{")
        pred = parts[1].split("}")[0] if len(parts) > 1 else ""
    found = _ANSWER.search(pred.replace("<|im_end|>", ""))
    return found.group(1) if found else ""


def options_of(question: str) -> dict[str, str]:
    """extract_options (judge_result.py:135-140): every "(A)".."(D)" followed by whitespace and a
    line's rest, anywhere in the text; a later one of the same letter wins."""
    return dict(_OPTIONS.findall(question))


def rule(pred: str, label: str, options: dict[str, str]) -> float | None:
    """judge_result.py:172-192 on the extracted answer; None: the judge decides."""
    if len(pred) == 1:
        return float(pred == label)
    if len(pred) == 2 and "." in pred:
        return float(label in pred)
    if len(pred) == 3 and "(" in pred and ")" in pred:
        return float(label in pred)
    if label in options and f"({label}) {options[label]}" in pred:
        return 1.0
    return None


def judge_prompt(pred: str, label: str, question: str) -> str:
    """get_prompt (judge_result.py:117-131)."""
    demo = JUDGE_TEMPLATE + "".join(example + "\n\n" for example in JUDGE_EXAMPLES)
    return demo + JUDGE_QUERY.format(question=question, ground_truth=label, predict_str=pred)


def read_judgement(reply: str) -> float | None:
    """judge_result.py:205-225; None where it prints a format warning (and scores 0.0)."""
    reply = reply.strip()
    if "Judgement:" in reply:
        reply = reply.split("Judgement:")[-1].strip()
        return 1.0 if "1" in reply else 0.0 if "0" in reply else None
    return 1.0 if reply == "1" else 0.0 if reply == "0" else None


# --- The family -----------------------------------------------------------------------------------

SHOWN_AS_IS = "the reference's loop caught the exception and showed the resized input as is"
SHOWN_WHOLE = "the reference's find returned None and it showed the whole resized input, scaled up (crop(None))"


class ChainOfFocus(Family):
    name = "chain-of-focus"
    implementation = IMPLEMENTATION
    judge = JudgePrompt(name="chain-of-focus-judge", implementation=f"{IMPLEMENTATION} eval/vstar/judge_result.py",
                        model="Qwen2.5-VL-72B-Instruct", temperatures=(0.0,), max_tokens=None,
                        unreadable=0.0,  # a format warning scores 0.0 (l.216-217, 224-225), no retry
                        prompt_texts=(JUDGE_SYSTEM, JUDGE_TEMPLATE, *JUDGE_EXAMPLES, JUDGE_QUERY))

    def user_text(self, sample, protocol) -> str:
        return protocol.rules.question.format(text=sample.question, user_prompt=protocol.rules.user_prompt)

    def open(self, traj, sample, protocol) -> None:
        """System prompt, then [resized input, "Question: …"] (l.286-304)."""
        traj.messages.append({"role": "system", "content": protocol.system_prompt})
        if sample.is_video:
            raise DataError("Chain-of-Focus' evaluation shows one image per question, not a video")
        loaded = sample.load_images()
        if len(loaded) != 1:
            raise DataError(f"Chain-of-Focus' evaluation shows one image per question; this sample has {len(loaded)}")
        image = loaded[0].convert("RGB")
        try:
            shown = resized(image, protocol.rules.input_pixels)
        except (ValueError, ZeroDivisionError) as exc:
            raise DataError(f"cannot resize a {image.width}x{image.height} image as Chain-of-Focus does "
                            f"(smart_resize: {exc}); the reference's run would stop here") from None
        info = ImageInfo(kind="input", width=shown.width, height=shown.height, original_size=list(image.size))
        part = add_image(traj, shown, info)
        traj.messages.append({"role": "user", "content": [part, text_part(self.user_text(sample, protocol))]})

    def max_generations(self, protocol) -> int:
        return protocol.caps.max_tool_calls   # `while iteration < 6`: only tool turns count (l.312, 351)

    def step(self, traj, text, protocol) -> None:
        """l.321-362: a turn holding <tool_call> is zoomed and fed back; any other turn is the answer."""
        say(traj, text)
        if TOOL_TAG not in text:
            return finish(traj, ANSWERED)
        rules, source = protocol.rules, traj.pixels[0]
        image, info = self._zoom(traj, text, source, rules)
        part = add_image(traj, image, info)
        traj.tool_calls[-1].new_images.append(len(traj.pixels))
        feedback(traj, part, rules.user_prompt)
        if len(traj.tool_calls) >= protocol.caps.max_tool_calls:
            return finish(traj, MAX_TOOL_CALLS)     # the loop ends; the answer stays ""
        if len(traj.pixels) > protocol.caps.max_images:
            return finish(traj, MAX_IMAGES)         # vLLM's limit_mm_per_prompt refuses the next request
        return None

    def _zoom(self, traj, text, source, rules) -> tuple[Image.Image, ImageInfo]:
        """Read and run the call; returns the image the reference shows and its description."""
        width, height = source.size
        found = _CALL.search(text)
        call = new_call(traj, found.group(1) if found else text[text.index(TOOL_TAG) + len(TOOL_TAG):])
        reading = read_call(text, width, height, rules.enlarge)
        if isinstance(reading.data, dict):
            if isinstance(reading.data.get("name"), str):
                call.name = reading.data["name"]
            if isinstance(reading.data.get("arguments"), dict):
                call.arguments = journal_safe(reading.data["arguments"])
        whole = ImageInfo(kind="crop", width=width, height=height, parent=1, source_size=[width, height])
        if reading.escaped:
            failed(call, reading.kind, f"{reading.why}; {SHOWN_AS_IS}")
            return source, whole
        try:
            image = zoom(source, reading.box, rules)
        except (ValueError, ZeroDivisionError) as exc:
            kind = "crop_too_small" if reading.box is not None else reading.kind
            failed(call, kind, f"smart_resize refused the crop {reading.box} ({type(exc).__name__}: {exc}); {SHOWN_AS_IS}")
            return source, whole
        if reading.box is None:
            failed(call, reading.kind, f"{reading.why}; {SHOWN_WHOLE}")
            return image, ImageInfo(kind="crop", width=image.width, height=image.height, parent=1,
                                    source_size=[width, height])
        call.ok = True
        call.box_normalized = normalized(reading.box, source.size)
        return image, crop_info(image, reading.box, source.size, parent=1)

    def verdict(self, traj, target) -> Verdict:
        """judge_result.process on pred_ans: the last non-tool turn's text, "" when the loop ended
        without one (six tool turns, or a request vLLM refused)."""
        pred = last_response(traj) if traj.stop_reason == ANSWERED else ""
        answer = extract_answer(pred)
        return Verdict(rule(answer, str(target), options_of(traj.question)), answer)

    def judge_messages(self, traj, target, verdict: Verdict) -> list[dict]:
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": judge_prompt(verdict.answer, str(target), traj.question)}]

    def judge_score(self, reply: str) -> float | None:
        return read_judgement(reply)


DIFFERENCES = (
    "The question is pr-eval's V* text (stem, '(A) ...' lines in pr-eval's seeded option order, then "
    "\"Answer with the option's letter from the given choices directly.\"); whether the reference's "
    "test_questions.jsonl text has that suffix, and its option order, are not verified. Effect: unknown, "
    "small; the suffix favours a bare letter, which the rule decides without the judge.",
    "An input that smart_resize refuses (aspect ratio above 200), that cannot be decoded, or a sample with "
    "no image, several images or a video is a data_error of that sample; the reference's run would stop. "
    "Effect: none on V*.",
    "A request the engine refuses (e.g. a prompt past 32768 tokens) ends the trajectory as engine_error, "
    "scored 0; the reference saves pred_ans '' (status 'error: ...') and its judge is asked about ''. "
    "Effect: none unless that judge calls an empty answer correct.",
    "An answer with '\\boxed' but no '\\boxed{' reads as '' (left to the judge); the reference's judge run "
    "dies on an IndexError. A gold letter absent from the question's options skips the '(X) text' rule; the "
    "reference's run dies on a KeyError. Effect: none on a run the reference could finish.",
    "The image is loaded by pr-eval (transparent pixels laid on white) and then convert('RGB'); the "
    "reference's convert('RGB') drops alpha. Effect: none on V* (JPEG files).",
)

CHAIN_OF_FOCUS = Protocol(
    name="chain-of-focus", version="1", system_prompt=COF_SYSTEM, guideline="", family="chain-of-focus",
    rules=ChainOfFocusRules(),
    decoding=Decoding(temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=512, stop_tokens=(), seed=0,
                      min_tokens=0, skip_special_tokens=True),
    caps=Caps(max_tool_calls=6, max_images=6, max_total_tokens=32768),
    engine_pixels=PixelBounds(3136, 12845056), max_model_len=32768,
    differences=DIFFERENCES + (released_for("Chain-of-Focus", "V* (eval/vstar)"),),
    notes="Chain-of-Focus (xtong-zhang/Chain-of-Focus, commit 431ff0d; eval code unchanged since 638b9ba): "
          "eval/vstar/vllm_inference.py with slurm_jobs/eval/inference_vstar.sh's arguments (scaleup 2, "
          "min_resolution 112, enlarge 1.5), vLLM 0.8.2 llm.chat with SamplingParams(max_tokens=512, "
          "temperature=0), limit_mm_per_prompt image=6, max_model_len 32768; scored by eval/vstar/"
          "judge_result.py (Qwen2.5-VL-72B-Instruct as judge). The engine's pixel bounds are Qwen2.5-VL's "
          "processor defaults (the checkpoint's own are not verified): inputs above 12.8 MP are shrunk again "
          "by the processor while boxes are read in the 3840² frame, as in the reference. The sixth tool "
          "turn's image is made and recorded but never sent, as in the reference. Calls the reference "
          "silently answers with a fallback image are recorded as failed (ok False, the fallback named).",
)

FAMILY = ChainOfFocus()
PROTOCOLS = (CHAIN_OF_FOCUS,)
