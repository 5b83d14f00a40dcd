"""The read model of a run folder: what pr-eval wrote, read back.

    dataset row -> prompt -> trajectory -> answer -> score -> run folder -> [read here]
                                                                 -> report, compare, check, submit

    run.json               the run record (pr_eval.run.store writes it when the run starts)
    trajectories.jsonl     the journal: one line per finished sample (store, while the run goes)
    samples_<task>.jsonl   per-sample records: trajectory and metrics (evaluate, at the end)
    results.json           figures, counts, members, benchmarks (evaluate, last: the run is finished)

This module sits below the writer (pr_eval.run.evaluate builds the same `Run` from lmms-eval's results)
and below everything that reads a folder (report, compare, check, submit); it imports none of them.
One JSON-lines reader, `read_jsonl`, serves every file: blank lines are skipped, and so is a
damaged or non-object line, each coming back as a `Damage` that names file and line, so the report
can show it and the gate can refuse on it. Records become trajectories through the one decoder,
`Trajectory.from_record`, tolerant of keys it does not know.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..report import tables
from .store import RESULTS_FILE, RUN_FILE, sample_key


class RunError(Exception):
    """The run produced no usable result (lmms-eval often fails without raising), or a folder
    holds none."""


# --- A finished run ------------------------------------------------------------------------------

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
    # A sampled run's figures by task or group (pr_eval.loop.sampling.summarize): Avg@K and its
    # interval, pass@k, majority vote, agreement. Empty for a greedy run.
    sampled: dict[str, dict] = field(default_factory=dict)
    # results.json's "judge" (pr_eval.judge.run): the judge's record and figures; {} without one.
    judge: dict = field(default_factory=dict)

    @property
    def leaves(self) -> list[str]:
        """The tasks that hold samples (every task that is not a group), in table order."""
        return [task for task in self.metrics if task not in self.members]

    def table(self) -> str:
        """The score and tool-use tables as text (pr_eval.report.tables), each line at most 100 columns
        where the task names allow; a run of the demo model says its zeros are expected."""
        return tables.run_table(self, model=self.model())

    def model(self) -> str | None:
        """The model the run evaluated, as its run.json names it (None where there is none)."""
        try:
            info = read_json(Path(self.folder) / RUN_FILE)
        except Unreadable:
            return None
        return info.get("model") if isinstance(info, dict) else None

    def layout(self):
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


def leaf_tasks(name: str, members: dict[str, list[str]]) -> list[str]:
    """The tasks under a group (recursively), or [name] for a task."""
    if not members.get(name):
        return [name]
    return [leaf for child in members[name] for leaf in leaf_tasks(child, members)]


def task_metric_names(config: dict | None) -> list[str]:
    """The metrics an lmms-eval task config lists."""
    return [m["metric"] for m in (config or {}).get("metric_list") or [] if "metric" in m]


def plain_value(value):
    """A weighted value ({"value", "weight"}, see pr_eval.scoring.metrics) as its number, or None where
    the sample does not count (e.g. accuracy_with_tools of a sample that used no tool)."""
    if isinstance(value, dict) and "value" in value:
        return value["value"] if value.get("weight", 1) else None
    return value


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
    sampled = summary.get("sampled") if isinstance(summary.get("sampled"), dict) else {}
    judge = summary.get("judge") if isinstance(summary.get("judge"), dict) else {}
    return Run(folder=folder, metrics=metrics, counts=dict(summary.get("n_samples") or {}),
               members=members, benchmarks=benchmarks, sampled=sampled, judge=judge)


def run_tasks(folder: Path, summary: dict) -> list[str]:
    """The scored tasks of a finished run: those with a samples file, and every task results.json
    says it scored (whose missing file is an error, not a silently smaller benchmark)."""
    found = [p.name[len("samples_"):-len(".jsonl")] for p in sorted(folder.glob("samples_*.jsonl"))]
    listed = list(((summary.get("pr_eval") or {}).get("data") or {}).keys())
    missing = [task for task in listed if task not in found]
    if missing:
        raise RunError(f"{folder}: results.json lists {', '.join(missing)} but samples_{missing[0]}.jsonl "
                       "is missing; per-sample records are needed to pair samples")
    tasks = list(dict.fromkeys(listed + found))
    if not tasks:
        raise RunError(f"{folder}: no samples_<task>.jsonl files; is this a finished pr-eval run?")
    return tasks


def describe_run(summary: dict | None, run_json: dict | None) -> dict:
    """The run's description: run.json where there is one (newest first: results.json's copy),
    completed by results.json's pr_eval block for folders written before run.json existed."""
    info = dict((summary or {}).get("pr_eval") or {})
    info.update(run_json or {})
    info.update((summary or {}).get("run") or {})
    lmms = (summary or {}).get("lmms_eval") or {}
    versions = dict(info.get("versions") or {})
    versions.setdefault("pr_eval", info.get("version") or "?")
    if lmms.get("lmms_eval_version") and "lmms_eval" not in versions:
        versions["lmms_eval"] = lmms["lmms_eval_version"]
    info["versions"] = versions
    return info


