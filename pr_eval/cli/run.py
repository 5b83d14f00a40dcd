"""`pr-eval --model M --tasks T ...`: the evaluation command: options checked, the run folder chosen
(new or resumed), the engine configured, and the run handed to pr_eval.run.evaluate."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from .. import __version__, benchmarks
from ..data import shards
from ..data.sources import FRONT_END_ENV, source_spec, use_source
from ..engines import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, ENGINES, SCHEDULES
from ..engines.config import EngineConfig
from ..errors import UsageError
from ..families import PROTOCOLS, family_of, get_protocol, refusal
from ..protocol import DEFAULT_PROTOCOL, with_overrides
from ..run import log as runlog
from ..run import quiet
from ..run.interrupts import Terminated, received, resume_command, stop, stop_signals, where_logged
from . import USAGE
from .checks import OneLineParser, check_args, check_generated
from .compat import check_environment

# Short names on the command line -> lmms-eval task names (ours are prefixed: built-ins win clashes),
# from the benchmark registry: the paper's four, "suite" (all four), the other benchmarks, then the
# other groups ("field": the field's benchmarks). mvbench is a group of 20 subtasks
# (pr_mvbench_<subtask>); a --tasks group stands for its members.
GROUPS = benchmarks.GROUPS
SUITE = GROUPS["suite"].members
TASKS = {**{b.short: b.task for b in benchmarks.BENCHMARKS.values() if b.in_suite}, "suite": "pr_suite",
         **{b.short: b.task for b in benchmarks.BENCHMARKS.values() if not b.in_suite},
         **{g.cli: g.task for g in GROUPS.values() if g.cli != "suite"}}


NEWEST = "\0newest"  # --resume without a folder
AUTO = "auto"        # --resume auto: this command's unfinished run, else a new one


def parse_tasks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--tasks is empty; choose from: " + ", ".join(TASKS))
    unknown = [n for n in names if n not in TASKS and n not in TASKS.values()]
    if unknown:
        raise UsageError(f"unknown task {unknown[0]!r}; choose from: {', '.join(TASKS)}")
    chosen = []
    for name in names:
        # a group stands for its members, so "vstar,suite" does not run V* twice
        chosen += [t for t in expand(name) if t not in chosen]
    return chosen


def expand(name: str) -> list[str]:
    """The lmms-eval tasks a --tasks name stands for: a group's members' (recursively), else its own."""
    return benchmarks.tasks_of(name)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pr-eval", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pr-eval {__version__}")
    parser.add_argument("--model", required=True,
                        help="checkpoint folder, hub id, or a built-in name ('demo': the trained tiny pixel "
                             "reasoner; 'tiny': random weights)")
    parser.add_argument("--tasks", required=True,
                        help=f"comma-separated: {', '.join(TASKS)} (suite = the paper's four benchmarks, field = the "
                             f"field's: HR-Bench, MME-RealWorld-Lite, TreeBench, VisualProbe; "
                             f"mvbench reports each of its 20 subtasks and the mean over all questions)")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, metavar="{" + ",".join(sorted(PROTOCOLS)) + "}",
                        help="evaluation protocol (default: %(default)s, the paper's; no-tool: the "
                             "paper's baseline prompt; blind-tool, blind-tool-blank: crops return "
                             "the uncropped image or a blank one; pixel-reasoner-sampled: the paper's "
                             "prompt with Mini-o3's sampling, for --samples-per-question; deepeyes*, "
                             "mini-o3*, chain-of-focus: those models' own released evaluations, "
                             "docs/peer-protocols.md)")
    parser.add_argument("--max-tool-calls", type=int, default=None,
                        help="override the protocol's cap on executed tool calls (renames the protocol)")
    parser.add_argument("--max-images", type=int, default=None, help="override the cap on images")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="override the tokens per turn")
    parser.add_argument("--samples-per-question", type=int, default=None, metavar="K",
                        help="with a sampled protocol (--protocol pixel-reasoner-sampled): K seeded rollouts per "
                             "question, reported as Avg@K with its interval, pass@1..K, majority vote and agreement "
                             "(renames the protocol; each rollout is saved and resumed on its own)")
    parser.add_argument("--data", default=None, choices=["hub", "samples", "official"],
                        help="data source: the Pixel-Reasoner copies on the hub (default), the small "
                             "sample sets bundled with pr-eval, or each benchmark's own release "
                             "(V* options shuffled with --seed)")
    parser.add_argument("--data-dir", default=None,
                        help="local copy of the data: a folder per benchmark (vstar/ ...) or one "
                             "benchmark's folder; with --data official, copies of the releases")
    parser.add_argument("--seed", type=int, default=0,
                        help="the run's seed (recorded; default %(default)s): of official V*'s option shuffle, and "
                             "of a sampled protocol's rollouts (each rollout's seed is derived from it, the question "
                             "and the rollout index)")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N samples of each task (of each MVBench subtask: 20 N in all)")
    parser.add_argument("--output", default="results", help="where run folders go (default: %(default)s)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="run only the K-th (from 0) of N disjoint parts of the questions, e.g. 0/4 "
                             "($SLURM_ARRAY_TASK_ID/N); `pr-eval merge` puts the N shard folders back together "
                             "(docs/scale-out.md)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="trajectories advanced together (default: %(default)s, as the reference)")
    parser.add_argument("--engine", default="vllm", choices=ENGINES,
                        help="vllm: offline vLLM in this process (default); openai: an OpenAI-compatible "
                             "server such as `vllm serve` (see --base-url); hf: transformers generate")
    parser.add_argument("--base-url", action="append", default=None, metavar="URL",
                        help="with --engine openai: the server's API root, e.g. http://127.0.0.1:8000/v1; "
                             "repeat it to spread requests over several servers. The key is read from "
                             "$OPENAI_API_KEY (unset: 'EMPTY', for local servers)")
    parser.add_argument("--api-model", default=None,
                        help="with --engine openai: the model name the server serves (default: --model)")
    parser.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --engine openai: how long one request may take before it is given up and "
                             f"retried (default {DEFAULT_TIMEOUT_S:.0f}); a sample whose requests all time out is "
                             "recorded as lost and the run goes on")
    parser.add_argument("--retries", type=int, default=None,
                        help="with --engine openai: further attempts after a lost connection, a timeout, 429 or "
                             f"5xx (default {DEFAULT_RETRIES})")
    parser.add_argument("--routing", default=None, choices=("sticky", "round-robin"),
                        help="with several --base-url: sticky (default) keeps each trajectory's turns on the server "
                             "that holds its prefix cache, new trajectories to the least busy; round-robin spreads "
                             "every request")
    parser.add_argument("--media-dir", default=None, metavar="DIR",
                        help="with --engine openai: write each image once, losslessly, to a folder the server "
                             "reads too and send file:// URLs instead of inlining images in every request (start "
                             "`vllm serve` with --allowed-local-media-path DIR; same path on both sides)")
    parser.add_argument("--no-pixel-check", dest="pixel_check", action="store_false",
                        help="with --engine openai: skip the check that each server shows images and videos at "
                             "the protocol's pixel bounds (for a model that is not Qwen2.5-VL); run.json says so")
    parser.add_argument("--max-model-len", type=int, default=None, help="override the engine's context")
    parser.add_argument("--tensor-parallel-size", type=int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=None)
    parser.add_argument("--mm-cache-gb", type=float, default=None, metavar="GIB",
                        help="with --engine vllm: the cache of processed images vLLM keeps in each of its "
                             "processes (vLLM's default 4); lower it for benchmarks of huge images on a small machine")
    parser.add_argument("--schedule", default=SCHEDULES[0], choices=SCHEDULES,
                        help="how trajectories share the engine (default: %(default)s; see README)")
    parser.add_argument("--resume", nargs="?", const=NEWEST, default=None, metavar="RUN_DIR",
                        help="finish an interrupted run: its saved samples are kept, the rest run. Without "
                             "RUN_DIR: the unfinished run of this same command under --output with the most "
                             "saved samples; 'auto': that run if there is one, else a new run (make demo)")
    add_judge_options(parser)
    parser.add_argument("--verbose", action="store_true", help="show vLLM's and lmms-eval's logs")
    return parser


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    """The judge's options, as a run, a probe and `pr-eval rescore` take them."""
    judge = parser.add_argument_group("optional judge (docs/judge.md): its verdicts are recorded as judge_accuracy, "
                                      "beside the rule-based scores, never instead of them")
    judge.add_argument("--judge-base-url", default=None, metavar="URL",
                       help="an OpenAI-compatible server (e.g. `vllm serve`) whose model judges each final answer "
                            "against the reference; its key is read from $OPENAI_API_KEY")
    judge.add_argument("--judge-model", default=None, metavar="NAME",
                       help="the model the judge server serves")
    judge.add_argument("--judge-concurrency", type=int, default=8, metavar="N",
                       help="judge requests in flight (default %(default)s)")
    judge.add_argument("--judge-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="per judge request (default %(default)s); a judgement that times out after its "
                            "retries is recorded as lost, not as a wrong answer")
    judge.add_argument("--judge-retries", type=int, default=2, help="further attempts per judgement (default %(default)s)")


