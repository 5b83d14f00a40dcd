"""Scoring: from a model's final text to a number, as pure functions that never raise.

Two families live here:

- `reference_accuracy` reproduces the rule of the Pixel-Reasoner reference evaluation (protocol.md,
  "Scoring in the reference"), quirks included, because the paper's numbers were computed with it.
- `letter_accuracy`, `count_accuracy` and `anls` are the usual per-benchmark metrics (V*/MVBench,
  TallyQA, InfoVQA), reported next to the reference rule so the two can be compared.

Every function accepts any text and any answer value and returns a number; malformed model output is
a wrong answer, never an exception, so one odd sample cannot stop a run. Model output is only parsed
(regexes, `math_verify`), never evaluated as code.
"""

from __future__ import annotations

import functools
import re

from math_verify import parse, verify
from sympy import Basic, Pow, preorder_traversal
from sympy.functions.combinatorial.factorials import factorial, factorial2, subfactorial
from sympy.functions.special.gamma_functions import gamma
from sympy.matrices import MatrixBase

# --------------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\boxed\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LABEL = re.compile(r"\banswer\s*:", re.IGNORECASE)


def _braced_content(text: str, start: int) -> str | None:
    """The text from `start` up to the `}` that closes the `{` just before it, or None if unclosed.

    Escaped braces (`\\{`, `\\}`) do not count, so `\\boxed{\\{1, 2\\}}` yields `\\{1, 2\\}`.
    """
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}`; a box cut off by the token limit is skipped."""
    for match in reversed(list(_BOXED.finditer(text))):
        content = _braced_content(text, match.end())
        if content is not None:
            return content.strip()
    return None


def last_answer_tag(text: str) -> str | None:
    """Content of the last `<answer>...</answer>` pair."""
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else None


def after_answer_label(text: str) -> str | None:
    """The rest of the line after the last `Answer:` (any case)."""
    found = list(_ANSWER_LABEL.finditer(text))
    if not found:
        return None
    return text[found[-1].end() :].split("\n", 1)[0].strip()


def extract_answer(text: str) -> str | None:
    """The model's final answer: last `\\boxed{}`, else last `<answer>`, else `Answer:` line.

    pr-eval's own reading, for the benchmarks' metrics and the answer shown in reports (the
    reference's candidates, which `accuracy` uses, are `reference_candidate`'s): the prompt asks
    for `\\boxed{}`, and the other two catch models that answer in another house style. None means
    the model gave no marked answer; an empty box gives "".
    """
    if not isinstance(text, str):
        return None
    for extract in (last_boxed, last_answer_tag, after_answer_label):
        found = extract(text)
        if found is not None:
            return found
    return None


def _prediction(response: str) -> str:
    """What the per-benchmark metrics judge: the marked answer, else the whole response."""
    extracted = extract_answer(response)
    if extracted:
        return extracted
    return response if isinstance(response, str) else ""


def _squash(text: str) -> str:
    """Lower-case with runs of whitespace collapsed: the form two answers are compared in."""
    return " ".join(str(text).lower().split())


# --------------------------------------------------------------------------------------------------
# The reference rule
# --------------------------------------------------------------------------------------------------

# Signal-based timeouts in math_verify only work in the main thread (lmms-eval calls
# process_results from a thread pool), and a timeout would make a verdict depend on machine speed.
# So they are off, and `_too_costly` below keeps sympy away from the inputs that would not finish.
_NO_PARSE_TIMEOUT = {"parsing_timeout": None}
_NO_VERIFY_TIMEOUT = {"timeout_seconds": None}

# Beyond these sizes sympy can take seconds to forever (9^{9^{9}} never returns, (x+1)^{1000} takes
# about 4 s); no real answer to a VQA question is that large, so such values are compared as text.
_MAX_NUMERIC_EXPONENT = 10_000
_MAX_SYMBOLIC_EXPONENT = 50
_MAX_FACTORIAL_ARGUMENT = 1_000
_FACTORIALS = (factorial, factorial2, subfactorial, gamma)


def _too_costly(value) -> bool:
    """Whether comparing this parsed value with sympy could run for a very long time."""
    try:
        return _has_costly_part(value)
    except Exception:  # noqa: BLE001 -- e.g. comparing a NaN exponent: treat as not worth the risk
        return True


def _has_costly_part(value) -> bool:
    if isinstance(value, MatrixBase):
        return value.rows * value.cols > 400 or any(_has_costly_part(entry) for entry in value)
    if not isinstance(value, Basic):
        return False
    for node in preorder_traversal(value):
        if isinstance(node, Pow):
            exponent = node.exp
            if exponent.has(Pow, *_FACTORIALS):  # a tower such as 10^{10^{10}}
                return True
            if exponent.is_Number:
                limit = _MAX_NUMERIC_EXPONENT if node.base.is_Number else _MAX_SYMBOLIC_EXPONENT
                if abs(exponent) > limit:
                    return True
        elif isinstance(node, _FACTORIALS):
            argument = node.args[0]
            if argument.has(Pow, *_FACTORIALS):
                return True
            if argument.is_Number and abs(argument) > _MAX_FACTORIAL_ARGUMENT:
                return True
    return False


def _safe_parse(text: str) -> list:
    """`math_verify.parse`, or [] when it fails or yields something too costly to compare."""
    try:
        parsed = parse(text, **_NO_PARSE_TIMEOUT)
    except Exception:  # noqa: BLE001 -- sympy raises many kinds on odd text: wrong, not a crash
        return []
    if any(_too_costly(value) for value in parsed):
        return []
    return parsed


def _safe_verify(prediction: list, gold: list) -> bool:
    """`math_verify.verify(prediction, gold)`, False on any failure. The reference passes the
    prediction as math_verify's `gold` argument and the answer as its `target`; verify is not
    quite symmetric, so the same order is kept."""
    try:
        return bool(verify(prediction, gold, **_NO_VERIFY_TIMEOUT))
    except Exception:  # noqa: BLE001 -- as in _safe_parse
        return False


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> tuple:
    """`_safe_parse` remembered: the whole-text fallback parses the same text once per gold."""
    return tuple(_safe_parse(text))


# The reference's markers, in its order. The scored text is lower-cased before they are looked
# for, so "Answer:" (and the finished-marker below) can never be found: that is the reference's
# behaviour and it is kept.
REFERENCE_MARKERS = ("\\boxed", "<answer>", "Answer:")
_FIRST_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>")  # no DOTALL: a tag across lines never matches
FINISHED_MARKER = "Now everything looks fine. Solution finished."
EOS_TOKEN = "<|im_end|>"
_CHOICE_LETTERS = "ABCDEFGHIJK"


def reference_normalize(text: str) -> str:
    """`normalize_answer` of the reference, applied to the answer and to every candidate: `dfrac`
    becomes `frac`, `\\text` goes, `\\varnothing` becomes `\\emptyset`, and "minutes" and "cm" are
    deleted wherever they occur (inside words too)."""
    for old, new in (("dfrac", "frac"), ("\\text", ""), ("\\varnothing", "\\emptyset"),
                     ("minutes", ""), ("cm", "")):
        text = text.replace(old, new)
    return text


def reference_verify(candidate: str, gold: tuple) -> float:
    """`do_verify`: 1.0 or 0.0 from math_verify, -1.0 when the candidate has no parse or anything
    fails. Its option-letter shortcut (when the gold's parsed string is one of A..K) stays, though
    golds are lower-cased before they get here, so only an empty string could reach it."""
    try:
        parsed = _parse_cached(candidate)
        if len(gold) > 1 and gold[1] in _CHOICE_LETTERS:  # raises TypeError unless a str: -1.0
            return float(candidate[len("\\boxed{"):].startswith(gold[1]))
        return float(_safe_verify(list(parsed), list(gold))) if parsed else -1.0
    except Exception:  # noqa: BLE001 -- the reference scores any failure here -1.0
        return -1.0


def reference_candidate(text: str, marker: str) -> str | None:
    """The candidate answer the reference takes for one marker of `text`, or None when it skips
    the marker: from the LAST `\\boxed` to the end of the text; the FIRST one-line
    `<answer>...</answer>` wrapped in `\\boxed{}`; after the last "Answer:" (never reached)."""
    if marker not in text:
        return None
    if marker == "<answer>":
        found = _FIRST_ANSWER_TAG.search(text)
        return f"\\boxed{{{found.group(1)}}}" if found else None
    if marker == "Answer:":
        return f"\\boxed{{{text.split(marker)[-1].strip()}}}"
    return text[text.rindex(marker):].strip()


def reference_verdict_one(text: str, gold: str) -> float:
    """`handle_boxed` for one lower-cased gold: 1.0, 0.0 or -1.0 (the gold or the text has no
    parse). `text` is the lower-cased scored text."""
    finished = text.find(FINISHED_MARKER)
    if finished > -1 and text[finished + len(FINISHED_MARKER) + len(EOS_TOKEN):]:
        return 0.0  # something after "Solution finished." and its end token: not scored
    gold = reference_normalize(gold)
    gold_parsed = _parse_cached(gold if "\\boxed" in gold else f"\\boxed{{{gold}}}")
    if not gold_parsed:
        return -1.0
    for marker in REFERENCE_MARKERS:
        candidate = reference_candidate(text, marker)
        if candidate is None:
            continue
        verdict = reference_verify(reference_normalize(candidate), gold_parsed)
        if verdict > 0.99:
            return verdict
    return reference_verify(reference_normalize(text), gold_parsed)  # the whole text


def reference_golds(answer) -> list[str]:
    """The golds the reference tries, in order: a list's items lower-cased, with the `%`-free form
    of the first item that has a `%` put first (unless already there); anything else as
    `[str(answer).lower()]` (so None is "none" and 3.0 is "3.0")."""
    if isinstance(answer, list):
        golds = [str(item).lower() for item in answer]
        percent = next((g.replace("%", "") for g in golds if "%" in g), None)
        if percent is not None and percent not in golds:
            golds.insert(0, percent)
        return golds
    return [str(answer).lower()]


def reference_multispan(text: str, gold: str) -> bool:
    """The reference's multi-span fallback for a gold with a comma: its spans are cut from
    `gold[7:-1]` (the slice meant for "\\boxed{...}", applied to the plain gold), and all of them
    must occur in the text from its last "boxed" on. So "red, blue" needs only "u", and a
    gold of 8 characters or fewer has the single span "", which any boxed answer contains."""
    spans = [span.lower().strip() for span in gold[len("\\boxed{"):-1].split(",")]
    at = text.rfind("boxed")
    if at == -1:
        return False
    tail = "\\" + text[at:]
    return all(span in tail for span in spans)


def reference_score(text: str, answer) -> float:
    """`rule_reward`'s correctness value for a scored text: the first gold that passes gives
    1.0; otherwise the last gold's value (0.0 or -1.0). The paper counts a sample correct when
    this is above 0."""
    lowered = text.lower()
    score = 0.0
    for gold in reference_golds(answer):
        score = reference_verdict_one(lowered, gold)
        if score > 0.5:
            return score
        if "," in gold and reference_multispan(lowered, gold):
            return 1.0
    return score


def reference_accuracy(text: str, answer) -> float:
    """The paper-compatible accuracy: 1.0 when the reference evaluation counts the scored text
    correct for `answer`, else 0.0. Never raises.

    `text` is `chat.scored_text` of the trajectory: the whole conversation after the first
    assistant header, feedback turns and special tokens included, as the reference decodes it.
    Every quirk of the reference stays (protocol.md, "Scoring in the reference"): the last
    `\\boxed` to the END of the text is the first candidate, then the first one-line `<answer>`
    tag; "Answer:" lines never count (the text is lower-cased first); when no candidate verifies,
    math_verify reads the whole text ("there are 3 dogs" scores for 3); a bare letter or
    "three" does not parse as the gold; list golds, `%` and multi-span golds as described in
    `reference_golds` and `reference_multispan`. tests/test_conformance_scoring.py holds one row per
    behaviour, each naming the reference function it reproduces."""
    try:
        return 1.0 if reference_score(text if isinstance(text, str) else "", answer) > 0 else 0.0
    except Exception:  # noqa: BLE001 -- one odd sample is a wrong answer, never a stopped run
        return 0.0


# --------------------------------------------------------------------------------------------------
# Per-benchmark metrics
# --------------------------------------------------------------------------------------------------

# "(A) red", "A. red", "A) red", "A: red" at the start of a line.
_OPTION_LINE = re.compile(r"^[ \t]*(?:\(([A-Z])\)|([A-Z])[.):])[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)
# "(A) red (B) blue" on one line.
_OPTION_INLINE = re.compile(r"\(([A-Z])\)\s*")


def _consecutive_from_a(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The last run of options lettered A, B, C, ... in order; stray "I." lines are not options."""
    options: dict[str, str] = {}
    for letter, text in pairs:
        if letter == "A":
            options = {"A": text}
        elif options and ord(letter) == ord(max(options)) + 1:
            options[letter] = text
    return options if len(options) >= 2 else {}


def parse_options(question: str) -> dict[str, str]:
    """Multiple-choice options in a question, letter -> option text; {} when there are none.

    Options are recognised one per line ("(A) red", "A. red", "A) red", "A: red") or inline
    ("(A) red (B) blue"). Only a run starting at A with consecutive letters counts, so a sentence
    that happens to start "I. " is not taken for an option.
    """
    if not isinstance(question, str):
        return {}
    lines = [(m.group(1) or m.group(2), m.group(3)) for m in _OPTION_LINE.finditer(question)]
    options = _consecutive_from_a(lines)
    if options:
        return options
    pieces = _OPTION_INLINE.split(question)
    # split() alternates text, letter, text, letter, text...
    inline = [(pieces[i], pieces[i + 1].strip()) for i in range(1, len(pieces) - 1, 2)]
    return _consecutive_from_a([(letter, text) for letter, text in inline if text])


_LETTER_ALONE = re.compile(r"^\(?([A-Za-z])\)?\.?$")
_LETTER_THEN_TEXT = re.compile(r"^(?:\(([A-Za-z])\)|([A-Za-z])[.):])\s*\S")


def _clean_choice(text: str) -> str:
    """Strip what models wrap around a choice: whitespace, `$`, `\\text{}`, a final period."""
    text = str(text).strip().strip("$").strip()
    text = re.sub(r"\\text(?:bf)?\{(.*)\}", r"\1", text).strip()
    return text[:-1].strip() if text.endswith(".") and len(text) > 1 else text


def _choice_letter(text: str, options: dict[str, str]) -> str | None:
    """The option letter a piece of text names, or None.

    A letter on its own ("B", "(B)", "B.") comes first, then the exact text of an option ("Sheep"
    for B. Sheep), then a letter followed by text ("B. Sheep": the letter decides).
    """
    cleaned = _clean_choice(text)
    alone = _LETTER_ALONE.match(cleaned)
    if alone:
        return _known_letter(alone, options)
    for letter, option_text in options.items():
        if _squash(cleaned) == _squash(_clean_choice(option_text)):
            return letter
    with_text = _LETTER_THEN_TEXT.match(cleaned)
    return _known_letter(with_text, options) if with_text else None


def _known_letter(match: re.Match, options: dict[str, str]) -> str | None:
    """The letter a regex matched, upper-cased; None when the question has no such option."""
    letter = next(group for group in match.groups() if group).upper()
    return letter if not options or letter in options else None


def letter_accuracy(response: str, answer: str, options: dict) -> float:
    """V*/MVBench accuracy: 1.0 when the chosen option is the gold one.

    The choice is read from the marked answer (else the whole response) and may be written as the
    letter, "(B)", "B.", "B. Sheep" or the option's own text. `answer` may likewise be a letter,
    "(B)" or the option text. When the gold names no option, the texts are compared directly.
    """
    options = {str(k).strip().upper(): str(v) for k, v in dict(options or {}).items()}
    prediction = _prediction(response)
    gold_letter = _choice_letter(str(answer), options)
    if gold_letter is None:
        return float(_squash(_clean_choice(prediction)) == _squash(_clean_choice(answer)))
    return float(_choice_letter(prediction, options) == gold_letter)


_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_INTEGER = re.compile(r"^[+-]?\d+(?:\.0*)?$")


def _as_count(value) -> int | None:
    """An integer written as digits ("3", "3.0") or a word up to twenty ("three"); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = _clean_choice(value).lower().replace(",", "")
    if text in _NUMBER_WORDS:
        return _NUMBER_WORDS[text]
    if _INTEGER.match(text):
        return int(float(text)) if "." in text else int(text)
    return None


def count_accuracy(response: str, answer) -> float:
    """TallyQA accuracy: 1.0 when the answer is exactly the gold count.

    The marked answer (else the whole response) must be one number, so "3", "three" and "3." count
    for 3 but "3 dogs" does not: the metric judges the answer, not a number found somewhere in it.
    """
    predicted, gold = _as_count(_prediction(response)), _as_count(answer)
    return float(predicted is not None and predicted == gold)


@functools.cache
def _lmms_eval_anls():
    """lmms-eval's ANLS, imported on first use because importing lmms-eval takes seconds."""
    from lmms_eval.api.metrics import anls as lmms_anls

    return lmms_anls


def anls(response: str, answers: list[str] | str, threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of the answer, best over the references.

    Uses lmms-eval's implementation, a port of the official InfographicVQA/DocVQA script: both
    sides lower-cased with whitespace collapsed, similarity = 1 - distance / longer length, and 0
    when below `threshold`. As in that script the length is taken before collapsing whitespace;
    the prediction is stripped first so the extraction's own spacing does not count.
    """
    if answers is None:
        return 0.0
    listed = answers if isinstance(answers, (list, tuple)) else [answers]
    references = [str(reference) for reference in listed]
    if not references:
        return 0.0
    prediction = _prediction(response).strip()
    score = _lmms_eval_anls()(references, [prediction], thresh_hold=threshold)["anls"]
    # Lower-casing can lengthen a string ("İ" -> "i̇"), which can push the raw score below 0.
    return min(1.0, max(0.0, float(score)))
