"""`pr-eval rescore RUN --judge-base-url URL --judge-model NAME`: a finished run judged (again)
from its saved trajectories, into a new run folder (pr_eval.run.rescore)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval rescore", description="New judge scores from a finished run's saved trajectories, "
        "without generating again, into a new run folder that records what was re-scored and how (docs/judge.md).")
    parser.add_argument("run_dir", metavar="RUN", help="a finished run folder")
    parser.add_argument("--judge-base-url", required=True, metavar="URL",
                        help="an OpenAI-compatible server whose model judges each final answer")
    parser.add_argument("--judge-model", required=True, metavar="NAME", help="the model the judge server serves")
    parser.add_argument("--judge-concurrency", type=int, default=8, metavar="N")
    parser.add_argument("--judge-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--judge-retries", type=int, default=2)
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
    from ..judge.client import JudgeSettings, check_judge
    from ..judge.family import check_family_judge
    from ..run.folder import RunError, read_summary

    run_dir = Path(args.run_dir)
    try:
        if not run_dir.is_dir():
            raise RunError(f"{run_dir}: no such run folder")
        judge = JudgeSettings(base_url=args.judge_base_url, model=args.judge_model,
                              concurrency=args.judge_concurrency, timeout_s=args.judge_timeout,
                              retries=args.judge_retries)
        meta = read_summary(run_dir).get("pr_eval")
        protocol = (meta.get("protocol") if isinstance(meta, dict) else None) or {}
        name = protocol.get("name") if isinstance(protocol, dict) else None
        from ..families import FAMILIES, get_protocol

        try:
            family = FAMILIES[get_protocol(name).family] if isinstance(name, str) else None
        except ValueError:
            family = None
        check_family_judge(judge, family) if family is not None and family.judge is not None else check_judge(judge)
    except (RunError, EngineError, ValueError) as exc:
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
