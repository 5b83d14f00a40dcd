"""One evaluation run: lmms-eval drives the tasks, our model adapter drives the loop, and the run
folder (pr_eval.store) receives each sample as it finishes, then lmms-eval's results beside ours
(protocol record, per-sample trajectories and scores). `load_run` reads a finished folder back."""

from __future__ import annotations

import datetime as _dt
import importlib.resources
import itertools
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from . import __version__, quiet
from .metrics import SCORERS, pool
from .protocol import DEFAULT_PROTOCOL, Protocol, get_protocol
from .store import (RESULTS_FILE, RunStore, StoreError, git_revision, new_folder_name, package_versions, sample_key,
                    write_atomic)

log = logging.getLogger(__name__)

TASKS_DIR = Path(str(importlib.resources.files("pr_eval.tasks")))

# Columns of the printed table: (metric key in lmms-eval's results, header). MAIN stands for each
# benchmark's own metric (pr_eval.metrics.SCORERS), whose name the "metric" column gives.
MAIN = "main"
COLUMNS = [(MAIN, "score"), ("accuracy", "accuracy"), ("rapr", "RaPR"), ("tool_calls", "calls/sample"),
           ("tool_errors", "failed calls"), ("error_rate", "lost samples")]
MAIN_LABELS = {"letter_accuracy": "letter acc", "count_accuracy": "count acc", "anls": "ANLS"}
PERCENT = {MAIN, "accuracy", "letter_accuracy", "count_accuracy", "anls", "attribute_accuracy",
           "spatial_accuracy", "rapr", "error_rate", "accuracy_with_tools", "accuracy_without_tools",
           "calls_0", "calls_1", "calls_2", "calls_3", "calls_4plus", "call_error_rate", "crop_area",
           "stopped_max_tool_calls", "stopped_max_images", "stopped_max_tokens"}
FOOTNOTE = ("(score: the benchmark's own metric, named under metric; accuracy: the paper's answer rule;\n"
            " score, accuracy, RaPR and lost samples in %)")
# The tool-use table: how many calls, how they failed, what stopped trajectories, what zooming bought.
TOOL_COLUMNS = [("calls_0", "0 calls"), ("calls_1", "1"), ("calls_2", "2"), ("calls_3", "3"), ("calls_4plus", "4+"),
                ("call_error_rate", "failed calls"), ("stopped_max_tool_calls", "capped: calls"),
                ("stopped_max_images", "images"), ("stopped_max_tokens", "tokens"),
                ("accuracy_with_tools", "acc w/ tools"), ("accuracy_without_tools", "acc w/o"),
                ("turns", "turns"), ("output_tokens", "tokens/sample"), ("crop_area", "crop area")]
TOOL_FOOTNOTE = ("(shares of samples in %, except failed calls: % of calls; crop area: mean share of the\n"
                 " cropped image's area, in %; acc: the paper's accuracy; failures by kind in results.json)")


class RunError(Exception):
    """The run produced no usable result (lmms-eval often fails without raising)."""


@dataclass
class Run:
    """A finished run. `metrics` and `counts` hold every task and every scored group (MVBench and
    its subtasks), in table order; `members` (lmms-eval's group -> members) and `benchmarks`
    (task or group -> benchmark) lay out the table."""

    folder: Path
    metrics: dict[str, dict[str, float]]
    counts: dict[str, int] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    benchmarks: dict[str, str] = field(default_factory=dict)

    @property
    def leaves(self) -> list[str]:
        """The tasks that hold samples (every task that is not a group), in table order."""
        return [task for task in self.metrics if task not in self.members]

    def table(self) -> str:
        """One row per task and scored group, a group's members indented below it (MVBench's
        subtasks under pr_mvbench), and V*'s attribute/spatial accuracy below V*."""
        rows = [["task", "n", "metric"] + [header for _, header in COLUMNS]]
        for name, label, depth in self._layout():
            rows += self._rows(name, label, depth)
        return render_table(rows) + "\n" + FOOTNOTE + "\n\n" + self.tool_table()

    def tool_table(self) -> str:
        """Tool use per task (one row per benchmark and group; MVBench's subtasks are left out)."""
        rows = [["tool use", "n"] + [header for _, header in TOOL_COLUMNS]]
        for name, label, depth in self._layout():
            if depth == 0:
                values = self.metrics[name]
                rows.append([label, str(self.counts.get(name, ""))]
                            + [_cell(key, values.get(key)) for key, _ in TOOL_COLUMNS])
        return render_table(rows, text_columns=(0,)) + "\n" + TOOL_FOOTNOTE

    def _rows(self, name: str, label: str, depth: int) -> list[list[str]]:
        values = self.metrics[name]
        own = SCORERS.get(self.benchmarks.get(name, ""))
        main = own.main if own else None
        rows = [["  " * depth + label, str(self.counts.get(name, "")), MAIN_LABELS.get(main, main or "-")]
                + [_cell(key, values.get(main if key == MAIN else key)) for key, _ in COLUMNS]]
        for key in own.breakdown if own else ():  # breakdowns of the accuracy: that column only
            rows.append(["  " * (depth + 1) + key.removesuffix("_accuracy"), "", ""]
                        + [_cell(key, values.get(key)) if column == "accuracy" else "" for column, _ in COLUMNS])
        return rows

    def _layout(self):
        """(name, label, depth) in table order: each group's row, then its members' rows."""
        parent = {child: group for group, children in self.members.items() if group in self.metrics
                  for child in children}

        def walk(name, depth):
            yield name, name.removeprefix(parent[name] + "_") if name in parent else name, depth
            for child in self.members.get(name, []):
                if child in self.metrics:
                    yield from walk(child, depth + 1)

        for name in self.metrics:
            if name not in parent:
                yield from walk(name, 0)


