"""What Ray costs `pr-eval ray`: one run as 2 shards through Ray (a cluster started for the run, and
one already running) beside the same 2 shards as plain processes plus `pr-eval merge` (a Slurm
array's way) and one unsharded process, all against a scripted OpenAI-compatible server in this
process that answers at once, so what is measured is start-up, placement and merge.

    python perf/ray_launch.py                 # writes its section of BENCHMARKS.md
    python perf/ray_launch.py --repeats 1 --no-write

Workload: the bundled zoom benchmark (96 questions, small images), `--engine openai`; a question's
first turn crops when a hash of it says so, every later turn answers. Wall time of whole commands,
from the first start to the last exit, the median of interleaved rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "perf"))
from memory import publish  # noqa: E402  (the memory benchmark's helpers)
CROP = ('<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2, 0.6, 0.7], '
        '"target_image": 1}}\n</tool_call>')


class Instant(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        try:
            messages = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"]
        except (ValueError, KeyError, OSError):
            return
        digest = hashlib.sha256(json.dumps(messages[1]["content"], sort_keys=True).encode()).digest()
        first = not any(m["role"] == "assistant" for m in messages)
        content = CROP if first and digest[0] % 2 else "\\boxed{" + "ABCD"[digest[1] % 4] + "}"
        self._send({"id": "c", "object": "chat.completion", "created": 0, "model": "stub", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59}})


def timed(commands: list[list[str]], env: dict) -> float:
    """Wall seconds of `commands` run together (each must exit 0)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(proc.args)}\n{err[-2000:]}")
    return time.perf_counter() - started


def start_cluster(env: dict) -> tuple[subprocess.Popen, str]:
    port = 6400 + secrets.randbelow(1000)
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--port", str(port), "--num-cpus", "2",
                             "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats", "--block"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR')"
    for _ in range(120):
        if subprocess.run([sys.executable, "-c", probe, f"127.0.0.1:{port}"], env=env,
                          capture_output=True).returncode == 0:
            return head, f"127.0.0.1:{port}"
        time.sleep(1)
    raise SystemExit("the Ray cluster did not start")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Instant)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    run = ["--model", "stub", "--engine", "openai", "--base-url", url, "--no-pixel-check", "--tasks", "zoom",
           "--data", "samples"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0",
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    env.pop("RAY_ADDRESS", None)
    head, address = start_cluster(env)
    pr_eval = str(BIN / "pr-eval")
    configs = {
        "1 process, unsharded": lambda out: [[pr_eval, *run, "--output", out]],
        "2 shard processes + merge (Slurm's way)": None,
        "pr-eval ray --shards 2, a cluster started for the run": lambda out: [
            [pr_eval, "ray", "--shards", "2", "--cpus-per-shard", "1", "--address", "local", *run, "--output", out]],
        "pr-eval ray --shards 2, on a running cluster": lambda out: [
            [pr_eval, "ray", "--shards", "2", "--cpus-per-shard", "1", "--address", address, *run, "--output", out]],
    }
    walls: dict[str, list[float]] = {label: [] for label in configs}
    merges: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            timed([[pr_eval, *run, "--limit", "4", "--output", f"{tmp}/warm"]], env)  # the disk cache
            for round_ in range(args.repeats):
                for k, (label, commands) in enumerate(configs.items()):
                    out = f"{tmp}/r{round_}-{k}"
                    if commands is None:
                        wall = timed([[pr_eval, *run, "--shard", f"{s}/2", "--output", out] for s in range(2)], env)
                        shards = [str(p) for p in sorted(Path(out).iterdir())]
                        merge = timed([[pr_eval, "merge", *shards, "--output", f"{out}-merged"]], env)
                        merges.append(merge)
                        wall += merge
                    else:
                        wall = timed(commands(out), env)
                    walls[label].append(wall)
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        server.shutdown()
    rows = [(label, sorted(w)[len(w) // 2], w) for label, w in walls.items()]
    base = rows[0][1]
    lines = ["## `pr-eval ray`: what Ray adds to a sharded run", "",
             f"Command: `python perf/ray_launch.py --repeats {args.repeats}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, no GPU, "
             "Ray 2.60.0  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             "The bundled zoom benchmark (96 questions) through `--engine openai` against a scripted server that "
             "answers at once: what is timed is start-up, placement and the merge. Wall time of the whole commands, "
             f"the median of {args.repeats} interleaved rounds.", "",
             "| how | wall s | vs one process | rounds' wall s |", "|---|---|---|---|"]
    for label, wall, all_walls in rows:
        lines.append(f"| {label} | {wall:.1f} | {wall / base:.2f}x | {', '.join(f'{w:.1f}' for w in all_walls)} |")
    merge = sorted(merges)[len(merges) // 2]
    lines.append(f"| (of which `pr-eval merge`) | {merge:.1f} | {merge / base:.2f}x | "
                 f"{', '.join(f'{w:.1f}' for w in merges)} |")
    by = {label: wall for label, wall, _ in rows}
    slurm = by["2 shard processes + merge (Slurm's way)"]
    lines += ["", "Reading it:",
              f"- On a running cluster Ray adds {by['pr-eval ray --shards 2, on a running cluster'] - slurm:+.1f} s "
              "to the same two shards and merge run by hand (connecting, a worker per task, the polling of the "
              "journals); starting a cluster for the run adds "
              f"{by['pr-eval ray --shards 2, a cluster started for the run'] - slurm:+.1f} s.",
              f"- Two shards on two cores are slower than one process here: each pays its own start-up (imports, "
              f"lmms-eval's task set-up) and the merge, {merge:.1f} s, starts pr-eval once more and scores the run "
              "again from the journal. These are fixed costs, paid once a run: against hours of GPU work on a real "
              "benchmark they vanish, and the shards' gain is in the work itself (\"Client shards\" above)."]
    publish("\n".join(lines) + "\n", args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