def judge_settings(args):
    """The judge the options describe (None without --judge-base-url); UsageError when half given."""
    if args.judge_base_url is None and args.judge_model is None:
        return None
    if not (args.judge_base_url and args.judge_model):
        raise UsageError("--judge-base-url and --judge-model go together (the judge's server and the model it serves)")
    from ..engines import EngineError
    from ..judge.client import JudgeSettings

    try:
        return JudgeSettings(base_url=args.judge_base_url, model=args.judge_model, concurrency=args.judge_concurrency,
                             timeout_s=args.judge_timeout, retries=args.judge_retries)
    except (EngineError, ValueError) as exc:
        raise UsageError(f"judge: {exc}") from None


def data_spec(args) -> str:
    """The data source spec (see `pr_eval.data.load.resolve`) the options describe."""
    folder = str(Path(args.data_dir).resolve()) if args.data_dir else None
    if args.data == "official":
        return ("official:" + folder if folder else "official") + f",seed={args.seed}"
    return folder or args.data or source_spec()


def plan(args) -> tuple[list[str], object, object]:
    """(tasks, protocol with its overrides, judge settings) of a parsed command line, each checked
    without a model or data (UsageError); `pr-eval ray` checks its run options with it too."""
    check_args(args)
    tasks = parse_tasks(args.tasks)
    check_generated(tasks, args)
    judge = judge_settings(args)
    try:
        base = get_protocol(args.protocol)
    except ValueError as exc:  # unknown, or retired (which says why and what replaced it)
        raise UsageError(f"--protocol: {exc}") from None
    if (refused := refusal(base, tasks)) is not None:
        raise UsageError(refused)
    try:
        protocol = with_overrides(base, args.max_tool_calls, args.max_images, args.max_new_tokens,
                                  args.samples_per_question)
    except ValueError as exc:
        raise UsageError(f"--samples-per-question: {exc}") from None
    return tasks, protocol, judge


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ[FRONT_END_ENV] = "pr-eval"  # data errors name pr-eval's options (sources.data_option)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        tasks, protocol, judge = plan(args)
        check_environment()  # an installed package known to break a run: refused before any engine
        from ..models import ModelNotFound

        try:
            # a served model is loaded by its server; --model is then only its name in the results
            engine_config = EngineConfig.from_options(args, max_concurrency=args.batch_size)
        except ModelNotFound as exc:
            raise UsageError(str(exc)) from None
        model_path = engine_config.model
        try:
            shard = shards.parse(args.shard) if args.shard is not None else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            resume = resume_folder(args, model_path, protocol, tasks)
        except ShardDone as done:
            print(f"pr-eval: shard {args.shard} of this run is finished: {done.args[0]}")
            return 0
        if judge is not None:  # a judge that cannot be used is found now, not after every sample ran
            from ..judge.family import check_judge_for

            try:
                check_judge_for(judge, family_of(protocol))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    except UsageError as exc:
        return stop(f"pr-eval: error: {exc}", 2, keep_log=False)
    if not args.verbose:
        quiet.enable()
    use_source(data_spec(args))

    from ..engines import EngineError
    from ..errors import DataError
    from ..run.evaluate import RunError, evaluate
    from ..run.store import ResumeRefused, StoreError

    stores = []

    def announce(store):
        stores.append(store)
        runlog.adopt(store.folder)
        say_where(store)

    if not args.verbose:  # vLLM's and the libraries' output go to the run's log (pr_eval.run.log)
        runlog.open_log(args.output, ["pr-eval", *argv])
    try:
        with stop_signals():
            run = evaluate(model=args.model, model_path=model_path, tasks=tasks, protocol=protocol,
                           limit=args.limit, output=args.output, batch_size=args.batch_size,
                           engine_config=engine_config, resume=resume, schedule=args.schedule, seed=args.seed,
                           command=["pr-eval", *argv], announce=announce, judge=judge, shard=shard)
    except (KeyboardInterrupt, Terminated) as exc:
        return interrupted(isinstance(exc, Terminated), stores, argv)
    except Exception as exc:
        if received() is not None:  # what the interrupt itself caused (the engine's processes got it too)
            return interrupted(received() == signal.SIGTERM, stores, argv)
        if isinstance(exc, ResumeRefused):
            return stop(f"pr-eval: error: {exc}", 2, keep_log=False)
        if isinstance(exc, EngineError):
            cause = runlog.diagnose(str(exc))
            if cause is None:
                return stop(f"pr-eval: error: {exc}{where_logged()}", 1)
            after = (f"; to finish the run: {resume_command(argv, stores[0].folder)}" if stores else
                     "; nothing was saved: run the command again")
            return stop(f"pr-eval: error: {cause}{after}{where_logged()}", 1)
        if isinstance(exc, (DataError, RunError, StoreError)):
            return stop(f"pr-eval: error: {exc}", 1, keep_log=bool(stores))
        runlog.write(traceback.format_exc())  # a bug of ours: one line here, the traceback in the log
        if runlog.log_path() is None:
            raise
        return stop(f"pr-eval: internal error: {type(exc).__name__}: {exc}{where_logged()}", 1)
    runlog.close()
    print(run.table())
    print(f"\nresults: {run.folder}")
    return 0


