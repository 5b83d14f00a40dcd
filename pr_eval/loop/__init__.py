"""The pixel-reasoning loop: prompt -> generate -> tool call -> feedback turn -> ... -> answer (step 2).

    steps.py      `start`, `request`, `step`: one trajectory's turns; `run_samples` drives many
                  through an engine (continuous, turn-synchronous or one at a time)
    tools.py      the tool calls as the reference runs them: parsing, cropping, frame selection
    chat.py       the Qwen2.5-VL chat template as a pure function of a trajectory's messages
    safe_eval.py  what Python's `eval()` makes of a model's text, without running it
    sampling.py   seeds of sampled rollouts, and the statistics of k rollouts per question

A model family's own turn rules (pr_eval.families) are asked through `start` and `step`; the
engines (pr_eval.engines) turn a conversation into the next assistant turn.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"Guide": "steps", "request": "steps", "run_samples": "steps",
                                       "start": "steps", "step": "steps"})
