"""Comparing evaluations, gating checkpoints and leaderboard submissions (after the run).

    sides.py       a side: a run folder, a submission file or a reference file, read and checked
    delta.py       one benchmark, two sides: delta B - A, its interval and test, the table
    stats.py       the statistics (McNemar, binomial, bootstrap), pure and seeded
    gate.py        `pr-eval check`'s decision: a significant drop beyond the tolerance
    submission.py  leaderboard submission files: built, written, validated
    table.py       the field's table: runs, submissions, published rows; cells with intervals

The command lines are pr_eval.cli.compare, pr_eval.cli.submit and pr_eval.cli.table.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"compare_sides": "delta", "decide": "gate", "load_side": "gate"})