# --- Files ---------------------------------------------------------------------------------------

class Unreadable(Exception):
    """A JSON file that cannot be read (`error`: the reason) or parsed; str(): "cannot read it
    (...)" or "not valid JSON (...)"."""

    def __init__(self, message: str, error: Exception):
        super().__init__(message)
        self.error = error


def read_json(path: Path):
    """A JSON file's value; Unreadable when the file cannot be read or is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"cannot read it ({exc})", exc) from None
    except ValueError as exc:
        raise Unreadable(f"not valid JSON ({exc})", exc) from None


@dataclass(frozen=True)
class Damage:
    """A line of a JSON-lines file that was skipped: not JSON (`error`: the parser's message) or
    not an object. `cut_short`: the last line, without its newline (a write in progress, or the
    tail a crash left in the journal)."""

    file: Path
    line: int
    what: str
    error: str = ""
    cut_short: bool = False

    def __str__(self) -> str:
        return f"{self.file.name} line {self.line} is {self.what} (skipped)"


@dataclass
class Lines:
    """The objects of a JSON-lines file with their line numbers, and the lines skipped."""

    records: list[tuple[int, dict]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The damage a reader should hear of: all but a last line cut short (which only a write
        in progress or a crash leaves)."""
        return [str(d) for d in self.damage if not d.cut_short]


def read_jsonl(path: Path) -> Lines:
    """Every object of a JSON-lines file (none when the file is missing). Lines end at "\\n" only;
    bytes that are not UTF-8 read as U+FFFD."""
    lines = Lines()
    if not path.is_file():
        return lines
    text = path.read_bytes().decode("utf-8", errors="replace")
    parts = text.split("\n")
    complete = len(parts) - 1  # the last part is "" when the file ends with a newline
    for number, line in enumerate(parts, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            lines.damage.append(Damage(path, number, "not JSON", str(exc), cut_short=number > complete))
            continue
        if isinstance(record, dict):
            lines.records.append((number, record))
        else:
            lines.damage.append(Damage(path, number, "not an object"))
    return lines


def record_key(task: str, record: dict) -> str:
    """The journal key of a saved record of `task` (a journal line, a per-sample record): its
    doc_id and, in a sampled run, its rollout."""
    rollout = record.get("rollout")
    return sample_key(task, record.get("doc_id"), rollout if isinstance(rollout, int) else None)


def read_journal(path: Path) -> tuple[dict[str, dict], list[str]]:
    """The journal by sample key (a key's first line wins, as when the run resumes:
    store.parse_journal), and its problems."""
    lines = read_jsonl(path)
    journal: dict[str, dict] = {}
    for _, record in lines.records:
        journal.setdefault(record_key(record.get("task"), record), record)
    return journal, lines.problems
