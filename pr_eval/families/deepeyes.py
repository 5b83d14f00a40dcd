"""DeepEyes: being written (a stub so the registry imports)."""

from __future__ import annotations

from .base import Family


class DeepEyes(Family):
    name = "deepeyes"


FAMILY = DeepEyes()
PROTOCOLS = ()
