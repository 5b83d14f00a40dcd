"""The pixel-reasoning loop: prompt -> generate -> tool call -> feedback turn -> ... -> answer (step 2).

    steps.py      `start`, `request`, `step`: one trajectory's turns; `run_samples` drives many
                  through an engine (continuous, turn-synchronous or one at a time)
    tools.py      the tool calls as the reference runs them: parsing, cropping, frame selection
    chat.py       the Qwen2.5-VL chat template as a pure function of a trajectory's messages
    safe_eval.py  what Python's `eval()` makes of a model's text, without running it
    sampling.py   seeds of sampled rollouts, and the statistics of k rollouts per question

A model family's own turn rules (pr_eval.families) are asked through `start` and `step`; the
engines (pr_eval.engines) turn a conversation into the next assistant turn.

The room's public face is the names below (`from pr_eval.loop import Guide`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"Guide": "steps", "request": "steps", "run_samples": "steps", "start": "steps", "step": "steps"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
