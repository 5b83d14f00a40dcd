"""`pr-eval rescore RUN [--scoring PROTOCOL] [--judge-base-url URL --judge-model NAME]`: a finished
run judged (again), or scored under a sibling protocol's answer rule, from its saved trajectories,
into a new run folder (pr_eval.run.rescore)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .run import add_judge_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval rescore", description="New scores from a finished run's saved trajectories, without "
        "generating again: a judge's, or a sibling protocol's answer rule, into a new run folder that records "
        "what was re-scored and how (docs/judge.md).")
    parser.add_argument("run_dir", metavar="RUN", help="a finished run folder")
    parser.add_argument("--scoring", default=None, metavar="PROTOCOL",
                        help="score under this protocol's answer rule: a registered protocol that differs from the "
                             "run's only in its rule (mini-o3 <-> mini-o3-mc)")
    add_judge_options(parser)
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="the new run folder (default: beside RUN, named after it, the judge and the time); "
                             "an unfinished re-scoring there resumes")
    return parser


def main(argv: list[str]) -> int:
    prog = "pr-eval rescore"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from ..engines import EngineError
    from ..errors import UsageError
    from ..judge.family import check_judge_for
    from ..run.folder import RunError, read_summary
    from .run import judge_settings

    run_dir = Path(args.run_dir)
    try:
        if not run_dir.is_dir():
            raise RunError(f"{run_dir}: no such run folder")
        judge = judge_settings(args)
        if judge is None and args.scoring is None:
            raise UsageError("nothing to re-score: give --scoring PROTOCOL, or --judge-base-url and --judge-model, "
                             "or both")
        meta = read_summary(run_dir).get("pr_eval")
        protocol = (meta.get("protocol") if isinstance(meta, dict) else None) or {}
        if args.scoring is not None:
            from ..run.rescoring_rule import sibling

            sibling(protocol if isinstance(protocol, dict) else {}, args.scoring)  # refused at once, in one line
        name = args.scoring or (protocol.get("name") if isinstance(protocol, dict) else None)
        from ..families import FAMILIES, get_protocol

        try:
            family = FAMILIES[get_protocol(name).family] if isinstance(name, str) else None
        except ValueError:
            family = None
        if judge is not None:
            check_judge_for(judge, family)
    except (RunError, EngineError, UsageError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from ..run.rescore import check_output, rescore, rescored_folder

    out = Path(args.output) if args.output else rescored_folder(run_dir, judge, args.scoring)
    try:
        check_output(run_dir, out)
    except RunError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: writing {out} (if interrupted, the same command with --output {out} finishes it)",
          file=sys.stderr)
    try:
        out = rescore(run_dir, judge, out, scoring=args.scoring)
    except (RunError, EngineError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: cannot write {out} ({exc.strerror or exc}); choose another --output", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; to finish: the same command with --output {out}", file=sys.stderr)
        return 130
    print(f"rescored: {out}")
    return 0
