"""Each room's public face: a few names a room offers (`from pr_eval.data import load_samples`),
each imported from its module on first use (PEP 562). The rooms use each other's modules (a
family's turn rules use the loop's tools, the loop asks the family), so a face that imported them
all when the package loads would close circles; code inside pr_eval imports the modules."""

from __future__ import annotations

import importlib


def face(package: str, names: dict[str, str]):
    """The `__getattr__` and `__all__` of a room (`package`) whose public `names` live in its
    modules ({name: module})."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__, sorted(names)
