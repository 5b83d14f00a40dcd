"""What `pr-eval` keeps off the terminal unless `--verbose`: known noise, named one by one.

A run shows its own progress bar, the tables and real warnings. Everything silenced here was seen
in `make demo` output and is not a problem of the user's run:
- vLLM's start-up logs, and on CPU "Triton is installed, but doesn't include CPU backend";
- torch's "No CUDA runtime is found, using CUDA_HOME=..." on a CPU machine that has CUDA tooling,
  and its C++ "NUMA binding: Using MEMBIND policy" note from vLLM's CPU worker;
- math_verify's "Timeout is disabled" on every parse: pr-eval turns its signal timeouts off on
  purpose (pr_eval.scoring.rules says why);
- the checkpoint-loading bar of vLLM and lmms-eval's bars, one per task while it builds requests
  and another while it scores (about 50 for MVBench's 20 subtasks, most of them `0/1`).
The engine runs in processes of its own (spawned: they import the main script, and so this module,
before vLLM), so the settings travel as environment variables, and `apply()` runs again there.
Errors always show.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

QUIET = "PR_EVAL_QUIET"

ENVIRONMENT = {
    QUIET: "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    "TRANSFORMERS_VERBOSITY": "error",
    "TORCH_CPP_LOG_LEVEL": "ERROR",   # torch's C++ warnings (the NUMA note)
    "PYTHONWARNINGS": "ignore",
    "PR_EVAL_LMMS_VERBOSITY": "ERROR",
}
# Loggers whose warnings are known noise here (vLLM logs some before it configures its own logging,
# so its level must be set before it is imported).
LOGGERS = ("vllm", "torch.utils.cpp_extension", "math_verify")


def enable() -> None:
    """Quiet this process and every process it starts (a user's own settings of these win)."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    apply()


def is_quiet() -> bool:
    return os.environ.get(QUIET) == "1"


def apply() -> None:
    """This process's share: logger levels and Python warnings."""
    warnings.filterwarnings("ignore")
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def lmms_eval_bars_hidden() -> Iterator[None]:
    """While lmms-eval evaluates, its per-task bars stay hidden (pr-eval's own bar counts samples).
    lmms-eval passes no way to turn them off (its scoring bar sets `disable` itself), so the names
    it draws them with are swapped for the duration."""
    if not is_quiet():
        yield
        return
    import lmms_eval.api.task as task_module
    import lmms_eval.evaluator as evaluator_module

    modules = (task_module, evaluator_module)
    saved = [m.tqdm for m in modules]

    def hidden(original):
        def bar(*args, **kwargs):
            kwargs["disable"] = True
            return original(*args, **kwargs)
        return bar

    for module, original in zip(modules, saved):
        module.tqdm = hidden(original)
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.tqdm = original


if is_quiet():  # a process started by a quiet run (vLLM's engine core and workers)
    apply()
