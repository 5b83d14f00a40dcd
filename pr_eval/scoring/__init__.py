"""Scoring a trajectory: its answer, its verdict, its tool-use figures (step 3).

    answers.py    reading the answer out of the last turn, and the benchmarks' own rules for it
    rules.py      the paper-compatible verdict (Pixel Reasoner's math-verify rule)
    grounding.py  crop grounding: did the crops hit the target boxes
    metrics.py    per-sample metrics of a finished trajectory, and their aggregation

A family's own verdict (pr_eval.families) decides which rule applies; an LLM judge, where one is
asked for, is pr_eval.judge.

The room's public face is the names below (`from pr_eval.scoring import extract_answer`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"extract_answer": "answers", "sample_metrics": "metrics"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
