"""`pr-eval compare A B` and `pr-eval check RUN --baseline X --max-drop P`: the command lines of
the comparison (pr_eval.compare: sides, rows, statistics and the gate's decisions)."""

from __future__ import annotations

import argparse
import json
import sys

from ..compare.delta import compare_sides, comparison_text, data_warnings, protocol_problem
from ..compare.gate import decide, load_side
from ..compare.sides import InputError
from ..compare.stats import DEFAULT_ALPHA, DEFAULT_RESAMPLES


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline-model", default=None, metavar="NAME",
                        help="the row of a reference file to compare with (default: its first, "
                             "\"Pixel-Reasoner 7B\" in results/paper_table1.json)")
    parser.add_argument("--metric", default=None,
                        help="per-sample metric to compare on every benchmark (default: a reference's "
                             "own metric, else each benchmark's main metric)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="significance level (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines instead of the table")


def _parse(parser: argparse.ArgumentParser, argv: list[str]):
    """argparse's namespace, or the exit status it asked for (2 on a bad command line, 0 on --help)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return None, int(exc.code or 0)
    if not 0 < args.alpha < 1:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --alpha must lie between 0 and 1", file=sys.stderr)
        return None, 2
    if args.resamples < 100:
        print(f"{parser.prog}: error: --resamples must be at least 100", file=sys.stderr)
        return None, 2
    return args, 0


def _warn(prog: str, message: str) -> None:
    print(f"{prog}: WARNING: {message}", file=sys.stderr)


def compare(argv: list[str]) -> int:
    """pr-eval compare A B: per-benchmark deltas with intervals and tests. Exit 0, or 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="pr-eval compare", description="Per-benchmark comparison of two runs (or a run and a reference "
        "file or submission): A, B, delta = B - A, a confidence interval and a test of the difference.")
    parser.add_argument("a", metavar="A", help="run folder, submission file or reference file")
    parser.add_argument("b", metavar="B", help="run folder, submission file or reference file")
    _common_arguments(parser)
    args, status = _parse(parser, argv)
    if args is None:
        return status
    try:
        a, b = load_side(args.a, args.baseline_model), load_side(args.b, args.baseline_model)
        rows = compare_sides(a, b, args.metric, args.alpha, args.resamples, args.seed)
    except InputError as exc:
        print(f"pr-eval compare: error: {exc}", file=sys.stderr)
        return 2
    problem = protocol_problem(a, b)
    warnings = ([problem] if problem else []) + data_warnings(a, b)
    for warning in warnings:
        _warn("pr-eval compare", warning)
    if args.json:
        print(json.dumps({"a": a.summary(), "b": b.summary(), "unit": "fraction", "delta": "B - A",
                          "alpha": args.alpha, "resamples": args.resamples, "seed": args.seed,
                          "protocol_match": problem is None, "warnings": warnings,
                          "rows": [row.to_json(args.alpha) for row in rows]}, indent=2))
    else:
        print(comparison_text(a, b, rows, args.alpha, args.resamples, args.seed))
    return 0


def check(argv: list[str]) -> int:
    """pr-eval check RUN --baseline X --max-drop P: exit 1 on a regression, 0 otherwise, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="pr-eval check", description="Gate a run against a baseline: fail (exit 1) only where a "
        "benchmark dropped by more than --max-drop points AND a one-sided test finds the drop significant.")
    parser.add_argument("run", metavar="RUN", help="the run folder (or submission file) to check")
    parser.add_argument("--baseline", required=True, metavar="FILE_OR_RUN",
                        help="a run folder, a submission file, or a reference file such as results/paper_table1.json")
    parser.add_argument("--max-drop", required=True, type=float, metavar="POINTS",
                        help="tolerated drop in percentage points (e.g. 2 = two points of accuracy)")
    parser.add_argument("--allow-protocol-mismatch", action="store_true",
                        help="check even when the run and the baseline ran under different protocols")
    _common_arguments(parser)
    args, status = _parse(parser, argv)
    if args is None:
        return status
    prog = "pr-eval check"
    if args.max_drop < 0:
        print(f"{prog}: error: --max-drop must be 0 or more points", file=sys.stderr)
        return 2
    try:
        run = load_side(args.run)
        if run.kind == "reference":
            raise InputError(f"{args.run} is a reference file; RUN must be a run folder or a submission")
        baseline = load_side(args.baseline, args.baseline_model)
        problem = protocol_problem(baseline, run, ("the baseline", "the run"))
        if problem and not args.allow_protocol_mismatch:
            raise InputError(problem + "; pass --allow-protocol-mismatch to check anyway")
        rows = compare_sides(baseline, run, args.metric, args.alpha, args.resamples, args.seed)
        decisions = [decide(row, args.max_drop, args.alpha) for row in rows]
        if not any(d.status in ("within tolerance", "not significant", "REGRESSION") for d in decisions):
            raise InputError("nothing to check: the run and the baseline share no benchmark with scores on "
                             "both sides (" + "; ".join(f"{d.benchmark}: {d.status}" for d in decisions) + ")")
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    warnings = ([problem] if problem else []) + data_warnings(baseline, run)
    warnings += [f"{row.benchmark}: {row.partial}" for row in rows if row.partial]
    for warning in warnings:
        _warn(prog, warning)
    failed = [d.benchmark for d in decisions if d.failed]
    if args.json:
        print(json.dumps({"run": run.summary(), "baseline": baseline.summary(), "max_drop_points": args.max_drop,
                          "alpha": args.alpha, "passed": not failed, "warnings": warnings,
                          "decisions": [{"benchmark": d.benchmark, "status": d.status, "reason": d.reason,
                                         **{k: v for k, v in row.to_json(args.alpha).items() if k != "benchmark"}}
                                        for d, row in zip(decisions, rows)]}, indent=2))
    else:
        print(f"check {run.label}\n   vs {baseline.label}\n   max drop {args.max_drop:g} points, alpha {args.alpha:g} "
              "(one-sided)")
        width = max(len(d.benchmark) for d in decisions)
        status_width = max(len(d.status) for d in decisions)
        for d in decisions:
            print(f"{d.benchmark.ljust(width)}  {d.status.ljust(status_width)}  {d.reason}")
        print(f"FAILED: {len(failed)} regression{'s' if len(failed) > 1 else ''} ({', '.join(failed)})" if failed
              else "passed: no significant drop beyond the tolerance")
    return 1 if failed else 0
