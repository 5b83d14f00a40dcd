"""pr_eval.engines.reaper: what a run started dies with it, even when the run is SIGKILLed (the vLLM
version of this, with a real engine, is in test_resume.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.server  # starts subprocesses: not in make test-fast

RUN = """
import subprocess, sys, time
from pr_eval.engines import reaper
watcher = reaper.guard()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, watcher.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (reaped by init soon) counts as gone
            if open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z"):
                return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


def test_the_children_of_a_sigkilled_run_are_ended_and_the_watcher_goes_too():
    run = subprocess.Popen([sys.executable, "-c", RUN], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child, watcher = map(int, run.stdout.readline().split())
    time.sleep(1.5)  # the watcher has seen the child
    assert not _gone(child, 0.1)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert _gone(child, 20), "the child outlived its SIGKILLed run"
    assert _gone(watcher, 20)


ENDS = """
import subprocess, sys
from pr_eval.engines import reaper
watcher = reaper.guard()
child = subprocess.Popen([sys.executable, "-c", "pass"])
child.wait()
reaper.release(watcher)
print(watcher.pid, flush=True)
"""


def test_a_run_that_ends_normally_releases_its_watcher():
    run = subprocess.run([sys.executable, "-c", ENDS], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.returncode == 0, run.stderr
    assert _gone(int(run.stdout), 20)
