"""Engine processes die with their run.

vLLM runs its engine in processes of its own (EngineCore and its workers, several GB each, a GPU's
memory on a GPU). When the process that started them is SIGKILLed (the OOM killer, a CI timeout,
`kill -9`) they are re-parented to init and live on, holding that memory, and the resumed run may
not fit beside them. So every local engine starts a small watcher first, in a session of its own
(a kill of the run's process group does not reach it): it keeps a list of the run's descendant
processes while the run lives and, once the run is gone, ends those still alive (SIGTERM, then
SIGKILL) and exits. A run that ends normally closes its engine itself; the watcher then finds
nothing left to end.

    python -m pr_eval.engines.reaper PID      (started by `guard()`; not for use by hand)
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 5.0


def guard() -> subprocess.Popen | None:
    """Start the watcher of this process; None where it cannot run (no psutil). `release` ends it."""
    try:
        import psutil  # noqa: F401
    except ImportError:  # pragma: no cover - psutil comes with vLLM
        return None
    return subprocess.Popen([sys.executable, "-m", "pr_eval.engines.reaper", str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)


def release(watcher: subprocess.Popen | None) -> None:
    """The run is closing its engine itself: the watcher may go (it still ends any leftover once
    the run has exited)."""
    if watcher is not None and watcher.stdin is not None:
        try:
            watcher.stdin.close()
        except OSError:
            pass


def watch(pid: int) -> None:
    import psutil

    try:
        run = psutil.Process(pid)
        born = run.create_time()
    except psutil.Error:
        return
    known: dict[int, float] = {}  # pid -> create time (a re-used pid is not ours)
    stdin_open = True

    def alive() -> bool:
        try:
            return run.is_running() and run.create_time() == born and run.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    while alive():
        try:
            for child in run.children(recursive=True):
                if child.pid == os.getpid():  # the watcher is a child of the run too
                    continue
                try:
                    known.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        if stdin_open:
            ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
            if ready and not sys.stdin.buffer.read1(1024):
                stdin_open = False  # released, or the run died and its end of the pipe closed
        else:
            time.sleep(POLL_S)
    leftovers = []
    for child_pid, created in known.items():
        try:
            process = psutil.Process(child_pid)
            if process.create_time() == created:
                leftovers.append(process)
        except psutil.Error:
            pass
    for process in leftovers:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(leftovers, timeout=GRACE_S)
    for process in still:
        try:
            process.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))
