"""ChainOfFocus: being written (a stub so the registry imports)."""

from __future__ import annotations

from .base import Family


class ChainOfFocus(Family):
    name = "chain-of-focus"


FAMILY = ChainOfFocus()
PROTOCOLS = ()
