"""Installed packages known to break pr-eval, said clearly at start instead of deep inside a run.

`make setup` installs the lock, where none of these can happen. A user who runs `pip install pr-eval`
into an environment of their own gets pyproject.toml's bounds, but an environment can still hold a
release a bound forbids (installed before, forced, or from another project); then `pr-eval` stops
before it starts an engine and says which package, why, and the command that fixes it.
PR_EVAL_ALLOW_KNOWN_BREAKS=1 starts anyway (the drift alarm uses it to meet the break itself).

Each entry is a fact that was seen, with the day: add one whenever the drift alarm
(`make fresh-check`) or a user finds a release that breaks us.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import UsageError


@dataclass(frozen=True)
class KnownBreak:
    package: str        # distribution name
    broken: str         # the releases that break us, as a version specifier
    why: str            # what fails, in the user's words
    fix: str            # the command that mends it
    bound: str          # the pyproject.toml requirement that keeps it out (fresh-check lifts it to re-test)

    def matches(self, version: str) -> bool:
        try:
            return Version(version) in SpecifierSet(self.broken)
        except InvalidVersion:
            return False


KNOWN_BREAKS = (
    KnownBreak("filelock", ">=4.3",
               "filelock 4.3 removed filelock._api, which lmms-eval 0.7.3 imports in simple_evaluate: every "
               "evaluation fails with ModuleNotFoundError (seen 2026-12-01 with filelock 4.3.1)",
               "pip install 'filelock<4.3'", "filelock<4.3"),
)


@dataclass(frozen=True)
class Problem:
    rule: KnownBreak
    installed: str

    def message(self) -> str:
        r = self.rule
        return f"{r.package} {self.installed} is installed and is known to break pr-eval: {r.why}. Fix: {r.fix}"


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def known_problems(version_of: Callable[[str], str | None] | Mapping[str, str] = installed_version) -> list[Problem]:
    """The known breaks present, given a package's installed version (None: not installed)."""
    lookup = version_of.get if isinstance(version_of, Mapping) else version_of
    found = []
    for rule in KNOWN_BREAKS:
        version = lookup(rule.package)
        if version is not None and rule.matches(version):
            found.append(Problem(rule, version))
    return found


def startup_refusal() -> str | None:
    """Why pr-eval and the lmms-eval model refuse to start, one line, or None (always None with
    PR_EVAL_ALLOW_KNOWN_BREAKS=1)."""
    if os.environ.get("PR_EVAL_ALLOW_KNOWN_BREAKS") == "1":
        return None
    return "; ".join(p.message() for p in known_problems()) or None


def check_environment() -> None:
    """Refuse to start (UsageError, one line), before any engine, when an installed package is
    known to break a run: `pr-eval` and `pr-eval ask` call it."""
    refusal = startup_refusal()
    if refusal:
        raise UsageError(refusal)
