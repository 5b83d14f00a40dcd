"""scripts/setup_env.sh refuses up front, with a clear message, when the disk is too small."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast


def test_setup_refuses_a_disk_without_room_before_installing_anything(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh"), str(venv)], cwd=ROOT,
                            env=dict(os.environ, NEED_GB="1000000"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "the stack needs about 1000000 GB" in result.stderr and "VENV=/other/disk/.venv" in result.stderr
    assert not venv.exists()  # nothing was created or installed


def test_setup_refuses_an_unknown_route_and_a_python_the_lock_is_not_for(tmp_path):
    venv = tmp_path / "venv"
    script = str(ROOT / "scripts" / "setup_env.sh")
    result = subprocess.run(["bash", script, str(venv)], cwd=ROOT, env=dict(os.environ, ROUTE="tpu"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no lock for route 'tpu'" in result.stderr
    result = subprocess.run(["bash", script, str(venv)], cwd=ROOT, env=dict(os.environ, PYTHON="/no/python3.11"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "the lock is made for Python 3.11" in result.stderr
    assert "PYTHON=/path/to/python3.11" in result.stderr
    assert not venv.exists()


def test_gpu_check_says_so_on_a_machine_without_a_gpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PATH="/usr/bin:/bin")  # no nvidia-smi on this PATH
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no NVIDIA GPU is visible" in result.stdout
    assert "no NVIDIA GPU is visible" in (tmp_path / "gpu-check.log").read_text()
