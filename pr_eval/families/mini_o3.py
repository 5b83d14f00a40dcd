"""Mini-o3 (Mini-o3/Mini-o3@8654dbf): its released evaluation, the verl val-only run of the README.

    multimodal_dataset.py (prompt, first image) -> vllm_async_engine.py (the loop, `<grounding>`
    calls, function_tools.py's crop) -> reward_score/general_qa_tool.py (GPT judge) or
    general_qa_tool_mc.py (the multiple-choice rule)

The first user turn is the data file's `problem`, "<image>\\n" + question, with the image where
`<image>` stands: the stored image in RGB, LANCZOS into 40,000..2,000,000 px. A turn holding
`<grounding>…</grounding>` is a call (the engine stops at `</grounding>` and keeps it); its box is
read with the reference's regex and `eval` (here `safe_eval`), in coordinates relative to its
source: the FULL-RESOLUTION original ("original_image") or an un-resized crop ("observation_i").
The crop is shown NEAREST-resized into the same bounds (mini_o3_images). Feedback is a user turn;
an exception's text comes back in the error prompt. Twelve generations, twelve images in the
prompt and a 30,768-token context stop the trajectory ("exceed"); a turn without a call ends it.

Scoring (`MiniO3Rules.scoring`): "mini-o3" and "mini-o3-sampled" score as the README command does
(the GPT judge on the first `<answer>` of all turns joined by ' '; no answer is 0 without a
judge call); "mini-o3-mc" by general_qa_tool_mc's rule (the last `<answer>` of the last turn),
which never leaves a question open. The crop sources live beside the trajectory (`_SOURCES`), so
the engines are sent only the images the conversation shows.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
import weakref
from dataclasses import dataclass

from PIL import Image

from ..errors import DataError, is_our_bug
from ..loop.chat import message_text
from ..loop.safe_eval import safe_eval
from ..loop.tools import clean_text, journal_safe
from ..protocol import Caps, Decoding, PixelBounds, Protocol, Sampling
from ..trajectory import ANSWERED, MAX_IMAGES, MAX_TOKENS, MAX_TOOL_CALLS, ImageInfo
from . import mini_o3_images as images
from .base import (Family, JudgePrompt, Verdict, add_image, crop_info, failed, feedback, finish, new_call,
                   normalized, released_for, say, text_part)

IMPLEMENTATION = "Mini-o3/Mini-o3@8654dbf"
PH = "<|vision_start|><|image_pad|><|vision_end|>"

# --- Byte-exact strings (constants.py:1, 7, 9; vllm_async_engine.py:535; general_qa_tool.py:7, 9) --

MO_SYSTEM = (
    "You are a helpful assistant. Answer the user's question based on the image provided. Output your "
    "thinking process within the <think> and </think> tags. Whenever you find anything unclear, you can zoom "
    'in a specific region in the given image to see more clearly by outputing <grounding>{"bbox_2d": [x0, '
    'y0, x1, y1], "source": "original_image"}</grounding>, where (x0, y0) and (x1, y1) are the top-left and '
    "bottom-right coordinates of the region that you want to zoom in, respectively (suppose the width and "
    "height of the image are 1.0), and 'source' refers to the image that you zoom in and could be either "
    "'original_image' or 'observation_i'. Once the final answer is confirmed, put it within <answer> and "
    "</answer>."
)
MO_TOOL_PROMPT = (
    "After the above Action {action_turn}, here is the the zoom-in image (Observation {observation_turn}):\n"
    + PH + ".\nContinue your reasoning process inside <think> and </think>. If needed, you can continue to "
    "zoom in on the original image or any of the observations, by outputting <grounding> and </grounding> as "
    "before. If the final answer is confirmed, put your final answer inside <answer> and </answer>."
)
MO_ERROR = (
    "ERROR occurs during grounding. Error Information: {message}.\n"
    "Please analyze the error information obtained from the function tool and adjust your response. "
    "Countinue your reasoning process inside <think> and </think>."
)
MO_JUDGE_SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs.\nYour task is to compare the predicted answer with the correct answer and "
    "determine if they match meaningfully. Here's how you can accomplish the task:\n------\n##INSTRUCTIONS:\n"
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n- Consider "
    "synonyms or paraphrases as valid matches.\n- Evaluate the correctness of the prediction compared to the "
    "answer."
)
MO_JUDGE_QUERY = (
    "I will give you a question related to an image and the following text as inputs:\n\n1. **Question "
    "Related to the Image**: {question}\n2. **Ground Truth Answer**: {ground_truth}\n3. **Model Predicted "
    "Answer**: {prediction}\n\nYour task is to evaluate the model's predicted answer against the ground truth "
    "answer, based on the context provided by the question related to the image. Consider the following "
    "criteria for evaluation:\n- **Relevance**: Does the predicted answer directly address the question "
    "posed, considering the information provided by the given question?\n- **Accuracy**: Compare the "
    "predicted answer to the ground truth answer. You need to evaluate from the following two perspectives:\n"
    "(1) If the ground truth answer is open-ended, consider whether the prediction accurately reflects the "
    "information given in the ground truth without introducing factual inaccuracies. If it does, the "
    "prediction should be considered correct.\n(2) If the ground truth answer is a definitive answer, "
    "strictly compare the model's prediction to the actual answer. Pay attention to unit conversions such as "
    "length and angle, etc. As long as the results are consistent, the model's prediction should be deemed "
    "correct.\n**Output Format**:\nYour response should include an integer score indicating the correctness "
    "of the prediction: 1 for correct and 0 for incorrect. Note that 1 means the model's prediction strictly "
    "aligns with the ground truth, while 0 means it does not.\nThe format should be \"Score: 0 or 1\""
)

# Names `eval` resolves where the reference calls it (process_tool_call's locals at that point and
# vllm_async_engine.py's module globals; builtins are refused by safe_eval anyway): refused, not read.
ENGINE_NAMES = frozenset((
    "self vllm_input decoded_resp_ observations_list image_size_used_list multi_turn_response_mask "
    "current_iteration save_traj save_dir doc_id error_info pattern match bbox source __file__ __cached__ "
    "__builtins__ Any AsyncEngineArgs AsyncGenerator AsyncLLM AsyncRolloutRequest AsyncRolloutRequestStateEnum "
    "AsyncvLLMEngine BaseModelPath Callable ChatCompletionRequest ChatCompletionResponse DataProto Dict "
    "DictConfig ERROR_INFO_MULTI_TURN_PROMPT ErrorResponse Executor ExternalRayDistributedExecutor "
    "ExternalZeroMQDistributedExecutor FinishReasonTypeEnum Image JSONResponse List Message OpenAIServingChat "
    "OpenAIServingModels Optional Request RequestLogger RequestOutput SamplingParams StreamingResponse "
    "TOOL_CALL_CROP_MULTI_TRUN_PROMPT TensorDict Tuple Union WorkerWrapperBase _get_model_runner_workers "
    "_pre_process_inputs _repeat_interleave asyncio cloudpickle compute_position_id_with_mask compute_reward "
    "contextmanager copy_to_local crop_image deepcopy get_eos_mask get_final_eos_mask get_rope_index "
    "get_valid_mask io json logging np os pad_2d_list_to_length pad_sequence pad_sequence_to_length "
    "pad_to_max_stack pickle prepare_grounding_inputs_multi_turn process_image ray re time torch uuid4 zmq"
).split())

JUDGE_PATH = "general_qa_tool: first <answer>(.*?)</answer> of all turns joined by ' ', else 0; the GPT judge"
MC_RULE = ("general_qa_tool_mc: last <answer>(.*?)</answer> of the last turn stripped, else 0; == gold.strip() "
           "after strip, or ^\\(([A-Z])\\).*$ or ^([A-Z])\\..*$ naming the gold")


@dataclass(frozen=True)
class MiniO3Rules:
    """The settings of Mini-o3's evaluation that pr-eval's shared ones do not cover (in the fingerprint)."""

    problem_prefix: str = "<image>\n"   # the data file's `problem` = prefix + question (mini_o3_demo.md)
    tool_prompt: str = MO_TOOL_PROMPT   # action_turn = generation index k, observation_turn = k + 1
    error_prompt: str = MO_ERROR        # message = str(exception)
    call_pattern: str = r"<grounding>(.*?)</grounding>"   # engine :657, on this turn's decoded text
    parse_pattern: str = '.*<grounding>{"bbox_2d": (.*),.*"source": [\',"](.*)[\',"]}</grounding>'  # :523
    source_pattern: str = "observation_([0-9]*)"          # function_tools.py:42, re.match
    input_pixels: PixelBounds = PixelBounds(40_000, 2_000_000)   # data.min/max_pixels, LANCZOS
    crop_pixels: PixelBounds = PixelBounds(40_000, 2_000_000)    # rollout bounds := data's (main_ppo.py:127)
    resamplers: tuple[str, str] = ("LANCZOS", "NEAREST")         # first image, crops
    coordinates: str = "relative to the un-resized source; int(); clamped to [0,w-1]x[0,h-1]"
    crop_source: str = "original_image: the stored image in RGB; observation_i: the i-th crop as cut"
    max_aspect: int = 200   # a box at or past it is an error; a shown crop past it is padded to 190:1
    pad_aspect: int = 190
    exceed: str = "a call with max_images shown, in the last generation, or at prompt+output >= max_total_tokens"
    scoring: str = JUDGE_PATH


def _greedy_decoding() -> Decoding:
    return Decoding(temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=8192, stop_tokens=("</grounding>",),
                    seed=0, min_tokens=0, skip_special_tokens=True)


DIFFERENCES = (
    "The V* `problem` text is pr-eval's question (stem, '(A) ...' option lines, suffix) after '<image>\\n', "
    "and `solution` is pr-eval's gold letter: the authors' Vstar_Bench/val.json is not published in the "
    "repository. Effect: unknown; a different wording or option layout may move a few answers.",
    "A sample whose image cannot be used (a side under 28 px after the resize, several images, unreadable) "
    "is a data_error; the reference's dataset silently serves the next question in its place "
    "(multimodal_dataset.py:230-234, 269-275). Effect: none on V*'s images.",
    "Refused expressions: a box text that eval would run (a call, an attribute, a name that resolves in "
    "the engine's module or process_tool_call, a result past safe_eval's size bounds) is never run: the "
    "error turn says what was refused ('ERROR occurs during grounding. Error Information: a Call "
    "expression, which eval would run.'). Effect: none on Mini-o3's literal boxes; the reference would "
    "run the code.",
    "The check after a call's feedback (engine :717-725: the context with the feedback reaches 30,768 "
    "tokens, so the feedback is taken back and the trajectory exceeds) is made when the engine reports "
    "the next prompt's length: that turn is generated, kept as Generation.dropped and not scored, and the "
    "feedback, its image and the call record are taken back. Effect: the reference's verdicts, one wasted "
    "generation; a prompt past max_model_len (32,768) is refused by the engine and the sample is lost "
    "(engine_error) where the reference scored its turns.",
    "The judge's transport decides what is lost: a timeout, an HTTP error or a reply without text is a "
    "lost judgement (excluded), where general_qa_tool.py retries it at the next temperature and, after "
    "five failures, filters the sample (it counts 0); its 120-second timeout is the transport's own. "
    "Effect: none when the judge answers.",
    "Sampled rollouts get pr-eval's per-turn seeds; the reference sets no request seed (the engine seed "
    "is the data-parallel rank). Effect: none on expected scores; runs are repeatable.",
    "Each turn's prompt is the chat template rendered from the turns' texts, where the reference appends "
    "the generated token ids (dropping ids above 151664). Effect: none where Qwen's tokenizer round-trips "
    "the text.",
    "Python's exception texts fed back are CPython 3.11's; the reference's Python is not pinned. Effect: "
    "a different error text on rare malformed calls only.",
)

MINI_O3 = Protocol(
    name="mini-o3", version="1", system_prompt=MO_SYSTEM, guideline="", family="mini-o3", rules=MiniO3Rules(),
    decoding=_greedy_decoding(), caps=Caps(max_tool_calls=11, max_images=12, max_total_tokens=30_768),
    # The vLLM processor's bounds: the checkpoint's preprocessor_config (Qwen2.5-VL's defaults;
    # UNVERIFIED for Mini-o3-7B); the shown images already lie inside them.
    engine_pixels=PixelBounds(3136, 12_845_056), max_model_len=32_768,
    differences=DIFFERENCES + (released_for("Mini-o3", "V* and VisualProbe (reward_score/__init__.py:35)"),),
    notes="Mini-o3/Mini-o3 commit 8654dbf: the README's evaluation command with val_n=1 and "
          "val_do_sample=False (greedy), scored as that command scores V* (use_hybrid_reward_manager: "
          "general_qa_tool's GPT judge, gpt-4o-2024-11-20).")
MINI_O3_MC = dataclasses.replace(
    MINI_O3, name="mini-o3-mc", rules=dataclasses.replace(MINI_O3.rules, scoring=MC_RULE),
    notes="Mini-o3/Mini-o3 commit 8654dbf, greedy, scored by its multiple-choice rule "
          "(general_qa_tool_mc, the reward without the hybrid manager): no judge.")
MINI_O3_SAMPLED = dataclasses.replace(
    MINI_O3, name="mini-o3-sampled", decoding=dataclasses.replace(_greedy_decoding(), temperature=1.0),
    sampling=Sampling(),
    notes="Mini-o3/Mini-o3 commit 8654dbf: the README's Avg@32 command (val_do_sample=True: the rollout's "
          "temperature 1.0, top_p 1, top_k off); --samples-per-question K gives Avg@K. Scored by the GPT judge.")
PROTOCOLS = (MINI_O3, MINI_O3_MC, MINI_O3_SAMPLED)
_SCORING = {p.name: p.rules.scoring for p in PROTOCOLS}

# --- The crop sources: the original at full resolution and every crop as cut ---------------------
# Kept beside the trajectory (not in `traj.pixels`, which holds what the model is shown), keyed by
# its id while it lives; a finished trajectory's are dropped at once.
_SOURCES: dict[int, list[Image.Image]] = {}


def _keep_sources(traj, original: Image.Image) -> None:
    _SOURCES[id(traj)] = [original]
    weakref.finalize(traj, _SOURCES.pop, id(traj), None)


def _sources(traj) -> list[Image.Image]:
    try:
        return _SOURCES[id(traj)]
    except KeyError:
        raise ValueError(f"the Mini-o3 trajectory {traj.task}/{traj.sample_id} has no crop sources: it was "
                         "not opened by this process (Family.open)") from None


_end = finish  # the sources go when the finished trajectory is handed on (MiniO3.release)


class MiniO3(Family):
    name = "mini-o3"
    implementation = IMPLEMENTATION

    def release(self, traj) -> None:
        _SOURCES.pop(id(traj), None)  # however it ended (an engine error too)
    judge = JudgePrompt(
        name="mini-o3-judge", implementation=f"{IMPLEMENTATION} verl/utils/reward_score/general_qa_tool.py",
        model="gpt-4o-2024-11-20",
        # general_qa_tool.py:69: min(0.2 * attempt, 1.0) for attempts 0..4 (0.6000000000000001 included)
        temperatures=tuple(min(0.2 * attempt, 1.0) for attempt in range(5)),
        max_tokens=16384, unreadable=0.0, prompt_texts=(MO_JUDGE_SYSTEM, MO_JUDGE_QUERY))

    def user_text(self, sample, protocol) -> str:
        """The data file's `problem`: "<image>\\n" + question (the image stands for `<image>`)."""
        return protocol.rules.problem_prefix + sample.question

    def open(self, traj, sample, protocol) -> None:
        rules = protocol.rules
        traj.messages.append({"role": "system", "content": protocol.system_prompt})
        loaded = [] if sample.is_video else sample.load_images()
        if len(loaded) != 1:
            raise DataError(f"Mini-o3's evaluation takes one image per question (multimodal_dataset.py:271); "
                            f"this sample has {'a video' if sample.is_video else len(loaded)}")
        original = loaded[0].convert("RGB")
        shown = images.first_image(original, rules.input_pixels)
        before, after = self.user_text(sample, protocol).split("<image>", 1)
        image = add_image(traj, shown, ImageInfo(kind="input", width=shown.width, height=shown.height,
                                                 original_size=list(loaded[0].size)))
        traj.messages.append({"role": "user", "content": ([text_part(before)] if before else []) + [image, text_part(after)]})
        _keep_sources(traj, original)

    def max_generations(self, protocol) -> int:
        return protocol.caps.max_tool_calls + 1   # val_max_generation_round

    def step(self, traj, text, protocol) -> None:
        """The engine's loop (vllm_async_engine.py:661-734) for one turn: a turn without a
        `<grounding>` pair ends the trajectory; a call is not run when the prompt already shows
        max_images images, in the last generation, or at the token limit ("exceed"); otherwise it
        is run and its feedback (or error) is the next user turn."""
        generation = traj.generations[-1]
        turn = len(traj.generations) - 1
        caps = protocol.caps
        if turn > 0 and generation.prompt_tokens >= caps.max_total_tokens:
            return _take_back(traj, text)
        if generation.stop == "<|endoftext|>" and text.endswith(generation.stop):
            text = text[: -len(generation.stop)]   # decoded with skip_special_tokens, as <|im_end|>
        say(traj, text)
        calls = re.findall(protocol.rules.call_pattern, text, re.DOTALL)
        if not calls:
            return _end(traj, ANSWERED)
        if len(traj.pixels) >= caps.max_images:
            return _end(traj, MAX_IMAGES)
        if turn >= caps.max_tool_calls:
            return _end(traj, MAX_TOOL_CALLS)
        if generation.prompt_tokens + generation.output_tokens >= caps.max_total_tokens:
            return _end(traj, MAX_TOKENS)
        _run_call(traj, text, calls[-1], turn, protocol.rules)

    def verdict(self, traj, target) -> Verdict:
        """The scoring path of the trajectory's protocol (`MiniO3Rules.scoring`) on its turns."""
        turns = [message_text(m) for m in traj.messages if m["role"] == "assistant"]
        scoring = _scoring_of(traj.protocol)
        return mc_rule(turns, target) if scoring == MC_RULE else judge_path(turns)

    def judge_messages(self, traj, target, verdict: Verdict) -> list[dict]:
        """general_qa_tool.py:307-309, 35-59: the question is the user turn's `problem` text."""
        query = MO_JUDGE_QUERY.format(question=MINI_O3.rules.problem_prefix + traj.question,
                                      ground_truth=target, prediction=verdict.answer)
        return [{"role": "system", "content": [text_part(MO_JUDGE_SYSTEM)]},
                {"role": "user", "content": [text_part(query)]}]

    def judge_score(self, reply: str) -> float | None:
        return judge_score(reply)


