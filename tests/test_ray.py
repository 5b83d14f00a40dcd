"""`pr-eval ray`: a run as N shards on a Ray cluster, merged at the end. A real two-node Ray cluster
on this machine (`ray start`, 2 CPUs a node) runs the shards against a scripted OpenAI-compatible
server that answers at once (and against the demo model through vLLM, each shard with its own
engine on CPUs); the merged folder must equal the unsharded run's (scripts/same_run.py), also when
a shard's Ray worker is SIGKILLed mid-run (Ray retries it, its `--resume auto` finishes it), when
every attempt of a shard crashes until `--resume WORK` finishes the launch, and after Ctrl-C."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, JsonHandler, load_script, start_server, stop_server

from pr_eval.cli import ray_launch
from pr_eval.cli import run as run_cli
from pr_eval.data.shards import Shard
from pr_eval.run import ray_shards
from pr_eval.run.store import SCHEMA
from pr_eval.run.ray_shards import Resources, check_fits, forwarded_env, last_line, progress, shard_argv

same_run = load_script("same_run")
BIN = Path(sys.executable).parent
STUB_OPTIONS = ["--model", "stub", "--engine", "openai", "--no-pixel-check", "--tasks", "vstar,tallyqa",
                "--data", "samples", "--retries", "0"]


# --- the launcher's pure parts ------------------------------------------------------------------

def test_a_shard_runs_the_run_options_with_the_launcher_s_last():
    """argparse takes an option's last occurrence: the shard's folder, shard and resume win over
    anything the run options said, and folders become absolute."""
    argv = shard_argv(["--model", "m", "--tasks", "vstar", "--out", "elsewhere", "--data-dir", "d"], Shard(2, 5),
                      Path("/w/x.shards"), {"--data-dir": "d"})
    args = run_cli.build_parser().parse_args(argv)
    assert (args.output, args.shard, args.resume) == ("/w/x.shards", "2/5", "auto")
    assert args.data_dir == str(Path("d").resolve())


def test_only_the_variables_a_shard_needs_travel():
    env = forwarded_env({"HF_HOME": "/h", "PR_EVAL_DATA": "samples", "OPENAI_API_KEY": "k", "HOME": "/root",
                         "AWS_SECRET_ACCESS_KEY": "s", "PATH": "/bin"})
    assert env == {"HF_HOME": "/h", "PR_EVAL_DATA": "samples", "OPENAI_API_KEY": "k", "TQDM_DISABLE": "1"}


def test_a_failed_shard_is_named_by_its_log_s_last_line(tmp_path):
    log = tmp_path / "shard.log"
    log.write_bytes(b"== pr-eval ray: shard 0/2, attempt\nquestions: 10%\rquestions: 20%\n"
                    b"pr-eval: error:   model   not found\n\n== pr-eval ray: shard 0/2, attempt\n")
    assert last_line(log) == "pr-eval: error: model not found"
    assert "no log" in last_line(tmp_path / "missing.log")


@pytest.mark.parametrize("nodes, need, fits", [
    ([{"Alive": True, "Resources": {"CPU": 2.0}}], Resources(2, 0), True),
    ([{"Alive": True, "Resources": {"CPU": 2.0}}], Resources(2, 1), False),
    ([{"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 1.0}}],
     Resources(2, 0), False),
    ([{"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 16.0}}],
     Resources(2, 1), False),  # the CPUs and the GPU must be on one node
    ([{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 8.0}}], Resources(4, 1), True),
])
def test_a_shard_must_fit_on_one_live_node(nodes, need, fits):
    if fits:
        check_fits(nodes, need)
    else:
        with pytest.raises(ray_shards.LaunchError, match="no node of the Ray cluster has a shard's"):
            check_fits(nodes, need)


@pytest.mark.parametrize("argv, message", [
    (["--model", "m", "--tasks", "vstar"], "the following arguments are required: --shards"),
    (["--shards", "0", "--model", "m", "--tasks", "vstar"], "--shards must be at least 1"),
    (["--shards", "2", "--shard", "0/2", "--model", "m", "--tasks", "vstar"], "gives each shard its own"),
    (["--shards", "2", "--model", "m", "--tasks", "nope"], "nope"),
    (["--shards", "2", "--model", "m", "--tasks", "vstar", "--protocol", "nope"], "--protocol"),
    (["--shards", "2", "--max-retries", "-1", "--model", "m", "--tasks", "vstar"], "--max-retries"),
    (["--shards", "2", "--cpus-per-shard", "0", "--model", "m", "--tasks", "vstar"], "--cpus-per-shard"),
    (["--shards", "2", "--resume", "/nonexistent.shards", "--model", "m", "--tasks", "vstar"], "not the shards'"),
    (["--shards", "2", "--model", "m", "--tasks", "vstar", "--resu", "x.shards"], "takes the shards' folder in full"),
    (["--shards", "2", "--model", "m", "--tasks", "vstar", "--judge-model", "j", "--judge-base-url",
      "http://127.0.0.1:9/v1"], "judge"),
])
def test_a_bad_command_line_is_one_line_before_any_cluster(argv, message, capsys, tmp_path):
    started = time.monotonic()
    assert ray_launch.main([*argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pr-eval ray: error: ") and message in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 2 and not any(tmp_path.iterdir())


def test_the_cluster_is_one_that_answers_or_a_new_one(tmp_path, monkeypatch):
    """ray.init waits minutes for an address nothing answers at, and for ever for the note a
    cluster killed without `ray stop` leaves: both are settled before ray.init."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        live, dead = f"127.0.0.1:{listener.getsockname()[1]}", f"127.0.0.1:{_free_port()}"
        note = tmp_path / "ray_current_cluster"
        monkeypatch.setattr(ray_shards, "RAY_CURRENT_CLUSTER", note)
        assert ray_shards.cluster_address(live, {}) == live
        assert ray_shards.cluster_address(None, {"RAY_ADDRESS": live}) == live
        with pytest.raises(ray_shards.LaunchError, match=f"no Ray cluster answers at {dead}"):
            ray_shards.cluster_address(None, {"RAY_ADDRESS": dead})
        assert ray_shards.cluster_address(None, {}) == "local"  # no note: a new cluster
        note.write_text(dead)
        assert ray_shards.cluster_address(None, {}) == "local"  # a stale note is not followed
        with pytest.raises(ray_shards.LaunchError, match="--address auto"):
            ray_shards.cluster_address("auto", {})
        note.write_text(live)
        assert ray_shards.cluster_address(None, {}) == live == ray_shards.cluster_address("auto", {})
        assert ray_shards.cluster_address("ray://head:10001", {}) == "ray://head:10001"  # Ray Client: Ray's


