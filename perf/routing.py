"""Sticky against round-robin routing over two real `vllm serve` instances of the tiny model.

    python perf/routing.py                 # writes its section of BENCHMARKS.md
    python perf/routing.py --samples 12 --no-write

A trajectory sends its whole conversation (images included) with every turn. On the server that
took its earlier turns, that prefix is in the prefix cache and only the new turn is prefilled; on
another server everything is prefilled again. With several `--base-url`s pr-eval routes sticky by
trajectory (`pr_eval.engines.openai`); this measures what that buys against round-robin: the
servers' own prefix-cache counters (`vllm:prefix_cache_hits` / `vllm:prefix_cache_queries`, in
tokens, read from each server's /metrics before and after the run; both caches emptied through
the servers' dev endpoints before each run) and samples per second, on
the same forced workload (bundled V* questions, each turn forced with structured outputs: 0-2
crops, then an answer), and checks that both routings give identical trajectories.

Both servers run on this machine's CPU with the offline engine's arguments (as the engine tests
start one), so the speed figures are CPU figures; the hit rates are what transfers to a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
sys.path.insert(0, str(ROOT / "tests"))
from memory import command_line, machine, publish  # noqa: E402

SECTION = "## Sticky routing: prefix-cache hits over two servers"


def counters(url: str) -> dict[str, float]:
    """The server's prefix-cache counters (tokens), summed over its engines."""
    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=30).read().decode()
    found = {"queries": 0.0, "hits": 0.0}
    for line in text.splitlines():
        match = re.match(r"vllm:prefix_cache_(queries|hits)_total(\{[^}]*\})? ([0-9.e+]+)$", line)
        if match:
            found[match.group(1)] += float(match.group(3))
    return found


def start_servers(n: int, logs: Path) -> tuple[list[str], list[subprocess.Popen]]:
    from test_openai_engine import free_port, serve_command, wait_healthy

    from pr_eval.models import resolve_model

    model = resolve_model("tiny")
    urls, processes = [], []
    for k in range(n):
        port = free_port()
        log = logs / f"server{k}.log"
        processes.append(subprocess.Popen(serve_command(model, port), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                          env=dict(os.environ, HF_HUB_OFFLINE="1", VLLM_SERVER_DEV_MODE="1"),
                                          start_new_session=True))
        urls.append(f"http://127.0.0.1:{port}")
    for url, process, k in zip(urls, processes, range(n)):
        wait_healthy(url, process, str(logs / f"server{k}.log"), timeout=600)
    return [u + "/v1" for u in urls], processes


def forced(samples: int):
    """A guide over the bundled V* questions: question k crops k % 3 times, then answers."""
    from conftest import crop_call

    def guide(traj):
        k = int(re.findall(r"\d+", traj.sample_id)[-1]) if re.findall(r"\d+", traj.sample_id) else 0
        turn = len(traj.generations)
        if turn < k % 3:
            return re.escape(crop_call([0.2, 0.2, 0.7, 0.7], target=1 if turn == 0 else turn + 1))
        return re.escape("Looking closer. \\boxed{A}")

    return guide


def reset_caches(url: str) -> None:
    """Empty the server's prefix and multimodal caches (its dev endpoints), so no run reuses another's."""
    for path in ("/reset_prefix_cache", "/reset_mm_cache"):
        request = urllib.request.Request(url.removesuffix("/v1") + path, data=b"", method="POST")
        urllib.request.urlopen(request, timeout=60).read()


def one_run(urls: list[str], routing: str, samples: int, batch_size: int) -> dict:
    from test_openai_engine import SERVED_NAME

    from pr_eval.engines.openai import OpenAIEngine
    from pr_eval.run.evaluate import evaluate

    for url in urls:
        reset_caches(url)
    before = [counters(u) for u in urls]
    engine = OpenAIEngine(urls, SERVED_NAME, max_concurrency=batch_size, routing=routing)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run = evaluate(model="tiny", model_path="tiny", tasks=["pr_vstar"], limit=samples, output=out,
                       engine=engine, guide=forced(samples), batch_size=batch_size)
        records = [json.loads(x) for x in (run.folder / "samples_pr_vstar.jsonl").read_text().splitlines()]
    seconds = time.perf_counter() - started
    engine.close()
    after = [counters(u) for u in urls]
    queries = sum(a["queries"] - b["queries"] for a, b in zip(after, before))
    hits = sum(a["hits"] - b["hits"] for a, b in zip(after, before))
    per_server = [a["queries"] - b["queries"] for a, b in zip(after, before)]
    trajectories = [{k: v for k, v in r.items() if k not in ("timing", "image_files")} for r in records]
    return {"routing": routing, "samples": samples, "seconds": seconds, "hit_rate": hits / queries if queries else None,
            "queries": queries, "per_server": per_server, "trajectories": trajectories,
            "turns": sum(len(t["generations"]) for t in trajectories)}


def section(results: list[dict], command: str, identical: bool) -> str:
    lines = [SECTION, "", f"Command: `{command}`  ", f"Machine: {machine()}  ", f"Date: {time.strftime('%Y-%m-%d')}", "",
             f"Two `vllm serve` of the tiny model on this CPU; {results[0]['samples']} bundled V* questions, "
             f"{results[0]['turns']} turns in all (0-2 forced crops each, then an answer), all trajectories in flight. "
             f"Trajectories identical under both routings: **{'yes' if identical else 'NO'}**.", "",
             "| routing | prefix-cache hit rate (tokens) | prompt tokens queried | split over the servers | wall s | samples/s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        split = " / ".join(f"{q:.0f}" for q in r["per_server"])
        lines.append(f"| {r['routing']} | {100 * r['hit_rate']:.1f}% | {r['queries']:.0f} | {split} | "
                     f"{r['seconds']:.1f} | {r['samples'] / r['seconds']:.2f} |")
    lines += ["", "Hit rate: the servers' `vllm:prefix_cache_hits` over `vllm:prefix_cache_queries` during the run "
              "(both servers summed). Every run shares the system prompt's prefix; what sticky routing adds is "
              "the rest of each trajectory's conversation (its images and earlier turns) on its later turns."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=12, help="V* questions (the bundled set has 12)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", PR_EVAL_DATA="samples", TOKENIZERS_PARALLELISM="false")
    from pr_eval.run import quiet

    quiet.enable()
    with tempfile.TemporaryDirectory() as tmp:
        urls, processes = start_servers(2, Path(tmp))
        try:
            # both servers' caches are emptied before each run, so neither routing reuses the other's work
            results = [one_run(urls, routing, args.samples, 64) for routing in ("round-robin", "sticky")]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
    identical = results[0]["trajectories"] == results[1]["trajectories"]
    publish(section(results, command_line("routing.py", argv), identical), args.no_write)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