# --- One call ---------------------------------------------------------------------------------------

def _run_call(traj, text: str, raw: str, turn: int, rules: MiniO3Rules) -> None:
    """process_tool_call (vllm_async_engine.py:520-582) and prepare_grounding_inputs_multi_turn
    (function_tools.py:29-74), each failure recorded with the kind of its stage."""
    call = new_call(traj, raw)
    call.name = "grounding"
    sources = _sources(traj)
    stage = "malformed"
    try:
        match = re.match(rules.parse_pattern, text, re.DOTALL)
        if match is None:  # the reference's `match.group(1)` on None
            raise AttributeError("'NoneType' object has no attribute 'group'")
        value, source = safe_eval(match.group(1), ENGINE_NAMES), match.group(2)
        call.arguments = {"bbox_2d": _recordable(value), "source": journal_safe(source)}
        stage = "bad_arguments"
        images.check_shape(value)
        stage = "bad_target"
        index = images.source_index(source, len(sources), rules.source_pattern)
        stage = "bad_arguments"
        box = images.pixel_box(value, sources[index].size)
        stage = "crop_too_small"
        images.check_box(box, rules.max_aspect)
    except Exception as exc:  # the reference feeds any exception's text back (engine :528-530)
        if stage != "malformed" and is_our_bug(exc):
            raise
        failed(call, stage, str(exc))
        return feedback(traj, rules.error_prompt.format(message=clean_text(str(exc))))
    source_image = sources[index]
    crop = source_image.crop(box)
    shown = images.shown_crop(crop, rules.crop_pixels, rules.pad_aspect)
    sources.append(crop)
    call.ok, call.box_normalized = True, normalized(box, source_image.size)
    part = add_image(traj, shown, crop_info(shown, box, source_image.size, parent=index + 1))
    call.new_images.append(len(traj.pixels))
    before, after = rules.tool_prompt.format(action_turn=turn, observation_turn=turn + 1).split(PH, 1)
    feedback(traj, before, part, after)


