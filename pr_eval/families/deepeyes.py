"""DeepEyes (Visual-Agent/DeepEyes eval/eval_vstar.py + eval/judge_result.py): its V* evaluation.

The first user turn is [the image as loaded, 'Question: {stem}\\nOptions: \\nA. ..\\nB. ..\\n\\n' + the
user prompt] (eval_vstar.py:72-76, 128-152), under the tool system prompt (l.53-71). A turn is a
call when it holds `<tool_call>` anywhere (l.192); the FIRST call's body is read by Python's
`eval` there (l.193-194), here by `safe_eval`, which gives eval's values and errors and refuses
what eval would run. `bbox_2d` is in the original image's pixels: PIL crops it (black outside the
image), DeepEyes' own smart_resize (no aspect check, max 16384*28*28) sizes it from the unrounded
box, BICUBIC (l.195-204); the feedback is a user turn "<tool_response>", crop, user prompt,
"</tool_response>" (l.212-232). Any exception ends the sample (l.260-262: stop `tool_error`),
scored on its last response. The loop runs while the last response lacks `</answer>`, at most 11
generations (l.175-180, 259). A turn with neither call nor `</answer>` is not appended, so the
identical request goes again (`Generation.dropped`). A turn that ends the sample is kept in the
record (the released code saves it in `pred_output`; no request follows it either way).

Protocols: `deepeyes` shows the options in the data's order (cc3ff4d shuffles them, unseeded, and
scores the shown letter); `deepeyes-correct-first` lists the correct option first, so the answer is
always "A" (the a7a337a release, whose V* files list the correct option first). The verdict and
the judge are in `deepeyes_judge`. `deepeyes-hrbench` (rules.layout "hrbench") is the HR-Bench
script: where it departs from this one is in `deepeyes_hrbench`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from PIL import Image

from ..errors import DataError
from ..loop.safe_eval import Refused, safe_eval
from ..loop.tools import journal_safe
from ..protocol import Caps, Decoding, PixelBounds, Protocol
from ..trajectory import ANSWERED, MAX_IMAGES, MAX_TOOL_CALLS, TOOL_ERROR, ImageInfo
from . import deepeyes_hrbench, deepeyes_judge
from .base import (Family, JudgePrompt, Verdict, add_image, choices, crop_info, failed, feedback, finish,
                   last_response, new_call, normalized, say, text_part)

# --- Byte-exact strings of eval_vstar.py (a7a337a l.53-76; the same at cc3ff4d) ------------------

SYSTEM_PROMPT = (
    "You are a helpful assistant.\n\n# Tools\nYou may call one or more functions to assist with the user query.\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type":"function","function":{"name":"image_zoom_in_tool","description":"Zoom in on a specific region of '
    'an image by cropping it based on a bounding box (bbox) and an optional object label.","parameters":{"type":'
    '"object","properties":{"bbox_2d":{"type":"array","items":{"type":"number"},"minItems":4,"maxItems":4,'
    '"description":"The bounding box of the region to zoom in, as [x1, y1, x2, y2], where (x1, y1) is the '
    'top-left corner and (x2, y2) is the bottom-right corner."},"label":{"type":"string","description":"The name '
    'or label of the object in the specified bounding box (optional)."}},"required":["bbox"]}}}\n</tools>\n\n'
    "# How to call a tool\nReturn a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
    '**Example**:  \n<tool_call>  \n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 100, 200], '
    '"label": "the apple on the desk"}}  \n</tool_call>'
)
USER_PROMPT = ("\nThink first, call **image_zoom_in_tool** if needed, then answer. Format strictly as:  "
               "<think>...</think>  <tool_call>...</tool_call> (if tools needed)  <answer>...</answer> ")
USER_TEMPLATE = "Question: {question}\nOptions: {options}\n" + USER_PROMPT
OPTION_LINE = "{letter}. {text}\n"   # abc_map[i + 1] + '. ' + option + '\n', after a leading "\n"
LETTERS = "ABCDEF"                   # abc_map: a seventh option is a KeyError there

# Names eval would resolve in eval_vstar.py's worker: the module's globals and process()'s locals
# (a7a337a and cc3ff4d). safe_eval refuses them, as it refuses Python's builtins.
PEER_NAMES = frozenset((
    "os json np multiprocessing argparse torch tqdm math BytesIO Image base64 io OpenAI requests shuffle parser "
    "args openai_api_key openai_api_base client response models eval_model_name vstar_bench_path save_path "
    "abc_map IMAGE_FACTOR MIN_PIXELS MAX_PIXELS instruction_prompt_system USER_PROMPT_V2 "
    "instruction_prompt_before user_prompt start_token end_token encode_image_to_base64 "
    "encode_pil_image_to_base64 round_by_factor ceil_by_factor floor_by_factor smart_resize process "
    "__file__ __builtins__ __cached__ img_arg img test_path img_path anno_path f anno question options "
    "correct_answer option_str i prompt pil_img base64_image messages print_messages chat_message "
    "response_message status try_count turn_idx params action_list bbox_list cropped_pil_image_content_list "
    "bbox_str bbox left top right bottom cropped_image new_w new_h cropped_pil_image cropped_pil_image_content "
    "user_msg content_f _message p_message").split())


@dataclass(frozen=True)
class DeepEyesRules:
    """The family's own settings (in the fingerprint): strings, call grammar, crop rule, caps, verdict."""

    implementation: str = "Visual-Agent/DeepEyes@cc3ff4d eval/eval_vstar.py + eval/judge_result.py"
    user_template: str = USER_TEMPLATE
    option_line: str = OPTION_LINE
    option_order: str = "data"                  # or "correct-first" (a7a337a: the answer is always "A")
    tool_response: tuple[str, str, str] = ("<tool_response>", USER_PROMPT, "</tool_response>")
    call: str = "'<tool_call>' in turn; first body; eval (safe_eval, peer names refused)"
    crop: str = "original image; PIL crop (black padding); smart_resize of the unrounded box; BICUBIC"
    crop_factor: int = 28
    crop_min_pixels: int = 4 * 28 * 28
    crop_max_pixels: int = 16384 * 28 * 28
    max_box_pixels: int = 1 << 26               # a larger rounded box is refused (pr-eval's guard)
    on_exception: str = "end the sample (tool_error), score its last response"
    loop: str = "while '</answer>' not in the last turn; a turn without call or '</answer>' is re-sent"
    answer: str = "first <answer> of the last response, else all of it"
    rule: str = "boxed split; len 1 == letter; len 2 with '.' has letter; 'X. text' in pred; else judge"
    layout: str = "vstar"                       # "hrbench": eval_hrbench.py's input, crop, stop, rule (deepeyes_hrbench)


