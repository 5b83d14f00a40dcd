"""The statistics of a comparison, as pure functions (seeded: the same inputs give the same numbers).

    Side A, Side B (pr_eval.compare.sides) -> pr_eval.compare.delta -> [intervals and tests here] -> gate verdicts

- paired: the delta's confidence interval is a percentile bootstrap over samples (the pairs are
  resampled together, numpy, fixed seed). For 0/1 metrics (accuracy) the test is the exact
  McNemar test: a binomial test on the discordant pairs. For graded metrics (InfoVQA's ANLS) there
  is no exact test; the bootstrap interval decides (significant = it excludes 0).
- against a reference: the reference is a fixed number; the interval is the run's own (exact
  Clopper-Pearson for 0/1 metrics, bootstrap otherwise) shifted by it, and the test a binomial test
  of the run's accuracy against the reference value (bootstrap interval for graded metrics).
"""

from __future__ import annotations

import numpy as np

from .. import benchmarks

# Graded metrics (a benchmark's `main` that is `graded`, ANLS): never McNemar, even when a small
# run happens to score only 0 and 1.
GRADED = frozenset(b.main for b in benchmarks.BENCHMARKS.values() if b.graded)
DEFAULT_RESAMPLES = 10_000


DEFAULT_ALPHA = 0.05


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


def binomtest(*args, **kwargs):
    """scipy's exact binomial test, imported on first use (scipy.stats takes a second to import,
    which `pr-eval compare --help` should not wait for)."""
    from scipy.stats import binomtest as exact_test

    return exact_test(*args, **kwargs)
