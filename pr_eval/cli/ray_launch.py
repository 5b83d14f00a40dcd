"""`pr-eval ray --shards N [--address ADDRESS] <the run's options>`: one run spread over a Ray
cluster as N shards, one Ray task each (pr_eval.run.ray_shards), merged into one run folder.

    pr-eval ray --shards 8 --model M --tasks suite --output results          (a cluster's head node)
    pr-eval ray --shards 8 --gpus-per-shard 0 --cpus-per-shard 2 --engine openai --base-url URL ...

The shards go to OUTPUT/<model>-<protocol>-<time>.shards/, the merged run to OUTPUT/<model>-
<protocol>-<time>/. Every node must see OUTPUT at the same path (a shared file system) and have
this pr-eval installed. Ctrl-C stops the shards; `--resume WORK` (the line printed says it) runs
what is left and merges.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from ..errors import UsageError
from .checks import OneLineParser

PROG = "pr-eval ray"
SUFFIX = ".shards"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[0] + "\n\nEvery other option is the run's (pr-eval --help); each "
        "shard runs them with --shard K/N.")
    parser.add_argument("--shards", type=int, required=True, metavar="N", help="how many shards (Ray tasks)")
    parser.add_argument("--address", default=None,
                        help="the Ray cluster (default: $RAY_ADDRESS, else the cluster `ray start` made on this "
                             "machine, else a new one of this machine's CPUs and GPUs)")
    parser.add_argument("--cpus-per-shard", type=float, default=2.0, metavar="C",
                        help="CPUs a shard asks Ray for (default %(default)g: its image work)")
    parser.add_argument("--gpus-per-shard", type=float, default=None, metavar="G",
                        help="GPUs a shard asks Ray for (default: --tensor-parallel-size or 1 for an engine of "
                             "its own, 0 with --engine openai); 0 runs local engines on CPUs")
    parser.add_argument("--max-retries", type=int, default=3, metavar="R",
                        help="how often Ray runs a failed shard again (default %(default)s); each retry finishes "
                             "what the last attempt saved")
    parser.add_argument("--resume", default=None, metavar="WORK",
                        help=f"finish an interrupted `{PROG}`: its shards' folder (OUTPUT/...{SUFFIX})")
    return parser


def gpus_per_shard(own, args) -> float:
    if own.gpus_per_shard is not None:
        return own.gpus_per_shard
    return 0.0 if args.engine == "openai" else float(args.tensor_parallel_size or 1)


def check(own, args) -> None:
    if own.shards < 1:
        raise UsageError("--shards must be at least 1")
    if args.shard is not None:
        raise UsageError(f"--shard: {PROG} gives each shard its own; say how many with --shards N")
    if own.cpus_per_shard <= 0 or (own.gpus_per_shard or 0) < 0:
        raise UsageError("--cpus-per-shard must be above 0 and --gpus-per-shard at least 0")
    if args.judge_base_url or args.judge_model:
        raise UsageError(f"a judge with {PROG}: the shards are merged unjudged; judge the merged run with "
                         "`pr-eval rescore MERGED --judge-base-url URL --judge-model NAME`")
    if args.resume is not None:  # an abbreviation of --resume reached the run's options
        raise UsageError(f"--resume is {PROG}'s own and takes the shards' folder in full: --resume OUTPUT/...{SUFFIX}")
    if own.max_retries < 0:
        raise UsageError("--max-retries must be at least 0")
    if own.resume is not None:
        work = Path(own.resume)
        if not work.name.endswith(SUFFIX) or not work.is_dir():
            raise UsageError(f"--resume {own.resume}: not the shards' folder of a `{PROG}` (OUTPUT/...{SUFFIX})")


def folders(own, args, protocol) -> tuple[Path, Path]:
    """(the shards' folder, the merged run's folder): new ones under --output, or --resume's."""
    from ..run.evaluate import slug

    if own.resume is not None:
        work = Path(own.resume).resolve()
        return work, work.with_name(work.name[:-len(SUFFIX)])
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(args.output).resolve() / f"{slug(args.model)}-{slug(protocol.name)}-{stamp}"
    n = 1
    while base.exists() or base.with_name(base.name + SUFFIX).exists():
        n += 1
        base = base.with_name(f"{base.name.rsplit('~', 1)[0]}~{n}")
    return base.with_name(base.name + SUFFIX), base


