"""MiniO3: being written (a stub so the registry imports)."""

from __future__ import annotations

from .base import Family


class MiniO3(Family):
    name = "mini-o3"


FAMILY = MiniO3()
PROTOCOLS = ()
