"""`pr-eval leaderboard SUBMISSIONS_DIR --out SITE_DIR`: a static leaderboard site from a folder of
submission files (pr_eval.leaderboard): each file accepted or rejected with its reason, the
accepted ranked per benchmark and protocol, a page per submission and per protocol."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..compare.sides import InputError
from ..compare.stats import DEFAULT_ALPHA, DEFAULT_RESAMPLES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval leaderboard", description="Build a static leaderboard site from a folder of `pr-eval submit` "
        "files: every file validated (docs/submission.md), the accepted ranked with 95%% intervals and ties.")
    parser.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="the folder of submission files (*.json, "
                        "searched recursively)")
    parser.add_argument("--out", required=True, metavar="SITE_DIR", help="where to write the site (index.html, "
                        "submissions/, protocols/, leaderboard.json)")
    parser.add_argument("--questions", default=None, metavar="FILE",
                        help="each benchmark's question ids as JSON {benchmark: [sample_id, ...]}; default: "
                             "the questions of pr-eval's data for it (--data)")
    parser.add_argument("--data", default=None, metavar="SPEC",
                        help="the data source whose questions a submission must answer (as `pr-eval --data`; "
                             "default: $PR_EVAL_DATA, else the hub)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any file is rejected (for CI)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="1 - the intervals' level (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def main(argv: list[str]) -> int:
    """Exit 0: the site is built (rejected files are listed in it); 1: with --strict, a file was
    rejected; 2: bad usage or input (no such folder, questions that cannot be loaded)."""
    prog = "pr-eval leaderboard"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    folder, out = Path(args.submissions), Path(args.out)
    if not folder.is_dir():
        print(f"{prog}: error: {folder}: no such folder of submissions", file=sys.stderr)
        return 2
    if not 0 < args.alpha < 1 or args.resamples < 100:
        print(f"{prog}: error: --alpha must lie between 0 and 1 and --resamples be at least 100", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"{prog}: error: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and not _is_site(out):
        print(f"{prog}: error: --out {out} holds other files; give a new or empty folder, or one this command "
              "built (it is replaced whole)", file=sys.stderr)
        return 2
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        print(f"{prog}: error: --out {out} lies inside the submissions folder; its leaderboard.json would be "
              "read as a submission next time", file=sys.stderr)
        return 2
    from ..data.sources import source_spec
    from ..leaderboard.intake import QuestionSets, intake
    from ..leaderboard.rank import boards
    from ..leaderboard.site import write_site

    try:
        questions = QuestionSets(source_spec(args.data), Path(args.questions) if args.questions else None)
        judged = intake(folder, questions)
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    ranked = boards(judged.accepted, args.alpha, args.resamples, args.seed)
    index = write_site(judged, ranked, out)
    for rejected in judged.rejected:
        print(f"rejected {rejected.path.name}: {' '.join(rejected.reason.split())}", file=sys.stderr)
    print(f"{len(judged.accepted)} accepted, {len(judged.rejected)} rejected, {len(ranked)} boards: {index}")
    return 1 if args.strict and judged.rejected else 0


def _is_site(folder: Path) -> bool:
    """Whether `folder` is a site this command built (so replacing it loses nothing)."""
    import json

    try:
        built = json.loads((folder / "leaderboard.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(built, dict) and built.get("schema") == "pr-eval-leaderboard/1"
