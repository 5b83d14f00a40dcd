"""One benchmark, two sides: the delta B - A, its interval and its test, and the comparison table.

    Side A, Side B (pr_eval.compare.sides) -> [Row per benchmark here, with pr_eval.compare.stats]
        -> `pr-eval compare` prints `comparison_text`; `pr-eval check` decides on the rows (pr_eval.compare.gate)

Both sides with per-sample scores: paired on (task, sample_id) (`_paired`). One side with samples,
the other one number: the run's own uncertainty shifted by the number (`_against_reference`).
Two numbers: a delta and no interval. Every benchmark of either side gets a row, none is skipped
silently; the sides' protocols and data sources are checked apart (`protocol_problem`,
`data_warnings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import benchmarks
from ..report.tables import render_table
from .sides import Benchmark, InputError, Side, is_grouped, sample_mean
from .stats import (DEFAULT_ALPHA, DEFAULT_RESAMPLES, binomial_vs_reference, binomtest, bootstrap_means,
                    discordant, is_binary, mcnemar, pair, percentile_ci)


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
    return benchmarks.main_metric((a or b).name)


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


def _group_means(bench: Benchmark, keyed: list) -> np.ndarray:
    """The mean of each group's values, from (key, value) pairs: what a bootstrap over whole
    groups resamples (a question's rotations are not independent samples)."""
    by_group: dict[str, list[float]] = {}
    for key, value in keyed:
        by_group.setdefault(bench.groups[key], []).append(value)
    return np.array([np.mean(values) for values in by_group.values()], dtype=float)


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
    both = [(k, x, y) for k, x, y in zip(keys, xs, ys) if isinstance(x, (int, float)) and isinstance(y, (int, float))]
    kept = [(x, y) for _, x, y in both]
    row.unscored = len(keys) - len(kept)
    row.n = len(kept)
    if not kept:
        row.status = "no common samples"
        return row
    x = np.array([k[0] for k in kept], dtype=float)
    y = np.array([k[1] for k in kept], dtype=float)
    common = [k for k, _, _ in both]
    if is_grouped(a, row.metric, common) and is_grouped(b, row.metric, common):
        # a mean of group means (HR-Bench's cycles): the figures, and an interval that resamples
        # whole groups (a question's rotations are not independent samples)
        row.a, row.b = sample_mean(a, row.metric, common), sample_mean(b, row.metric, common)
        differences = _group_means(a, [(key, yv - xv) for key, xv, yv in both])
        row.interval = "paired bootstrap over groups"
    else:
        row.a, row.b = float(x.mean()), float(y.mean())
        differences = y - x
        row.interval = "paired bootstrap"
    row.delta = row.b - row.a
    means = bootstrap_means(differences, resamples, seed)
    row.ci = percentile_ci(means, alpha)
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
    run_score = sample_mean(run, row.metric) if row.n else None  # a grouped metric: its mean of group means
    row.a, row.b = (run_score, ref_value) if run is a else (ref_value, run_score)
    if ref_value is None:
        row.status = "no value"
        row.notes.append(f"the reference reports no {row.benchmark} number")
        return row
    if not row.n:
        row.status = "no samples"
        return row
    row.delta = sign * (run_score - ref_value)
    if is_grouped(run, row.metric, list(run.samples)):  # resample whole groups, as the figure averages them
        scored = [(key, float(m[row.metric])) for key, m in run.samples.items()
                  if isinstance(m.get(row.metric), (int, float))]
        means = bootstrap_means(_group_means(run, scored), resamples, seed)
        run_ci = percentile_ci(means, alpha)
        row.test = "bootstrap"
        row.interval = "bootstrap over groups (run's own)"
        bound = np.quantile(means, 1 - alpha if run is b else alpha)
        row.upper = float(sign * (bound - ref_value))
    elif is_binary(row.metric, values):
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


def protocol_problem(a: Side, b: Side, names: tuple[str, str] = ("A", "B")) -> str | None:
    """Why the two sides ran under different protocols (None when they did not), calling them
    `names` (compare's A and B; check's baseline and run). A side without a fingerprint (a
    published number) is matched by protocol name."""
    if a.fingerprint and b.fingerprint:
        if a.fingerprint == b.fingerprint:
            return None
    elif a.protocol == b.protocol:
        return None
    return (f"the protocols differ: {names[0]} ran {a.protocol} ({a.fingerprint or 'no fingerprint'}), "
            f"{names[1]} ran {b.protocol} ({b.fingerprint or 'no fingerprint'}); scores under different prompts, "
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


def points(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def signed_points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def p_text(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def comparison_text(a: Side, b: Side, rows: list[Row], alpha: float, resamples: int, seed: int) -> str:
    level = f"{100 * (1 - alpha):g}%"
    table = [["benchmark", "metric", "n", "A", "B", "delta", f"{level} CI", "p", "test", "verdict"]]
    for row in rows:
        ci = f"[{signed_points(row.ci[0])}, {signed_points(row.ci[1])}]" if row.ci else "-"
        table.append([row.benchmark, row.metric or "-", str(row.n) if row.n else "-", points(row.a),
                      points(row.b), signed_points(row.delta), ci, p_text(row.p), row.test, row.verdict(alpha)])
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

