"""`pr-eval table RUN_OR_SUBMISSION...`: the paper-style table of runs, submissions and published
rows (pr_eval.compare.table): the terminal table, and --markdown, --latex, --csv, --html files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..compare.sides import REFERENCE_SCHEMA, InputError
from ..compare.stats import DEFAULT_ALPHA, DEFAULT_RESAMPLES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval table", description="One row per (model, protocol), one column per benchmark's main "
        "metric and its splits, each cell with its 95%% interval and n; a column mixing protocols is marked.")
    parser.add_argument("inputs", nargs="+", metavar="RUN_OR_SUBMISSION",
                        help="run folders, submission files, or reference files of published numbers "
                             "(every model row of a reference file becomes a row marked published)")
    parser.add_argument("--baseline", default=None, metavar="ROW",
                        help="the row (its number from 1, or its model's name) every other cell is compared with")
    for kind in ("markdown", "latex", "csv", "html"):
        parser.add_argument(f"--{kind}", default=None, metavar="FILE", help=f"also write the table as {kind} "
                            "(- for standard output)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="significance level (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def load_sides(paths: list[str]):
    """Each input as its sides: a run or a submission is one; a reference file is one per model row."""
    from ..compare.gate import load_side
    from ..compare.sides import read_reference
    from ..run.folder import Unreadable, read_json

    sides = []
    for text in paths:
        path = Path(text)
        if path.is_file() and path.name != "results.json":
            try:
                document = read_json(path)
            except Unreadable as exc:
                raise InputError(f"{path}: {exc}") from None
            if isinstance(document, dict) and document.get("schema") == REFERENCE_SCHEMA:
                models = document.get("models") if isinstance(document.get("models"), dict) else {}
                sides += [read_reference(path, document, name) for name in models] or [read_reference(path, document, None)]
                continue
        sides.append(load_side(path))
    return sides


def baseline_index(sides, value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit() and 1 <= int(value) <= len(sides):
        return int(value) - 1
    matches = [k for k, side in enumerate(sides) if side.model == value]
    if len(matches) != 1:
        raise InputError(f"--baseline {value!r}: give a row number (1 to {len(sides)}) or one model's name "
                         f"({', '.join(repr(s.model) for s in sides)})")
    return matches[0]


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    prog = "pr-eval table"
    if not 0 < args.alpha < 1 or args.resamples < 100:
        print(f"{prog}: error: --alpha must lie between 0 and 1 and --resamples be at least 100", file=sys.stderr)
        return 2
    from ..compare import table as tables
    from ..files import write_atomic

    try:
        sides = load_sides(args.inputs)
        built = tables.build(sides, baseline_index(sides, args.baseline), args.alpha, args.resamples, args.seed)
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    outputs = {"markdown": tables.markdown, "latex": tables.latex, "csv": tables.csv_text, "html": tables.html_page}
    print(tables.text(built))
    for kind, render in outputs.items():
        target = getattr(args, kind)
        if target is None:
            continue
        content = render(built)
        if target == "-":
            sys.stdout.write(content)
            continue
        try:
            write_atomic(Path(target), content)
        except OSError as exc:
            print(f"{prog}: error: cannot write {target} ({exc.strerror or exc})", file=sys.stderr)
            return 1
        print(f"wrote {target}", file=sys.stderr)
    return 0

