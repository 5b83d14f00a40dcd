"""Sampled evaluation: seeds of rollouts, and the statistics of k rollouts per question (pure).

    question -> K seeded rollouts (pr_eval.loop.steps) -> K verdicts + K answers -> [here] -> Avg@K, pass@k, vote

- Seeds: rollout r of a question gets `rollout_seed(run seed, task, sample_id, r)` and each of its
  turns `turn_seed(that, turn)`, so a rollout does not depend on which other requests the engine
  runs beside it, on the schedule, or on a resume: the same command gives the same rollouts on the
  same engine (vLLM seeds each request's sampler on its own).
- Avg@K: the mean over questions of each question's mean verdict. Its interval treats the question
  as the unit (the K rollouts of one question are not independent draws from the benchmark): the
  cluster-robust standard error sd(question means) / sqrt(n), with Student's t on n - 1 degrees of
  freedom. Counting the n K rollouts as independent gives a too-narrow interval
  (tests/test_sampling.py checks both against a simulation).
- pass@k: the unbiased estimator 1 - C(n - c, k) / C(n, k) per question (n rollouts, c correct), for
  every k up to n, averaged over questions. Mini-o3's saved "pass_at_k" is the fraction of
  correct rollouts, which is Avg@K here, not pass@k.
- Majority vote: the most frequent extracted answer among a question's rollouts (rollouts with no
  answer abstain; a tie goes to the answer that came first); the question scores the verdict of a
  rollout that gave it. Agreement: the share of rollouts that gave the majority answer.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

SEED_BITS = 31  # vLLM, torch and OpenAI servers all take a seed below 2**31


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % (1 << SEED_BITS)


def rollout_seed(run_seed: int, task: str, sample_id: str, rollout: int) -> int:
    """The seed of rollout `rollout` (0-based) of a question (protocol.Sampling.seeds)."""
    return _seed(f"{run_seed}/{task}/{sample_id}/{rollout}")


def turn_seed(seed: int, turn: int) -> int:
    """The seed of one turn (0-based generation index) of a rollout."""
    return _seed(f"{seed}/{turn}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of the chance that at least one of k rollouts drawn without
    replacement from n (c of them correct) is correct (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority(answers: Sequence[str | None], verdicts: Sequence[float]) -> tuple[str | None, float, float]:
    """(the majority answer, its verdict, agreement) of one question's rollouts (see module doc).
    A question where no rollout gave an answer has no majority: (None, 0.0, 0.0)."""
    given = [(a, v) for a, v in zip(answers, verdicts) if a not in (None, "")]
    if not given:
        return None, 0.0, 0.0
    counts = Counter(a for a, _ in given)
    best = max(counts.values())
    winner = next(a for a, _ in given if counts[a] == best)  # first to reach the top count in order
    verdict = next(v for a, v in given if a == winner)
    return winner, float(verdict), best / len(answers)


@dataclass
class Interval:
    mean: float
    low: float
    high: float
    se: float


def clustered_interval(question_means: Sequence[float], alpha: float = 0.05) -> Interval:
    """Avg@K's (1 - alpha) interval over questions: mean +- t * sd / sqrt(n) (see module doc).
    One question: no spread to estimate, so the interval is [0, 1]."""
    from scipy.stats import t

    values = [float(v) for v in question_means]
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, 0.0, 1.0, math.nan)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    se = math.sqrt(variance / n)
    half = float(t.ppf(1 - alpha / 2, n - 1)) * se
    return Interval(mean, max(0.0, mean - half), min(1.0, mean + half), se)


def naive_interval(verdicts: Sequence[Sequence[float]], alpha: float = 0.05) -> Interval:
    """The interval that wrongly counts every rollout as an independent question (normal
    approximation over all n K verdicts); kept to show in tests how much too narrow it is."""
    from scipy.stats import norm

    flat = [float(v) for question in verdicts for v in question]
    n = len(flat)
    mean = sum(flat) / n
    se = math.sqrt(max(mean * (1 - mean), 0.0) / n)
    half = float(norm.ppf(1 - alpha / 2)) * se
    return Interval(mean, mean - half, mean + half, se)


def summarize(questions: Sequence[tuple[Sequence[float], Sequence[str | None]]], alpha: float = 0.05) -> dict:
    """The sampled figures of one task from its questions' (verdicts, answers), one entry per
    rollout. Questions may have different numbers of rollouts (a run with lost rollouts):
    pass@k is then reported only for k up to the smallest number."""
    questions = [(list(v), list(a)) for v, a in questions if len(v)]
    if not questions:
        return {"questions": 0, "rollouts": 0}
    means = [sum(v) / len(v) for v, _ in questions]
    interval = clustered_interval(means, alpha)
    k_max = min(len(v) for v, _ in questions)
    votes = [majority(a, v) for v, a in questions]
    correct_counts = [sum(1 for x in v if x >= 1.0) for v, _ in questions]
    return {
        "questions": len(questions),
        "rollouts": sum(len(v) for v, _ in questions),
        "k": k_max,
        "avg": interval.mean,
        "avg_ci": [interval.low, interval.high],
        "avg_se": interval.se,
        "alpha": alpha,
        "pass_at": {str(k): sum(pass_at_k(len(v), c, k) for (v, _), c in zip(questions, correct_counts))
                    / len(questions) for k in range(1, k_max + 1)},
        "majority_accuracy": sum(verdict for _, verdict, _ in votes) / len(votes),
        "agreement": sum(share for _, _, share in votes) / len(votes),
        "all_agree": sum(1 for v, _ in questions if len(set(v)) == 1) / len(questions),
    }
