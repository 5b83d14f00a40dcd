"""The command line: `pr-eval` and its commands, one module each.

    run.py      `pr-eval --model M --tasks T ...`: the evaluation (options -> checked -> pr_eval.run)
    checks.py   checks of a command line that need no model and no data
    compat.py   installed packages known to break pr-eval, refused at start
    ask.py      `pr-eval ask`: one question through the loop, turn by turn
    report.py   `pr-eval report RUN_DIR`
    compare.py  `pr-eval compare A B` and `pr-eval check RUN --baseline X --max-drop P`
    submit.py   `pr-eval submit RUN_DIR` and `--validate FILE`
    probe.py    `pr-eval probe --model M --tasks T`: the protocol and its interventions, the card
    table.py    `pr-eval table RUN...`: the paper-style table of runs, submissions, published rows
    rescore.py  `pr-eval rescore RUN --judge-... | --scoring P`: a run judged or scored again, into a new folder
    leaderboard.py `pr-eval leaderboard SUBMISSIONS_DIR --out SITE_DIR`: the static leaderboard site
    merge.py    `pr-eval merge SHARD_RUN... --output DIR`: a run's shards (--shard K/N) as one run folder
    ray_launch.py `pr-eval ray --shards N <run options>`: the shards as Ray tasks on a cluster, then merged
    __main__.py `python -m pr_eval.cli`
"""

from __future__ import annotations

import importlib
import sys

USAGE = """`pr-eval`: evaluate a checkpoint on pixel-reasoning benchmarks through lmms-eval and vLLM.

    pr-eval --model TIGER-Lab/PixelReasoner-RL-v1 --tasks vstar
    pr-eval --model tiny --tasks vstar --data samples --limit 4
    pr-eval --model TIGER-Lab/PixelReasoner-RL-v1 --tasks suite --data-dir ./pr-data
    pr-eval --model TIGER-Lab/PixelReasoner-RL-v1 --tasks vstar --engine openai --base-url http://gpu1:8000/v1
    pr-eval --model TIGER-Lab/PixelReasoner-RL-v1 --tasks vstar --resume     finish the last unfinished run

Commands on finished runs (each has its own --help):
    pr-eval report RUN_DIR                          the HTML report of a run
    pr-eval compare RUN_A RUN_B                     per-benchmark deltas, paired intervals, McNemar
    pr-eval check RUN --baseline FILE --max-drop P  exit 1 on a significant drop beyond P points
    pr-eval submit RUN_DIR                          a leaderboard submission file
    pr-eval table RUN_OR_SUBMISSION...              the paper-style table: a row per model and protocol
    pr-eval rescore RUN --judge-base-url URL ...    new scores from a run's saved trajectories (or --scoring P)
    pr-eval leaderboard SUBMISSIONS_DIR --out SITE  a static leaderboard site from submission files
    pr-eval merge SHARD_RUN... --output DIR         one run folder from the shards of a --shard K/N run
    pr-eval ray --shards N --model M --tasks T ...  a run as N shards on a Ray cluster, merged at the end
    pr-eval ask --model M --image FILE "question"   one question through the evaluation loop, turn by turn
    pr-eval probe --model M --tasks zoom,vstar      does the answer come from the pixels? the protocol
                                                    beside its interventions, on the same questions
"""

# `pr-eval COMMAND ...`: the commands, each a module of this package with a function of argv that
# returns the exit status; without a command, `pr-eval` evaluates (pr_eval.cli.run). Each module is
# imported only when its command runs, so a usage error answers at once.
COMMANDS = {"report": ("report", "main"), "compare": ("compare", "compare"), "check": ("compare", "check"),
            "submit": ("submit", "main"), "ask": ("ask", "main"), "probe": ("probe", "main"),
            "table": ("table", "main"), "rescore": ("rescore", "main"), "leaderboard": ("leaderboard", "main"),
            "merge": ("merge", "main"), "ray": ("ray_launch", "main")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # what pr-eval does, the commands on finished runs included
        print(USAGE.strip() + "\n\nEvery option: pr-eval --help; each command's: pr-eval COMMAND --help")
        return 2
    module, function = COMMANDS.get(argv[0], ("run", "main"))
    if argv[0] in COMMANDS:
        argv = argv[1:]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)(argv)
