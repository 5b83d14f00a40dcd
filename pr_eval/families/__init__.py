"""The registry of model families: one module each, one line here.

    pixel_reasoner.py  (deepeyes.py, mini_o3.py, chain_of_focus.py: the field's peers)

A module declares FAMILY (its `base.Family`) and PROTOCOLS (its named, fingerprinted settings);
`PROTOCOLS` below is every family's, and `family_of` finds the behaviour a protocol names.
docs/adding-a-protocol.md adds a family.
"""

from __future__ import annotations

from ..protocol import PIXEL_REASONER_FAMILY, RETIRED, Protocol, parse_overrides, with_overrides
from . import chain_of_focus, deepeyes, mini_o3, pixel_reasoner
from .base import Family, Verdict

MODULES = (pixel_reasoner, deepeyes, mini_o3, chain_of_focus)
FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in MODULES}
PROTOCOLS: dict[str, Protocol] = {p.name: p for m in MODULES for p in m.PROTOCOLS}

__all__ = ["FAMILIES", "PROTOCOLS", "Family", "Verdict", "family_of", "family_of_record", "get_protocol"]


def family_of(protocol: Protocol) -> Family:
    """The behaviour the protocol's settings name."""
    try:
        return FAMILIES[protocol.family]
    except KeyError:
        raise ValueError(f"protocol {protocol.name!r} names the unknown family {protocol.family!r}; "
                         f"known: {', '.join(sorted(FAMILIES))}") from None


def family_of_record(traj) -> Family:
    """The family whose rules score a saved trajectory: the one its record names, else Pixel
    Reasoner's (its own records, retired protocols' records, and another lmms-eval model's plain
    answers, which the paper-compatible accuracy scores by the reference's rule)."""
    name = traj.family or PIXEL_REASONER_FAMILY
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"the record of {traj.task}/{traj.sample_id} names the unknown protocol family "
                         f"{name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def get_protocol(name: str) -> Protocol:
    """The protocol of that name, of any family; a retired one's ValueError names its successor.
    A probe's variant is named "<protocol>+<intervention>" (pr_eval.probe.variants), a protocol
    with changed caps or rollouts "<protocol>+max_tool_calls=3,samples=8" (`with_overrides`)."""
    base, plus, edit = name.rpartition("+")
    if plus and base in PROTOCOLS:
        from ..probe.variants import CATALOGUE, variant

        if edit in CATALOGUE:
            return variant(PROTOCOLS[base], edit)
    overridden = parse_overrides(name)
    if overridden is not None and overridden[0] in PROTOCOLS:
        return with_overrides(PROTOCOLS[overridden[0]], **overridden[1])
    try:
        return PROTOCOLS[name]
    except KeyError:
        if name in RETIRED:
            old, successor = RETIRED[name], RETIRED[name]["successor"]
            while successor in RETIRED:  # v1 -> v2 (retired too) -> v3
                successor = RETIRED[successor]["successor"]
            raise ValueError(f"protocol {name!r} was retired on {old['retired']}: {old['reason']}; "
                             f"run under {successor!r} instead") from None
        raise ValueError(
            f"unknown protocol {name!r}; choose one of: {', '.join(sorted(PROTOCOLS))}"
        ) from None


def refusal(protocol: Protocol, tasks: list[str]) -> str | None:
    """Why the protocol cannot run these lmms-eval tasks (None when it can): a family without a
    video path (its released code has none) does not run video benchmarks."""
    from ..benchmarks import of_task

    if family_of(protocol).video:
        return None
    videos = [t for t in tasks if (b := of_task(t)) is not None and b.is_video]
    if not videos:
        return None
    return (f"protocol {protocol.name!r} runs image benchmarks only (the {protocol.family} release has no video "
            f"path); {videos[0]} is a video benchmark: run it under pixel-reasoner-v3 or leave it out")
