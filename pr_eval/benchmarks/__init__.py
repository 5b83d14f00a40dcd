"""The benchmark registry: one module per benchmark, each declaring a `BENCHMARK` record
(`registry.Benchmark`: its sources, how a row becomes a document and a Sample, its scorer and
breakdowns, its names), and this index of them. Everything outside reads benchmarks from here.

    vstar.py  tallyqa.py  infovqa.py  mvbench.py  zoom.py   (docs/adding-a-benchmark.md adds one)
"""

from __future__ import annotations

from . import infovqa, mvbench, tallyqa, vstar, zoom
from .registry import Benchmark, Converted, Release

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Converted",
    "Release",
    "UnknownBenchmark",
    "find",
    "get",
    "main_metric",
    "of_task",
]

# In the order the CLI lists them: the paper's four, then the rest.
BENCHMARKS: dict[str, Benchmark] = {m.BENCHMARK.name: m.BENCHMARK for m in (vstar, tallyqa, infovqa, mvbench, zoom)}


class UnknownBenchmark(KeyError, ValueError):
    """No benchmark of that name: a KeyError for lookups, a ValueError for callers checking input."""

    def __str__(self) -> str:
        return str(self.args[0])


def get(name: str) -> Benchmark:
    """The benchmark called `name`; UnknownBenchmark (a KeyError) names the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise UnknownBenchmark(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def find(name: str | None) -> Benchmark | None:
    """The benchmark called `name`, or None (a run folder may name one this version lacks)."""
    return BENCHMARKS.get(name or "")


def of_task(task: str) -> Benchmark | None:
    """The benchmark an lmms-eval task, group or subtask belongs to (pr_mvbench_action_count ->
    mvbench), for run folders that do not record it; None for a task of no benchmark."""
    return next((b for b in BENCHMARKS.values() if b.owns_task(task)), None)


def main_metric(name: str | None) -> str:
    """The benchmark's own headline metric, else the paper's accuracy."""
    found = find(name)
    return found.main if found else "accuracy"
