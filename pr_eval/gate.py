"""Compare two evaluations and gate a checkpoint on significant regressions.

    pr-eval compare A B                             per benchmark: A, B, delta = B - A, 95% CI, p
    pr-eval check RUN --baseline X --max-drop P     exit 1 only on a drop beyond P points that is
                                                    also statistically significant

Each side is one of
- a run folder (results.json + samples_<task>.jsonl): per-sample scores, so two runs are compared
  pair by pair, matched on (task, sample_id);
- a submission file (`pr-eval submit`): it carries the per-sample scores too, so a committed
  submission is a paired baseline without committing trajectories;
- a reference file (schema pr-eval-reference/1, e.g. results/paper_table1.json): published
  aggregate numbers only; one row (model) is chosen with --baseline-model.

Statistics (all pure functions below, seeded, so the same inputs print the same numbers):
- paired: the delta's confidence interval is a percentile bootstrap over samples (the pairs are
  resampled together, numpy, fixed seed). For 0/1 metrics (accuracy) the test is the exact
  McNemar test: a binomial test on the discordant pairs. For graded metrics (InfoVQA's ANLS) there
  is no exact test; the bootstrap interval decides (significant = it excludes 0).
- against a reference: the reference is a fixed number; the interval is the run's own (exact
  Clopper-Pearson for 0/1 metrics, bootstrap otherwise) shifted by it, and the test a binomial test
  of the run's accuracy against the reference value (bootstrap interval for graded metrics).

`check` fails a benchmark only when BOTH hold (docs/regression-gate.md):
1. the observed drop is larger than --max-drop (a practical threshold, in points), and
2. the drop is significant: a one-sided test of "the run is lower than the baseline" at --alpha
   (McNemar for paired 0/1 scores, binomial against a reference, the one-sided bootstrap bound
   for graded scores). Condition 2 asks whether there is a drop at all, not whether the drop
   exceeds the tolerance: the latter would need enough questions to prove a drop larger than the
   tolerance and would let real regressions of V*'s 191 questions pass.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from .metrics import SCORERS
from .runner import RunError, leaf_tasks, load_run, read_summary, render_table

REFERENCE_SCHEMA = "pr-eval-reference/1"
# Graded metrics: never McNemar, even when a small run happens to score only 0 and 1.
GRADED = {"anls"}
DEFAULT_RESAMPLES = 10_000
DEFAULT_ALPHA = 0.05
# results.json's figures are means of the per-sample scores; beyond this they disagree.
CONSISTENCY = 1e-6


class InputError(Exception):
    """An input that cannot be compared (missing, unreadable, inconsistent): exit status 2."""


# --- What is compared --------------------------------------------------------------------------

@dataclass
class Benchmark:
    """One benchmark of one side: its per-sample scores (runs, submissions) and/or its aggregate
    figures (results.json's row, a reference's number), all as fractions."""

    name: str
    tasks: list[str] = field(default_factory=list)
    samples: dict[tuple[str, str], dict] = field(default_factory=dict)  # (task, sample_id) -> metrics
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


def main_metric(benchmark: str) -> str:
    """The benchmark's own headline metric (pr_eval.metrics.SCORERS), else the paper's accuracy."""
    own = SCORERS.get(benchmark)
    return own.main if own else "accuracy"


def benchmark_of_task(task: str) -> str:
    """The benchmark of a task name, for run folders that do not record it (pr_vstar -> vstar,
    pr_mvbench_action_count -> mvbench, pr_tallyqa_complex -> tallyqa)."""
    name = task.removeprefix("pr_")
    if name.startswith("mvbench"):
        return "mvbench"
    return {"tallyqa_complex": "tallyqa"}.get(name, name)


# --- Reading the sides -------------------------------------------------------------------------

def load_side(path: str | Path, model: str | None = None) -> Side:
    """A run folder, a submission file or a reference file (row `model`, default the first)."""
    path = Path(path)
    if path.is_dir():
        return read_run(path)
    if not path.exists():
        raise InputError(f"{path}: no such run folder or file")
    if path.name == "results.json":
        return read_run(path.parent)
    document = _read_json(path)
    if isinstance(document, dict) and document.get("schema") == REFERENCE_SCHEMA:
        return read_reference(path, document, model)
    if isinstance(document, dict) and document.get("schema") == "pr-eval-submission":
        return read_submission(path, document)
    raise InputError(f"{path} is neither a run folder, a submission file (pr-eval submit) nor a "
                     f"reference file (\"schema\": \"{REFERENCE_SCHEMA}\", see results/paper_table1.json)")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise InputError(f"{path}, line {number}: not valid JSON ({exc})") from None
    return records


def index_samples(records: list[dict], task: str, source: str = "") -> dict[tuple[str, str], dict]:
    """(task, sample_id) -> the record's metrics. Order does not matter; a repeated sample_id does
    (pairing by id would be ambiguous), and so does a record without one."""
    indexed: dict[tuple[str, str], dict] = {}
    for number, record in enumerate(records, 1):
        sample_id = record.get("sample_id")
        if sample_id in (None, ""):
            raise InputError(f"{source or task}: record {number} has no sample_id, so it cannot be paired")
        key = (task, str(sample_id))
        if key in indexed:
            raise InputError(f"{source or task}: sample_id {sample_id!r} occurs twice; "
                             "samples are paired by (task, sample_id), which must be unique")
        indexed[key] = record.get("metrics") or record.get("scores") or {}
    return indexed


def run_tasks(folder: Path, summary: dict) -> list[str]:
    """The scored tasks of a finished run: those with a samples file, and every task results.json
    says it scored (whose missing file is an error, not a silently smaller benchmark)."""
    found = [p.name[len("samples_"):-len(".jsonl")] for p in sorted(folder.glob("samples_*.jsonl"))]
    listed = list(((summary.get("pr_eval") or {}).get("data") or {}).keys())
    missing = [task for task in listed if task not in found]
    if missing:
        raise InputError(f"{folder}: results.json lists {', '.join(missing)} but samples_{missing[0]}.jsonl "
                         "is missing; per-sample records are needed to pair samples")
    tasks = list(dict.fromkeys(listed + found))
    if not tasks:
        raise InputError(f"{folder}: no samples_<task>.jsonl files; is this a finished pr-eval run?")
    return tasks


def read_run(folder: Path, summary: dict | None = None) -> Side:
    """A finished run folder (runner.load_run plus its per-sample records). Each benchmark's
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
    for task in run_tasks(folder, summary):
        name = run.benchmarks.get(task) or (data.get(task) or {}).get("benchmark") or benchmark_of_task(task)
        bench = benchmarks.setdefault(name, Benchmark(name))
        bench.tasks.append(task)
        path = folder / f"samples_{task}.jsonl"
        bench.samples.update(index_samples(read_jsonl(path), task, str(path)))
    for bench in benchmarks.values():
        # the benchmark's row: its task's, or the group's whose tasks are exactly its tasks (pr_mvbench)
        row = next((values for name, values in run.metrics.items()
                    if set(leaf_tasks(name, run.members)) == set(bench.tasks)), {})
        bench.reported = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        check_consistent(folder, bench)
    return Side(label=str(folder), kind="run", model=str(meta.get("model", "?")),
                protocol=str(protocol.get("name", "?")), fingerprint=protocol.get("fingerprint"),
                benchmarks=benchmarks, data={t: d for t, d in data.items() if isinstance(d, dict)})


