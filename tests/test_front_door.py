"""The front door (issue 26): how a real run stops: Ctrl-C, SIGTERM and a dying engine each end in one line with
the saved count and the exact command that finishes the run; no engine process is left; vLLM's
own output is in the run's log, not on the terminal; the printed command finishes the run.

Each case is `pr-eval` itself in a child process (its own session, as a terminal job is), with
the demo model on its zoom benchmark and the real vLLM engine.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast

ROOT = Path(__file__).resolve().parents[1]
PR_EVAL = Path(sys.executable).parent / "pr-eval"
LIMIT = 16
BASELINE = ROOT / "results" / "reference" / "demo-zoom.submission.json"
TIMEOUT = 600


def start(output: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    err = output.parent / f"{output.name}.err"
    command = [str(PR_EVAL), "--model", "demo", "--tasks", "zoom", "--data", "samples", "--limit", str(LIMIT),
               "--batch-size", "4", "--output", str(output), *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for name in ("PR_EVAL_QUIET", "VLLM_LOGGING_LEVEL", "PR_EVAL_FAULT"):
        env.pop(name, None)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(err, "w"),
                               start_new_session=True, preexec_fn=foreground_signals)
    return process, err


def foreground_signals() -> None:
    """The child gets SIGINT as a terminal's foreground job does: a CI runner may start the tests
    with SIGINT ignored (a background job), which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def saved(output: Path) -> int:
    journals = list(output.glob("*/trajectories.jsonl"))
    return sum(p.read_bytes().count(b"\n") for p in journals)


def wait_for_samples(process: subprocess.Popen, output: Path, at_least: int) -> list[psutil.Process]:
    """Wait until the run has saved `at_least` samples; the run's processes then (engine ones too)."""
    deadline = time.monotonic() + TIMEOUT
    tree: list[psutil.Process] = []
    while saved(output) < at_least:
        assert process.poll() is None, "the run ended before it was interrupted"
        assert time.monotonic() < deadline, "no samples saved in time"
        try:
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            pass
        time.sleep(0.2)
    return psutil.Process(process.pid).children(recursive=True) or tree


def gone(processes: list[psutil.Process], within: float = 20.0) -> list[psutil.Process]:
    """Those of `processes` still alive after `within` seconds (pr_eval.engines.reaper gets 5 s of grace)."""
    deadline = time.monotonic() + within
    alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return alive


def stopped_mid_run(output: Path, samples: int, send, timeout: float):
    """Start a run, call `send(process, its processes)` once it has saved `samples` samples, and
    wait for it to end: (process, its processes, exit status, its stderr lines)."""
    process, err = start(output)
    try:
        tree = wait_for_samples(process, output, samples)
        send(process, tree)
        status = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process, tree, status, lines(err)


def lines(err: Path) -> list[str]:
    """What the run wrote on its stderr, line by line, without the progress bar's line."""
    return [line for line in err.read_text().splitlines() if line.strip() and not line.startswith("questions:")]


def baseline_answers() -> dict[int, str]:
    predictions = json.loads(BASELINE.read_text())["predictions"]
    return {p["doc_id"]: p["answer"] for p in predictions if p["doc_id"] < LIMIT}


