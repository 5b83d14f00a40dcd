"""What a person reads of a run: the text tables and the self-contained HTML report (step 4).

    tables.py    the text tables `pr-eval` prints at the end (scores, tool use)
    view.py      the run folder read once for the page: `RunView` and its `SampleView`s
    page.py      the page: `write_report`
    charts.py    the score and tool tables as HTML, and small SVG charts
    pictures.py  the images a model saw, inlined small, with its crop boxes drawn
    viewer.py    the trajectory viewer: one card per sample, turn by turn
    judge.py     the "Judge and rules" section
    escape.py    text from a model or a dataset, made safe to show

The room's public face is the names below (`from pr_eval.report import write_report`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"write_report": "page"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