def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}" if key in PERCENT else f"{value:.2f}"


def render_table(rows: list[list[str]], text_columns=(0, 2)) -> str:
    """Aligned columns: names left, numbers right, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i in text_columns else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def leaf_tasks(name: str, members: dict[str, list[str]]) -> list[str]:
    """The tasks under a group (recursively), or [name] for a task."""
    if not members.get(name):
        return [name]
    return [leaf for child in members[name] for leaf in leaf_tasks(child, members)]


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


def task_metric_names(config: dict | None) -> list[str]:
    return [m["metric"] for m in (config or {}).get("metric_list") or [] if "metric" in m]


def _count(results: dict, task: str) -> int:
    """The number of samples a task was scored on."""
    if task in (results.get("samples") or {}):
        return len(results["samples"][task])
    return int(((results.get("n-samples") or {}).get(task) or {}).get("effective") or 0)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.rstrip("/").split("/")[-1])[:60] or "model"


def evaluate(model: str, model_path: str, tasks: list[str], protocol: str | Protocol = DEFAULT_PROTOCOL,
             limit: int | None = None, output: str | Path = "results", batch_size: int = 64,
             engine_args: dict | None = None, engine=None, guide=None, *, engine_kind: str = "vllm",
             resume: str | Path | None = None, schedule: str | None = None, seed: int | None = None,
             command: list[str] | None = None, announce: Callable[[RunStore], None] | None = None) -> Run:
    """Run `tasks` and write the run folder (see `pr_eval.store`): created at the start, each
    sample saved as it finishes, samples_<task>.jsonl, results.json and report.html at the end.

    engine: an engine to use (the caller closes it); without one, `engine_kind` is built from
    `engine_args` on first use and closed at the end. resume: a run folder to finish: its saved
    samples are not run again; ResumeRefused when it holds another evaluation (model, protocol
    fingerprint, tasks, limit or data). schedule: how trajectories share the engine (None: the
    loop's default). announce: called with the store once the folder exists (the CLI prints it)."""
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    started = _dt.datetime.now(_dt.timezone.utc)
    info = run_info(model, model_path, engine.name if engine is not None else engine_kind, proto, tasks, limit,
                    batch_size, schedule, seed, command, started)
    if resume is not None:  # refused before anything heavy is loaded
        store = RunStore.resume(resume, info)
    else:
        store = create_run_store(output, model, proto, started, info)
    with store:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager

        from .model_adapters.pixel_reasoner import PixelReasoner

        if announce:
            announce(store)
        factory = None
        if engine is None:
            from .engines import build_engine

            def factory():
                return build_engine(engine_kind, model_path, proto, **(engine_args or {}))
        lm = PixelReasoner(engine=engine, engine_factory=factory, protocol=proto, batch_size=batch_size,
                           guide=guide, store=store, schedule=schedule)
        try:
            with quiet.lmms_eval_bars_hidden():
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
        store.fault_point("kill-before-results")  # test hook (see pr_eval.store)
        run = finish(store, results, list(tasks))
    write_report_safely(run.folder)
    return run


def run_info(model, model_path, engine_name, proto: Protocol, tasks, limit, batch_size, schedule, seed, command,
             started: _dt.datetime) -> dict:
    """What run.json records about a run before any sample runs (the data is added when the
    tasks have loaded it)."""
    from .data import source_spec

    return {"model": model, "model_path": model_path, "engine": engine_name, "protocol": proto.record(),
            "tasks": list(tasks), "limit": limit, "data_spec": source_spec(), "batch_size": batch_size,
            "schedule": schedule, "seed": seed, "command": list(command) if command is not None else None,
            "versions": package_versions(), "git": git_revision(), "started": started.isoformat(), "data": {}}


def create_run_store(output: str | Path, model: str, proto: Protocol, started: _dt.datetime, info: dict) -> RunStore:
    """A new run folder results/<model>-<protocol>-<UTC time>, with -2, -3, ... when other runs
    started in the same second (the folder's creation decides, so two processes never share one)."""
    base = Path(output) / new_folder_name(slug(model), slug(proto.name), started)
    for n in itertools.count(1):
        try:
            return RunStore.create(base if n == 1 else base.with_name(f"{base.name}-{n}"), info)
        except FileExistsError:
            continue
        except OSError as exc:  # read-only, no such disk, permission denied, disk full
            raise StoreError(f"cannot create a run folder under {output}: {exc.strerror or exc} "
                             f"({exc.filename or base}); choose a writable --output") from None


def finish(store: RunStore, results: dict, tasks: list[str]) -> Run:
    """Write a run's final files from lmms-eval's results: samples_<task>.jsonl, then results.json
    (which marks the run finished, so it is written last, atomically)."""
    folder = store.folder
    run = collect(results, tasks, folder)
    configs = results.get("configs", {})
    for task in run.leaves:
        names = task_metric_names(configs.get(task))
        lines = []
        for entry in results.get("samples", {}).get(task, []):
            record = sample_record(entry, names)
            saved = store.done.get(sample_key(task, entry.get("doc_id"))) or {}
            record["timing"], record["image_files"] = saved.get("timing"), saved.get("images")
            lines.append(json.dumps(strict_json(record), ensure_ascii=False, default=str, allow_nan=False) + "\n")
        write_atomic(folder / f"samples_{task}.jsonl", "".join(lines))
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
        "n_samples": run.counts,
        "members": run.members,
        "benchmarks": run.benchmarks,
        "run": info,
        "lmms_eval": {k: v for k, v in results.items() if k != "samples"},
    }
    write_atomic(folder / RESULTS_FILE, json.dumps(strict_json(summary), indent=2, ensure_ascii=False, default=str,
                                                   allow_nan=False) + "\n")
    return run


