"""A leaderboard: a static site built from a folder of submission files (after `pr-eval submit`).

    intake.py  every file read and judged: the submission checks, then the leaderboard's own
               (registered protocol, the benchmark's whole question set, no copies); accepted or
               rejected with its reason
    rank.py    accepted submissions ranked per (benchmark, protocol): score, 95% interval, ties
    site.py    the pages: index, one per submission, one per protocol, leaderboard.json

The command line is pr_eval.cli.leaderboard.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"intake": "intake", "boards": "rank", "write_site": "site"})
