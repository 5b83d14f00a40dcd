"""Conformance of `pr_eval.scoring.rules.reference_accuracy` with the reference evaluation's scoring.

The paper's accuracy is the verdict of the reference's `rule_reward` (TIGER-AI-Lab/Pixel-Reasoner,
curiosity_driven_rl/openrlhf/trainer/ppo_utils/experience_maker.py), called in evaluation as
`rule_reward(sol, gt, "<|im_end|>", None, None)`: `requires_box` is None, `sol` is the decoded
conversation after the first assistant header (`extract_qwen_query_and_response`), and a sample
counts correct when the returned correctness value is above 0. Each row below is one behaviour of
that rule, with the reference function it reproduces and why the verdict is what it is. The
expectations were derived by hand from the reference's source and then checked, row by row,
against the reference itself run outside this repository (the reference is not imported here).

Facts about the reference that the rows rely on (function names are the reference's):

- `rule_reward` lower-cases the text and every gold (`str(gt).lower()` for a non-list gold, so
  None is "none", 3.0 is "3.0", True is "true"). A list gold is a list of alternatives: the
  `%`-free form of its FIRST item holding a "%" is inserted in front (unless already present);
  only "%" is removed, so "45\\%" gives "45\\". A gold with a comma gets a second chance
  ("multi-span"): its spans are cut from `gold[7:-1]` (a slice meant for "\\boxed{...}", applied
  to the bare gold), and every span must occur in "\\" + the text from its LAST "boxed" (no
  backslash needed, so "unboxed" counts) to the end. A gold of 8 characters or fewer has the
  single span "", which any text containing "boxed" has.
- `handle_boxed`: the "Now everything looks fine. Solution finished." rule never fires (it is
  looked for in the lower-cased text). The gold goes through `normalize_answer` ("dfrac" ->
  "frac", "\\text" removed, "\\varnothing" -> "\\emptyset", "minutes" and "cm" deleted anywhere)
  and is parsed as "\\boxed{gold}"; no parse means -1 (wrong). Candidates, in order: the text
  from the LAST "\\boxed" to the END of the text; the FIRST one-line "<answer>...</answer>"
  wrapped in a box; "Answer:" (never present in lower-cased text). A candidate that verifies
  wins; otherwise the whole text is verified (math_verify then reads e.g. the last number, or
  what follows its own "answer:"/"answer is" anchors).
- `do_verify`: the option-letter shortcut needs the gold's parsed string to be one of "A".."K"
  but golds are lower-cased, so it is dead; a candidate that math_verify cannot parse is -1.
- The eos token, "wait" counts and a missing box only change `rule_reward`'s `valid` flag,
  never the correctness value the accuracy is read from.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pr_eval.loop.chat import scored_text
from pr_eval.scoring.rules import reference_accuracy, reference_golds, reference_multispan, reference_score

E = "<|im_end|>"


@dataclass(frozen=True)
class Row:
    id: str
    text: Any  # the scored text, or a list of neutral messages turned into it by chat.scored_text
    gold: Any
    expected: int  # 1: the reference counts the sample correct
    ref: str  # the reference function whose behaviour the row reproduces
    why: str
    eos: bool = True  # for message rows: did the last turn end with <|im_end|>

    def scored(self) -> str:
        if isinstance(self.text, str):
            return self.text
        return scored_text(list(self.text), ends_with_eos=self.eos)


# --- message builders for the multi-turn rows ----------------------------------------------------

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
TOOL_CALL = ('<tool_call>\n{"name": "crop_image", "arguments": {"bbox_2d": [0.1, 0.2, 0.5, 0.6], '
             '"target_image": 1}}\n</tool_call>')


def _user(question: str = "What animal is it?") -> dict:
    return {"role": "user",
            "content": [{"type": "image", "image": 1}, {"type": "text", "text": question}]}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _crop(size: str = "448x448", image: int = 2) -> dict:
    return {"role": "user", "content": [
        {"type": "text", "text": f"\nHere is the cropped image (Image Size: {size}):"},
        {"type": "image", "image": image}]}


def _error(message: str) -> dict:
    text = f"\nExecution error:\n{message}\n"
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _zoomed(last: str, feedback: dict | None = None, first: str = "Let me zoom in. ") -> tuple:
    """One tool call, its feedback (a crop by default), then the final turn `last`."""
    return (SYSTEM, _user(), _assistant(first + TOOL_CALL), feedback or _crop(), _assistant(last))


HB, RR, DV, NA = "handle_boxed", "rule_reward", "do_verify", "normalize_answer"
EX, MS = "extract_qwen_query_and_response", "rule_reward (multi-span)"
# a multi-span gold; its spans are "s" and "the siege of krishnapu"
KRISHNAPUR = "troubles, the siege of krishnapur"
FINISHED = "Now everything looks fine. Solution finished."
UNSURE = "I cannot tell."
OUT_OF_RANGE = _error("bbox out of range")
EARLY_3 = r"It is \boxed{3}. "
CUT_4_3 = r"so \boxed{4} or maybe \boxed{3"

ROWS = [
    # --- option letters ------------------------------------------------------------------------
    Row("letter-boxed", r"The animal is \boxed{B}.", "B", 1, HB,
        "last box to the end; math_verify reads the box"),
    Row("letter-boxed-lower", r"\boxed{b}", "B", 1, RR, "text and gold both lower-cased"),
    Row("letter-gold-lower", r"\boxed{B}", "b", 1, RR, "text and gold both lower-cased"),
    Row("letter-paren-box", r"\boxed{(B)}", "B", 1, DV, "math_verify reads (b) as b"),
    Row("letter-paren-gold", r"\boxed{B}", "(B)", 1, DV, "the gold (b) parses as b"),
    Row("letter-with-option-text", r"\boxed{B. Sheep}", "B", 0, DV,
        "the letter shortcut is dead (lower-cased gold), and 'b. sheep' is not b"),
    Row("letter-wrong", r"\boxed{A}", "B", 0, DV, "a is not b"),
    Row("letter-bare", "B", "B", 0, DV,
        "no marker; math_verify parses nothing from a bare 'b': -1"),
    Row("letter-bare-paren", "(B)", "B", 0, DV, "no marker, nothing parsed"),
    Row("letter-bare-eos", "B" + E, "B", 0, DV, "no marker, nothing parsed"),
    Row("letter-dollars", "$B$", "B", 1, HB, "whole-text fallback: math_verify reads inline math"),
    Row("letter-answer-is", "The answer is B.", "B", 0, HB,
        "no marker; the fallback reads no letter from prose"),
    Row("letter-answer-is-math", "the answer is $b$", "B", 1, HB, "fallback reads $b$"),
    Row("letter-text-macro", r"\boxed{\text{B}}", "B", 1, NA,
        "\\text is removed from the candidate"),
    Row("letter-upper-macro", r"\BOXED{B}", "B", 1, RR,
        "lower-cased to \\boxed{b} before the markers are looked for"),
    Row("letter-then-prose", r"\boxed{B} because of the wool", "B", 1, HB,
        "math_verify prefers the box in the candidate"),
    Row("letter-eos", r"\boxed{B}" + E, "B", 1, HB, "the eos token after the box does not matter"),
    Row("option-text", r"\boxed{Sheep}", "sheep", 1, DV, "same symbols on both sides"),
    Row("option-text-vs-letter", r"\boxed{Sheep}", "B", 0, DV, "the option text is not the letter"),
    Row("letter-vs-option-text", r"\boxed{B}", "sheep", 0, DV, "the letter is not the option text"),
    # --- numbers --------------------------------------------------------------------------------
    Row("int", r"\boxed{3}", 3, 1, RR, "str(3) = '3'"),
    Row("int-str", r"\boxed{3}", "3", 1, DV, "equal numbers"),
    Row("int-wrong", r"\boxed{4}", 3, 0, DV, "4 is not 3"),
    Row("float-pred", r"\boxed{3.0}", 3, 1, DV, "3.0 == 3 numerically"),
    Row("float-gold", r"\boxed{3}", 3.0, 1, RR, "str(3.0) = '3.0', equal to 3"),
    Row("float-pred-wrong", r"\boxed{3.5}", 3, 0, DV, "3.5 is not 3"),
    Row("float-gold-2.5", r"\boxed{2.5}", 2.5, 1, DV, "equal decimals"),
    Row("fraction-vs-float", r"\boxed{5/2}", 2.5, 1, DV, "5/2 == 2.5"),
    Row("trailing-zero", r"\boxed{0.50}", "0.5", 1, DV, "0.50 == 0.5"),
    Row("leading-dot", r"\boxed{.5}", "0.5", 1, DV, ".5 parses as 0.5"),
    Row("float-repr", r"\boxed{0.3}", 0.1 + 0.2, 1, DV,
        "gold '0.30000000000000004'; math_verify rounds to 6 places"),
    Row("negative-pred", r"\boxed{-3}", "3", 0, DV, "sign matters"),
    Row("negative-gold", r"\boxed{3}", "-3", 0, DV, "sign matters"),
    Row("box-spaces-inside", r"\boxed{ 3 }", "3", 1, DV, "spaces inside the box are fine"),
    Row("box-space-before-brace", r"\boxed {3}", "3", 0, HB,
        "the candidate starts at \\boxed, but math_verify reads no box from '\\boxed {3}'"),
    Row("fbox", r"\fbox{3}", "3", 0, HB,
        "no \\boxed marker, and the fallback reads nothing from \\fbox{3}"),
    Row("equation-pred", r"\boxed{x=3}", "3", 1, DV, "math_verify compares the right-hand side"),
    Row("equation-gold", r"\boxed{3}", "x=3", 1, DV, "math_verify compares the right-hand side"),
    Row("dollars-in-box", r"\boxed{$3$}", "3", 1, DV, "dollar signs inside the box are ignored"),
    Row("box-in-dollars", r"$\boxed{3}$", 3, 1, HB,
        "the candidate starts at \\boxed; '$' after it is harmless"),
    Row("currency", r"\boxed{\$3}", 3, 1, DV, "the dollar sign is dropped"),
    Row("count-with-noun", r"\boxed{3 dogs}", 3, 0, DV, "'3 dogs' parses as a product, not 3"),
    Row("about-3", r"\boxed{about 3}", "3", 0, DV, "a product of symbols and 3"),
    Row("tuple-pred-scalar-gold", r"\boxed{3, 4}", "3", 0, DV,
        "a set is not 3; the gold has no comma"),
    Row("degrees-pred", r"\boxed{45^\circ}", "45", 1, DV, "math_verify drops ^\\circ"),
    Row("degrees-gold", r"\boxed{45}", r"45^\circ", 1, DV, "math_verify drops ^\\circ"),
    Row("third-vs-0.33", r"\boxed{1/3}", "0.33", 0, DV, "1/3 rounds to 0.333333, not 0.33"),
    Row("third-vs-0.333333", r"\boxed{1/3}", "0.333333", 1, DV, "equal at 6 decimal places"),
    Row("0.3333333-vs-third", r"\boxed{0.3333333}", "1/3", 1, DV, "equal at 6 decimal places"),
    # --- number words ---------------------------------------------------------------------------
    Row("word-pred", r"\boxed{three}", 3, 0, DV, "'three' parses as a product of letters, not 3"),
    Row("word-gold", r"\boxed{3}", "three", 0, DV, "3 is not t*h*r*e^2"),
    Row("word-both", r"\boxed{three}", "three", 1, DV, "same symbols"),
    Row("word-both-case", r"\boxed{Three}", "three", 1, RR, "lower-cased"),
    Row("word-answer-tag", "<answer>three</answer>", "3", 0, DV,
        "the tag is read, but three is not 3"),
    Row("word-gold-number-text", "there are 3 dogs", "three", 0, DV,
        "the fallback reads 3, not three"),
    Row("word-box-then-digit", r"\boxed{three} and 3", "3", 0, HB,
        "the candidate's box wins over the digit after it, and the fallback reads the box too"),
    # --- normalize_answer: units, \dfrac, \text, \varnothing -------------------------------
    Row("cm-pred", r"\boxed{5 cm}", 5, 1, NA, "'cm' deleted from the candidate"),
    Row("cm-both", r"\boxed{5cm}", "5 cm", 1, NA, "'cm' deleted from both"),
    Row("minutes-pred", r"\boxed{12 minutes}", 12, 1, NA, "'minutes' deleted"),
    Row("minutes-gold", r"\boxed{12}", "12 minutes", 1, NA, "'minutes' deleted from the gold"),
    Row("minutes-both", r"\boxed{12 minutes}", "12 minutes", 1, NA, "'minutes' deleted from both"),
    Row("hours-pred", r"\boxed{12 hours}", "12", 1, DV, "math_verify's own unit removal"),
    Row("meters-pred", r"\boxed{5 meters}", "5", 1, DV, "math_verify's own unit removal"),
    Row("cm-inside-word", r"\boxed{ae}", "acme", 1, NA,
        "the gold 'acme' loses its 'cm' and becomes 'ae'"),
    Row("cm-inside-word-both", r"\boxed{acme}", "acme", 1, NA, "both become 'ae'"),
    Row("cm-only-gold", r"\boxed{cm}", "cm", 0, NA,
        "the gold becomes '', \\boxed{} has no parse: -1"),
    Row("minutes-only-gold", r"\boxed{minutes}", "minutes", 0, NA, "the gold becomes '': -1"),
    Row("dfrac-vs-frac", r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1, NA, "dfrac -> frac"),
    Row("dfrac-vs-slash", r"\boxed{\dfrac{1}{2}}", "1/2", 1, DV, "1/2 either way"),
    Row("slash-vs-dfrac-gold", r"\boxed{1/2}", r"\dfrac{1}{2}", 1, NA, "the gold's dfrac -> frac"),
    Row("frac12-vs-0.5", r"\boxed{\frac12}", "0.5", 1, DV, "\\frac12 is 1/2"),
    Row("unreduced-fraction", r"\boxed{\frac{2}{4}}", "1/2", 1, DV, "2/4 == 1/2"),
    Row("text-pred", r"\boxed{\text{red}}", "red", 1, NA, "\\text removed"),
    Row("text-gold", r"\boxed{red}", r"\text{red}", 1, NA, "\\text removed from the gold"),
    Row("varnothing-pred", r"\boxed{\varnothing}", r"\emptyset", 1, NA,
        "\\varnothing -> \\emptyset"),
    Row("varnothing-gold", r"\boxed{\emptyset}", r"\varnothing", 1, NA,
        "\\varnothing -> \\emptyset"),
    Row("empty-braces-vs-emptyset", r"\boxed{\{\}}", r"\emptyset", 1, DV,
        "math_verify reads \\{\\} as the empty set"),
    Row("text-three-then-3", r"\boxed{\text{three}} so 3", 3, 0, HB,
        "the box (three) wins in candidate and fallback"),
    # --- yes / no -------------------------------------------------------------------------------
    Row("yes-case", r"\boxed{yes}", "Yes", 1, RR, "lower-cased gold"),
    Row("no-vs-yes", r"\boxed{no}", "yes", 0, DV, "different symbols"),
    Row("yes-period", r"\boxed{Yes.}", "yes", 0, DV, "'yes.' does not verify as yes"),
    Row("yes-bare", "yes", "yes", 0, DV, "no marker; nothing parsed from plain 'yes'"),
    Row("yes-dollars", "$yes$", "yes", 1, HB, "fallback reads inline math"),
    # --- odd golds: None, bool, empty, boxed, int/float, empty list -------------------------------
    Row("gold-none", r"\boxed{None}", None, 1, RR, "str(None).lower() = 'none'"),
    Row("gold-none-lower", r"\boxed{none}", None, 1, RR, "'none' == 'none'"),
    Row("gold-none-vs-3", r"\boxed{3}", None, 0, RR, "3 is not n*o*n*e"),
    Row("gold-true", r"\boxed{True}", True, 1, RR, "str(True).lower() = 'true'"),
    Row("gold-true-vs-1", r"\boxed{1}", True, 0, RR, "'true' is letters, not 1"),
    Row("gold-empty-vs-empty-box", r"\boxed{}", "", 0, HB, "gold \\boxed{} has no parse: -1"),
    Row("gold-empty-text-empty", "", "", 0, HB, "gold has no parse: -1"),
    Row("gold-empty-vs-number", "anything 3", "", 0, HB,
        "gold has no parse: -1, whatever the text"),
    Row("gold-boxed", r"\boxed{3}", r"\boxed{3}", 1, HB, "a gold with \\boxed is parsed as is"),
    Row("gold-boxed-wrong", r"\boxed{4}", r"\boxed{3}", 0, HB, "4 is not 3"),
    Row("gold-zero", r"\boxed{0}", 0, 1, RR, "str(0) = '0'"),
    Row("gold-int-1000", r"\boxed{1000}", 1000, 1, RR, "str(1000) = '1000'"),
    Row("gold-float-2500.0", r"\boxed{2500}", 2500.0, 1, RR, "str(2500.0) = '2500.0' == 2500"),
    Row("text-empty", "", 3, 0, DV, "nothing to parse: -1"),
    Row("text-empty-letter", "", "B", 0, DV, "nothing to parse: -1"),
    Row("gold-empty-list", r"\boxed{3}", [], 0, RR, "no gold is tried: the value stays 0.0"),
    # --- list golds -----------------------------------------------------------------------------
    Row("list-second-item", r"\boxed{red}", ["blue", "red"], 1, RR, "any item passes"),
    Row("list-first-item", r"\boxed{red}", ["red", "blue"], 1, RR,
        "order does not matter for a pass"),
    Row("list-none-match", r"\boxed{green}", ["red", "blue"], 0, RR, "no item passes"),
    Row("list-upper-item", r"\boxed{RED}", ["Red"], 1, RR, "items lower-cased"),
    Row("list-single-number", r"\boxed{3}", ["3"], 1, RR, "one-item list"),
    Row("list-word-item", r"\boxed{three}", ["3", "three"], 1, RR, "the word item passes"),
    Row("list-paren-letter", r"\boxed{B}", ["A", "(B)"], 1, RR, "(b) parses as b"),
    # --- percent golds --------------------------------------------------------------------------
    Row("pct-str-plain-pred", r"\boxed{45}", "45%", 1, DV, "math_verify itself accepts 45 for 45%"),
    Row("pct-str-fraction-pred", r"\boxed{0.45}", "45%", 1, DV, "45% parses as 45/100"),
    Row("pct-str-pct-pred", r"\boxed{45%}", "45%", 1, DV, "equal"),
    Row("pct-str-escaped-pred", r"\boxed{45\%}", "45%", 1, DV, "\\% and % both percent"),
    Row("pct-str-wrong", r"\boxed{46}", "45%", 0, DV, "46 is not 45"),
    Row("pct-list-plain-pred", r"\boxed{45}", ["45%"], 1, RR, "'45' is inserted first"),
    Row("pct-list-fraction-pred", r"\boxed{0.45}", ["45%"], 1, RR,
        "the original '45%' still there"),
    Row("pct-list-symbol", r"\boxed{x}", ["x%"], 1, RR, "the inserted 'x' passes"),
    Row("pct-str-symbol", r"\boxed{x}", "x%", 0, RR,
        "no insertion for a non-list gold; 'x%' does not parse as x"),
    Row("pct-list-only-first", r"\boxed{y}", ["x%", "y%"], 0, RR,
        "only the FIRST %-item's %-free form ('x') is inserted"),
    Row("pct-list-first-is-y", r"\boxed{y}", ["y%", "x%"], 1, RR, "now 'y' is the inserted form"),
    Row("pct-list-word", r"\boxed{abc}", ["abc%"], 1, RR, "the inserted 'abc' passes"),
    Row("pct-list-escaped-inserted", r"\boxed{45\}", ["45\\%"], 1, RR,
        "only '%' is removed: '45\\' is inserted; the box with an escaped brace parses to it"),
    Row("pct-str-escaped-not-inserted", r"\boxed{45\}", "45\\%", 0, RR,
        "no insertion for a non-list gold"),
    Row("pct-list-escaped-plain-pred", r"\boxed{45}", ["45\\%"], 1, RR,
        "'45\\%' itself reads as 45/100"),
    Row("pct-list-escaped-wrong", r"\boxed{46}", ["45\\%"], 0, RR, "neither '45\\' nor 45/100"),
    Row("pct-list-already-there", r"\boxed{45}", ["45", "45%"], 1, RR,
        "no insertion needed, '45' passes"),
    # --- multi-span golds ---------------------------------------------------------------------
    Row("ms-and-set", r"\boxed{blue and red}", "red, blue", 1, HB,
        "math_verify reads 'and' as a set separator: {red, blue}"),
    Row("ms-one-of-two-no-u", r"\boxed{red}", "red, blue", 0, MS,
        "'red, blue'[7:-1] = 'u': no u in \\boxed{red}"),
    Row("ms-one-of-two-has-u", r"\boxed{blue}", "red, blue", 1, MS,
        "the single span 'u' is in 'blue'"),
    Row("ms-just-u", r"\boxed{u}", "red, blue", 1, MS, "the single span is 'u'"),
    Row("ms-no-box", "blue and red", "red, blue", 0, MS,
        "no 'boxed' in the text: multi-span skipped; fallback parses nothing"),
    Row("ms-exact", r"\boxed{red, blue}", "red, blue", 1, HB, "equal sets"),
    Row("ms-reordered", r"\boxed{blue, red}", "red, blue", 1, HB, "sets ignore order"),
    Row("ms-answer-tag-and", "<answer>blue and red</answer>", "red, blue", 1, HB,
        "the tag's 'blue and red' reads as the set"),
    Row("ms-short-numbers", r"\boxed{zzz}", "1,2", 1, MS, "3-char gold: span ''"),
    Row("ms-short-letters", r"\boxed{zzz}", "a, b", 1, MS, "span '': any text with 'boxed' passes"),
    Row("ms-short-no-box", "zzz", "a, b", 0, MS, "no 'boxed' at all"),
    Row("ms-short-unboxed-word", "unboxed zzz", "a, b", 1, MS,
        "'boxed' inside 'unboxed' is enough"),
    Row("ms-8-chars", r"\boxed{zzz}", "ab, cdef", 1, MS, "8 chars: gold[7:-1] = ''"),
    Row("ms-9-chars", r"\boxed{zzz}", "ab, cdefg", 0, MS, "9 chars: span 'f', absent"),
    Row("ms-9-chars-f", r"\boxed{f}", "ab, cdefg", 1, MS, "span 'f' present"),
    Row("ms-long-second", r"\boxed{The Siege of Krishnapur}", KRISHNAPUR, 1, MS,
        "spans 's' and 'the siege of krishnapu' both in the tail"),
    Row("ms-long-first", r"\boxed{Troubles}", KRISHNAPUR, 0, MS,
        "'the siege of krishnapu' missing"),
    Row("ms-long-after-box", r"\boxed{troubles} and also the siege of krishnapur", KRISHNAPUR,
        1, MS, "the tail runs from the last 'boxed' to the END of the text"),
    Row("ms-long-exact-then-unboxed",
        r"\boxed{troubles, the siege of krishnapur} then it was unboxed", KRISHNAPUR, 1, HB,
        "handle_boxed verifies the box first (\\boxed, not 'boxed')"),
    Row("ms-long-and", r"\boxed{troubles and the siege of krishnapur}", KRISHNAPUR, 1, MS,
        "not a set for math_verify, but both spans are in the tail"),
    Row("ms-long-and-then-unboxed", r"\boxed{troubles and the siege of krishnapur} it was unboxed",
        KRISHNAPUR, 0, MS, "the tail starts at 'unboxed', after the spans"),
    Row("ms-long-boxed-word-only", "the siege of krishnapur, as boxed", KRISHNAPUR, 0, MS,
        "the tail is just '\\boxed'"),
    Row("ms-thousands-digits-67", r"\boxed{12345678}", "12,345,678", 1, HB,
        "math_verify reads 12,345,678 as 12345678"),
    Row("ms-thousands-67-only", r"\boxed{67}", "12,345,678", 1, MS, "'12,345,678'[7:-1] = '67'"),
    Row("ms-thousands-off-by-one", r"\boxed{12,345,679}", "12,345,678", 1, MS,
        "wrong number, but '679' contains '67'"),
    Row("ms-thousands-no-67", r"\boxed{12,345,500}", "12,345,678", 0, MS, "no '67' in the tail"),
    Row("ms-interval-short", r"\boxed{(9, 9)}", "(2,3)", 1, MS, "'(2,3)' is 5 chars: span ''"),
    Row("ms-interval-exact", r"\boxed{(2, 3)}", "(2,3)", 1, MS,
        "math_verify reads the gold as an interval, but span '' passes"),
    Row("ms-gold-upper", r"\boxed{BLUE}", "Red, Blue", 1, MS,
        "gold lower-cased before slicing: span 'u'"),
    Row("ms-in-list", r"\boxed{blue}", ["cat", "red, blue"], 1, MS,
        "multi-span applies per list item"),
    # --- thousands separators -------------------------------------------------------------------
    Row("thousands-plain-pred", r"\boxed{2500}", "2,500", 1, HB, "math_verify reads 2,500 as 2500"),
    Row("thousands-any-box", r"\boxed{7}", "2,500", 1, MS,
        "'2,500' has a comma and 5 chars: span ''"),
    Row("thousands-fallback", "there are 2500 people", "2,500", 1, HB, "fallback reads 2500"),
    Row("thousands-fallback-wrong", "there are 7 people", "2,500", 0, MS,
        "no 'boxed', so no multi-span rescue"),
    Row("thousands-fallback-comma", "there are 2,500 people", "2,500", 1, HB,
        "fallback reads 2,500"),
    Row("thousands-pred-int-gold", r"\boxed{2,500}", 2500, 1, DV, "2,500 == 2500"),
    Row("thousands-pred-str-gold", r"\boxed{1,000}", "1000", 1, DV, "1,000 == 1000"),
    Row("thousands-gold", r"\boxed{1000}", "1,000", 1, HB, "1000 == 1,000"),
    Row("thousands-gold-any-box", r"\boxed{10}", "1,000", 1, MS, "span '' again"),
    Row("thousands-int-gold-wrong", r"\boxed{2,501}", 2500, 0, DV,
        "int gold has no comma: no multi-span"),
    # --- markers and their order ----------------------------------------------------------------
    Row("box-then-tag", r"\boxed{B} <answer>A</answer>", "A", 1, HB,
        "the box candidate fails, the tag candidate passes"),
    Row("tag-then-box", r"<answer>A</answer> \boxed{B}", "A", 1, HB,
        "the tag is tried when the box fails"),
    Row("tag-and-box-both-wrong", r"<answer>A</answer> \boxed{A}", "B", 0, HB, "neither"),
    Row("box-and-tag-agree", r"\boxed{A} <answer>A</answer>", "A", 1, HB, "the box passes"),
    Row("two-tags-first", "<answer>A</answer> <answer>B</answer>", "A", 1, HB,
        "the FIRST tag is read"),
    Row("two-tags-second", "<answer>A</answer> <answer>B</answer>", "B", 0, HB,
        "the second tag is never read"),
    Row("two-tags-lines-second", "<answer>A</answer>\n<answer>B</answer>", "B", 0, HB,
        "the first tag still wins"),
    Row("tag-spans-lines", "<answer>\nB\n</answer>", "B", 0, HB,
        "no DOTALL: the tag never matches; nothing parsed"),
    Row("tag-spans-lines-number", "<answer>\n3\n</answer>", "3", 1, HB,
        "the tag never matches, but the fallback reads 3"),
    Row("tag-first-one-line", "<answer>\nA</answer> then <answer>B</answer>", "B", 1, HB,
        "the first tag spanning lines is skipped: the first ONE-LINE tag is B"),
    Row("tag-first-spans-lines", "<answer>\nA</answer> then <answer>B</answer>", "A", 0, HB,
        "A is never read"),
    Row("tag-unclosed", "<answer>B</answer", "B", 0, HB,
        "no closing tag: no match, nothing parsed"),
    Row("tag-number", "<answer>3</answer>", 3, 1, HB, "the tag's 3"),
    Row("tag-spaces", "<answer> B </answer>", "B", 1, HB, "spaces inside the tag are fine"),
    Row("tag-upper", "<ANSWER>B</ANSWER>", "B", 1, HB, "the text is lower-cased first"),
    Row("answer-label-letter", "Answer: B", "B", 0, HB,
        "'Answer:' never matches the lower-cased text; nothing parsed"),
    Row("answer-label-number", "Answer: 3", "3", 1, HB, "the fallback reads 3"),
    Row("answer-label-first-number", "Answer: 3 dogs and 4 cats", "3", 1, HB,
        "fallback: math_verify's own 'answer:' anchor picks 3"),
    Row("answer-label-last-number", "Answer: 3 dogs and 4 cats", "4", 0, HB,
        "the anchor picks 3, not 4"),
    Row("answer-is-anchor", "the answer is 3 dogs and 4 cats", "3", 1, HB,
        "math_verify's 'answer is' anchor"),
    Row("answer-label-math", "Answer: $B$", "B", 1, HB, "fallback reads $b$"),
    Row("answer-label-box", r"answer: \boxed{B}", "B", 1, HB, "the box"),
    Row("fallback-number", "there are 3 dogs", 3, 1, HB,
        "no marker: the whole text is verified (bug)"),
    Row("fallback-number-eos", "there are 3 dogs" + E, "3", 1, HB,
        "the eos token does not hide it"),
    Row("fallback-last-number-not-first", "there are 3 dogs and 4 cats", 3, 0, HB,
        "the fallback reads the last number"),
    Row("fallback-last-number", "there are 3 dogs and 4 cats", 4, 1, HB,
        "the fallback reads the last number"),
    Row("box-beats-earlier-number", r"I first thought 3, but \boxed{4}", 3, 0, HB,
        "the box wins in the fallback too"),
    # --- the last \boxed runs to the end of the text --------------------------------------------
    Row("box-then-number", r"\boxed{3} and 4 more", 3, 1, HB,
        "math_verify prefers the box in the candidate"),
    Row("box-then-number-gold-4", r"\boxed{3} and 4 more", 4, 0, HB,
        "the trailing 4 is never read"),
    Row("empty-box-then-number", r"\boxed{} and 3", 3, 1, HB,
        "an empty box: math_verify reads the 3 AFTER it"),
    Row("empty-box-then-number-eos", r"\boxed{} and 3" + E, 3, 1, HB, "same with the eos token"),
    Row("symbol-box-then-number", r"\boxed{x} and 3", 3, 0, HB,
        "the box parses (x), so the 3 is never read"),
    Row("box-then-correction", r"\boxed{3} is wrong, it is 4", 4, 0, HB, "the box (3) wins"),
    Row("letter-box-then-number", r"\boxed{B}. Because 3 dogs", 3, 0, HB, "the box (b) wins"),
    Row("two-boxes-first", r"\boxed{3}\boxed{4}", 3, 0, HB, "the LAST box"),
    Row("two-boxes-last", r"\boxed{4}\boxed{3}", 3, 1, HB, "the LAST box"),
    Row("empty-last-box", r"\boxed{4} \boxed{}", 4, 0, HB,
        "the last box is empty; the fallback reads it too"),
    Row("first-then-second", r"first \boxed{1}, then \boxed{2}", 2, 1, HB, "the LAST box"),
    Row("first-then-second-gold-1", r"first \boxed{1}, then \boxed{2}", 1, 0, HB, "the LAST box"),
    Row("trailing-percent", r"\boxed{3}%", 3, 1, HB, "a '%' after the box is not read"),
    # --- a box cut off --------------------------------------------------------------------------
    Row("cut-box", r"\boxed{3", 3, 0, HB, "an unclosed box has no parse: -1"),
    Row("cut-box-eos", r"\boxed{3" + E, 3, 0, HB, "unclosed even with the eos token"),
    Row("cut-box-prose", r"the count is \boxed{3", 3, 0, HB, "unclosed"),
    Row("cut-after-complete", "so \\boxed{4} or maybe \\boxed{3" + E, 4, 1, HB,
        "the cut last box fails; the fallback reads the complete \\boxed{4}"),
    Row("cut-after-complete-gold-3", "so \\boxed{4} or maybe \\boxed{3" + E, 3, 0, HB,
        "the cut 3 is never read"),
    Row("cut-empty-after-complete", r"\boxed{3} then \boxed{", 3, 1, HB,
        "the fallback reads the complete box"),
    # --- rules that only touch rule_reward's `valid`, or never fire -------------------------------
    Row("no-eos", r"\boxed{3}", 3, 1, RR, "a missing eos only makes the sample invalid, not wrong"),
    Row("many-waits", r"\boxed{3}" + " wait" * 10, 3, 1, RR,
        "too many waits only makes the sample invalid"),
    Row("finished-marker-then-more", r"\boxed{3}. " + FINISHED + E + " and more", 3, 1,
        HB, "the marker is looked for in the lower-cased text: never found, scored as usual"),
    Row("finished-marker-then-box", FINISHED + E + r" extra \boxed{3}", 3, 1,
        HB, "the marker rule is dead"),
    # --- multi-turn texts built by chat.scored_text --------------------------------------------
    Row("mt-crop-then-box", _zoomed(r"final \boxed{B}"), "B", 1, EX, "the last turn's box"),
    Row("mt-crop-then-box-no-eos", _zoomed(r"final \boxed{B}"), "B", 1, EX,
        "no eos changes nothing", eos=False),
    Row("mt-crop-size-picked-up", _zoomed(UNSURE), "448", 1, EX,
        "no marker: the fallback reads the crop feedback's 'Image Size: 448x448'"),
    Row("mt-crop-size-pair", _zoomed(UNSURE), "448x448", 0, EX,
        "'448x448' is a product of symbols"),
    Row("mt-crop-bbox-not-read", _zoomed(UNSURE), "0.6", 0, EX,
        "the bbox numbers come before 448"),
    Row("mt-crop-target-not-read", _zoomed(UNSURE), "1", 0, EX,
        "'target_image': 1 comes before 448"),
    Row("mt-crop-width-read", _zoomed(UNSURE, _crop("224x336")), "224", 1, EX,
        "math_verify reads 'WxH' as its width W"),
    Row("mt-crop-height-not-read", _zoomed(UNSURE, _crop("224x336")), "336", 0, EX,
        "the height is not read"),
    Row("mt-error-target-read", _zoomed(UNSURE, OUT_OF_RANGE), "1", 1, EX,
        "no number in the error: the tool call's 'target_image': 1 is the last number"),
    Row("mt-error-bbox-not-read", _zoomed(UNSURE, OUT_OF_RANGE), "0.6", 0, EX,
        "the target_image 1 comes after the bbox"),
    Row("mt-error-number-read", _zoomed(UNSURE, _error("Cropped image is too small: 20x20")), "20",
        1, EX, "the error message's number is picked up"),
    Row("mt-error-then-box", _zoomed(r"\boxed{B}", OUT_OF_RANGE), "B", 1, EX,
        "the last turn's box"),
    Row("mt-earlier-box-kept", _zoomed("Looks right.", first=EARLY_3), "3", 1, EX,
        "the last \\boxed is in an earlier turn; its candidate runs to the end"),
    Row("mt-earlier-box-overridden", _zoomed(r"No, \boxed{4}.", first=EARLY_3), "3", 0, EX,
        "the last turn's box is the last box"),
    Row("mt-last-box-wins", _zoomed(r"No, \boxed{4}.", first=EARLY_3), "4", 1, EX,
        "the last box"),
    Row("mt-earlier-box-last-cut", _zoomed(r"No, \boxed{4", first=EARLY_3), "3", 1, EX,
        "the cut box fails; the fallback reads the earlier complete box", eos=False),
    Row("mt-earlier-tag", _zoomed("Looks right.", first="<answer>B</answer> "), "B", 1, EX,
        "the tag of an earlier turn is in the scored text"),
    Row("mt-question-not-scored", (SYSTEM, _user("Answer 7 if unsure."), _assistant(UNSURE)), "7",
        0, EX, "the question is before the first assistant header: not scored"),
    Row("mt-system-box-not-scored",
        ({"role": "system", "content": r"Reply like \boxed{A}."}, _user(), _assistant("no idea")),
        "A", 0, EX, "the system prompt is not scored"),
    Row("mt-two-crops",
        (SYSTEM, _user(), _assistant("zoom " + TOOL_CALL), _crop(),
         _assistant("again " + TOOL_CALL), _crop("112x112", 3), _assistant(r"\boxed{B}")),
        "B", 1, EX, "several tool turns"),
    Row("mt-cut-both-boxes", (SYSTEM, _user(), _assistant(CUT_4_3)), 4, 1, EX,
        "cut off (no eos): the fallback reads \\boxed{4}", eos=False),
    Row("mt-cut-last-box", (SYSTEM, _user(), _assistant(CUT_4_3)), 3, 0, EX,
        "cut off: the 3 is never read", eos=False),
    Row("mt-str-content", (SYSTEM, _user(), {"role": "assistant", "content": r"\boxed{B}"}), "B",
        1, EX, "plain string content"),
    Row("mt-ends-with-user", (SYSTEM, _user(), _assistant(r"\boxed{B} " + TOOL_CALL), _crop()), "B",
        1, EX, "a conversation ending with feedback is rendered as it stands; the box is last"),
    Row("mt-no-assistant", (SYSTEM, _user(r"\boxed{B}")), "B", 0, EX,
        "no assistant header: the scored text is ''"),
]

_BY_ID = {row.id: row for row in ROWS}
assert len(_BY_ID) == len(ROWS), "duplicate row ids"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_conformance(row: Row):
    assert reference_accuracy(row.scored(), row.gold) == float(row.expected), row.why


def test_table_size_and_spread():
    assert len(ROWS) >= 150
    assert {0, 1} == {row.expected for row in ROWS}


# --------------------------------------------------------------------------------------------------
# The pieces: golds, multi-span, the correctness value
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        (["45%"], ["45", "45%"]),
        (["A", "45%", "10%"], ["45", "a", "45%", "10%"]),  # the first %-item only, put in front
        (["45", "45%"], ["45", "45%"]),  # already there: nothing inserted
        (["45\\%"], ["45\\", "45\\%"]),  # only "%" is removed
        (["Red", "BLUE"], ["red", "blue"]),
        ([], []),
        ("45%", ["45%"]),  # no insertion for a non-list gold
        ("B", ["b"]),
        (None, ["none"]),
        (3, ["3"]),
        (3.0, ["3.0"]),
        (True, ["true"]),
        (("a", "b"), ["('a', 'b')"]),  # a tuple is not a list: str() of it
    ],
)
def test_reference_golds(answer, expected):
    assert reference_golds(answer) == expected


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        (r"\boxed{x}", "a, b", True),  # span ""
        (r"\boxed{x}", "ab, cdef", True),  # 8 characters: span ""
        (r"\boxed{x}", "ab, cdefg", False),  # 9 characters: span "f"
        (r"\boxed{f}", "ab, cdefg", True),
        ("x", "a, b", False),  # no "boxed"
        ("unboxed", "a, b", True),  # "boxed" without a backslash
        (r"\boxed{u}", "red, blue", True),  # "red, blue"[7:-1] == "u"
        (r"\boxed{red}", "red, blue", False),
        (r"\boxed{the siege of krishnapur}", KRISHNAPUR, True),  # "s", "the siege of krishnapu"
        (r"\boxed{troubles}", KRISHNAPUR, False),
        (r"\boxed{the siege of krishnapur} \boxed{x}", KRISHNAPUR, False),  # from the LAST
        (r"\boxed{x} the siege of krishnapur", KRISHNAPUR, True),  # to the end
        (r"\boxed{67}", "12,345,678", True),  # span "67"
    ],
)
def test_reference_multispan(text, gold, expected):
    assert reference_multispan(text, gold) is expected


@pytest.mark.parametrize(
    "text, answer, expected",
    [
        (r"\boxed{3}", 3, 1.0),
        (r"\boxed{4}", 3, 0.0),
        ("B", "B", -1.0),  # nothing parsed from the text
        (r"\boxed{3}", "", -1.0),  # nothing parsed from the gold
        (r"\boxed{3}", [], 0.0),  # no gold tried
        (r"\boxed{4}", ["3", ""], -1.0),  # the last gold's value when none passes
        (r"\boxed{4}", ["", "3"], 0.0),
        (r"\boxed{zzz}", "a, b", 1.0),  # multi-span pass
    ],
)
def test_reference_score_values(text, answer, expected):
    assert reference_score(text, answer) == expected


# --------------------------------------------------------------------------------------------------
# chat.scored_text: what is cut, kept and removed
# --------------------------------------------------------------------------------------------------


def test_scored_text_multi_turn():
    messages = [SYSTEM, _user("How many?"), _assistant("zoom " + TOOL_CALL), _crop(),
                _assistant(r"\boxed{3}")]
    tail = (
        "zoom " + TOOL_CALL + "<|im_end|>\n"
        "<|im_start|>user\n\nHere is the cropped image (Image Size: 448x448):"
        "<|vision_start|><|vision_end|><|im_end|>\n"
        r"\boxed{3}"
    )
    assert scored_text(messages) == tail + "<|im_end|>"  # the last turn keeps its eos token
    assert scored_text(messages, ends_with_eos=False) == tail  # cut off by the token limit
    text = scored_text(messages)
    # before the first assistant header: cut
    assert "How many?" not in text and "helpful assistant" not in text
    assert "<|im_start|>assistant" not in text  # later assistant headers: removed
    assert "<|image_pad|>" not in text  # pads: removed; the vision markers stay
    assert "<|im_start|>user" in text  # feedback turns: kept with their headers


def test_scored_text_edge_cases():
    assert scored_text([SYSTEM, _user(), _assistant("a")]) == "a<|im_end|>"
    assert scored_text([_user(), _assistant("a")]) == "a<|im_end|>"  # default system prompt: cut
    plain = {"role": "assistant", "content": "plain"}
    assert scored_text([SYSTEM, _user(), plain]) == "plain<|im_end|>"
    parts = [{"type": "text", "text": "x"}, {"type": "image", "image": 3},
             {"type": "text", "text": "y"}]
    mixed = {"role": "assistant", "content": parts}
    assert scored_text([SYSTEM, _user(), mixed]) == "xy<|im_end|>"  # only the last turn's text
    assert scored_text([SYSTEM, _user()]) == ""  # no assistant header
    ends_with_user = scored_text([SYSTEM, _user(), _assistant("a"), _error("boom")])
    assert ends_with_user == "a<|im_end|>\n<|im_start|>user\n\nExecution error:\nboom\n<|im_end|>\n"


# --------------------------------------------------------------------------------------------------
# Properties that hold by the rule
# --------------------------------------------------------------------------------------------------

_ASCII = st.text(alphabet=string.printable, max_size=40)
_SNIPPETS = st.sampled_from([
    r"\boxed{3}", r"\boxed{B}", r"\boxed{", "<answer>", "</answer>", "<answer>b</answer>", "3",
    "b", "$b$", " dogs ", ", ", "%", "\n", "answer: ", "boxed", E, r"\frac{1}{2}", "cm", "448x448",
    "Answer is ",
])
_TEXTS = st.one_of(_ASCII, st.lists(_SNIPPETS, max_size=6).map("".join))
_GOLD_ITEMS = st.one_of(st.sampled_from(["3", "b", "B", "45%", "red, blue", "a, b", "", "1/2",
                                         "x%"]),
                        st.text(alphabet=string.ascii_letters + string.digits + ",% ", max_size=10))
_ANSWERS = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(), st.booleans(),
                     _GOLD_ITEMS, st.lists(_GOLD_ITEMS, max_size=3))
_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(st.one_of(st.text(max_size=60), _TEXTS), _ANSWERS)
def test_verdict_never_raises(text, answer):
    assert reference_accuracy(text, answer) in (0.0, 1.0)


@_FAST
@given(_TEXTS, st.one_of(_GOLD_ITEMS, st.lists(_GOLD_ITEMS, max_size=3)))
def test_verdict_ignores_case(text, answer):
    """The text and every gold are lower-cased first (for ASCII, upper().lower() == lower())."""
    verdict = reference_accuracy(text, answer)
    assert reference_accuracy(text.upper(), answer) == verdict
    assert reference_accuracy(text.lower(), answer) == verdict
    upper = [g.upper() for g in answer] if isinstance(answer, list) else answer.upper()
    assert reference_accuracy(text, upper) == verdict


_NO_BOX = st.text(alphabet=string.printable, max_size=30).filter(
    lambda s: "\\boxed" not in s.lower())
_PLAIN_SUFFIX = st.text(alphabet=string.ascii_letters + " .,;:!?'\n", max_size=30)


@_FAST
@given(_NO_BOX, st.integers(0, 10**6), _PLAIN_SUFFIX)
def test_a_verified_last_box_is_not_undone(prefix, n, suffix):
    """Whatever comes before it, and any digit-free, markup-free prose after it (the last box's
    candidate runs to the end of the text, so the suffix is part of it), a last \\boxed{n} is
    correct for the gold n."""
    assert reference_accuracy(prefix + rf"\boxed{{{n}}}" + suffix, n) == 1.0


@_FAST
@given(_TEXTS, st.text(alphabet=string.ascii_lowercase + string.digits + " %", max_size=7))
def test_short_comma_gold_passes_with_any_boxed(text, gold):
    """A gold with a comma of at most 8 characters has the single span '': any 'boxed' passes."""
    gold = (gold + ",")[:8]
    assert reference_accuracy(text + " boxed", gold) == 1.0


@_FAST
@given(_TEXTS, st.sampled_from(["", "cm", "minutes", "cmcm"]))
def test_gold_without_parse_never_passes(text, gold):
    """A gold that normalizes to '' has no parse (-1), and has no comma for a multi-span rescue."""
    assert reference_accuracy(text, gold) == 0.0


_PLAIN_ITEMS = st.sampled_from(["3", "b", "red", "red, blue", "1/2", "", "three", "2,500", "4"])


@_FAST
@given(_TEXTS, st.lists(_PLAIN_ITEMS, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_list_gold_is_any_item(text, items, rng):
    """Without '%', a list gold passes exactly when one of its items passes alone, in any order."""
    verdict = reference_accuracy(text, items)
    assert verdict == max(reference_accuracy(text, item) for item in items)
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert reference_accuracy(text, shuffled) == verdict
