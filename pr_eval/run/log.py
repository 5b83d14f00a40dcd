"""The run's log file: what the engine and the libraries say goes there, not to the terminal.

    pr-eval (quiet) -> open_log(output) -> <output>/.pr-eval-<pid>.log -> adopt(run folder) -> RUN/run.log

vLLM's engine runs in processes of its own that write to the standard output and error they were
started with: start-up logs, a dying worker's "died unexpectedly" and its traceback, a refusal
to start. `engine_output()` points the process's file descriptors 1 and 2 at the log while the
engine's processes are started (they keep that log for life), then back at the terminal, so
pr-eval's own lines and progress bar stay on the terminal and the rest lands in the log. Python
warnings of this process go to the log too, and a crash's traceback. The log starts beside the
run folders (the folder is made only once the data and the engine are ready) and moves into the
run folder as `run.log` when that exists; a run that could not start leaves its log there, named
in its error line.

When something fails, `diagnose` reads the log (and the kernel's count of out-of-memory kills)
to name the cause in one line: an engine process killed for memory, vLLM refusing to start for
lack of free memory, or an engine process that died otherwise.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

LOG_NAME = "run.log"
_state: dict = {"path": None, "handler": None, "oom_before": None}

# What vLLM writes when memory is short (CPU: "Available memory ... is less than desired CPU
# memory utilization" or "less than requested memory for kv"; GPU: "Free memory on device ... is
# less than desired GPU memory utilization", "CUDA out of memory").
_REFUSED_FOR_MEMORY = re.compile(r"(?:Available|Free) memory[^\n]*less than (?:desired|requested)[^\n]*"
                                 r"|CUDA out of memory[^\n]*|OutOfMemoryError[^\n]*")
_WORKER_DIED = re.compile(r"Worker proc (\S+) died unexpectedly|Engine core proc (\S+) died unexpectedly")


def open_log(output: str | os.PathLike, command: list[str] | None = None) -> Path | None:
    """Start this run's log beside the run folders under `output`, with the command that started
    it (None where it cannot be written: the run then goes on without one). Python warnings of
    this process go there."""
    path = Path(output) / f".pr-eval-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            log.write(f"{stamp} pr-eval (pid {os.getpid()}): {shlex.join(command or sys.argv)}\n")
        handler = _log_handler(path)
    except OSError:
        return None
    for terminal in logging.getLogger().handlers:
        if type(terminal) is logging.StreamHandler:
            terminal.addFilter(_terminal_filter)
    _state.update(path=path, handler=handler, oom_before=oom_kills())
    return path


def _terminal_filter(record: logging.LogRecord) -> bool:
    """While a log is open the terminal shows pr-eval's own warnings, one line each: other
    libraries' records and tracebacks go to the log only."""
    return _state["path"] is None or (record.name.startswith("pr_eval") and not record.exc_info)


def log_path() -> Path | None:
    return _state["path"]


def adopt(folder: Path) -> None:
    """Move the log into the run folder as run.log (appended to a resumed run's log)."""
    path = _state["path"]
    if path is None:
        return
    target = Path(folder) / LOG_NAME
    try:
        if target.exists():  # a resumed run: keep what the earlier attempts logged
            with open(target, "ab") as out, open(path, "rb") as new:
                out.write(new.read())
            path.unlink()
        else:
            os.replace(path, target)  # open descriptors (the engine's) follow the file
    except OSError:
        return
    _state["path"] = target
    old = _state["handler"]  # the warnings go on into run.log, by its new name
    if old is not None:
        logging.getLogger().removeHandler(old)
        old.close()
    _state["handler"] = _log_handler(target)


def _log_handler(path: Path) -> logging.FileHandler:
    """A root-logger handler writing this process's warnings to the log at `path`."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def close() -> None:
    handler = _state["handler"]
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    for terminal in logging.getLogger().handlers:
        terminal.removeFilter(_terminal_filter)
    _state.update(path=None, handler=None)


@contextmanager
def engine_output():
    """While engine processes start: this process's stdout and stderr (descriptors 1 and 2)
    point at the log, so the processes started now write there for good; then back."""
    path = _state["path"]
    if path is None:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab", buffering=0) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def write(text: str) -> None:
    """Append text (a crash's traceback) to the log."""
    path = _state["path"]
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(text if text.endswith("\n") else text + "\n")
    except OSError:
        pass


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed in this control group
    (cgroup v2 memory.events, or v1 memory.oom_control); None where neither can be read."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"),
                      ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
        except OSError:
            continue
    return None


def _tail(limit: int = 200_000) -> str:
    path = _state["path"]
    if path is None:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - limit))
            return log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def diagnose(message: str, log_text: str | None = None, oom_now: int | None = None) -> str | None:
    """The cause of an engine failure in words, with the option that fixes it, from the error
    `message`, the log and the OOM-kill count; None where nothing known is recognised."""
    text = _tail() if log_text is None else log_text
    refused = _REFUSED_FOR_MEMORY.search(message) or _REFUSED_FOR_MEMORY.search(text)
    if refused:
        return (f"vLLM would not start for lack of free memory ({refused.group(0).strip()[:200]}); free memory "
                "(other jobs), or lower --gpu-memory-utilization or --mm-cache-gb")
    before = _state["oom_before"]
    now = oom_kills() if oom_now is None else oom_now
    died = _WORKER_DIED.search(text)
    name = next((g for g in died.groups() if g), "an engine process") if died else "an engine process"
    if before is not None and now is not None and now > before:
        return (f"vLLM's engine process {name} was killed by the kernel for lack of memory (out-of-memory killer); "
                "free memory (other jobs), or lower --batch-size or --mm-cache-gb")
    if died or "EngineDeadError" in message:
        return (f"vLLM's engine process {name} died unexpectedly (killed by a signal or crashed; if memory was "
                "short, free memory or lower --batch-size)")
    return None
