"""Fault injection for tests: the one seam through which a test makes a run crash on purpose.

    dataset row -> prompt -> trajectory -> journal line (store) -> samples, results.json (evaluate)
                                               ^ kill-mid-write:N          ^ kill-before-results

Never set it in a real run. The environment variable PR_EVAL_FAULT makes the process SIGKILL
itself at a named point, to show that the journal (pr_eval.run.store) survives a crash:
    PR_EVAL_FAULT=kill-mid-write:N     write the first half of this process's N-th journal line,
                                       flush it, then SIGKILL (a crash in the middle of a write)
    PR_EVAL_FAULT=kill-before-results  SIGKILL once every sample is in the journal, before
                                       pr_eval.run.evaluate writes samples_*.jsonl and results.json
Production code calls `point(name)` where a named crash may happen and `cut_write(n)` before
the n-th journal write; both do nothing unless the variable names them.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "PR_EVAL_FAULT"
MID_WRITE = "kill-mid-write"
BEFORE_RESULTS = "kill-before-results"


def parse_fault(text: str | None) -> tuple[str, int] | None:
    """PR_EVAL_FAULT's value as (point, n): ("kill-mid-write", N) or ("kill-before-results", 0)."""
    if not text:
        return None
    point_name, _, count = text.partition(":")
    if point_name == MID_WRITE and count.isdigit() and int(count) >= 1:
        return point_name, int(count)
    if point_name == BEFORE_RESULTS and not count:
        return point_name, 0
    raise ValueError(f"{FAULT_ENV}={text!r}: expected {MID_WRITE}:N (N >= 1) or {BEFORE_RESULTS}")


def current() -> tuple[str, int] | None:
    """The fault this process was asked for (ValueError on a malformed value)."""
    return parse_fault(os.environ.get(FAULT_ENV))


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def point(name: str) -> None:
    """SIGKILL this process here when PR_EVAL_FAULT names the point `name`."""
    fault = current()
    if fault and fault[0] == name:
        kill_self()


def cut_write(fault: tuple[str, int] | None, count: int) -> bool:
    """Whether the `count`-th journal write of this process is the one to cut short (`fault`: the
    value `current()` gave when the journal was opened): the caller writes half, then `kill_self()`."""
    return fault == (MID_WRITE, count)
