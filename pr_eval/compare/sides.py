"""The sides of a comparison: a run folder, a submission file or a reference file, read and checked.

    ... -> score -> run folder (pr_eval.run.folder) / submission (pr-eval submit) / published table
        -> [Side here: per benchmark, per-sample scores and/or aggregate figures]
        -> pr_eval.compare.delta (one benchmark, two sides) -> pr_eval.compare.gate (compare, check)

- a run folder (results.json + samples_<task>.jsonl): per-sample scores, so two runs are compared
  pair by pair, matched on (task, sample_id); its figures must agree with its records;
- a submission file (`pr-eval submit`; read by pr_eval.compare.submission, which sits above this module):
  it carries the per-sample scores too, so a committed submission is a paired baseline;
- a reference file (schema pr-eval-reference/1, e.g. results/paper_table1.json): published
  aggregate numbers only; one row (model) is chosen with --baseline-model.
Input that cannot be compared raises InputError (exit status 2), whose message says why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import benchmarks
from ..run.folder import RunError, leaf_tasks, load_run, read_jsonl, read_summary, run_tasks
from ..scoring.metrics import grouped_mean

REFERENCE_SCHEMA = "pr-eval-reference/1"
# results.json's figures are means of the per-sample scores; beyond this they disagree.
CONSISTENCY = 1e-6


class InputError(Exception):
    """An input that cannot be compared (missing, unreadable, inconsistent): exit status 2."""


@dataclass
class Benchmark:
    """One benchmark of one side: its per-sample scores (runs, submissions) and/or its aggregate
    figures (results.json's row, a reference's number), all as fractions."""

    name: str
    tasks: list[str] = field(default_factory=list)
    samples: dict[tuple[str, str], dict] = field(default_factory=dict)  # (task, sample_id) -> metrics
    groups: dict[tuple[str, str], str] = field(default_factory=dict)    # (task, sample_id) -> its group, if any
    reported: dict[str, float | None] = field(default_factory=dict)
    metric: str | None = None   # the metric a reference's number is (None: the benchmark's main)
    size: int | None = None     # a reference's question count (None: unknown)

    @property
    def paired(self) -> bool:
        return bool(self.samples)


@dataclass
class Side:
    """One side of a comparison: a run, a submission or one row of a reference file."""

    label: str
    kind: str                   # "run", "submission" or "reference"
    model: str
    protocol: str
    fingerprint: str | None     # None: a reference from outside pr-eval (matched by name)
    benchmarks: dict[str, Benchmark]
    data: dict[str, dict] = field(default_factory=dict)  # task -> data source record (runs)

    def describe(self) -> str:
        fingerprint = self.fingerprint or "no fingerprint"
        return f"{self.label}  ({self.kind}; model {self.model}; protocol {self.protocol} {fingerprint})"

    def summary(self) -> dict:
        return {"label": self.label, "kind": self.kind, "model": self.model,
                "protocol": {"name": self.protocol, "fingerprint": self.fingerprint}}


def benchmark_of_task(task: str) -> str:
    """The benchmark of a task name, for run folders that do not record it (pr_vstar -> vstar,
    pr_mvbench_action_count -> mvbench, pr_tallyqa_complex -> tallyqa; else the name without pr_)."""
    return found.name if (found := benchmarks.of_task(task)) else task.removeprefix("pr_")


def read_records(path: Path) -> list[dict]:
    """The records of a samples_<task>.jsonl file; InputError on the first damaged line (a file
    pr-eval wrote whole has none)."""
    lines = read_jsonl(path)
    if lines.damage:
        bad = next((d for d in lines.damage if d.error), lines.damage[0])
        raise InputError(f"{path}, line {bad.line}: not valid JSON ({bad.error})" if bad.error
                         else f"{path}, line {bad.line}: not a JSON object")
    return [record for _, record in lines.records]


def index_samples(records: list[dict], task: str, source: str = "",
                  groups: dict | None = None) -> dict[tuple[str, str], dict]:
    """(task, sample_id) -> the record's metrics. Order does not matter; a repeated sample_id does
    (pairing by id would be ambiguous), and so does a record without one.

    A sampled run's records are rollouts (each with a "rollout" index): a question's metrics are
    then the means over its rollouts (accuracy: its share of correct rollouts), so two sampled
    runs are paired question by question, and a mean over questions is Avg@K. A record's
    "group" (HR-Bench's cycle) goes into `groups` when one is given."""
    indexed: dict[tuple[str, str], dict] = {}
    rollouts: dict[tuple[str, str], dict[int, dict]] = {}
    for number, record in enumerate(records, 1):
        sample_id = record.get("sample_id")
        if sample_id in (None, ""):
            raise InputError(f"{source or task}: record {number} has no sample_id, so it cannot be paired")
        key = (task, str(sample_id))
        metrics = record.get("metrics") or record.get("scores") or {}
        if groups is not None and isinstance(record.get("group"), str):
            groups[key] = record["group"]
        rollout = record.get("rollout")
        if isinstance(rollout, int) and not isinstance(rollout, bool):
            if rollout in rollouts.setdefault(key, {}):
                raise InputError(f"{source or task}: rollout {rollout} of sample_id {sample_id!r} occurs twice")
            rollouts[key][rollout] = metrics
            continue
        if key in indexed:
            raise InputError(f"{source or task}: sample_id {sample_id!r} occurs twice; "
                             "samples are paired by (task, sample_id), which must be unique")
        indexed[key] = metrics
    mixed = set(indexed) & set(rollouts)
    if mixed:
        raise InputError(f"{source or task}: sample_id {sorted(mixed)[0][1]!r} has records with and without a rollout")
    for key, by_rollout in rollouts.items():
        indexed[key] = rollout_means(list(by_rollout.values()))
    return indexed


def check_rollouts(records: list[dict], task: str, rollouts, run_seed, source: str) -> None:
    """A sampled run's records must hold, for every question, exactly its protocol's K rollouts
    (0..K-1), each with the seed the run's seed rule gives it (`sampling.rollout_seed`): a run cut
    down to its lucky rollouts, or with rollouts from another seed, is refused, naming questions."""
    from ..loop.sampling import rollout_seed

    if not isinstance(rollouts, int) or isinstance(rollouts, bool) or rollouts < 1:
        raise InputError(f"{source}: the protocol record of this sampled run has no rollout count")
    held: dict[str, list] = {}
    wrong_seed = []
    for record in records:
        sample_id, rollout = str(record.get("sample_id")), record.get("rollout")
        held.setdefault(sample_id, []).append(rollout)
        if isinstance(rollout, int) and record.get("seed") != rollout_seed(run_seed, task, sample_id, rollout):
            wrong_seed.append(f"{sample_id}#{rollout}")
    short = [f"{q} ({len(r)} of {rollouts})" for q, r in held.items()
             if sorted(r, key=lambda x: (not isinstance(x, int), str(x))) != list(range(rollouts))]
    if short:
        raise InputError(f"{source}: a sampled run must hold rollouts 0..{rollouts - 1} of every question; "
                         f"{len(short)} do not: {', '.join(short[:5])}{' ...' if len(short) > 5 else ''}")
    if wrong_seed:
        raise InputError(f"{source}: {len(wrong_seed)} rollouts do not carry the seed the run's seed rule gives "
                         f"them (seed {run_seed}): {', '.join(wrong_seed[:5])}{' ...' if len(wrong_seed) > 5 else ''}")


def rollout_means(per_rollout: list[dict]) -> dict:
    """A question's metrics from its rollouts': each numeric metric's mean over the rollouts that
    have a number for it."""
    means = {}
    for name in dict.fromkeys(k for m in per_rollout for k in m):
        values = [m.get(name) for m in per_rollout]
        values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        means[name] = sum(values) / len(values) if values else None
    return means


def read_run(folder: Path, summary: dict | None = None) -> Side:
    """A finished run folder (pr_eval.run.folder.load_run plus its per-sample records). Each benchmark's
    figures are recomputed from its records and must agree with results.json (an edited or
    half-copied folder is refused). `summary`: results.json, where the caller has read it."""
    folder = Path(folder)
    try:
        summary = read_summary(folder) if summary is None else summary
        run = load_run(folder, summary)
    except RunError as exc:
        raise InputError(str(exc)) from None
    meta = summary.get("pr_eval") or {}
    protocol = meta.get("protocol") or {}
    data = meta.get("data") or {}
    benchmarks: dict[str, Benchmark] = {}
    try:
        tasks = run_tasks(folder, summary)
    except RunError as exc:
        raise InputError(str(exc)) from None
    sampling = (protocol.get("settings") or {}).get("sampling") if isinstance(protocol, dict) else None
    for task in tasks:
        name = run.benchmarks.get(task) or (data.get(task) or {}).get("benchmark") or benchmark_of_task(task)
        bench = benchmarks.setdefault(name, Benchmark(name))
        bench.tasks.append(task)
        path = folder / f"samples_{task}.jsonl"
        records = read_records(path)
        if isinstance(sampling, dict):
            check_rollouts(records, task, sampling.get("rollouts"), (summary.get("run") or {}).get("seed") or 0,
                           str(path))
        bench.samples.update(index_samples(records, task, str(path), bench.groups))
    for bench in benchmarks.values():
        # the benchmark's row: its task's, or the group's whose tasks are exactly its tasks (pr_mvbench)
        row = next((values for name, values in run.metrics.items()
                    if set(leaf_tasks(name, run.members)) == set(bench.tasks)), {})
        bench.reported = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        check_consistent(folder, bench)
    return Side(label=str(folder), kind="run", model=str(meta.get("model", "?")),
                protocol=str(protocol.get("name", "?")), fingerprint=protocol.get("fingerprint"),
                benchmarks=benchmarks, data={t: d for t, d in data.items() if isinstance(d, dict)})


def sample_mean(bench: Benchmark, metric: str, keys=None) -> float | None:
    """The benchmark's figure of the metric over the samples (of `keys`, default all) that have a
    number for it (None: none have): their mean, or for a grouped metric (HR-Bench's
    cycle_accuracy) whose samples all carry their group, the mean of the group means."""
    keys = list(bench.samples) if keys is None else list(keys)
    pairs = [(bench.samples[k].get(metric), k) for k in keys]
    pairs = [(float(v), k) for v, k in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not pairs:
        return None
    if is_grouped(bench, metric, [k for _, k in pairs]):
        return grouped_mean((v, bench.groups[k]) for v, k in pairs)
    return float(np.mean([v for v, _ in pairs]))


def is_grouped(bench: Benchmark, metric: str, keys) -> bool:
    """Whether the metric is its benchmark's grouped headline and every one of `keys` has a group
    (runs written before records kept their group have none: their figure cannot be redone)."""
    return metric == benchmarks.grouped_metric(bench.name) and all(k in bench.groups for k in keys)


def check_consistent(folder: Path, bench: Benchmark) -> None:
    """results.json must agree with the per-sample records on the metrics that are gated."""
    for metric in dict.fromkeys(["accuracy", benchmarks.main_metric(bench.name)]):
        if metric == benchmarks.grouped_metric(bench.name) and not is_grouped(bench, metric, bench.samples):
            continue  # a mean of group means whose records keep no group (written before they did)
        reported = bench.reported.get(metric)
        computed = sample_mean(bench, metric)
        if isinstance(reported, (int, float)) and computed is not None and abs(reported - computed) > CONSISTENCY:
            raise InputError(f"{folder}: results.json gives {bench.name} {metric} {reported:.6f} but the "
                             f"per-sample records ({', '.join(f'samples_{t}.jsonl' for t in bench.tasks)}) "
                             f"give {computed:.6f}; the folder was edited or is incomplete")


def read_reference(path: Path, document: dict, model: str | None) -> Side:
    """One row of a reference file, validated against pr_eval/schemas/reference-v1.schema.json."""
    problems = schema_problems(document, "reference-v1.schema.json")
    if problems:
        raise InputError(f"{path} is not a valid reference file: " + "; ".join(problems))
    rows = document["models"]
    name = model if model is not None else next(iter(rows))
    if name not in rows:
        raise InputError(f"{path} has no model {name!r}; choose --baseline-model from: "
                         + ", ".join(repr(m) for m in rows))
    scale = 100.0 if document["scale"] == "percent" else 1.0
    sizes = document.get("n") or {}
    benches = {}
    for bench_name in dict.fromkeys(list(document["metric"]) + list(rows[name])):
        metric = document["metric"].get(bench_name) or benchmarks.main_metric(bench_name)
        value = rows[name].get(bench_name)
        benches[bench_name] = Benchmark(bench_name, reported={metric: None if value is None else value / scale},
                                           metric=metric, size=sizes.get(bench_name))
    protocol = document["protocol"]
    return Side(label=f"{path}: {name}", kind="reference", model=name, protocol=protocol["name"],
                fingerprint=protocol.get("fingerprint"), benchmarks=benches)


def schema_problems(document, schema_file: str) -> list[str]:
    """Every place where `document` breaks the named schema of pr_eval/schemas, as
    "at <path>: <what is wrong>"."""
    import importlib.resources

    import jsonschema

    schema = json.loads((importlib.resources.files("pr_eval") / "schemas" / schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"at {'/'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]