def write_report_safely(folder: Path) -> None:
    """The HTML report of a finished run; a report that fails only warns (the run is saved)."""
    try:
        from .report import write_report
    except ImportError:
        return
    try:
        write_report(folder)
    except Exception as exc:  # the run's files are written: a report bug must not lose them
        log.warning("the report of %s could not be written (%s: %s); the run's results are saved, "
                    "retry with `pr-eval report %s`", folder, type(exc).__name__, exc, folder)


def read_summary(folder: Path):
    """results.json of a finished run folder, parsed (RunError says why it cannot be)."""
    path = folder / RESULTS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{folder} holds no results.json: not a finished run folder (an unfinished "
                       f"run has run.json and trajectories.jsonl; finish it with `pr-eval ... --resume {folder}`)") from None
    except ValueError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None


def load_run(folder: str | Path, summary=None) -> Run:
    """The Run of a finished run folder, rebuilt from its results.json (for `pr-eval report`,
    `compare`, `check`): metrics and counts in table order, group members and benchmarks.
    `summary`: results.json already parsed by the caller, so it is not read twice.

    Folders written before results.json kept "members" and "benchmarks" get them from
    lmms-eval's own results (group_subtasks, each task's config metadata)."""
    folder = Path(folder)
    if summary is None:
        summary = read_summary(folder)
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise RunError(f"{folder / RESULTS_FILE} has no \"metrics\" object: not a pr-eval results file")
    lmms = summary.get("lmms_eval") or {}
    members = summary.get("members")
    if members is None:
        members = {group: list(children) for group, children in (lmms.get("group_subtasks") or {}).items() if children}
    benchmarks = summary.get("benchmarks")
    if benchmarks is None:
        configs = lmms.get("configs") or {}
        benchmarks = {}
        for name in summary["metrics"]:
            found = {(configs.get(leaf, {}).get("metadata") or {}).get("benchmark") for leaf in leaf_tasks(name, members)}
            if len(found) == 1 and None not in found:
                benchmarks[name] = found.pop()
    metrics = {name: {k: (math.nan if v is None else v) for k, v in values.items()}
               for name, values in summary["metrics"].items()}
    return Run(folder=folder, metrics=metrics, counts=dict(summary.get("n_samples") or {}),
               members=members, benchmarks=benchmarks)


def sample_record(entry: dict, metric_names: list[str]) -> dict:
    """lmms-eval's sample entry as our per-sample record: the trajectory plus its metrics."""
    from .metrics import trajectory_from_response

    response = entry.get("filtered_resps") or entry.get("resps") or [""]
    while isinstance(response, list):
        response = response[0] if response else ""
    traj = trajectory_from_response(response, entry.get("doc") or {}, "")
    record = traj.to_record()
    record["doc_id"] = entry.get("doc_id")
    record["metrics"] = {k: plain_value(entry[k]) for k in metric_names if k in entry}
    return record


def plain_value(value):
    """A weighted value ({"value", "weight"}, see pr_eval.metrics) as its number, or None where
    the sample does not count (e.g. accuracy_with_tools of a sample that used no tool)."""
    if isinstance(value, dict) and "value" in value:
        return value["value"] if value.get("weight", 1) else None
    return value


def strict_json(value):
    """NaN and infinities (a mean over no sample) as null, so the files are standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
