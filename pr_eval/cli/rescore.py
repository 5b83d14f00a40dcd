"""`pr-eval rescore RUN --judge-base-url URL --judge-model NAME`: a finished run judged (again)
from its saved trajectories, into a new run folder (pr_eval.run.rescore)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .run import add_judge_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval rescore", description="New judge scores from a finished run's saved trajectories, "
        "without generating again, into a new run folder that records what was re-scored and how (docs/judge.md).")
    parser.add_argument("run_dir", metavar="RUN", help="a finished run folder")
    add_judge_options(parser, required=True)
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
        meta = read_summary(run_dir).get("pr_eval")
        protocol = (meta.get("protocol") if isinstance(meta, dict) else None) or {}
        name = protocol.get("name") if isinstance(protocol, dict) else None
        from ..families import FAMILIES, get_protocol

        try:
            family = FAMILIES[get_protocol(name).family] if isinstance(name, str) else None
        except ValueError:
            family = None
        check_judge_for(judge, family)
    except (RunError, EngineError, UsageError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from ..run.rescore import check_output, rescore, rescored_folder

    out = Path(args.output) if args.output else rescored_folder(run_dir, judge)
    try:
        check_output(run_dir, out)
    except RunError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{prog}: writing {out} (if interrupted, the same command with --output {out} finishes it)",
          file=sys.stderr)
    try:
        out = rescore(run_dir, judge, out)
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
