"""Accepted submissions ranked: one board per (benchmark, protocol), each standing with its score,
its 95% interval and n.

    intake (accepted Entries) -> [boards here] -> pr_eval.leaderboard.site

A board holds only submissions of one protocol (name and fingerprint): numbers of different
protocols are never ranked together. A score is the benchmark's headline metric over its
questions (a sampled run's questions are the means of their rollouts: Avg@K) with a bootstrap
interval over questions (pr_eval.compare.table.cell_of, as `pr-eval table` computes it).

Rank: 1 + the number of standings whose interval lies wholly above this one's (the rule of
Chatbot Arena's leaderboard). Standings that share a rank are tied: none of them is above
another with confidence. Order within a board: rank, then score, then model name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import benchmarks
from ..compare.stats import DEFAULT_ALPHA, DEFAULT_RESAMPLES
from ..compare.table import Cell, cell_of
from .intake import Entry


@dataclass
class Standing:
    entry: Entry
    cell: Cell
    rank: int = 0
    tied: bool = False


@dataclass
class Board:
    benchmark: str
    metric: str
    protocol: str
    fingerprint: str
    standings: list[Standing] = field(default_factory=list)

    @property
    def title(self) -> str:
        info = benchmarks.find(self.benchmark)
        return (info.cli or info.name) if info else self.benchmark


def rank(standings: list[Standing]) -> list[Standing]:
    """Order the standings and give each its rank and tie mark (pure)."""
    standings = sorted(standings, key=lambda s: (-(s.cell.value if s.cell.value is not None else -1.0),
                                                 s.entry.model, s.entry.id))

    def bounds(s: Standing) -> tuple[float, float]:
        if s.cell.ci is not None:
            return s.cell.ci
        value = s.cell.value if s.cell.value is not None else -1.0
        return value, value

    for s in standings:
        low, high = bounds(s)
        s.rank = 1 + sum(1 for other in standings if other is not s and bounds(other)[0] > high)
    standings.sort(key=lambda s: s.rank)  # stable: by score within a rank (a narrow interval can rank
    ranks = [s.rank for s in standings]   # above a higher score whose interval is wide)
    for s in standings:
        s.tied = ranks.count(s.rank) > 1
    return standings


def boards(entries: list[Entry], alpha: float = DEFAULT_ALPHA, resamples: int = DEFAULT_RESAMPLES,
           seed: int = 0) -> list[Board]:
    """One board per (benchmark, protocol name, fingerprint), in the registry's benchmark order,
    then by protocol name."""
    found: dict[tuple[str, str, str], Board] = {}
    for entry in entries:
        protocol = entry.document["protocol"]
        for name, bench in entry.side.benchmarks.items():
            metric = benchmarks.main_metric(name)
            board = found.setdefault((name, protocol["name"], protocol["fingerprint"]),
                                     Board(name, metric, protocol["name"], protocol["fingerprint"]))
            board.standings.append(Standing(entry, cell_of(bench, metric, alpha, resamples, seed)))
    order = {name: k for k, name in enumerate(benchmarks.BENCHMARKS)}
    result = sorted(found.values(), key=lambda b: (order.get(b.benchmark, len(order)), b.benchmark, b.protocol,
                                                   b.fingerprint))
    for board in result:
        board.standings = rank(board.standings)
    return result