def smart_resize(height: float, width: float, factor: int = 28, min_pixels: int = 4 * 28 * 28,
                 max_pixels: int = 16384 * 28 * 28) -> tuple[int, int]:
    """eval_vstar.py:94-119 (qwen-vl-utils' without the aspect-ratio check): each side rounded to
    the factor (at least one factor), then scaled into the pixel bounds (floored above, ceiled below);
    a zero side with a small other side divides by zero, as there."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def crop(source: Image.Image, box, rules: DeepEyesRules) -> tuple[Image.Image, tuple]:
    """l.201-204: unpack the box (ValueError/TypeError as Python's), PIL's crop (its own checks and
    rounding, black outside), smart_resize of (right - left, bottom - top) unrounded, BICUBIC."""
    left, top, right, bottom = box
    values = (left, top, right, bottom)
    numbers = all(isinstance(v, int) or isinstance(v, float) and math.isfinite(v) for v in values)
    if numbers and right >= left and bottom >= top:
        x0, y0, x1, y1 = (round(v) for v in values)
        if (x1 - x0) * (y1 - y0) > rules.max_box_pixels:
            raise Refused(f"a crop box over {rules.max_box_pixels:,} pixels")
    cut = source.crop((left, top, right, bottom))
    new_w, new_h = smart_resize(right - left, bottom - top, rules.crop_factor, rules.crop_min_pixels,
                                rules.crop_max_pixels)
    return cut.resize((new_w, new_h), resample=Image.BICUBIC), (left, top, right, bottom)


# --- The layout of a question ---------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    stem: str                               # the question without options (the judge's [Question])
    options: tuple[tuple[str, str], ...]    # (shown letter, text) in the shown order
    choice: str | None                      # the correct option's shown letter; None: no options

    def standard_answer(self, target) -> str:
        """judge_result.py's "X. text" (l.140 / cc3ff4d `f"{choice}. {answer}"`); the gold itself
        for a question without options."""
        if self.choice is None:
            return str(target)
        return f"{self.choice}. {dict(self.options)[self.choice]}"


def layout(question: str, target, order: str) -> Layout:
    """The question as DeepEyes shows it: the stem (pr-eval's "(A) ..." lines and suffix removed)
    and the options lettered A.. in the data's order, or the correct one first (the others keep
    their order). A question without "(A)" lines, or a gold that is not one of its letters, has no
    shown choice."""
    parsed = choices(question)
    if parsed is None or not parsed.options:
        return Layout(question, (), None)
    texts = [text for _, text in parsed.options]
    letters = [letter for letter, _ in parsed.options]
    gold = str(target).strip() if target is not None else ""
    index = letters.index(gold) if gold in letters else None
    if order == "correct-first" and index is not None:
        texts = [texts[index]] + texts[:index] + texts[index + 1:]
        index = 0
    shown = tuple((_letter(i), text) for i, text in enumerate(texts))
    return Layout(parsed.stem, shown, None if index is None else shown[index][0])


def _letter(i: int) -> str:
    return LETTERS[i] if i < len(LETTERS) else chr(ord("A") + i)


def prompt_text(shown: Layout, rules: DeepEyesRules) -> str:
    options = "\n" + "".join(rules.option_line.format(letter=l, text=t) for l, t in shown.options)
    return rules.user_template.format(question=shown.stem, options=options)


# --- The family ------------------------------------------------------------------------------------

class DeepEyes(Family):
    name = "deepeyes"
    implementation = "Visual-Agent/DeepEyes@cc3ff4d (eval_vstar.py, judge_result.py; a7a337a option order)"
    judge = JudgePrompt(
        name="deepeyes-judge", implementation="Visual-Agent/DeepEyes@a7a337a eval/judge_result.py",
        model="Qwen2.5-72B-Instruct", temperatures=(0.0,), max_tokens=None, unreadable=None,
        prompt_texts=(deepeyes_judge.JUDGE_SYSTEM, deepeyes_judge.JUDGE_TEMPLATE, *deepeyes_judge.JUDGE_EXAMPLES,
                      deepeyes_judge.JUDGE_QUERY))

    def user_text(self, sample, protocol) -> str:
        return prompt_text(layout(sample.question, sample.answer, protocol.rules.option_order), protocol.rules)

    def open(self, traj, sample, protocol) -> None:
        """System prompt, then [image, text]: the image as loaded, never resized (l.136-152); under
        deepeyes-hrbench resized by smart_resize, the original kept for the crops."""
        shown = layout(sample.question, sample.answer, protocol.rules.option_order)
        if len(shown.options) > len(LETTERS):
            raise DataError(f"{len(shown.options)} options: DeepEyes' abc_map letters six at most")
        text = text_part(prompt_text(shown, protocol.rules))
        images = sample.load_images()
        if len(images) != 1:
            raise DataError(f"DeepEyes' evaluation shows one image per question; this sample has {len(images)}")
        image = loaded = images[0]
        rules = protocol.rules
        if rules.layout == deepeyes_hrbench.LAYOUT:  # eval_hrbench.py:150-155: shown resized, cropped from the original
            size = smart_resize(loaded.width, loaded.height, rules.crop_factor, rules.crop_min_pixels,
                                rules.crop_max_pixels)
            image = loaded.resize(size, resample=Image.BICUBIC)
        traj.messages.append({"role": "system", "content": protocol.system_prompt})
        part = add_image(traj, image, ImageInfo(kind="input", width=image.width, height=image.height,
                                                original_size=[loaded.width, loaded.height]))
        traj.messages.append({"role": "user", "content": [part, text]})
        if rules.layout == deepeyes_hrbench.LAYOUT:
            deepeyes_hrbench.keep_original(traj, loaded)

    def release(self, traj) -> None:
        deepeyes_hrbench.release(traj)

    def max_generations(self, protocol) -> int:
        return protocol.caps.max_tool_calls + 1

    def step(self, traj, text, protocol) -> None:
        """l.175-262: a call is run (its exception ends the sample), its crop fed back; '</answer>'
        or the last generation ends the loop; a turn with neither call nor answer is dropped."""
        generation = traj.generations[-1]
        last = len(traj.generations) >= self.max_generations(protocol)
        hrbench = protocol.rules.layout == deepeyes_hrbench.LAYOUT
        if hrbench:  # eval_hrbench.py:225: the reply's content leaves the stop string '</tool_call>' out
            text = deepeyes_hrbench.without_stop(text, generation.stop)
        if "<tool_call>" not in text:
            if "</answer>" in text:
                say(traj, text)
                return finish(traj, ANSWERED)
            generation.dropped = text   # not appended: the next request is the same one (l.249-256)
            return finish(traj, MAX_TOOL_CALLS) if last else None
        say(traj, text)
        raw = text.split("<tool_call>")[1].split("</tool_call>")[0].strip()
        call = new_call(traj, raw)
        stage = "malformed"
        try:
            parsed = safe_eval(raw, deepeyes_hrbench.PEER_NAMES if hrbench else PEER_NAMES)
            _remember(call, parsed)
            arguments = parsed["arguments"]
            stage = "bad_arguments"
            box = arguments["bbox_2d"]
            source = deepeyes_hrbench.original(traj) if hrbench else traj.pixels[0]
            if len(traj.pixels) >= protocol.caps.max_images:
                failed(call, "max_images", "image cap reached")
                return finish(traj, MAX_IMAGES)
            image, box = crop(source, box, protocol.rules)
        except Exception as exc:  # noqa: BLE001 - the released loop ends the sample on ANY exception
            kind = "refused" if isinstance(exc, Refused) else stage
            failed(call, kind, f"{type(exc).__name__}: {exc}")
            return finish(traj, TOOL_ERROR)
        size = [source.width, source.height]
        call.ok, call.box_normalized = True, normalized(box, size)
        start, end = protocol.rules.tool_response[0], protocol.rules.tool_response[2]
        feedback(traj, start, add_image(traj, image, crop_info(image, box, size, parent=1)),
                 protocol.rules.tool_response[1], end)
        call.new_images.append(len(traj.pixels))
        if "</answer>" in text:
            return finish(traj, ANSWERED)  # the crop is made but never sent (l.175)
        if last:
            return finish(traj, MAX_TOOL_CALLS)  # l.179: the 11th generation's crop is never sent

    def verdict(self, traj, target) -> Verdict:
        if _layout(traj.protocol) == deepeyes_hrbench.LAYOUT:
            return deepeyes_hrbench.verdict(last_response(traj), traj.question, target)
        shown = layout(traj.question, target, _order(traj.protocol))
        pred = deepeyes_judge.extract(last_response(traj))
        choice = shown.choice if shown.choice is not None else str(target)
        return deepeyes_judge.rule(pred, choice, shown.standard_answer(target))

    def judge_messages(self, traj, target, verdict: Verdict) -> list[dict]:
        if _layout(traj.protocol) == deepeyes_hrbench.LAYOUT:
            return deepeyes_hrbench.judge_messages(verdict.answer, traj.question, target)
        shown = layout(traj.question, target, _order(traj.protocol))
        return deepeyes_judge.judge_messages(verdict.answer, shown.standard_answer(target), shown.stem)

    def judge_score(self, reply: str) -> float | None:
        return deepeyes_judge.judge_score(reply)


def _remember(call, parsed) -> None:
    """The call's name and arguments where the evaluated body is a dict holding them."""
    if isinstance(parsed, dict):
        if isinstance(parsed.get("name"), str):
            call.name = parsed["name"]
        if isinstance(parsed.get("arguments"), dict):
            call.arguments = journal_safe(_plain(parsed["arguments"]))


def _plain(value):
    """An evaluated value as JSON data: tuples as lists, what JSON has no form for as its repr."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    return repr(value)


# --- The protocols -----------------------------------------------------------------------------------

DIFFERENCES = (
    "Every benchmark is shown in V*'s layout (eval_vstar.py); DeepEyes' HR-Bench script (cc3ff4d "
    "eval_hrbench.py: resized input, crops from the original, stop at </tool_call>, option-text rule) is "
    "the protocol deepeyes-hrbench. Effect: HR-Bench scores under these protocols are not those of "
    "DeepEyes' HR-Bench script, most on 8K.",
    "A tool-call body is read by safe_eval, not eval: calls, attribute access, names that resolve in the "
    "released script (its globals, process()'s locals, Python's builtins) and results too large to build "
    "are refused, never run; the sample ends as tool_error (error kind 'refused'), where eval would have "
    "run them. Effect: none on real model output.",
    "A crop box of more than 2**26 pixels (after PIL's rounding) is refused (tool_error, 'refused') where "
    "the released code would allocate it. Effect: none on real model output (a whole 8K image is 33 MP).",
    "The input is decoded and converted to RGB before it is shown and cropped; the released code sends the "
    "file's bytes and crops Image.open's own mode. Effect: none on V* (RGB JPEGs); a palette or grey image's "
    "crops are cut in RGB.",
    "Questions with more than six options are data errors (the released abc_map raises KeyError and stops "
    "the run); samples with several images are data errors (the released code shows one). Questions "
    "without options are shown with an empty option list, scored with the gold as both letter and "
    "standard answer. Effect: only on benchmarks the released code never ran.",
    "A \\boxed without '{' in the prediction scores 0; the released judge raises IndexError and its whole "
    "run stops. Effect: none on a run the released code could finish.",
    "A request the engine refuses (a prompt past max_model_len) ends the sample as engine_error, scored 0; "
    "the released loop catches the exception and scores the last response. Effect: rare, long trajectories.",
    "deepeyes shows the benchmark's own option order (pr-eval's V* order is shuffled with a fixed seed); "
    "cc3ff4d reshuffles with an unseeded random.shuffle on every run. Effect: one fixed draw of the same "
    "distribution of orders, reproducible.",
    "Sampling parameters the released requests leave unset are those of Decoding (top_p 1, top_k off, no "
    "repetition penalty); a recent vLLM server fills them from the checkpoint's generation_config "
    "(UNVERIFIED for DeepEyes' runs). Effect: none unless that config sets a repetition penalty.",
    "A trajectory stops at caps.max_images images (12, unreachable in 11 generations); the released loop has "
    "no image cap. Effect: none unless --max-tool-calls is raised.",
)

DEEPEYES = Protocol(
    name="deepeyes", version="1", system_prompt=SYSTEM_PROMPT, guideline="", family="deepeyes",
    rules=DeepEyesRules(),
    decoding=Decoding(temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=10240, stop_tokens=("<|im_end|>",),
                      seed=0, min_tokens=0, skip_special_tokens=True),
    caps=Caps(max_tool_calls=10, max_images=12, max_total_tokens=32768),
    engine_pixels=PixelBounds(3136, 12845056), max_model_len=32768, differences=DIFFERENCES,
    notes="DeepEyes' V* evaluation at Visual-Agent/DeepEyes@cc3ff4d (eval/eval_vstar.py, eval/judge_result.py): "
          "options in the data's order, scored by the shown letter; at most 11 generations, no token cap "
          "(max_total_tokens is not checked); the judge is Qwen2.5-72B-Instruct with judge_result.py's prompt.")

DEEPEYES_CORRECT_FIRST = dataclasses.replace(
    DEEPEYES, name="deepeyes-correct-first", rules=DeepEyesRules(
        implementation="Visual-Agent/DeepEyes@a7a337a eval/eval_vstar.py + eval/judge_result.py",
        option_order="correct-first"),
    notes="DeepEyes' released V* evaluation (Visual-Agent/DeepEyes@a7a337a, 2025-05-23): the options in V*'s "
          "raw order, which lists the correct option first, so the answer is always A (judge_result.py "
          "hard-codes 'A'); the others keep their relative order.")

PROTOCOLS = (DEEPEYES, DEEPEYES_CORRECT_FIRST, deepeyes_hrbench.protocol(DEEPEYES))
_ORDERS = {p.name: p.rules.option_order for p in PROTOCOLS}
_LAYOUTS = {p.name: p.rules.layout for p in PROTOCOLS}


def _layout(protocol_name: str) -> str:
    """As `_order`: the layout of a trajectory's protocol from its name ("vstar" when unknown)."""
    return _LAYOUTS.get(protocol_name.split("+")[0], "vstar")


def _order(protocol_name: str) -> str:
    """The option order of a trajectory's protocol, from its name (an override's "+..." suffix left
    out); an unknown name (a record of another protocol, the judge's check) shows the data's order."""
    return _ORDERS.get(protocol_name.split("+")[0], "data")


FAMILY = DeepEyes()
