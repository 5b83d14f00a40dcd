"""`make fresh-check`: the drift alarm. Would a fresh install made today still work?

The lock keeps `make setup` where it was tested; users who `pip install pr-eval` get whatever PyPI
holds today within pyproject.toml's bounds. This resolves exactly that (the route's inputs, newest
releases, no snapshot date), prints what moved against the lock, installs it into a throw-away
environment and runs the smoke tests (`pytest -m smoke`: the pr-eval command and lmms-eval's own CLI
end to end on a real engine, the scorers, the tools). Then it lifts each known-break bound
(pr_eval/cli/compat.py) in turn and tests again, to say whether the bound is still needed.

Exit status: 0 when today's install passes (a bound still needed is expected and reported), 1 when
it fails: an upstream release broke us, and the output names the packages that moved.

    python scripts/fresh_check.py [--route cpu|gpu] [--keep DIR] [--no-tests]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lock  # noqa: E402  (scripts/lock.py: the routes, the resolver, the lock reader)

ROOT = lock.ROOT
SMOKE = ["-m", "smoke"]


def drift(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per package that differs: 'name  lock -> today', added, or gone."""
    lines = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            lines.append(f"  {name:<36} {a or '(not in lock)':>16} -> {b or '(gone)'}")
    return lines


def install(resolution: Path, venv: Path) -> None:
    uv = lock.uv_binary()
    env = lock.clean_env()
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    py = str(venv / "bin" / "python")
    subprocess.run([uv, "pip", "sync", "-q", "--compile-bytecode", "--python", py, str(resolution)], check=True, env=env)
    subprocess.run([uv, "pip", "install", "-q", "--python", py, "--no-deps", "-e", str(ROOT)], check=True, env=env)


def smoke(venv: Path, *, allow_known_breaks: bool) -> tuple[bool, str]:
    """Run the smoke tests in `venv`; (passed, the summary line or the first error)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    if allow_known_breaks:  # so the test meets the break itself, not pr-eval's refusal to start
        env["PR_EVAL_ALLOW_KNOWN_BREAKS"] = "1"
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *SMOKE],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    summary = next((l for l in reversed(lines) if " passed" in l or " failed" in l or " error" in l), "")
    if result.returncode == 0:
        return True, summary.strip("= ")
    # The exception that broke a command, not the test's assertion about it (whose message holds
    # the command's stderr, the traceback included).
    raised = [m.group(0) for l in lines if (m := re.search(r"\b[A-Z]\w*(?:Error|Exception): .*", l))]
    causes = [r for r in raised if not r.startswith("AssertionError")] or raised
    first = causes[0][:300] if causes else (lines[-1] if lines else "no output")
    return False, f"{summary.strip('= ')}; first error: {first}"


def main(argv: list[str] | None = None) -> int:
    from pr_eval.cli.compat import KNOWN_BREAKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="cpu", choices=sorted(lock.ROUTES))
    parser.add_argument("--keep", default=None, help="build the throw-away environments here and keep them")
    parser.add_argument("--no-tests", action="store_true", help="only resolve and print the drift")
    args = parser.parse_args(argv)
    route = lock.ROUTES[args.route]
    work = Path(args.keep or tempfile.mkdtemp(prefix="pr-eval-fresh-"))
    work.mkdir(parents=True, exist_ok=True)
    locked = lock.pins(route.lock)
    status = 0
    try:
        today = work / "today.txt"
        lock.resolve(route, today, as_of=None, hashes=False, quiet=True)
        newest = lock.pins(today)
        moved = drift(locked, newest)
        print(f"fresh-check ({route.name}): PyPI today against {route.lock.relative_to(ROOT)} "
              f"(as of {lock.snapshot()}): {len(moved)} of {len(newest)} packages differ")
        print("\n".join(moved) if moved else "  nothing moved")
        if not args.no_tests:
            t0 = time.time()
            install(today, work / "venv-today")
            ok, said = smoke(work / "venv-today", allow_known_breaks=False)
            print(f"\nfresh-check: today's newest within pyproject.toml's bounds: smoke tests "
                  f"{'PASS' if ok else 'FAIL'} ({said}; {time.time() - t0:.0f} s with the install)")
            if not ok:
                status = 1
                print("fresh-check: an upstream release breaks a fresh install. Suspects, the packages "
                      "that moved (above); find the one, add a KnownBreak to pr_eval/cli/compat.py and its "
                      "bound to pyproject.toml, then `make lock`.")
        for rule in KNOWN_BREAKS:
            lifted = work / f"without-{rule.package}.txt"
            lock.resolve(route, lifted, as_of=None, drop=(rule.bound,), hashes=False, quiet=True)
            held = lock.pins(lifted).get(lock.normalize(rule.package))
            if held == newest.get(lock.normalize(rule.package)):
                print(f"\nfresh-check: bound {rule.bound!r} holds nothing back today "
                      f"({rule.package} {held} is the newest allowed anyway)")
                continue
            print(f"\nfresh-check: bound {rule.bound!r} holds back {rule.package} {held} "
                  f"(we take {newest.get(lock.normalize(rule.package))}); known break: {rule.why}")
            if args.no_tests:
                continue
            venv = work / f"venv-without-{rule.package}"
            install(lifted, venv)
            ok, said = smoke(venv, allow_known_breaks=True)
            if ok:
                print(f"fresh-check: with {rule.package} {held} the smoke tests PASS ({said}): the bound "
                      f"can go (remove it from pyproject.toml and pr_eval/cli/compat.py, then `make lock`)")
            else:
                print(f"fresh-check: with {rule.package} {held} the smoke tests FAIL ({said}): "
                      f"{rule.package} {held} still BREAKS pr-eval; keep {rule.bound!r}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
