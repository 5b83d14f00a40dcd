"""`pr-eval report RUN_DIR`: the command line of the HTML report (pr_eval.report)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..report.page import DEFAULT_MAX_SAMPLES, ReportError, write_report


def main(argv: list[str]) -> int:
    """`pr-eval report RUN_DIR [--output FILE] [--max-samples N]`."""
    parser = argparse.ArgumentParser(prog="pr-eval report",
                                     description="Write the self-contained HTML report of a run folder.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder pr-eval wrote (finished or not)")
    parser.add_argument("--output", default=None, help="where to write it (default: RUN_DIR/report.html)")
    parser.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES,
                        help="trajectories shown per task (default: %(default)s)")
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # scoring an unfinished run's samples
    try:
        args = parser.parse_args(argv)
        if args.max_samples < 1:
            parser.error(f"--max-samples must be a positive number, got {args.max_samples}")
        try:
            path = write_report(args.run_dir, args.output, args.max_samples)
        except ReportError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0), as a status
        return int(exc.code or 0)
    except OSError as exc:
        print(f"pr-eval report: error: cannot write the report ({exc}); choose another --output", file=sys.stderr)
        return 1
    print(path)
    return 0
