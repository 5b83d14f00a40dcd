"""`pr-eval ray`: a run as N shards on a Ray cluster, merged at the end. A real two-node Ray cluster
on this machine (`ray start`, 2 CPUs a node) runs the shards against a scripted OpenAI-compatible
server that answers at once (and against the demo model through vLLM, each shard with its own
engine on CPUs); the merged folder must equal the unsharded run's (scripts/same_run.py), also when
a shard's Ray worker is SIGKILLed mid-run (Ray retries it, its `--resume auto` finishes it), when
every attempt of a shard crashes until `--resume WORK` finishes the launch, and after Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
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
    (["--shards", "2", "--model", "m", "--tasks", "vstar", "--judge-model", "j", "--judge-base-url",
      "http://127.0.0.1:9/v1"], "judge"),
])
def test_a_bad_command_line_is_one_line_before_any_cluster(argv, message, capsys, tmp_path):
    started = time.monotonic()
    assert ray_launch.main([*argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pr-eval ray: error: ") and message in err and err.count("\n") == 1, err
    assert time.monotonic() - started < 2 and not any(tmp_path.iterdir())


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
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    common = ["--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20), "--block"]
    nodes = [subprocess.Popen([str(BIN / "ray"), "start", "--head", "--port", str(port), "--include-dashboard",
                               "false", "--disable-usage-stats", *common], env=env, start_new_session=True,
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
    a boxed letter of the hash. `server.delay` seconds per reply."""

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        try:
            self._answer()
        except (ValueError, OSError):  # a client killed mid-request (the tests kill shards on purpose)
            pass

    def _answer(self):
        messages = self.read_json()["messages"]
        question = json.dumps(messages[1]["content"] if len(messages) > 1 else messages, sort_keys=True)
        digest = hashlib.sha256(question.encode()).digest()
        time.sleep(self.server.delay)
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
    server = start_server(Scripted, delay=0.0, block_on_close=False)
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


def _shard_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "pr_eval.run.ray_shards" in cmdline:
            found.append(process)
    return found


pytestmark = pytest.mark.server  # a Ray cluster, servers and subprocesses: not in make test-fast


def test_shards_on_the_cluster_merge_to_the_unsharded_run_and_a_killed_worker_is_retried(
        stub, cluster, unsharded, tmp_path):
    stub.delay = 0.15  # long enough to kill a worker mid-run
    try:
        launcher = subprocess.Popen([str(BIN / "pr-eval"), "ray", "--shards", "3", "--cpus-per-shard", "1",
                                     *STUB_OPTIONS, "--base-url", stub.root + "/v1", "--output", str(tmp_path)],
                                    cwd=ROOT, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim = _wait_for_progress(tmp_path, shard="1/3")
        worker = victim.parent()
        os.kill(worker.pid, signal.SIGKILL)  # the Ray worker running shard 1/3 (and so its pr-eval)
        victim.wait(10)  # the shard died with its worker: nothing writes beside the retry
        out, err = launcher.communicate(timeout=600)
    finally:
        stub.delay = 0.0
    assert launcher.returncode == 0, err[-3000:]
    merged = _merged(tmp_path)
    assert same_run.compare(unsharded, merged) == []
    work = merged.with_name(merged.name + ".shards")
    assert (work / "shard-1-of-3.log").read_text().count("== pr-eval ray: shard 1/3, attempt") == 2
    assert (work / "shard-0-of-3.log").read_text().count("== pr-eval ray: shard 0/3, attempt") == 1
    [folder] = ray_shards.shard_folders(work, 3)[1]
    assert json.loads((folder / "run.json").read_text()).get("resumed")  # the retry finished the first attempt's
    info = json.loads((merged / "run.json").read_text())
    assert info["command"][:4] == ["pr-eval", "ray", "--shards", "3"] and len(info["merged"]["shards"]) == 3
    assert f"results: {merged}" in out and "Traceback" not in err
    assert not _shard_processes()


def _wait_for_progress(out: Path, shard: str, timeout: float = 180) -> psutil.Process:
    """The pr-eval process of `shard` once its journal holds a sample."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in _shard_processes():
            try:
                cmdline = process.cmdline()
            except psutil.Error:
                continue
            index, count = map(int, shard.split("/"))
            if shard in cmdline and any(ray_shards.saved_count(f) for works in out.glob("*.shards")
                                        for f in ray_shards.shard_folders(works, count).get(index, [])):
                return process
        time.sleep(0.2)
    raise AssertionError(f"shard {shard} never saved a sample")


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


def test_ctrl_c_stops_every_shard_and_resume_finishes_the_run(stub, cluster, unsharded, tmp_path):
    stub.delay = 0.15
    try:
        launcher = subprocess.Popen([str(BIN / "pr-eval"), "ray", "--shards", "2", "--cpus-per-shard", "1",
                                     *STUB_OPTIONS, "--base-url", stub.root + "/v1", "--output", str(tmp_path)],
                                    cwd=ROOT, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_progress(tmp_path, shard="0/2")
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=60)
    finally:
        stub.delay = 0.0
    assert launcher.returncode == 130, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert "interrupted; the shards' saved samples are in" in line and "Traceback" not in err
    deadline = time.monotonic() + 15
    while _shard_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _shard_processes()  # no shard goes on writing once the launch is stopped
    finished = _pr_eval(cluster, *line.split("to finish the run: ", 1)[1].split()[1:])
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