def answers(folder: Path) -> dict[int, str]:
    from pr_eval.compare.submission import prediction

    records = [json.loads(x) for x in (folder / "samples_pr_zoom.jsonl").read_text().splitlines()]
    return {r["doc_id"]: prediction(r, "pr_zoom", "zoom")["answer"] for r in records}


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_stopped_run_says_one_line_leaves_no_process_and_resumes(tmp_path, how):
    def send(process, tree):
        assert any("VLLM" in " ".join(p.cmdline() or [p.name()]) or "python" in p.name() for p in tree)
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)  # Kubernetes: the main process only
        else:
            os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group

    output = tmp_path / "runs"
    process, tree, status, said = stopped_mid_run(output, 2, send, timeout=120)
    [folder] = list(output.glob("*/"))
    assert status == (143 if how == "sigterm" else 130), said
    assert said[0].startswith(f"pr-eval: run folder {folder}"), said
    assert len(said) == 2, said  # where the run goes, then how it stopped: nothing of vLLM's
    what = "terminated (SIGTERM)" if how == "sigterm" else "interrupted"
    count = saved(output)
    assert said[1].startswith(f"pr-eval: {what}; {count} samples are saved in {folder}; to finish the run: pr-eval "), said
    assert said[1].endswith(f"--resume {folder}") and count >= 2
    assert gone(tree) == [], "engine processes outlived the run"
    assert (folder / "run.log").read_text().split("\n", 1)[0].endswith(f"pr-eval (pid {process.pid}): pr-eval --model demo "
                                                                       f"--tasks zoom --data samples --limit {LIMIT} "
                                                                       f"--batch-size 4 --output {output}")
    if how == "ctrl-c":
        return
    command = shlex.split(said[1].split("to finish the run: ", 1)[1])
    command[0] = str(PR_EVAL)
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resuming {folder}: {count} samples already done" in finished.stderr
    assert saved(output) == LIMIT and (folder / "results.json").exists()
    assert answers(folder) == baseline_answers()  # the committed baseline's answers to these questions


def test_an_engine_process_that_dies_is_one_line_naming_it(tmp_path):
    """SIGKILL of vLLM's worker (what the OOM killer does) mid-run: one line that names the dead
    process and gives the resume command, vLLM's 100 lines of output in the log."""
    def send(process, tree):
        workers = [p for p in tree if "Worker" in " ".join(p.cmdline() or [p.name()]) or "Worker" in p.name()]
        assert workers, [p.name() for p in tree]
        workers[0].send_signal(signal.SIGKILL)

    output = tmp_path / "runs"
    process, tree, status, said = stopped_mid_run(output, 1, send, timeout=180)
    [folder] = list(output.glob("*/"))
    assert status == 1 and len(said) == 2, said
    assert said[1].startswith("pr-eval: error: vLLM's engine process "), said
    assert "died unexpectedly" in said[1] or "killed by the kernel" in said[1]
    assert f"to finish the run: pr-eval " in said[1] and f"--resume {folder}" in said[1]
    assert f"(details in {folder / 'run.log'})" in said[1]
    assert gone(tree) == []
    assert saved(output) < LIMIT and not (folder / "results.json").exists()


# --- the pieces, without an engine ------------------------------------------------------------------

def test_the_cause_is_read_from_the_log_and_the_oom_count(monkeypatch):
    from pr_eval.run import log as runlog

    cpu_refusal = ("ValueError: Available memory on node 0 (3.1/23.5 GiB) on startup is less than desired CPU "
                   "memory utilization (0.25, 5.9 GiB). On the CPU backend ...")
    said = runlog.diagnose("Engine core initialization failed. See root cause above.", log_text=cpu_refusal)
    assert said.startswith("vLLM would not start for lack of free memory (Available memory on node 0 (3.1/23.5 GiB)")
    assert "lower --gpu-memory-utilization" in said and "\n" not in said
    died = "ERROR 12-07 [multiproc_executor.py:150] Worker proc VllmWorker-0 died unexpectedly, shutting down executor."
    monkeypatch.setitem(runlog._state, "oom_before", 3)
    assert runlog.diagnose("EngineDeadError: x", log_text=died, oom_now=4).startswith(
        "vLLM's engine process VllmWorker-0 was killed by the kernel for lack of memory")
    assert runlog.diagnose("EngineDeadError: x", log_text=died, oom_now=3).startswith(
        "vLLM's engine process VllmWorker-0 died unexpectedly")
    assert runlog.diagnose("HTTP 500 from the server", log_text="", oom_now=3) is None