def test_an_address_nothing_answers_at_is_one_line_and_leaves_nothing(tmp_path):
    started = time.monotonic()
    done = subprocess.run([str(BIN / "pr-eval"), "ray", "--shards", "2", "--address", f"127.0.0.1:{_free_port()}",
                           *STUB_OPTIONS, "--base-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "pr-eval ray: error: no Ray cluster answers at 127.0.0.1:" in done.stderr
    assert time.monotonic() - started < 30 and not any(tmp_path.iterdir())


def test_progress_is_read_off_the_shards_journals(tmp_path):
    def shard(k, n, lines, samples=None, finished=False):
        folder = tmp_path / f"run-shard{k}of{n}"
        folder.mkdir()
        data = {"pr_vstar": {"samples": samples}} if samples is not None else {}
        settings = {"sampling": {"rollouts": 3}}
        (folder / "run.json").write_text(json.dumps({"schema": SCHEMA, "shard": f"{k}/{n}", "data": data, "started": "t",
                                                     "protocol": {"settings": settings}}))
        (folder / "trajectories.jsonl").write_text("{}\n" * lines + "{cut")
        if finished:
            (folder / "results.json").write_text("{}")

    shard(0, 2, 4, samples=2, finished=True)
    assert progress(tmp_path, 2) == ray_shards.Progress(done=4, total=None, finished=1)  # shard 1 not started
    shard(1, 2, 1, samples=3)
    shard(0, 3, 9, samples=9)  # another N: not this launch's
    assert progress(tmp_path, 2) == ray_shards.Progress(done=5, total=15, finished=1)


# --- a real cluster -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node and a worker node of 2 CPUs each, with a token of their own; yields the
    environment a driver needs (RAY_ADDRESS and the token)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="pr-ray-")  # its own: a developer's `ray start` note stays untouched
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    common = ["--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20), "--block"]
    nodes = [subprocess.Popen([str(BIN / "ray"), "start", "--head", "--port", str(port), "--include-dashboard",
                               "false", "--disable-usage-stats", "--temp-dir", temp, *common], env=env,
                              start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    address = None
    try:
        address = _wait_for(env, f"127.0.0.1:{port}", cpus=2)
        nodes.append(subprocess.Popen([str(BIN / "ray"), "start", "--address", address, *common], env=env,
                                      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(env, address, cpus=4)
        yield {**env, "RAY_ADDRESS": address}
    finally:
        for node in reversed(nodes):  # the nodes' process groups: raylets, GCS, workers
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            node.wait(30)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(env, address: str, cpus: int, timeout: float = 120) -> str:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(int(ray.cluster_resources().get('CPU', 0)), ray.get_runtime_context().gcs_address)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True)
        if done.returncode == 0 and int(done.stdout.split()[0]) >= cpus:
            return done.stdout.split()[1]
        time.sleep(1)
    raise RuntimeError(f"the test's Ray cluster did not come up with {cpus} CPUs: {done.stderr[-800:]}")


class Scripted(JsonHandler):
    """An OpenAI-compatible server whose answer depends only on the conversation: a question's
    first turn crops when its hash says so, a later turn (or a question that does not crop) gets
    a boxed letter of the hash. With `server.hold_after` = N, requests after the N-th wait for
    `server.gate`, so the shards stand still mid-run while a test kills or interrupts them."""

    def handle(self):
        with contextlib.suppress(OSError):  # a client killed mid-request (the tests kill shards on purpose)
            super().handle()

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        with contextlib.suppress(ValueError, OSError):  # the same, cut off inside the body
            self._answer()

    def _answer(self):
        messages = self.read_json()["messages"]
        question = json.dumps(messages[1]["content"] if len(messages) > 1 else messages, sort_keys=True)
        digest = hashlib.sha256(question.encode()).digest()
        with self.server.lock:
            self.server.served += 1
            held = self.server.hold_after is not None and self.server.served > self.server.hold_after
        if held:
            self.server.gate.wait(120)
        if digest[0] % 2 and not any(m["role"] == "assistant" for m in messages):
            content = ('<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2, 0.6, '
                       '0.7], "target_image": 1}}\n</tool_call>')
        else:
            content = "Looked closely. \\boxed{" + "ABCD"[digest[1] % 4] + "}"
        self.send_json(200, {"id": "c", "object": "chat.completion", "created": 0, "model": "stub", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}})


@pytest.fixture(scope="module")
def stub():
    server = start_server(Scripted, hold_after=None, served=0, gate=threading.Event(), block_on_close=False)
    yield server
    stop_server(server)


def _pr_eval(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "pr-eval"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def unsharded(stub, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    done = _pr_eval(cluster, *STUB_OPTIONS, "--base-url", stub.root + "/v1", "--output", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    [folder] = out.iterdir()
    return folder


def _merged(out: Path) -> Path:
    [folder] = [f for f in out.iterdir() if not f.name.endswith(".shards")]
    return folder


def _shard_processes(under: Path) -> list[psutil.Process]:
    """The shards' pr-eval processes of the launches under `under` (another session's are not ours)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "pr_eval.run.ray_shards" in cmdline and any(str(under) in arg for arg in cmdline):
            found.append(process)
    return found


@contextlib.contextmanager
def _held(stub, after: int):
    """The stub answers `after` requests, then holds the rest until the block ends."""
    stub.served, stub.hold_after = 0, after
    stub.gate.clear()
    try:
        yield
    finally:
        stub.hold_after = None
        stub.gate.set()


def _stalled_shard(out: Path, count: int, timeout: float = 180) -> tuple[int, psutil.Process]:
    """(K, its pr-eval process) of a shard that saved a sample and now waits on held requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for works in out.glob("*.shards"):
            for index, folders in ray_shards.shard_folders(works, count).items():
                if not any(ray_shards.saved_count(f) for f in folders):
                    continue
                for process in _shard_processes(out):
                    with contextlib.suppress(psutil.Error):
                        if f"{index}/{count}" in process.cmdline():
                            return index, process
        time.sleep(0.2)
    raise AssertionError("no shard saved a sample")


pytestmark = pytest.mark.server  # a Ray cluster, servers and subprocesses: not in make test-fast


def test_shards_on_the_cluster_merge_to_the_unsharded_run_and_a_killed_worker_is_retried(
        stub, cluster, unsharded, tmp_path):
    with _held(stub, after=14):  # 20 questions over 3 shards: some saved, every shard then waits
        launcher = subprocess.Popen([str(BIN / "pr-eval"), "ray", "--shards", "3", "--cpus-per-shard", "1",
                                     *STUB_OPTIONS, "--base-url", stub.root + "/v1", "--output", str(tmp_path)],
                                    cwd=ROOT, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        index, victim = _stalled_shard(tmp_path, 3)
        os.kill(victim.parent().pid, signal.SIGKILL)  # the Ray worker running that shard (and so its pr-eval)
        victim.wait(10)  # the shard died with its worker: nothing writes beside the retry
    out, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err[-3000:]
    merged = _merged(tmp_path)
    assert same_run.compare(unsharded, merged) == []
    work = merged.with_name(merged.name + ".shards")
    for k in range(3):
        attempts = (work / f"shard-{k}-of-3.log").read_text().count(f"== pr-eval ray: shard {k}/3, attempt")
        assert attempts == (2 if k == index else 1), (k, index, attempts)
    [folder] = ray_shards.shard_folders(work, 3)[index]
    assert json.loads((folder / "run.json").read_text()).get("resumed")  # the retry finished the first attempt's
    info = json.loads((merged / "run.json").read_text())
    assert info["command"][:4] == ["pr-eval", "ray", "--shards", "3"] and len(info["merged"]["shards"]) == 3
    assert f"results: {merged}" in out and "Traceback" not in err
    assert not _shard_processes(tmp_path)


def test_a_shard_that_keeps_failing_stops_the_launch_and_resume_finishes_it(stub, cluster, unsharded, tmp_path):
    """Every attempt SIGKILLs itself at its second journal line (the fault hook travels to the
    shards): with one retry the shards cannot finish; the line names the shard, its log and the
    command that finishes the run, which then merges to the unsharded run."""
    options = ["--shards", "2", "--cpus-per-shard", "1", "--max-retries", "1", *STUB_OPTIONS, "--base-url",
               stub.root + "/v1", "--output", str(tmp_path)]
    failed = _pr_eval({**cluster, "PR_EVAL_FAULT": "kill-mid-write:2"}, "ray", *options)
    assert failed.returncode == 1, failed.stderr[-3000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("pr-eval ray: error: shard ") and "failed after 1 retry: killed by SIGKILL" in line
    command = line.split("to finish the run: ", 1)[1]
    assert command.endswith(".shards") and "--resume" in command
    work = Path(command.rsplit(" ", 1)[1])
    assert (work / "shard-0-of-2.log").read_text().count("attempt on") == 2
    finished = _pr_eval(cluster, *command.split()[1:])
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert same_run.compare(unsharded, _merged(tmp_path)) == []
    (_merged(tmp_path) / "results.json").unlink()  # as a merge killed before its end leaves it
    again = _pr_eval(cluster, *command.split()[1:])
    assert again.returncode == 0, again.stderr[-3000:]
    assert same_run.compare(unsharded, _merged(tmp_path)) == []
    done = _pr_eval(cluster, *command.split()[1:])
    assert done.returncode == 0 and "merged already" in done.stdout


def test_a_refused_shard_is_not_retried_and_stops_the_launch(stub, cluster, tmp_path):
    done = _pr_eval(cluster, "ray", "--shards", "2", "--cpus-per-shard", "1", "--gpus-per-shard", "0",
                    "--model", str(tmp_path / "no-model"),
                    "--tasks", "vstar", "--data", "samples", "--output", str(tmp_path))
    assert done.returncode == 2, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("pr-eval ray: error: shard ") and "refused the run: pr-eval: error:" in line
    [work] = tmp_path.glob("*.shards")
    attempts = [p.read_text().count("attempt on") for p in work.glob("shard-*.log")]
    assert max(attempts) == 1  # a refusal is not retried


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_every_shard_and_resume_finishes_the_run(signum, stub, cluster, unsharded,
                                                                          tmp_path):
    with _held(stub, after=8):
        launcher = subprocess.Popen([str(BIN / "pr-eval"), "ray", "--shards", "2", "--cpus-per-shard", "1",
                                     *STUB_OPTIONS, "--base-url", stub.root + "/v1", "--output", str(tmp_path)],
                                    cwd=ROOT, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _stalled_shard(tmp_path, 2)
        launcher.send_signal(signum)
        _, err = launcher.communicate(timeout=60)
        assert launcher.returncode == (130 if signum == signal.SIGINT else 143), err[-3000:]
        deadline = time.monotonic() + 15
        while _shard_processes(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _shard_processes(tmp_path)  # no shard goes on writing once the launch is stopped
    lines = err.strip().splitlines()
    assert "the shards' saved samples are in" in lines[-1] and "Traceback" not in err and "SIGTERM received" not in err
    assert len([line for line in lines if line.strip() and "questions" not in line]) == 1, err  # the bar, one line
    if signum == signal.SIGINT:
        finished = _pr_eval(cluster, *lines[-1].split("to finish the run: ", 1)[1].split()[1:])
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert same_run.compare(unsharded, _merged(tmp_path)) == []


def test_shards_with_vllm_engines_of_their_own_merge_to_the_unsharded_run(cluster, demo_engine, tmp_path):
    """The demo model through vLLM on CPUs, one engine per shard (--gpus-per-shard 0), against the
    unsharded run of the session's demo engine."""
    from pr_eval.engines import SCHEDULES
    from pr_eval.models import resolve_model
    from pr_eval.run.evaluate import evaluate

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        whole = evaluate("demo", resolve_model("demo"), ["pr_zoom"], limit=8, output=tmp_path / "whole",
                         engine=demo_engine, schedule=SCHEDULES[0], seed=0, command=["pr-eval", "--model", "demo"]).folder
    sharded = _pr_eval(cluster, "ray", "--shards", "2", "--gpus-per-shard", "0", "--cpus-per-shard", "1",
                       "--model", "demo", "--tasks", "zoom", "--data", "samples", "--limit", "8",
                       "--output", str(tmp_path / "ray"))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert same_run.compare(whole, _merged(tmp_path / "ray")) == []