def _take_back(traj, text: str) -> None:
    """The prompt of this turn, the previous call's feedback included, is at the token limit: the
    reference took that feedback back before generating and stopped (engine :717-725). This turn
    is kept only as `dropped`; the feedback, its image and the call's record go."""
    traj.generations[-1].dropped = clean_text(text)
    message = traj.messages.pop()
    for part in message["content"]:
        if isinstance(part, dict) and part.get("type") == "image":
            traj.pixels.pop()
            traj.images.pop()
            _sources(traj).pop()
    if traj.tool_calls and traj.tool_calls[-1].turn == len(traj.generations) - 2:
        traj.tool_calls.pop()
    _end(traj, MAX_TOKENS)


def _recordable(value, depth: int = 0):
    """The box as eval returned it, in a form any record can hold: short JSON values as they are,
    a list item by item; anything else (a tuple, a set, a long string, an int past 14,000 bits,
    which JSON cannot print) as a shortened repr."""
    if value is None or isinstance(value, (bool, float)) or (isinstance(value, str) and len(value) <= 200) \
            or (isinstance(value, int) and value.bit_length() <= 14_000):
        return journal_safe(value)
    if isinstance(value, list) and len(value) <= 16 and depth < 8:
        return [_recordable(item, depth + 1) for item in value]
    try:
        return clean_text(_SHORT.repr(value))
    except ValueError:  # an int past 4300 digits has no repr
        return f"<{type(value).__name__} that cannot be printed>"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 200


