"""How a run stops: SIGTERM as Ctrl-C, one last line, and the command that finishes the run.

Ctrl-C and SIGTERM (what Slurm and Kubernetes send on pre-emption) end a run the same way: the
engine is closed (its processes go; `pr_eval.engines.reaper` ends any left behind), and one line says
how many samples are saved and the exact command that finishes the run (exit 130 or 143).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys

from . import log as runlog


class Terminated(BaseException):
    """SIGTERM (Slurm's and Kubernetes' pre-emption) arrived: stopped as Ctrl-C stops a run."""


_received: list[int] = []  # the stop signals that arrived while `stop_signals` was active


@contextlib.contextmanager
def stop_signals():
    """While the block runs, SIGTERM raises Terminated and SIGINT KeyboardInterrupt in the main
    thread, and each is remembered (`received`): Ctrl-C reaches vLLM's engine processes too, and
    their end can surface first, as an engine error raised while the interrupt unwinds; the run
    still ends as interrupted."""
    def handler(signum, frame):
        _received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    _received.clear()
    try:  # a signal the process was started ignoring (a background job's SIGINT) stays ignored, as Python does
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)
                    if signal.getsignal(signum) is not signal.SIG_IGN}
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def received() -> int | None:
    """The first stop signal that arrived during the last `stop_signals` block, or None."""
    return _received[0] if _received else None


def stop(line: str, status: int, keep_log: bool = True) -> int:
    """Print the run's last line; a log that holds nothing of use (no folder, no engine output)
    is removed."""
    path = runlog.log_path()
    runlog.close()
    if path is not None and not keep_log and path.name != runlog.LOG_NAME:
        path.unlink(missing_ok=True)
    print(one_line(line), file=sys.stderr)
    return status


def one_line(text: str) -> str:
    """`text` on one line (a library's message may hold several), a leading newline kept (it
    ends the progress bar's line)."""
    return ("\n" if text.startswith("\n") else "") + " ".join(text.split())


def where_logged() -> str:
    path = runlog.log_path()
    return f" (details in {path})" if path is not None else ""


def resume_command(argv: list[str], folder, program: str = "pr-eval") -> str:
    """The exact command that finishes the run in `folder`: `program` with `argv`, any --resume
    of its own left out (with or without a folder), and --resume FOLDER; shell-quoted."""
    kept, skip = [], False
    for k, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--resume":  # with or without its folder
            nxt = argv[k + 1] if k + 1 < len(argv) else None
            skip = nxt is not None and not nxt.startswith("-")
            continue
        if arg.startswith("--resume="):
            continue
        kept.append(arg)
    return shlex.join([program, *kept, "--resume", str(folder)])
