"""One evaluation run and its folder (steps 3 and 4: trajectories are stored, scored and summed up).

    evaluate.py     `evaluate`: lmms-eval drives the tasks, the adapter the loop, the store the folder
    store.py        the run store: journal, samples files, results, written while the run goes
    folder.py       the read model of a run folder: what pr-eval wrote, read back
    saved_images.py the images the model saw, saved for people
    interrupts.py   how a run stops (Ctrl-C, SIGTERM) and the command that finishes it
    log.py, quiet.py   the run's log file, and the noise kept off the terminal
    faults.py       fault injection for tests

The room's public face is the names below (`from pr_eval.run import Run`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"Run": "folder", "RunError": "folder", "RunStore": "store", "load_run": "folder"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
