"""Reading the answer out of a model's last turn, and the benchmarks' own rules for it.

    final turn -> extract_answer (boxed, <answer>, "Answer:") -> letter_accuracy | count_accuracy | anls

These are the usual per-benchmark metrics (V*/MVBench option letter, TallyQA exact count,
InfoVQA ANLS), reported next to the paper-compatible verdict (`pr_eval.scoring.rules`) so the two can be
compared; a benchmark's module in `pr_eval.benchmarks` names which one it uses.

Every function accepts any text and any answer value and returns a value; malformed model output is
a wrong answer, never an exception. Model output is only parsed with regexes, never evaluated.
"""

from __future__ import annotations

import functools
import re

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
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
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
