"""`pr-eval merge SHARD_RUN... --output DIR`: a run's shards (`pr-eval --shard K/N`) put back
together into one run folder, equal to the unsharded run's (pr_eval.run.merge)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr-eval merge", description="Merge the N finished shard folders of one run (pr-eval --shard K/N) into "
        "one run folder: results, samples files and report as the unsharded run writes them (docs/scale-out.md).")
    parser.add_argument("shards", nargs="+", metavar="SHARD_RUN", help="the shard folders (all N of them)")
    parser.add_argument("--output", required=True, metavar="DIR", help="the merged run folder (new or empty)")
    return parser


def main(argv: list[str]) -> int:
    """Exit 0: merged; 2: the folders are not the finished shards of one run (one line says why)."""
    prog = "pr-eval merge"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    missing = [f for f in args.shards if not Path(f).is_dir()]
    if missing:
        print(f"{prog}: error: {missing[0]}: no such run folder", file=sys.stderr)
        return 2
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from ..run import quiet
    from ..run.folder import RunError
    from ..run.merge import check_shards, merge
    from ..run.store import StoreError

    try:
        check_shards([Path(f) for f in args.shards])  # refused before anything heavy is loaded
    except RunError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    from ..errors import DataError

    quiet.enable()
    try:
        folder = merge([Path(f) for f in args.shards], Path(args.output))
    except (RunError, StoreError, DataError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {args.output} was removed, run the same command again", file=sys.stderr)
        return 130
    print(f"merged {len(args.shards)} shards: {folder}")
    return 0