def interrupted(terminated: bool, stores: list, argv: list[str]) -> int:
    """The one line of a run stopped by Ctrl-C (exit 130) or SIGTERM (143)."""
    status, what = (143, "terminated (SIGTERM)") if terminated else (130, "interrupted")
    if not stores:
        return stop(f"\npr-eval: {what} before the run started; nothing was saved", status, keep_log=False)
    store = stores[0]
    return stop(f"\npr-eval: {what}; {len(store.done)} samples are saved in {store.folder}; to finish the run: "
                f"{resume_command(argv, store.folder)}", status)


class ShardDone(Exception):
    """--resume finds this command's shard finished: nothing to do (the folder is the argument)."""


def resume_folder(args, model_path: str, protocol, tasks: list[str]) -> str | None:
    """The run folder --resume names, or for a bare --resume (or `--resume auto`) the unfinished
    run of this command under --output with the most saved samples (the others are named on
    stderr). UsageError when there is none, except with `auto`, which then starts a new run."""
    from ..run.store import find_unfinished

    if args.resume is None:
        return None
    if args.resume not in (NEWEST, AUTO):
        if not Path(args.resume).is_dir():
            raise UsageError(f"--resume {args.resume}: no such run folder")
        return args.resume
    wanted = {"model": args.model, "model_path": model_path, "protocol": protocol.record(), "tasks": tasks,
              "limit": args.limit, "data_spec": data_spec(args)}
    # a shard resumes its own folder, not another shard's (nor an unsharded run a shard's)
    wanted["shard"] = str(shards.parse(args.shard)) if args.shard else None
    found = find_unfinished(args.output, wanted)
    if not found and args.shard and (done := find_unfinished(args.output, wanted, finished=True)):
        raise ShardDone(done[0][0])  # a requeued array task whose shard already finished
    if not found and args.resume == AUTO:
        return None
    if not found:
        raise UsageError(f"--resume: no unfinished run of {args.model} with protocol {protocol.name} "
                         f"(fingerprint {protocol.fingerprint}) and tasks {','.join(tasks)} under {args.output}; "
                         "name the run folder (--resume RUN_DIR) or leave out --resume to start a new run")
    if len(found) > 1:
        others = ", ".join(f"{folder.name} ({saved} saved)" for folder, saved in found[1:4])
        more = f" and {len(found) - 4} more" if len(found) > 4 else ""
        print(f"pr-eval: {len(found)} unfinished runs of this command; finishing the one with the most saved "
              f"samples; the others: {others}{more} (--resume RUN_DIR picks one)", file=sys.stderr)
    return str(found[0][0])


def say_where(store) -> None:
    """Say where the run goes before it starts, so an interrupted run can be found and finished."""
    if store.done:
        unit = "rollouts" if (store.info.get("protocol") or {}).get("settings", {}).get("sampling") else "samples"
        print(f"pr-eval: resuming {store.folder}: {len(store.done)} {unit} already done", file=sys.stderr)
    else:
        print(f"pr-eval: run folder {store.folder} (if the run is interrupted, run the same command "
              f"with --resume to finish it)", file=sys.stderr)
    sys.stderr.flush()