def sample_mean(bench: Benchmark, metric: str) -> float | None:
    """The mean of the metric over the samples that have a number for it (None: none have)."""
    values = [m.get(metric) for m in bench.samples.values()]
    values = [v for v in values if isinstance(v, (int, float))]
    return float(np.mean(values)) if values else None


def check_consistent(folder: Path, bench: Benchmark) -> None:
    """results.json must agree with the per-sample records on the metrics that are gated."""
    for metric in dict.fromkeys(["accuracy", main_metric(bench.name)]):
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
    benchmarks = {}
    for bench_name in dict.fromkeys(list(document["metric"]) + list(rows[name])):
        metric = document["metric"].get(bench_name) or main_metric(bench_name)
        value = rows[name].get(bench_name)
        benchmarks[bench_name] = Benchmark(bench_name, reported={metric: None if value is None else value / scale},
                                           metric=metric, size=sizes.get(bench_name))
    protocol = document["protocol"]
    return Side(label=f"{path}: {name}", kind="reference", model=name, protocol=protocol["name"],
                fingerprint=protocol.get("fingerprint"), benchmarks=benchmarks)


def read_submission(path: Path, document: dict) -> Side:
    """A submission file (`document`: its parsed contents), validated in full (schema, checksums,
    scores) before it is trusted."""
    from . import submission

    problems = submission.validate(document)
    if problems:
        raise InputError(f"{path} is not a valid submission: " + "; ".join(problems))
    benchmarks = {name: Benchmark(name, tasks=list(entry["tasks"]), reported=dict(entry["scores"]))
                  for name, entry in document["benchmarks"].items()}
    # validate has checked that every prediction is unique and names a listed benchmark and task
    for prediction in document["predictions"]:
        benchmarks[prediction["benchmark"]].samples[(prediction["task"], prediction["sample_id"])] = prediction["scores"]
    protocol = document["protocol"]
    return Side(label=str(path), kind="submission", model=document["model"]["name"], protocol=protocol["name"],
                fingerprint=protocol["fingerprint"], benchmarks=benchmarks, data=document.get("data") or {})


