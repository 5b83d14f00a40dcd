"""Resume: a run killed with SIGKILL at any moment, resumed, gives the numbers and the per-sample
records of a run that was never interrupted, with no sample lost or run twice.

The runs are child processes (tests/resume_child.py) with the real tiny vLLM engine, every turn
forced by a guide (0-2 crops, then an answer), so the interrupted and the uninterrupted run do
the same work although a resumed run batches its samples differently. Engine starts dominate
the time, so one test chains the kill points and the other tests reuse its folders; the
uninterrupted run runs in this process on the session's engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from pr_eval.protocol import PIXEL_REASONER
from pr_eval.run.store import JOURNAL_FILE, RESULTS_FILE, RUN_FILE

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast

CHILD = ROOT / "tests" / "resume_child.py"
PR_EVAL = Path(sys.executable).parent / "pr-eval"
N = 10  # resume_child.LIMIT: samples in each run
CLI_ARGS = ["--model", "tiny", "--tasks", "vstar", "--data", "samples", "--limit", str(N)]
TIMEOUT = 600  # per child run: an engine start took up to 5 minutes on a loaded machine


def _env(**extra):
    env = dict(os.environ, PR_EVAL_DATA="samples", TOKENIZERS_PARALLELISM="false")
    env.pop("PR_EVAL_FAULT", None)
    env.update(extra)
    return env


def _start(log: Path, output: Path, *args, **env) -> subprocess.Popen:
    """A child run in its own process group (so a kill reaches vLLM's engine processes too)."""
    return subprocess.Popen([sys.executable, str(CHILD), str(output), *args], cwd=ROOT, env=_env(**env),
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"),
                            start_new_session=True)


def _end_group(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a child's process group (engine processes outlive a killed parent)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=60)


def _wait(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(timeout=TIMEOUT)
    finally:
        _end_group(proc)


def _log(log: Path) -> str:
    return (log.with_suffix(".out").read_text() + "\n--- stderr ---\n" + log.with_suffix(".err").read_text()[-4000:])


def _folder(log: Path) -> Path | None:
    for line in log.with_suffix(".out").read_text().splitlines():
        if line.startswith("folder "):
            return Path(line.removeprefix("folder "))
    return None


def _journal_lines(folder: Path) -> list[bytes]:
    path = folder / JOURNAL_FILE
    return path.read_bytes().split(b"\n") if path.exists() else [b""]


def _complete_lines(folder: Path) -> int:
    return len(_journal_lines(folder)) - 1


def _keys(folder: Path) -> list[str]:
    return [json.loads(line)["key"] for line in _journal_lines(folder)[:-1]]


def _samples(folder: Path) -> dict[str, dict]:
    """samples_pr_vstar.jsonl by sample id, without the timings (which differ between runs)."""
    records = [json.loads(x) for x in (folder / "samples_pr_vstar.jsonl").read_text().splitlines()]
    assert len(records) == len({r["sample_id"] for r in records}), "a sample is recorded twice"
    return {r["sample_id"]: {k: v for k, v in r.items() if k != "timing"} for r in records}


def _results(folder: Path) -> dict:
    return json.loads((folder / RESULTS_FILE).read_text())


def _same_run(folder: Path, reference: Path) -> None:
    got, want = _results(folder), _results(reference)
    assert got["metrics"] == want["metrics"]
    assert got["n_samples"] == want["n_samples"] == {"pr_vstar": N}
    assert got["lmms_eval"]["results"] == want["lmms_eval"]["results"]
    assert _samples(folder) == _samples(reference)
    keys = _keys(folder)
    assert sorted(keys) == sorted(f"pr_vstar/{i}" for i in range(N))  # each sample exactly once


@pytest.fixture(scope="module")
def runs(tmp_path_factory, engine):
    """An uninterrupted run and a run killed three times and resumed (see the chained test). The
    uninterrupted run is resume_child's run in this process, on the session's engine (the same
    checkpoint and engine arguments as a child's): one engine start less."""
    from conftest import scripted
    from resume_child import LIMIT, forced_turns

    from pr_eval.models import resolve_model
    from pr_eval.run.evaluate import evaluate

    base = tmp_path_factory.mktemp("resume")
    logs = base / "logs"
    logs.mkdir()

    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        reference = evaluate(model="tiny", model_path=resolve_model("tiny"), tasks=["pr_vstar"], limit=LIMIT,
                             output=base / "reference", guide=scripted(forced_turns()), engine=engine).folder
    timings = {"reference": time.monotonic() - started}

    # 1. SIGKILL from outside (the whole process group) once 3 samples are in the journal; the
    #    run goes one sample at a time so the kill lands with samples in flight.
    started = time.monotonic()
    kill1 = _start(logs / "kill1", base / "killed", "--schedule", "one-at-a-time")
    deadline = time.monotonic() + TIMEOUT
    folder = None
    while time.monotonic() < deadline and kill1.poll() is None:
        folder = folder or _folder(logs / "kill1")
        if folder and _complete_lines(folder) >= 3:
            break
        time.sleep(0.05)
    assert kill1.poll() is None, "the run ended before it could be killed:\n" + _log(logs / "kill1")
    os.killpg(kill1.pid, signal.SIGKILL)
    kill1.wait(timeout=60)
    after_kill1 = _keys(folder)
    timings["kill1"] = time.monotonic() - started

    # 2. The resumed run crashes in the middle of writing its 2nd journal line (test hook).
    started = time.monotonic()
    kill2 = _start(logs / "kill2", base / "killed", "--resume", str(folder), "--batch-size", "3",
                   "--schedule", "turn-sync", PR_EVAL_FAULT="kill-mid-write:2")
    engine_processes = _descendants_until_exit(kill2)  # before its process group is ended
    assert kill2.returncode == -signal.SIGKILL, _log(logs / "kill2")
    leftover = _alive_after(engine_processes, seconds=30)
    _end_group(kill2)
    raw = (folder / JOURNAL_FILE).read_bytes()
    partial = raw.split(b"\n")[-1]
    after_kill2 = _keys(folder)
    timings["kill2"] = time.monotonic() - started

    # 3. The next resume finishes every sample and is killed before it writes its results.
    started = time.monotonic()
    kill3 = _start(logs / "kill3", base / "killed", "--resume", str(folder), "--batch-size", "4",
                   PR_EVAL_FAULT="kill-before-results")
    assert _wait(kill3, logs / "kill3") == -signal.SIGKILL, _log(logs / "kill3")
    after_kill3 = _keys(folder)
    finished_before_results = (folder / RESULTS_FILE).exists()
    timings["kill3"] = time.monotonic() - started

    # 4. `pr-eval ... --resume` (no folder: the newest unfinished run) writes the results.
    started = time.monotonic()
    final = subprocess.run([str(PR_EVAL), *CLI_ARGS, "--output", str(base / "killed"), "--resume"], cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    timings["final"] = time.monotonic() - started
    return dict(base=base, reference=reference, folder=folder, after_kill1=after_kill1, partial=partial,
                engine_processes=engine_processes, leftover=leftover,
                after_kill2=after_kill2, after_kill3=after_kill3, finished_before_results=finished_before_results,
                final=final, timings=timings, logs=logs)


def _descendants_until_exit(proc: subprocess.Popen) -> dict[int, tuple[float, str]]:
    """Every process the child started ({pid: (create time, name)}), seen until it exits."""
    import psutil

    seen = {}
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            for child in parent.children(recursive=True):  # the name vLLM gives it comes a moment later
                seen[child.pid] = (seen.get(child.pid, (child.create_time(),))[0], child.name())
        except psutil.Error:
            pass
        time.sleep(0.2)
    proc.wait(timeout=60)
    return seen


def _alive_after(processes: dict[int, tuple[float, str]], seconds: float) -> list[str]:
    """Those of `processes` still alive after `seconds` (the same pid and start time)."""
    import psutil

    deadline = time.monotonic() + seconds
    while True:
        alive = []
        for pid, (created, name) in processes.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {name}")
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def test_a_sigkilled_run_leaves_no_engine_process_alive(runs):
    names = [name for _, name in runs["engine_processes"].values()]
    assert any("Engine" in n for n in names) and any("Worker" in n for n in names), names
    assert runs["leftover"] == [], f"engine processes outlived the killed run: {runs['leftover']}"


def test_killed_three_times_and_resumed_equals_an_uninterrupted_run(runs):
    print("\nseconds per step:", {k: round(v, 1) for k, v in runs["timings"].items()})
    assert 3 <= len(runs["after_kill1"]) < N, runs["after_kill1"]
    # the mid-write crash left half a line, which the next open dropped; nothing before it was lost
    assert runs["partial"] and not runs["partial"].endswith(b"}"), runs["partial"][-80:]
    assert runs["after_kill2"][: len(runs["after_kill1"])] == runs["after_kill1"]
    assert len(runs["after_kill2"]) == len(runs["after_kill1"]) + 1
    # killed before results: every sample saved, once, and the run not marked finished
    assert sorted(runs["after_kill3"]) == sorted(f"pr_vstar/{i}" for i in range(N))
    assert not runs["finished_before_results"]
    final = runs["final"]
    assert final.returncode == 0, final.stderr[-4000:]
    assert f"resuming {runs['folder']}: {N} samples already done" in final.stderr
    assert f"results: {runs['folder']}" in final.stdout
    _same_run(runs["folder"], runs["reference"])
    info = json.loads((runs["folder"] / RUN_FILE).read_text())
    assert len(info["resumed"]) == 3 and info["data"]["pr_vstar"]["samples"] == N
    assert _results(runs["folder"])["run"] == info
    # the crops the model saw are saved for every sample that cropped, in the journal's order
    records = [json.loads(x) for x in _journal_lines(runs["folder"])[:-1]]
    crops = [(r, k) for r in records for k, i in enumerate(r["trajectory"]["images"], 1) if i["kind"] == "crop"]
    assert crops and all((runs["folder"] / r["images"][str(k)]).is_file() for r, k in crops)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """`pr-eval ARGS` in this process (no engine is started: the runs below need none or are
    refused first): (exit status, stdout, stderr)."""
    from pr_eval.cli.run import main

    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    from pr_eval.run.quiet import ENVIRONMENT

    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)  # main() sets them: restored afterwards

    def run(*args):
        status = main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


def test_a_finished_run_resumed_again_gives_the_same_results(runs, run_cli, monkeypatch):
    from pr_eval import engines

    def no_engine(*args, **kwargs):
        raise AssertionError("a run whose samples are all saved must not start an engine")

    monkeypatch.setattr(engines, "build_engine", no_engine)
    folder = runs["base"] / "again"
    shutil.copytree(runs["folder"], folder)
    before = _results(folder)
    status, out, err = run_cli(*CLI_ARGS, "--output", str(runs["base"]), "--resume", str(folder))
    assert status == 0, err[-4000:]
    assert f"resuming {folder}: {N} samples already done" in err and f"results: {folder}" in out
    assert _results(folder)["metrics"] == before["metrics"]
    _same_run(folder, runs["reference"])
    assert len(json.loads((folder / RUN_FILE).read_text())["resumed"]) == 4


@pytest.mark.parametrize("change,message", [
    (["--protocol", "no-tool"], "protocol: the run used 'pixel-reasoner-v3' (fingerprint "),
    (["--max-tool-calls", "2"], "this command asks for 'pixel-reasoner-v3+max_tool_calls=2'"),
    (["--limit", "5"], "limit: the run has --limit 10, this command 5"),
    (["--tasks", "vstar,infovqa"], "tasks: the run has pr_vstar, this command asks for pr_vstar, pr_infovqa"),
    (["--model", "OTHER"], "model: the run evaluated 'tiny', this command asks for 'OTHER'"),
])
def test_resuming_another_evaluation_is_refused(runs, run_cli, tiny_model, tmp_path, change, message):
    if change == ["--model", "OTHER"]:  # the same weights under another name are another model
        shutil.copytree(tiny_model, tmp_path / "other")
        change = ["--model", str(tmp_path / "other")]
        message = message.replace("OTHER", str(tmp_path / "other"))
    folder = runs["reference"]
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    status, _, err = run_cli(*CLI_ARGS, "--output", str(runs["base"]), "--resume", str(folder), *change)
    assert status == 2, err[-3000:]
    assert f"pr-eval: error: cannot resume {folder}: it is a different evaluation" in err
    assert message in err and "leave out --resume to start a new run" in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # the run is untouched


def test_a_bare_resume_without_an_unfinished_run_is_a_clear_error(run_cli, tmp_path):
    status, _, err = run_cli(*CLI_ARGS, "--output", str(tmp_path), "--resume")
    assert status == 2
    assert err.strip() == (f"pr-eval: error: --resume: no unfinished run of tiny with protocol pixel-reasoner-v3 "
                           f"(fingerprint {PIXEL_REASONER.fingerprint}) "
                           f"and tasks pr_vstar under {tmp_path}; name the run folder (--resume RUN_DIR) or leave "
                           "out --resume to start a new run")
    status, _, err = run_cli(*CLI_ARGS, "--resume", str(tmp_path / "missing"))
    assert status == 2 and f"--resume {tmp_path / 'missing'}: no such run folder" in err


def test_ctrl_c_says_where_the_samples_are_and_how_to_finish(runs, run_cli, monkeypatch):
    from pr_eval.lmms.adapter import PixelReasoner

    def interrupted(self, requests):
        raise KeyboardInterrupt

    monkeypatch.setattr(PixelReasoner, "generate_until", interrupted)
    folder = runs["base"] / "interrupted"
    shutil.copytree(runs["folder"], folder)
    (folder / RESULTS_FILE).unlink()
    status, _, err = run_cli(*CLI_ARGS, "--output", str(runs["base"]), "--resume", str(folder))
    assert status == 130
    assert (f"pr-eval: interrupted; {N} samples are saved in {folder}; to finish the run: pr-eval "
            f"{' '.join(CLI_ARGS)} --output {runs['base']} --resume {folder}") in err
    assert not (folder / RESULTS_FILE).exists()