@pytest.mark.parametrize("argv", [
    ["--model", "demo", "--tasks", "zoom"],
    ["--model", "demo", "--resume", "--tasks", "zoom"],
    ["--model", "demo", "--tasks", "zoom", "--resume"],
    ["--model", "demo", "--resume", "old/run", "--tasks", "zoom"],
    ["--model", "demo", "--resume=old", "--tasks", "zoom"],
    ["--model", "demo", "--resume", "auto", "--tasks", "zoom"],
])
def test_the_resume_command_is_this_command_with_the_folder(argv):
    from pr_eval.run.interrupts import resume_command

    assert resume_command(argv, Path("runs/a b")) == "pr-eval --model demo --tasks zoom --resume 'runs/a b'"


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, monkeypatch, capsys):
    """The data is loaded, then the engine started, then the run folder made: bad data (here a
    folder without the benchmark's files) ends the run in one line and leaves nothing behind."""
    from pr_eval.cli.run import main

    for name in ("PR_EVAL_QUIET", "VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "TORCH_CPP_LOG_LEVEL",
                 "PYTHONWARNINGS", "PR_EVAL_LMMS_VERBOSITY", "PR_EVAL_DATA"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    status = main(["--model", "tiny", "--tasks", "vstar", "--data-dir", str(tmp_path / "empty"),
                   "--output", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and err.startswith("pr-eval: error: "), err
    assert list((tmp_path / "runs").iterdir()) == []  # no run folder, no log


# --- bad command lines: one line, exit 2, before anything heavy is imported ------------------------

CHILD = ("import sys\nfrom pr_eval.cli import main\nstatus = main(sys.argv[1:])\n"
         "heavy = [m for m in ('torch', 'vllm', 'lmms_eval', 'transformers', 'scipy') if m in sys.modules]\n"
         "if heavy:\n    print('imported', heavy, file=sys.stderr)\nsys.exit(status)\n")


@pytest.mark.parametrize("argv, says", [
    (["--model", "tiny"], "pr-eval: error: the following arguments are required: --tasks"),
    (["--model", "tiny", "--tasks", "vstr"], "pr-eval: error: unknown task 'vstr'"),
    (["--model", "tiny", "--tasks", "vstar", "--limit", "0"], "pr-eval: error: --limit must be a positive"),
    (["--model", "tiny", "--tasks", "vstar", "--engine", "openai", "--base-url", "gpu1:8000"],
     "pr-eval: error: --base-url 'gpu1:8000' is not an http(s) URL with a host"),
    (["--model", "tiny", "--tasks", "zoom"], "pr-eval: error: the 'zoom' benchmark is generated"),
    (["--model", "tiny", "--tasks", "vstar", "--output", "/dev/null/runs"],
     "pr-eval: error: --output /dev/null/runs: cannot write there"),
    (["--model", "tiny", "--tasks", "vstar", "--protocol", "pixel-reasoner-v1"],
     "pr-eval: error: --protocol: protocol 'pixel-reasoner-v1' was retired"),
    (["--model", "tiny", "--tasks", "vstar", "--data", "samples", "--resume", "/nonexistent/run"],
     "pr-eval: error: --resume /nonexistent/run: no such run folder"),
    (["--model", "./no-such-checkpoint", "--tasks", "vstar"], "pr-eval: error: checkpoint not found"),
    (["--model", "nobody/no-such-model", "--tasks", "vstar", "--data", "samples"],  # offline, not cached
     "pr-eval: error: nobody/no-such-model is not in the Hugging Face cache and the hub is off"),
    (["ask", "--model", "demo", "--image", "/nonexistent.png", "what?"], "pr-eval ask: error: "),
    (["compare", "/nonexistent/a", "/nonexistent/b"], "pr-eval compare: error: "),
    (["probe", "--model", "demo", "--tasks", "zoom", "--data", "samples", "--interventions", "squint"],
     "pr-eval probe: error: --interventions: unknown intervention"),
])
def test_a_bad_command_line_is_one_line_before_any_heavy_import(argv, says):
    """Each is exit 2 with one line, found before torch, vLLM, lmms-eval, transformers or scipy is
    imported: in well under 2 s (timings: BENCHMARKS.md, "Bad command lines")."""
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    said = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(said) == 1, said
    assert said[0].startswith(says), said
    if argv[0] == "--model" and "--protocol" in argv:
        assert said[0].endswith("run under 'pixel-reasoner-v3' instead")  # v1's successor v2 is retired too


def test_resume_auto_finishes_this_commands_run_or_starts_one(tmp_path, capsys):
    """`make demo` runs with --resume auto: the unfinished run of the same command with the most
    saved samples (the others named), or a new run when there is none."""
    from pr_eval.cli import run as cli
    from pr_eval.models import resolve_model
    from pr_eval.protocol import PIXEL_REASONER
    from pr_eval.run.store import RunStore
    from test_store import _info, _trajectory

    argv = ["--model", "tiny", "--tasks", "vstar", "--data", "samples", "--output", str(tmp_path), "--resume", "auto"]
    args = cli.build_parser().parse_args(argv)
    model_path, tasks = resolve_model("tiny"), cli.parse_tasks("vstar")
    assert cli.resume_folder(args, model_path, PIXEL_REASONER, tasks) is None  # nothing to finish: a new run
    same = {"model": "tiny", "model_path": model_path, "protocol": PIXEL_REASONER.record(), "tasks": tasks,
            "limit": None, "data_spec": "samples"}
    for name, saved in (("empty", 0), ("most", 2), ("some", 1)):
        store = RunStore.create(tmp_path / name, _info(**same))
        for k in range(saved):
            store.append(_trajectory(k))
        store.close()
    RunStore.create(tmp_path / "other-limit", _info(**{**same, "limit": 3})).close()
    capsys.readouterr()
    assert cli.resume_folder(args, model_path, PIXEL_REASONER, tasks) == str(tmp_path / "most")
    assert capsys.readouterr().err.strip() == ("pr-eval: 3 unfinished runs of this command; finishing the one with "
                                               "the most saved samples; the others: some (1 saved), empty (0 saved) "
                                               "(--resume RUN_DIR picks one)")


@pytest.mark.parametrize("signum, status, what", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_an_engine_error_raised_while_an_interrupt_unwinds_is_still_the_interrupt(
        signum, status, what, tmp_path, monkeypatch, capsys):
    """Ctrl-C reaches vLLM's processes too, so their end can surface as an EngineError raised
    while the KeyboardInterrupt unwinds (from a `finally` that waits on the engine). It happened
    in CI: exit 1 'engine process died'. The run still ends as interrupted, with its one line."""
    from types import SimpleNamespace

    from pr_eval.cli import run as cli
    from pr_eval.run import evaluate as runner
    from pr_eval.engines import EngineError

    for name in ("PR_EVAL_QUIET", "VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "TORCH_CPP_LOG_LEVEL",
                 "PYTHONWARNINGS", "PR_EVAL_LMMS_VERBOSITY", "PR_EVAL_DATA"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "runs" / "the-run"

    def evaluate(announce, **kwargs):
        announce(SimpleNamespace(folder=folder, done={"pr_zoom/0": {}}, info={}))
        try:
            os.kill(os.getpid(), signum)  # our handler raises here, in the main thread
            time.sleep(5)
        finally:
            raise EngineError("the vLLM engine failed: EngineDeadError: EngineCore encountered an issue")

    monkeypatch.setattr(runner, "evaluate", evaluate)
    folder.mkdir(parents=True)
    argv = ["--model", "demo", "--tasks", "zoom", "--data", "samples", "--output", str(tmp_path / "runs"), "--verbose"]
    started = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),  # as a foreground job
               signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL)}  # (CI may start us ignoring SIGINT)
    try:
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        assert cli.main(argv) == status
        after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    finally:
        for signum, handler in started.items():
            signal.signal(signum, handler)
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert said[-1] == (f"pr-eval: {what}; 1 samples are saved in {folder}; to finish the run: "
                        f"pr-eval {' '.join(argv)} --resume {folder}")
    assert after == before  # the handlers are put back


def test_a_signal_the_run_was_started_ignoring_stays_ignored():
    """A background job (`cmd &` in a script, nohup) starts with SIGINT ignored: Python keeps it
    ignored, and so does pr-eval's handler for the run."""
    from pr_eval.run.interrupts import stop_signals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGINT, previous)
