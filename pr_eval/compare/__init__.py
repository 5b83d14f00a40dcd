"""Comparing evaluations, gating checkpoints and leaderboard submissions (after the run).

    sides.py       a side: a run folder, a submission file or a reference file, read and checked
    delta.py       one benchmark, two sides: delta B - A, its interval and test, the table
    stats.py       the statistics (McNemar, binomial, bootstrap), pure and seeded
    gate.py        `pr-eval check`'s decision: a significant drop beyond the tolerance
    submission.py  leaderboard submission files: built, written, validated

The command lines are pr_eval.cli.compare and pr_eval.cli.submit.

The room's public face is the names below (`from pr_eval.compare import compare_sides`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"compare_sides": "delta", "decide": "gate", "load_side": "gate"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