def schema_problems(document, schema_file: str) -> list[str]:
    """Every place where `document` breaks the named schema of pr_eval/schemas, as
    "at <path>: <what is wrong>"."""
    import importlib.resources

    import jsonschema

    schema = json.loads((importlib.resources.files("pr_eval") / "schemas" / schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"at {'/'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]


# --- Statistics (pure) ---------------------------------------------------------------------------

def pair(a: dict, b: dict) -> tuple[list, list, list]:
    """Keys in both (sorted, so the order records were written in never matters), only in a, only in b."""
    both = sorted(set(a) & set(b))
    return both, sorted(set(a) - set(b)), sorted(set(b) - set(a))


def bootstrap_means(values, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of `values`. For paired data pass the
    per-pair differences: resampling them resamples the pairs. Chunked, so 4,000 samples x
    10,000 resamples never hold more than ~2 M indices at once."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("bootstrap over no samples")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means[start:start + size] = values[rng.integers(0, n, size=(size, n))].mean(axis=1)
    return means


def percentile_ci(means: np.ndarray, alpha: float = DEFAULT_ALPHA) -> tuple[float, float]:
    """The two-sided (1 - alpha) percentile interval of bootstrap means."""
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def discordant(a, b) -> tuple[int, int]:
    """(pairs only A got right, pairs only B got right) of paired 0/1 scores."""
    a = np.asarray(a, dtype=float) > 0.5
    b = np.asarray(b, dtype=float) > 0.5
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def mcnemar(a_only: int, b_only: int, alternative: str = "two-sided") -> float:
    """Exact McNemar test: under H0 (A and B equally accurate) each discordant pair is A's with
    probability 1/2. alternative "b-lower": H1 is that B is less accurate than A (one-sided)."""
    total = a_only + b_only
    if total == 0:
        return 1.0
    if alternative == "two-sided":
        return float(binomtest(a_only, total, 0.5).pvalue)
    if alternative == "b-lower":
        return float(binomtest(a_only, total, 0.5, alternative="greater").pvalue)
    raise ValueError(f"alternative must be 'two-sided' or 'b-lower', not {alternative!r}")


def binomial_vs_reference(successes: int, n: int, reference: float, alternative: str = "two-sided") -> float:
    """Binomial test of a run's accuracy (successes of n) against a fixed reference accuracy.
    alternative "less": H1 is that the run's true accuracy is below the reference."""
    reference = min(max(reference, 0.0), 1.0)
    return float(binomtest(successes, n, reference, alternative=alternative).pvalue)


def is_binary(metric: str, values) -> bool:
    """0/1 scores (McNemar, binomial), unless the metric is graded (ANLS)."""
    return metric not in GRADED and all(v in (0, 1) for v in values)


# --- One benchmark, two sides -------------------------------------------------------------------

@dataclass
class Row:
    """The comparison of one benchmark. Scores are fractions; delta = B - A. `p` is two-sided;
    `p_lower` is one-sided for "B is lower than A"; `upper` is the one-sided (1 - alpha) upper
    bound of the delta (bootstrap rows), what `check` reads for graded metrics."""

    benchmark: str
    metric: str | None
    status: str = "compared"    # or: only in A, only in B, no value, no common samples, no samples
    n: int = 0
    a: float | None = None
    b: float | None = None
    delta: float | None = None
    ci: tuple[float, float] | None = None
    p: float | None = None
    p_lower: float | None = None
    upper: float | None = None
    test: str = "-"             # McNemar, bootstrap, binomial
    interval: str = ""          # how `ci` was computed
    only_a: int = 0
    only_b: int = 0
    unscored: int = 0
    notes: list[str] = field(default_factory=list)
    paired: bool = False        # per-sample pairs (else a run against a reference's one number)
    partial: str | None = None  # the note saying the run has fewer questions than the reference (check warns)

    def significant(self, alpha: float) -> bool:
        """B differs from A (two-sided): the test's p below alpha, or for the bootstrap, an
        interval that excludes 0."""
        if self.status != "compared":
            return False
        if self.test == "bootstrap":
            return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)
        return self.p is not None and self.p < alpha

    def significantly_lower(self, alpha: float) -> tuple[bool, str]:
        """B is lower than A by a one-sided test at alpha, and the evidence in words."""
        if self.test == "bootstrap":
            lower = self.upper is not None and self.upper < 0
            sign = "<" if lower else ">="
            return lower, (f"one-sided bootstrap {100 * (1 - alpha):g}% upper bound of the delta "
                           f"{100 * self.upper:+.1f} {sign} 0")
        lower = self.p_lower is not None and self.p_lower < alpha
        return lower, f"one-sided {self.test} p={self.p_lower:.3g} {'<' if lower else '>='} {alpha:g}"

    def verdict(self, alpha: float) -> str:
        if self.status != "compared":
            return self.status
        if not self.significant(alpha):
            return "n.s."
        return "B higher" if (self.delta or 0) > 0 else "B lower"

    def to_json(self, alpha: float) -> dict:
        return {"benchmark": self.benchmark, "metric": self.metric, "status": self.status, "n": self.n,
                "a": self.a, "b": self.b, "delta": self.delta, "ci": list(self.ci) if self.ci else None,
                "interval": self.interval or None, "test": None if self.test == "-" else self.test,
                "p": self.p, "p_b_lower": self.p_lower, "delta_upper_bound": self.upper,
                "significant": self.significant(alpha), "verdict": self.verdict(alpha),
                "only_in_a": self.only_a, "only_in_b": self.only_b, "unscored": self.unscored, "notes": self.notes}


def metric_for(a: Benchmark | None, b: Benchmark | None, chosen: str | None) -> str:
    """--metric if given; else the metric a reference's number is; else the benchmark's main metric."""
    if chosen:
        return chosen
    for bench in (a, b):
        if bench is not None and not bench.paired and bench.metric:
            return bench.metric
    return main_metric((a or b).name)


def compare_benchmark(a: Benchmark | None, b: Benchmark | None, metric: str, alpha: float = DEFAULT_ALPHA,
                      resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Row:
    """Compare one benchmark between two sides (either may lack it)."""
    name = (a or b).name
    row = Row(name, metric)
    if a is None or b is None:
        row.status = "only in B" if a is None else "only in A"
        present = a or b
        row.a, row.b = (_score(present, metric), None) if b is None else (None, _score(present, metric))
        return row
    if a.paired and b.paired:
        return _paired(row, a, b, alpha, resamples, seed)
    if a.paired or b.paired:
        return _against_reference(row, a, b, alpha, resamples, seed)
    row.a, row.b = a.reported.get(metric), b.reported.get(metric)
    row.status = "no samples"  # two aggregate numbers: a delta, no interval
    if row.a is not None and row.b is not None:
        row.delta = row.b - row.a
    return row


def _score(bench: Benchmark, metric: str) -> float | None:
    return sample_mean(bench, metric) if bench.paired else bench.reported.get(metric)


def _values(bench: Benchmark, keys, metric: str) -> list:
    return [bench.samples[k].get(metric) for k in keys]


def _require_metric(bench: Benchmark, metric: str) -> None:
    if not any(metric in m for m in bench.samples.values()):
        known = sorted({k for m in bench.samples.values() for k in m})
        raise InputError(f"{bench.name}: the per-sample records have no metric {metric!r}; "
                         f"choose --metric from: {', '.join(known)}")


def _paired(row: Row, a: Benchmark, b: Benchmark, alpha, resamples, seed) -> Row:
    for bench in (a, b):
        _require_metric(bench, row.metric)
    keys, only_a, only_b = pair(a.samples, b.samples)
    row.only_a, row.only_b = len(only_a), len(only_b)
    xs, ys = _values(a, keys, row.metric), _values(b, keys, row.metric)
    kept = [(x, y) for x, y in zip(xs, ys) if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    row.unscored = len(keys) - len(kept)
    row.n = len(kept)
    if not kept:
        row.status = "no common samples"
        return row
    x = np.array([k[0] for k in kept], dtype=float)
    y = np.array([k[1] for k in kept], dtype=float)
    row.a, row.b = float(x.mean()), float(y.mean())
    row.delta = row.b - row.a
    means = bootstrap_means(y - x, resamples, seed)
    row.ci = percentile_ci(means, alpha)
    row.interval = "paired bootstrap"
    row.paired = True
    if is_binary(row.metric, np.concatenate([x, y])):
        a_only, b_only = discordant(x, y)
        row.test = "McNemar"
        row.p = mcnemar(a_only, b_only)
        row.p_lower = mcnemar(a_only, b_only, "b-lower")
        if a_only + b_only:
            row.notes.append(f"discordant pairs: {a_only} only A right, {b_only} only B right")
    else:
        row.test = "bootstrap"
        row.upper = float(np.quantile(means, 1 - alpha))
    if row.only_a or row.only_b:
        row.notes.append(f"compared on the {len(keys)} samples in both; {row.only_a} only in A, "
                         f"{row.only_b} only in B")
    if row.unscored:
        row.notes.append(f"{row.unscored} pairs without a {row.metric} score on one side were left out")
    return row


def _against_reference(row: Row, a: Benchmark, b: Benchmark, alpha, resamples, seed) -> Row:
    """One side has samples, the other one number: the run's own uncertainty, shifted."""
    run, reference = (a, b) if a.paired else (b, a)
    sign = 1.0 if run is b else -1.0          # delta = B - A = sign * (run - reference)
    _require_metric(run, row.metric)
    ref_value = reference.reported.get(row.metric)
    values = [v for v in run.samples.values() if isinstance(v.get(row.metric), (int, float))]
    values = np.array([v[row.metric] for v in values], dtype=float)
    row.n = len(values)
    row.unscored = len(run.samples) - row.n
    run_score = float(values.mean()) if row.n else None
    row.a, row.b = (run_score, ref_value) if run is a else (ref_value, run_score)
    if ref_value is None:
        row.status = "no value"
        row.notes.append(f"the reference reports no {row.benchmark} number")
        return row
    if not row.n:
        row.status = "no samples"
        return row
    row.delta = sign * (run_score - ref_value)
    if is_binary(row.metric, values):
        successes = int(values.sum())
        interval = binomtest(successes, row.n).proportion_ci(confidence_level=1 - alpha, method="exact")
        run_ci = (float(interval.low), float(interval.high))
        row.test = "binomial"
        row.interval = "exact binomial (run's own)"
        row.p = binomial_vs_reference(successes, row.n, ref_value)
        # "B lower than A": the run is B and below the reference, or the reference is B and below the run
        row.p_lower = binomial_vs_reference(successes, row.n, ref_value, "less" if run is b else "greater")
    else:
        means = bootstrap_means(values, resamples, seed)
        run_ci = percentile_ci(means, alpha)
        row.test = "bootstrap"
        row.interval = "bootstrap (run's own)"
        bound = np.quantile(means, 1 - alpha if run is b else alpha)
        row.upper = float(sign * (bound - ref_value))
    shifted = sorted(sign * (c - ref_value) for c in run_ci)
    row.ci = (shifted[0], shifted[1])
    if reference.size and row.n < reference.size:
        row.partial = f"the run has {row.n} of the {reference.size} questions behind the reference number"
        row.notes.append(row.partial)
    return row


def protocol_problem(a: Side, b: Side) -> str | None:
    """Why the two sides ran under different protocols (None when they did not). A side without
    a fingerprint (a published number) is matched by protocol name."""
    if a.fingerprint and b.fingerprint:
        if a.fingerprint == b.fingerprint:
            return None
    elif a.protocol == b.protocol:
        return None
    return (f"the protocols differ: A ran {a.protocol} ({a.fingerprint or 'no fingerprint'}), "
            f"B ran {b.protocol} ({b.fingerprint or 'no fingerprint'}); scores under different prompts, "
            "tool rules, caps or decoding are not comparable")


def data_warnings(a: Side, b: Side) -> list[str]:
    """Paired tasks whose data came from different sources (sample ids may name other questions)."""
    found = []
    for task in sorted(set(a.data) & set(b.data)):
        ra, rb = a.data[task].get("revision"), b.data[task].get("revision")
        if ra and rb and ra != rb:
            found.append(f"{task}: A and B read different data (revision {str(ra)[:12]} vs {str(rb)[:12]}); "
                         "equal sample ids may name different questions")
    return found


def compare_sides(a: Side, b: Side, metric: str | None = None, alpha: float = DEFAULT_ALPHA,
                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> list[Row]:
    """One row per benchmark of either side (A's order, then B's): none is skipped silently."""
    names = list(dict.fromkeys(list(a.benchmarks) + list(b.benchmarks)))
    rows = []
    for name in names:
        bench_a, bench_b = a.benchmarks.get(name), b.benchmarks.get(name)
        rows.append(compare_benchmark(bench_a, bench_b, metric_for(bench_a, bench_b, metric), alpha,
                                      resamples, seed))
    return rows


# --- Gate ----------------------------------------------------------------------------------------

@dataclass
class Decision:
    benchmark: str
    status: str     # REGRESSION, within tolerance, not significant, not in run, no baseline, ...
    reason: str

    @property
    def failed(self) -> bool:
        return self.status == "REGRESSION"


def decide(row: Row, max_drop: float, alpha: float = DEFAULT_ALPHA) -> Decision:
    """The gate's verdict on one benchmark: A = the baseline, B = the run, max_drop in points.
    A regression is a drop larger than max_drop that a one-sided test also finds significant."""
    if row.status == "only in A":
        return Decision(row.benchmark, "not in run", f"the baseline has {row.benchmark}; the run did not evaluate it")
    if row.status == "only in B":
        return Decision(row.benchmark, "no baseline", f"the baseline has no {row.benchmark}")
    if row.status != "compared":
        return Decision(row.benchmark, row.status, "; ".join(row.notes) or "nothing to compare")
    drop = -100 * row.delta + 0.0  # + 0.0: no "-0.0"
    paired = "paired" if row.paired else "against a fixed number"
    figures = f"{row.metric} {100 * row.b:.1f} vs baseline {100 * row.a:.1f} (n={row.n}, {paired})"
    if drop <= max_drop + 1e-9:
        change = f"drop {drop:.1f} <= {max_drop:g} points" if drop >= 0 else f"up {-drop:.1f} points"
        return Decision(row.benchmark, "within tolerance", f"{figures}: {change}")
    lower, evidence = row.significantly_lower(alpha)
    if not lower:
        return Decision(row.benchmark, "not significant",
                        f"{figures}: drop {drop:.1f} > {max_drop:g} points, but not significant ({evidence})")
    return Decision(row.benchmark, "REGRESSION",
                    f"{figures}: drop {drop:.1f} > {max_drop:g} points and significant ({evidence})")


# --- Output --------------------------------------------------------------------------------------

def _points(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def _p(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def comparison_text(a: Side, b: Side, rows: list[Row], alpha: float, resamples: int, seed: int) -> str:
    level = f"{100 * (1 - alpha):g}%"
    table = [["benchmark", "metric", "n", "A", "B", "delta", f"{level} CI", "p", "test", "verdict"]]
    for row in rows:
        ci = f"[{_delta(row.ci[0])}, {_delta(row.ci[1])}]" if row.ci else "-"
        table.append([row.benchmark, row.metric or "-", str(row.n) if row.n else "-", _points(row.a),
                      _points(row.b), _delta(row.delta), ci, _p(row.p), row.test, row.verdict(alpha)])
    tests = {row.test for row in rows}
    legend = [f"scores in %; delta = B - A in points; verdict: two-sided at alpha {alpha:g}"]
    if "McNemar" in tests or "bootstrap" in tests:
        legend.append(f"CI: bootstrap over samples ({resamples:,} resamples, seed {seed}),\n  "
                      "pairs resampled together when both sides have per-sample scores")
    if "McNemar" in tests:
        legend.append("McNemar: exact test on the discordant pairs (0/1 scores)")
    if "binomial" in tests:
        legend.append("binomial: the run's accuracy against the reference number; CI: the run's\n  "
                      "exact (Clopper-Pearson) interval shifted by the reference")
    if "bootstrap" in tests:
        legend.append("bootstrap (graded scores such as ANLS): no p; significant when the CI excludes 0")
    notes = [f"  {row.benchmark}: {note}" for row in rows for note in row.notes]
    text = [f"A: {a.describe()}", f"B: {b.describe()}", "", render_table(table, text_columns=(0, 1, 8, 9)),
            "(" + ";\n ".join(legend) + ")"]
    if notes:
        text += ["", "notes:"] + notes
    return "\n".join(text)


# --- Command line --------------------------------------------------------------------------------

def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline-model", default=None, metavar="NAME",
                        help="the row of a reference file to compare with (default: its first, "
                             "\"Pixel-Reasoner 7B\" in results/paper_table1.json)")
    parser.add_argument("--metric", default=None,
                        help="per-sample metric to compare on every benchmark (default: a reference's "
                             "own metric, else each benchmark's main metric)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="significance level (default: %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines instead of the table")


def _parse(parser: argparse.ArgumentParser, argv: list[str]):
    """argparse's namespace, or the exit status it asked for (2 on a bad command line, 0 on --help)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return None, int(exc.code or 0)
    if not 0 < args.alpha < 1:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --alpha must lie between 0 and 1", file=sys.stderr)
        return None, 2
    if args.resamples < 100:
        print(f"{parser.prog}: error: --resamples must be at least 100", file=sys.stderr)
        return None, 2
    return args, 0


def _warn(prog: str, message: str) -> None:
    print(f"{prog}: WARNING: {message}", file=sys.stderr)


def compare_main(argv: list[str]) -> int:
    """pr-eval compare A B: per-benchmark deltas with intervals and tests. Exit 0, or 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="pr-eval compare", description="Per-benchmark comparison of two runs (or a run and a reference "
        "file or submission): A, B, delta = B - A, a confidence interval and a test of the difference.")
    parser.add_argument("a", metavar="A", help="run folder, submission file or reference file")
    parser.add_argument("b", metavar="B", help="run folder, submission file or reference file")
    _common_arguments(parser)
    args, status = _parse(parser, argv)
    if args is None:
        return status
    try:
        a, b = load_side(args.a, args.baseline_model), load_side(args.b, args.baseline_model)
        rows = compare_sides(a, b, args.metric, args.alpha, args.resamples, args.seed)
    except InputError as exc:
        print(f"pr-eval compare: error: {exc}", file=sys.stderr)
        return 2
    problem = protocol_problem(a, b)
    warnings = ([problem] if problem else []) + data_warnings(a, b)
    for warning in warnings:
        _warn("pr-eval compare", warning)
    if args.json:
        print(json.dumps({"a": a.summary(), "b": b.summary(), "unit": "fraction", "delta": "B - A",
                          "alpha": args.alpha, "resamples": args.resamples, "seed": args.seed,
                          "protocol_match": problem is None, "warnings": warnings,
                          "rows": [row.to_json(args.alpha) for row in rows]}, indent=2))
    else:
        print(comparison_text(a, b, rows, args.alpha, args.resamples, args.seed))
    return 0


def check_main(argv: list[str]) -> int:
    """pr-eval check RUN --baseline X --max-drop P: exit 1 on a regression, 0 otherwise, 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="pr-eval check", description="Gate a run against a baseline: fail (exit 1) only where a "
        "benchmark dropped by more than --max-drop points AND a one-sided test finds the drop significant.")
    parser.add_argument("run", metavar="RUN", help="the run folder (or submission file) to check")
    parser.add_argument("--baseline", required=True, metavar="FILE_OR_RUN",
                        help="a run folder, a submission file, or a reference file such as results/paper_table1.json")
    parser.add_argument("--max-drop", required=True, type=float, metavar="POINTS",
                        help="tolerated drop in percentage points (e.g. 2 = two points of accuracy)")
    parser.add_argument("--allow-protocol-mismatch", action="store_true",
                        help="check even when the run and the baseline ran under different protocols")
    _common_arguments(parser)
    args, status = _parse(parser, argv)
    if args is None:
        return status
    prog = "pr-eval check"
    if args.max_drop < 0:
        print(f"{prog}: error: --max-drop must be 0 or more points", file=sys.stderr)
        return 2
    try:
        run = load_side(args.run)
        if run.kind == "reference":
            raise InputError(f"{args.run} is a reference file; RUN must be a run folder or a submission")
        baseline = load_side(args.baseline, args.baseline_model)
        problem = protocol_problem(baseline, run)
        if problem and not args.allow_protocol_mismatch:
            raise InputError(problem + "; pass --allow-protocol-mismatch to check anyway")
        rows = compare_sides(baseline, run, args.metric, args.alpha, args.resamples, args.seed)
        decisions = [decide(row, args.max_drop, args.alpha) for row in rows]
        if not any(d.status in ("within tolerance", "not significant", "REGRESSION") for d in decisions):
            raise InputError("nothing to check: the run and the baseline share no benchmark with scores on "
                             "both sides (" + "; ".join(f"{d.benchmark}: {d.status}" for d in decisions) + ")")
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    warnings = ([problem] if problem else []) + data_warnings(baseline, run)
    warnings += [f"{row.benchmark}: {row.partial}" for row in rows if row.partial]
    for warning in warnings:
        _warn(prog, warning)
    failed = [d.benchmark for d in decisions if d.failed]
    if args.json:
        print(json.dumps({"run": run.summary(), "baseline": baseline.summary(), "max_drop_points": args.max_drop,
                          "alpha": args.alpha, "passed": not failed, "warnings": warnings,
                          "decisions": [{"benchmark": d.benchmark, "status": d.status, "reason": d.reason,
                                         **{k: v for k, v in row.to_json(args.alpha).items() if k != "benchmark"}}
                                        for d, row in zip(decisions, rows)]}, indent=2))
    else:
        print(f"check {run.label}\n   vs {baseline.label}\n   max drop {args.max_drop:g} points, alpha {args.alpha:g} "
              "(one-sided)")
        width = max(len(d.benchmark) for d in decisions)
        status_width = max(len(d.status) for d in decisions)
        for d in decisions:
            print(f"{d.benchmark.ljust(width)}  {d.status.ljust(status_width)}  {d.reason}")
        print(f"FAILED: {len(failed)} regression{'s' if len(failed) > 1 else ''} ({', '.join(failed)})" if failed
              else "passed: no significant drop beyond the tolerance")
    return 1 if failed else 0
