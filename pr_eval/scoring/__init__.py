"""Scoring a trajectory: its answer, its verdict, its tool-use figures (step 3).

    answers.py    reading the answer out of the last turn, and the benchmarks' own rules for it
    rules.py      the paper-compatible verdict (Pixel Reasoner's math-verify rule)
    grounding.py  crop grounding: did the crops hit the target boxes
    metrics.py    per-sample metrics of a finished trajectory, and their aggregation

A family's own verdict (pr_eval.families) decides which rule applies; an LLM judge, where one is
asked for, is pr_eval.judge.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"extract_answer": "answers", "sample_metrics": "metrics"})
