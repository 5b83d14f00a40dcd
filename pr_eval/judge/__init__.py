"""The optional LLM judges, recorded beside the rules and never in their place.

    client.py  the judge: its prompt, its transport (an OpenAI-compatible server), its journal
    run.py     the judge over a finished run's per-sample records
    family.py  a model family's own judge: its rule first, its judge on what the rule left open

The room's public face is the names below (`from pr_eval.judge import JudgeSettings`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"JudgeSettings": "client"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
