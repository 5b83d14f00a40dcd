"""`pr-eval submit RUN_DIR` and `pr-eval submit --validate FILE`: the command line of leaderboard
submission files (pr_eval.compare.submission)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..compare.sides import InputError
from ..compare.submission import SCHEMA_NAME, build, validate, validate_file, write


def main(argv: list[str]) -> int:
    """pr-eval submit: exit 0 (written / valid), 1 (invalid submission), 2 (bad usage or input)."""
    parser = argparse.ArgumentParser(
        prog="pr-eval submit", description="Write a leaderboard submission file from a finished run folder, "
        "or validate one (schema pr_eval/schemas/submission-v1.schema.json; docs/submission.md).")
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="the finished run folder to submit")
    parser.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="where to write it (default: RUN_DIR/submission.json)")
    parser.add_argument("--validate", metavar="FILE", default=None,
                        help="validate FILE instead of writing one: schema, records_sha256, checksum, "
                             "protocol fingerprint, scores against predictions")
    parser.add_argument("--run", metavar="RUN_DIR", default=None,
                        help="with --validate: also check every prediction against this run folder's records")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    prog = "pr-eval submit"
    if (args.run_dir is None) == (args.validate is None):
        print(f"{prog}: error: give either RUN_DIR (to write a submission) or --validate FILE", file=sys.stderr)
        return 2
    if args.validate is not None:
        if args.output:
            print(f"{prog}: error: --output goes with RUN_DIR, not --validate", file=sys.stderr)
            return 2
        if not Path(args.validate).is_file():
            print(f"{prog}: error: {args.validate}: no such file", file=sys.stderr)
            return 2
        if args.run is not None and not Path(args.run).is_dir():
            print(f"{prog}: error: --run {args.run}: no such run folder", file=sys.stderr)
            return 2
        document, problems = validate_file(args.validate, args.run)
        if problems:
            print(f"{args.validate}: INVALID submission", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"{args.validate}: valid {SCHEMA_NAME} {document['schema_version']} (model {document['model']['name']}, "
              f"protocol {document['protocol']['name']} {document['protocol']['fingerprint']}, "
              f"{len(document['benchmarks'])} benchmark(s), {len(document['predictions'])} predictions"
              + (f"; all match {args.run}" if args.run else "") + ")")
        return 0
    if args.run:
        print(f"{prog}: error: --run goes with --validate", file=sys.stderr)
        return 2
    folder = Path(args.run_dir)
    output = Path(args.output) if args.output else folder / "submission.json"
    try:
        if not folder.is_dir():
            raise InputError(f"{folder}: no such run folder")
        document = build(folder)
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    problems = validate(document)
    if problems:  # our own output must pass our own validator
        print(f"{prog}: error: the submission built from {folder} does not validate: " + "; ".join(problems),
              file=sys.stderr)
        return 1
    write(document, output)
    scores = ", ".join(f"{name} {100 * e['score']:.1f}" if e["score"] is not None else f"{name} -"
                       for name, e in document["benchmarks"].items())
    print(f"wrote {output}: {document['model']['name']}, {document['protocol']['name']} "
          f"{document['protocol']['fingerprint']}, {len(document['predictions'])} predictions ({scores})")
    if document["run"]["limit"] is not None:
        print(f"note: the run used --limit {document['run']['limit']}; leaderboards expect whole benchmarks")
    return 0
