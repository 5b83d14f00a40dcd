"""The benchmark registry: one module per benchmark, each declaring a `BENCHMARK` record
(`registry.Benchmark`: its sources, how a row becomes a document and a Sample, its scorer and
breakdowns, its names), and this index of them. Everything outside reads benchmarks from here.

    vstar.py  tallyqa.py  infovqa.py  mvbench.py   (the paper's four)
    zoom.py   (the demo model's)
    hrbench.py  mmerw.py  treebench.py  visualprobe.py   (the field's)
    (docs/adding-a-benchmark.md adds one)
"""

from __future__ import annotations

from . import hrbench, infovqa, mmerw, mvbench, tallyqa, treebench, visualprobe, vstar, zoom
from .registry import Benchmark, Converted, Group, Release

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Converted",
    "GROUPS",
    "Group",
    "Release",
    "UnknownBenchmark",
    "find",
    "get",
    "main_metric",
    "of_task",
]

# In the order the CLI lists them: the paper's four, then the rest.
# A module declares BENCHMARK, or BENCHMARKS when one release holds several (HR-Bench 4K and 8K).
MODULES = (vstar, tallyqa, infovqa, mvbench, zoom, hrbench, mmerw, treebench, visualprobe)
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for m in MODULES for b in getattr(m, "BENCHMARKS", None) or (m.BENCHMARK,)}



def _groups() -> dict[str, Group]:
    """`--tasks` groups: the paper's four ("suite"), the groups modules declare (VisualProbe's
    three difficulties), and the field's benchmarks ("field", a module's group standing for its
    members)."""
    declared = [g for m in MODULES for g in getattr(m, "GROUPS", ())]
    in_group = {member: g.cli for g in declared for member in g.members}
    field = dict.fromkeys(in_group.get(b.short, b.short) for b in BENCHMARKS.values() if b.in_field)
    return {g.cli: g for g in (Group("suite", "pr_suite", tuple(b.short for b in BENCHMARKS.values() if b.in_suite)),
                               *declared, Group("field", "pr_field", tuple(field)))}


GROUPS: dict[str, Group] = _groups()


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


def tasks_of(name: str) -> list[str]:
    """The lmms-eval tasks a --tasks name stands for: a group's (by its CLI name) members',
    recursively; a benchmark's (by its short name) task; else the name itself."""
    if name in GROUPS:
        return [task for member in GROUPS[name].members for task in tasks_of(member)]
    return [next((b.task for b in BENCHMARKS.values() if b.short == name), name)]


def of_task(task: str) -> Benchmark | None:
    """The benchmark an lmms-eval task, group or subtask belongs to (pr_mvbench_action_count ->
    mvbench), for run folders that do not record it; None for a task of no benchmark."""
    return next((b for b in BENCHMARKS.values() if b.owns_task(task)), None)


def grouped_metric(name: str | None) -> str | None:
    """The benchmark's headline metric when it is a mean of group means (HR-Bench's
    cycle_accuracy), else None."""
    found = find(name)
    return found.main if found is not None and found.main_by_group else None


def main_metric(name: str | None) -> str:
    """The benchmark's own headline metric, else the paper's accuracy."""
    found = find(name)
    return found.main if found else "accuracy"
