"""The optional LLM judges, recorded beside the rules and never in their place.

    client.py  the judge: its prompt, its transport (an OpenAI-compatible server), its journal
    run.py     the judge over a finished run's per-sample records
    family.py  a model family's own judge: its rule first, its judge on what the rule left open

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"JudgeSettings": "client"})