# --- The verdict -----------------------------------------------------------------------------------

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _scoring_of(protocol_name: str) -> str:
    base = protocol_name.split("+", 1)[0]   # with_overrides names "mini-o3+max_tool_calls=3"
    try:
        return _SCORING[base]
    except KeyError:
        raise ValueError(f"the trajectory's protocol {protocol_name!r} is not a Mini-o3 protocol; known: "
                         f"{', '.join(sorted(_SCORING))}") from None


def judge_path(turns: list[str]) -> Verdict:
    """general_qa_tool.py:283-295 with extract_answer_tags="strict": the first answer of all turns
    joined by ' ' (kept as it is) goes to the judge; none scores 0 and the judge is not asked."""
    match = _ANSWER.search(" ".join(turns))
    return Verdict(None, match.group(1)) if match else Verdict(0.0, "")


def mc_rule(turns: list[str], target) -> Verdict:
    """general_qa_tool_mc.py:194-234. A gold that is not text, or no turn, raises there: the sample
    is filtered and its reward stays 0."""
    if not isinstance(target, str) or not turns:
        return Verdict(0.0, "")
    gold = target.strip()
    found = _ANSWER.findall(turns[-1].strip())
    if not found:
        return Verdict(0.0, "")
    answer = found[-1]   # not stripped for the two patterns
    if answer.strip() == gold:
        return Verdict(1.0, answer)
    for pattern in (r"^\(([A-Z])\).*$", r"^([A-Z])\..*$"):   # "(B) red", "B. red"
        letter = re.match(pattern, answer, re.DOTALL)
        if letter and letter.group(1) == gold:
            return Verdict(1.0, answer)
    return Verdict(0.0, answer)


def judge_score(reply: str) -> float | None:
    """general_qa_tool.py:75-80, 315: the word after the last "score:" (case-insensitive) on its line;
    1.0 when it holds a '1', 0.0 when it holds a '0'; None (asked again) without either."""
    lowered = reply.lower()
    if "score:" not in lowered:
        return None
    word = lowered.split("score:")[-1].strip().split("\n")[0].strip().split(" ")[0]
    if "1" not in word and "0" not in word:
        return None
    return 1.0 if "1" in word else 0.0


FAMILY = MiniO3()
