"""The paper-compatible verdict: a model's whole scored text and a gold answer -> 1.0 or 0.0.

`reference_accuracy` reproduces the rule of the Pixel-Reasoner reference evaluation (protocol.md,
"Scoring in the reference"), quirks included, because the paper's numbers were computed with it.
The benchmarks' own metrics (option letter, exact count, ANLS), reported beside it, are
`pr_eval.scoring.answers`.

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
