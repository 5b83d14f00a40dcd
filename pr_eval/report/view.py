"""What the HTML report shows of a run folder, read once: the `RunView` and its `SampleView`s.

    run folder (results.json, samples_<task>.jsonl, trajectories.jsonl, run.json)
        -> pr_eval.run.folder (files, Run, trajectories) -> [RunView here] -> pr_eval.report.page (HTML)

A finished run's samples come from samples_<task>.jsonl with their scores, completed by the
journal's timing and image map. An unfinished run (run.json and the journal only) has its samples
scored here with the paper's answer rule (`metrics.sample_metrics`), marked provisional. Nothing
here raises on a damaged file: each damaged line or record becomes one of `RunView.problems`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import benchmarks
from ..run.folder import (Run, RunError, Unreadable, describe_run, leaf_tasks, load_run, plain_value,
                          read_journal, read_json, read_jsonl, record_key)
from ..scoring.metrics import sample_metrics
from ..trajectory import ERRORS, Trajectory


class ReportError(Exception):
    """The folder cannot be reported on (not a run folder); the message says how to fix it."""


@dataclass
class SampleView:
    """One sample in the viewer: its trajectory, its scores (None: not scored) and saved images."""

    task: str
    doc_id: str
    traj: Trajectory
    metrics: dict | None = None
    images: dict = field(default_factory=dict)     # journal: "<k>" -> relative path (a video: a list)
    seconds: float | None = None
    provisional: bool = False

    @property
    def correct(self) -> bool | None:
        value = (self.metrics or {}).get("accuracy")
        return None if value is None else value >= 1

    @property
    def lost(self) -> bool:
        return self.traj.stop_reason in ERRORS

    @property
    def failed_calls(self) -> int:
        return sum(1 for c in self.traj.tool_calls if not c.ok)


@dataclass
class RunView:
    folder: Path
    info: dict                     # run.json, or what results.json says about the run
    run: Run | None                # None while the run is unfinished
    samples: dict[str, list[SampleView]]
    sections: list[tuple[str, list[str]]]   # (table row name, its leaf tasks), in table order
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.run is not None


def load_view(folder: str | Path) -> RunView:
    """Everything the page needs from a run folder, finished or not."""
    folder = Path(folder)
    has = {name: (folder / name).is_file() for name in ("results.json", "run.json", "trajectories.jsonl")}
    if not folder.is_dir() or not any(has.values()):
        raise ReportError(f"{folder} is not a run folder (it holds no results.json, run.json or "
                          f"trajectories.jsonl); give a folder pr-eval wrote, e.g. results/<model>-<protocol>-<time>/")
    problems: list[str] = []
    summary = _read_json(folder / "results.json", problems) if has["results.json"] else None
    info = describe_run(summary, _read_json(folder / "run.json", problems) if has["run.json"] else None)
    run = None
    if summary is not None:
        try:
            run = load_run(folder, summary)
        except RunError as exc:
            problems.append(str(exc))
    journal, damaged = read_journal(folder / "trajectories.jsonl")
    problems += damaged
    if run is not None:
        samples = _finished_samples(folder, run, journal, problems)
        sections = [(name, leaf_tasks(name, run.members)) for name, _, depth in run.layout() if depth == 0]
    else:
        samples = _journal_samples(journal, info, problems)
        sections = _unfinished_sections(info.get("tasks") or [], list(samples))
    return RunView(folder, info, run, samples, sections, problems)


def _read_json(path: Path, problems: list[str]):
    try:
        return read_json(path)
    except Unreadable as exc:
        problems.append(f"{path.name} could not be read ({exc.error})")
        return None


def _sample(task: str, record: dict, journal_line: dict | None, problems: list[str], where: str):
    try:
        traj = Trajectory.from_record(record)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: not a trajectory ({exc}); skipped")
        return None
    line = journal_line or {}
    # a finished run's per-sample record carries copies of the journal's timing and image map
    timing = line.get("timing") or record.get("timing") or {}
    images = line.get("images") or record.get("image_files")
    return SampleView(task=task, doc_id=str(record.get("doc_id", line.get("doc_id", ""))),
                      traj=traj, images=images if isinstance(images, dict) else {},
                      seconds=timing.get("seconds") if isinstance(timing, dict) else None)


def _finished_samples(folder: Path, run: Run, journal: dict, problems: list[str]) -> dict[str, list[SampleView]]:
    samples = {}
    for task in run.leaves:
        views = []
        lines = read_jsonl(folder / f"samples_{task}.jsonl")
        problems += lines.problems
        for number, record in lines.records:
            view = _sample(task, record, journal.get(record_key(task, record)), problems,
                           f"samples_{task}.jsonl line {number}")
            if view:
                view.metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else None
                views.append(view)
        samples[task] = views
    return samples


def _journal_samples(journal: dict, info: dict, problems: list[str]) -> dict[str, list[SampleView]]:
    """An unfinished run's samples, scored here (provisionally) where the benchmark is known."""
    samples: dict[str, list[SampleView]] = {}
    for key, line in journal.items():
        record = dict(line.get("trajectory") or {}, doc_id=line.get("doc_id"))
        task = str(line.get("task"))
        view = _sample(task, record, line, problems, f"trajectories.jsonl {key}")
        if view is None:
            continue
        benchmark = ((info.get("data") or {}).get(task) or {}).get("benchmark")
        if benchmarks.find(benchmark) is not None and view.traj.finished:
            doc = {"answer": view.traj.target, "question": view.traj.question,
                   "category": view.traj.meta.get("category")}
            try:
                scores = sample_metrics(view.traj, doc, benchmark)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a damaged record
                problems.append(f"trajectories.jsonl {key}: could not be scored ({type(exc).__name__}: {exc})")
            else:
                view.metrics = {k: plain_value(v) for k, v in scores.items()}  # as a finished run's records
                view.provisional = True
        samples.setdefault(task, []).append(view)
    for views in samples.values():  # the journal is in finishing order; show dataset order (then rollouts)
        views.sort(key=lambda v: ((0, int(v.doc_id), "") if v.doc_id.isdigit() else (1, 0, v.doc_id),
                                  v.traj.rollout or 0))
    return samples


def _unfinished_sections(requested: list[str], found: list[str]) -> list[tuple[str, list[str]]]:
    """Without lmms-eval's group list: a requested task holds the journal's tasks named after it
    (pr_mvbench holds pr_mvbench_<subtask>); tasks nobody requested stand for themselves."""
    sections, placed = [], set()
    for name in requested:
        leaves = [t for t in found if t == name or t.startswith(name + "_")]
        if leaves:
            sections.append((name, leaves))
            placed.update(leaves)
    return sections + [(t, [t]) for t in found if t not in placed]