def main(argv: list[str]) -> int:
    """Exit 0: the run is merged; 1: a shard failed after its retries; 2: refused; 130, 143: Ctrl-C,
    SIGTERM."""
    from ..data.shards import Shard
    from ..run.interrupts import Terminated, resume_command
    from ..run.ray_shards import LaunchError, Resources, ShardJob, forwarded_env, launch, shard_argv
    from . import run as run_cli

    try:
        own, run_argv = build_parser().parse_known_args(argv)
        args = run_cli.build_parser().parse_args(run_argv)
        check(own, args)
        _tasks, protocol, _judge = run_cli.plan(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    need = Resources(own.cpus_per_shard, gpus_per_shard(own, args))
    work, merged = folders(own, args, protocol)
    if merged.is_dir() and (merged / "results.json").is_file():
        print(f"{PROG}: this run is merged already: {merged}")
        return 0
    absolute = {option: value for option, value in (("--data-dir", args.data_dir), ("--media-dir", args.media_dir))
                if value}
    env = forwarded_env(dict(os.environ))
    jobs = [ShardJob(str(Shard(k, own.shards)), shard_argv(run_argv, Shard(k, own.shards), work, absolute), env,
                     os.getcwd(), str(work / f"shard-{k}-of-{own.shards}.log")) for k in range(own.shards)]
    resume = resume_command(["ray", *argv], work)
    fresh = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        outcome = _launch(jobs, need, own, work, protocol, launch)
    except LaunchError as exc:
        _drop_if_unused(work, fresh, own.shards)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        status, what = (143, "terminated (SIGTERM)") if isinstance(exc, Terminated) else (130, "interrupted")
        if _drop_if_unused(work, fresh, own.shards):
            print(f"\n{PROG}: {what} before any shard started; nothing was saved", file=sys.stderr)
        else:
            print(f"\n{PROG}: {what}; the shards' saved samples are in {work}; to finish the run: {resume}",
                  file=sys.stderr)
        return status
    if outcome.refused:
        shard, line = sorted(outcome.refused.items())[0]
        print(f"{PROG}: error: shard {shard} refused the run: {line}", file=sys.stderr)
        return 2
    if outcome.failed:
        shard, line = sorted(outcome.failed.items())[0]
        others = f" (and {len(outcome.failed) - 1} more)" if len(outcome.failed) > 1 else ""
        log = work / f"shard-{shard.split('/')[0]}-of-{own.shards}.log"
        retries = f"{own.max_retries} retr{'y' if own.max_retries == 1 else 'ies'}"
        print(f"{PROG}: error: shard {shard}{others} failed after {retries}: {line}; its log: "
              f"{log}; to finish the run: {resume}", file=sys.stderr)
        return 1
    return _merge(work, merged, own.shards, ["pr-eval", "ray", *argv], resume)


def _launch(jobs, need, own, work: Path, protocol, launch):
    from tqdm import tqdm

    from ..run import quiet

    quiet.enable()
    unit = "rollout" if protocol.sampling else "question"
    return launch(jobs, need, own.max_retries, own.address, work,
                  make_bar=lambda: tqdm(total=None, desc=f"{unit}s", unit=unit))


def _merge(work: Path, merged: Path, count: int, command: list[str], resume: str) -> int:
    import shutil

    from ..errors import DataError
    from ..run.folder import RunError, load_run
    from ..run.merge import merge
    from ..run.ray_shards import shard_folders
    from ..run.store import StoreError, read_run_info

    if merged.is_dir() and any(merged.iterdir()):  # a merge this launch began and did not finish (killed)
        try:
            ours = bool(read_run_info(merged).get("merged"))
        except StoreError:
            ours = False
        if not ours:
            print(f"{PROG}: error: {merged} exists and is not this run's merge; move it away and run: {resume}",
                  file=sys.stderr)
            return 2
        shutil.rmtree(merged)
    found = shard_folders(work, count)
    try:
        folder = merge([found[k][0] for k in sorted(found)], merged, command=command)
    except (RunError, StoreError, DataError) as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted while merging; the shards are finished in {work}; to merge them: {resume}",
              file=sys.stderr)
        return 130
    print(load_run(folder).table())
    print(f"\nresults: {folder} (its {count} shards: {work})")
    return 0


def _drop_if_unused(work: Path, fresh: bool, count: int) -> bool:
    """Remove a shards' folder this command made and no shard wrote to; True when it is gone."""
    from ..run.ray_shards import shard_folders

    if not fresh or shard_folders(work, count):
        return False
    for leftover in work.iterdir():  # Ray's start-up log, empty shard logs
        if leftover.is_file():
            leftover.unlink()
    try:
        work.rmdir()
    except OSError:
        return False
    return True
