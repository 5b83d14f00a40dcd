"""Which questions a shard runs: the K-th of N disjoint parts of a run's questions, chosen by a
stable hash so that any N balances and the union over K is exactly the unsharded run.

    pr-eval --shard K/N (K = 0..N-1) -> [here: $PR_EVAL_SHARD, read by the task class
        (pr_eval.lmms.task), which keeps its documents of this shard] -> an ordinary run folder
        of those questions -> `pr-eval merge` (pr_eval.run.merge) puts the N folders back together

A task's questions are ordered by int(sha256("<task>/<qid>")[:16], 16) and dealt out in turn: shard
K holds those at places K, K+N, K+2N, ... Which shard a question lands in depends only on the
task's question set, not on the order of the rows, the other tasks or the machine; every shard
holds a share of every task (lmms-eval runs no task without documents), the shares differing by
at most one question (the deal starts at a shard the task's name picks, so the odd questions of
different tasks spread over the shards). A question's rollouts (sampled protocols)
stay in its shard, so its Avg@K, pass@k and majority vote are computed where all its rollouts are.
A task's --limit cuts its documents before the shard does (the union is the limited run's), and
each document keeps its index in the unsharded task (`doc_index`), so a shard's records, journal
keys and image folders carry the ids the unsharded run would give them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

SHARD_ENV = "PR_EVAL_SHARD"
_SPEC = re.compile(r"([0-9]{1,6})/([0-9]{1,6})")


@dataclass(frozen=True)
class Shard:
    index: int   # K, 0-based
    count: int   # N

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """"K/N" with 0 <= K < N; ValueError saying what is wrong."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 0/4 (the first of four shards; K counts from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise ValueError(f"--shard {text}: K must lie in 0..N-1 and N be at least 1 (shards 0/{max(count, 1)} to "
                         f"{max(count, 1) - 1}/{max(count, 1)})")
    return Shard(index, count)


def _key(task: str, qid: str) -> tuple[int, str]:
    return int(hashlib.sha256(f"{task}/{qid}".encode()).hexdigest()[:16], 16), str(qid)


def positions(task: str, qids: list[str], shard: Shard, limit: int | None = None) -> list[int]:
    """The indices (in order) of the documents `shard` keeps of a task's first `limit` documents:
    the questions ordered by the hash of task and qid and dealt out in turn, so every shard holds
    a share of every task (sizes differing by at most one). DataError when the task has fewer
    questions than shards: lmms-eval cannot run a task without documents."""
    upto = len(qids) if limit is None else min(limit, len(qids))
    check_size(task, upto, shard)
    dealt = sorted(range(upto), key=lambda k: _key(task, str(qids[k])))
    # the deal starts at a shard chosen by the task, so one task's odd question and the next's do
    # not all land in shard 0
    start = _key(task, "")[0] % shard.count
    return sorted(dealt[(shard.index - start) % shard.count::shard.count])


def check_size(task: str, questions: int, shard: Shard) -> None:
    """DataError when a task has fewer questions in the run than there are shards."""
    from ..errors import DataError

    if questions < shard.count:
        raise DataError(f"--shard {shard}: task {task} has {questions} questions in this run, fewer than the "
                        f"{shard.count} shards, and every shard must hold one of each task: use at most "
                        f"{questions} shards (or a larger --limit)")


def current() -> Shard | None:
    """The shard this process runs ($PR_EVAL_SHARD), or None for the whole run."""
    value = os.environ.get(SHARD_ENV, "")
    return parse(value) if value else None


def sharded(shard: Shard | None):
    """`current` reports `shard` inside the block."""
    from .sources import environment

    return environment(SHARD_ENV, None if shard is None else str(shard))
