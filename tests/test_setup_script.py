"""scripts/setup_env.sh refuses up front, with a clear message, when the disk is too small."""

from __future__ import annotations

import os
import subprocess

from conftest import ROOT


def test_setup_refuses_a_disk_without_room_before_installing_anything(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh"), str(venv)], cwd=ROOT,
                            env=dict(os.environ, NEED_GB="1000000"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "the stack needs about 1000000 GB" in result.stderr and "VENV=/other/disk/.venv" in result.stderr
    assert not venv.exists()  # nothing was created or installed
