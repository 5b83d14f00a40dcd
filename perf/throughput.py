"""Throughput of the three schedules of the loop on one forced workload, in one process.

    python perf/throughput.py                         # writes its section of BENCHMARKS.md
    python perf/throughput.py --image-tokens 0 --samples 40   # the protocol's own pixel bounds
    python perf/throughput.py --samples 40 --no-write # a quick look
    python perf/throughput.py --model /path/to/checkpoint --image-tokens 0 --samples 1000 \
        --batch-size 256                              # a real checkpoint on a GPU

Schedules (`pr_eval.loop.steps.run_samples(schedule=...)`), all against the same vLLM engine:
- one-at-a-time: each sample runs alone to its end (lmms-eval's agentic path, Chain-of-Focus, VLM-R3);
- turn-sync: batches of `--batch-size` advance together, every turn waits for the batch's slowest
  trajectory (Pixel-Reasoner, Mini-o3);
- continuous: up to `--batch-size` trajectories open, each back at the engine as soon as its own
  turn and tool are done (pr-eval's default).

Workload: generated samples, each with its own JPEG (1200x900 to 2000x1500, decoded from disk
when the trajectory starts, then resized by the protocol; crops are cut from the decoded original),
and a script for every turn forced with structured outputs: 0 to 4 valid crop calls in a skewed
mix (most samples answer at once, few crop four times), each turn with reasoning of varied length.

`--image-tokens N` (default 128) caps what the model sees of each image at N visual tokens
(N * 28 * 28 pixels, input images and crops alike); the files, their decoding, cropping and
resizing by the loop stay full size. Why: what a schedule can win depends on how an image's cost
(vision encoder + prefill, the same in every schedule) compares with a decode step (what batching
shares). On this CPU the tiny model's vision encoder, with full attention over up to 15,000
patches per image at the protocol's bounds, takes seconds per image, about a thousand batch-1
decode steps (2.5 ms each); at 512 tokens an image takes about 63 ms (25 steps), at 128 about
22 ms (9 steps). On an H100 a 7B Qwen2.5-VL spends roughly 10 decode steps on a ~1,500-token image
(an estimate: ~25 ms vision encoder + ~60 ms prefill against ~8 ms a step), so 128 tokens puts
the tiny CPU model in the cost regime of a real GPU run. `--image-tokens 0` keeps the protocol's
own bounds; every workload is recorded in its own section. Greedy decoding of forced text
means every schedule does exactly the same work; the script checks that the trajectories are
identical. Before each schedule the prefix and multimodal caches are emptied, so no schedule
reuses another's work (within a schedule, prefix caching is on, as in a real run).

Measured per schedule: samples per second (wall time of `run_samples`); the share of that wall
time during which the engine held no request at all (nothing submitted and not yet answered:
the engine sat idle while the loop loaded images, ran tools or waited; for the turn-synchronous
schedules this is the time outside `generate` calls); and the peak resident memory of the whole
process tree (this process and vLLM's engine processes, sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
from memory import PeakSampler, command_line, machine, publish  # noqa: E402  (the memory benchmark's helpers)

SECTION = "## Throughput of the schedules"
SIZES = [(1200, 900), (1400, 1050), (1600, 1200), (1800, 1350), (2000, 1500)]
TOOL_CALL_MIX = {0: 0.40, 1: 0.25, 2: 0.15, 3: 0.12, 4: 0.08}  # share of samples making k calls
SENTENCE = "The detail I need is small, so I look at the region again. "  # 59 bytes = 59 tokens (tiny model)
SENTENCES = [0, 1, 1, 2, 3, 6]  # reasoning before a turn's call or answer, drawn uniformly


# --- workload ----------------------------------------------------------------------------------

def make_image(rng, width: int, height: int):
    """A smooth random picture with grain: JPEG-sized like a photo, different for every sample."""
    import numpy as np
    from PIL import Image

    small = Image.fromarray(rng.integers(0, 256, (height // 24 + 1, width // 24 + 1, 3), dtype=np.uint8))
    pixels = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels += rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def crop_call(k: int, rng) -> str:
    """The k-th call (0-based) crops the image the previous call added (image k + 1)."""
    x, y = rng.uniform(0.0, 0.3, 2).round(2)
    from pr_eval.loop import tools

    box = [float(x), float(y), round(float(x) + 0.5, 2), round(float(y) + 0.5, 2)]
    return tools.crop_call(box, target=k + 1)


def make_workload(n: int, folder: Path, seed: int = 0):
    """n samples with their images written under `folder`, and the forced turns of each."""
    import numpy as np

    from pr_eval.data.imaging import load_image
    from pr_eval.trajectory import Sample

    rng = np.random.default_rng(seed)
    calls = rng.choice(list(TOOL_CALL_MIX), size=n, p=list(TOOL_CALL_MIX.values()))
    samples, scripts = [], {}
    for i in range(n):
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        path = folder / f"{i:05d}.jpg"
        make_image(rng, width, height).save(path, quality=90)
        sample_id = f"s{i:05d}"
        turns = [SENTENCE * int(rng.choice(SENTENCES)) + crop_call(k, rng) for k in range(int(calls[i]))]
        turns.append(SENTENCE * int(rng.choice(SENTENCES)) + f"\\boxed{{{'ABCD'[i % 4]}}}")
        scripts[sample_id] = turns
        samples.append(Sample("throughput", sample_id, f"Question {i}: what is in the picture?\n"
                              "(A) a cat\n(B) a dog\n(C) a car\n(D) a tree", "A",
                              load_images=lambda p=path: [load_image(p)]))
    return samples, scripts


def benchmark_protocol(image_tokens: int):
    """PIXEL_REASONER, with input images and crops shown at most `image_tokens` visual tokens
    (0: unchanged). The engine's processor gets the same bounds, so it resizes nothing again."""
    import dataclasses

    from pr_eval.protocol import PIXEL_REASONER, PixelBounds

    if not image_tokens:
        return PIXEL_REASONER
    bounds = PixelBounds(min(256, image_tokens) * 28 * 28, image_tokens * 28 * 28)
    return dataclasses.replace(PIXEL_REASONER, name=f"pixel-reasoner-v3-max{image_tokens}tok",
                               input_pixels=bounds, crop_pixels=bounds, engine_pixels=bounds)


def workload_label(image_tokens: int) -> str:
    return (f"images shown at most {image_tokens} tokens" if image_tokens
            else "images at the protocol's pixel bounds")


# --- measuring ---------------------------------------------------------------------------------

class EngineClock:
    """Wraps an engine and measures the time during which it holds at least one request.

    `generate` holds its requests for the whole call; a `submit`ted request from the call until
    its future is done. `busy` is the union of those intervals, so `wall - busy` is the time the
    engine sat with nothing to do."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name
        self._lock = threading.Lock()
        self._open = 0
        self._since = 0.0
        self.busy = 0.0

    def _enter(self, n: int) -> None:
        with self._lock:
            if self._open == 0:
                self._since = time.perf_counter()
            self._open += n

    def _leave(self, n: int) -> None:
        with self._lock:
            self._open -= n
            if self._open == 0:
                self.busy += time.perf_counter() - self._since

    def generate(self, requests, decoding):
        self._enter(len(requests))
        try:
            return self.inner.generate(requests, decoding)
        finally:
            self._leave(len(requests))

    def submit(self, request, decoding):
        self._enter(1)
        future = self.inner.submit(request, decoding)
        future.add_done_callback(lambda _f: self._leave(1))
        return future


class StepTimer:
    """Times every step of the vLLM engine, with how many requests it held and whether requests
    were added just before it (then the step also ran their prefill and vision encoder).
    Benchmark only: it wraps `step` and `add_request` of this one engine instance. Explains the
    ratios: what batching can win depends on how a decode step's time grows with its requests."""

    BUCKETS = ((1, 8), (8, 24), (24, 48), (48, 10**6))

    def __init__(self, engine):
        self.rows: list[tuple[float, int, bool]] = []  # (seconds, requests held, started new ones)
        self._added = 0
        llm_engine = engine.llm.llm_engine
        inner_step, inner_add = llm_engine.step, llm_engine.add_request

        def add_request(*args, **kwargs):
            self._added += 1
            return inner_add(*args, **kwargs)

        def step():
            stepper = engine._stepper
            held = len(stepper.waiting) if stepper is not None else 0
            added, self._added = self._added, 0
            began = time.perf_counter()
            outputs = inner_step()
            self.rows.append((time.perf_counter() - began, held, added > 0))
            return outputs

        llm_engine.add_request, llm_engine.step = add_request, step

    def summary(self) -> dict:
        """Steps; mean requests per step; for decode-only steps (no request added just before),
        mean time per bucket of requests held and the least-squares line
        ms = fixed + per_request * requests; steps that started requests, with their mean time."""
        import numpy as np

        rows = np.array(self.rows, dtype=float).reshape(-1, 3)
        decode = rows[rows[:, 2] == 0]
        started = rows[rows[:, 2] == 1]
        out = {"steps": len(rows), "mean_requests": float(rows[:, 1].mean()) if len(rows) else 0.0,
               "buckets": {}, "fit": None,
               "starting": (len(started), float(1000 * started[:, 0].mean()) if len(started) else 0.0)}
        for low, high in self.BUCKETS:
            mask = (decode[:, 1] >= low) & (decode[:, 1] < high)
            if mask.any():
                label = f"{low}-{high - 1}" if high < 10**6 else f"{low}+"
                out["buckets"][label] = (int(mask.sum()), float(1000 * decode[mask, 0].mean()))
        if len(decode) > 10 and np.ptp(decode[:, 1]) > 0:
            per_request, fixed = np.polyfit(decode[:, 1], 1000 * decode[:, 0], 1)
            out["fit"] = (float(fixed), float(per_request))
        return out


def reset_caches(engine) -> None:
    """Empty vLLM's prefix and multimodal caches so that a schedule cannot reuse the last one's work."""
    engine.llm.reset_prefix_cache()
    engine.llm.reset_mm_cache()


def run_schedule(engine, samples, scripts, protocol, schedule: str, batch_size: int,
                 steps: StepTimer | None = None) -> dict:
    from pr_eval.loop.steps import run_samples, scripted

    clock = EngineClock(engine)
    reset_caches(engine)
    if steps is not None:
        steps.rows.clear()
    load_before = os.getloadavg()[0]
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    trajs = run_samples(clock, samples, protocol, batch_size=batch_size, guide=scripted(scripts), schedule=schedule)
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    return {"schedule": schedule, "samples": len(trajs), "wall_s": wall, "samples_per_s": len(trajs) / wall,
            "idle_share": max(0.0, wall - clock.busy) / wall, "peak_tree_mib": sampler.peak / 2**20,
            "load": (load_before, os.getloadavg()[0]), "steps": steps.summary() if steps else None,
            "records": [t.to_record() for t in trajs]}


def describe(records: list[dict]) -> dict:
    calls = Counter(len(r["tool_calls"]) for r in records)
    return {"calls": dict(sorted(calls.items())),
            "generations": sum(len(r["generations"]) for r in records),
            "output_tokens": sum(g["output_tokens"] for r in records for g in r["generations"]),
            "prompt_tokens": sum(g["prompt_tokens"] for r in records for g in r["generations"]),
            "stop_reasons": dict(Counter(r["stop_reason"] for r in records)),
            "failed_calls": sum(not c["ok"] for r in records for c in r["tool_calls"])}


# --- report ------------------------------------------------------------------------------------

def verdicts(by: dict[str, dict], identical: bool) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets that this run can judge."""
    out = []
    cont = by.get("continuous")
    if cont and "turn-sync" in by:
        r = cont["samples_per_s"] / by["turn-sync"]["samples_per_s"]
        out.append(("continuous >= 1.5x turn-sync", f"{r:.2f}x", r >= 1.5))
    if cont and "one-at-a-time" in by:
        r = cont["samples_per_s"] / by["one-at-a-time"]["samples_per_s"]
        out.append(("continuous >= 8x one-at-a-time", f"{r:.2f}x", r >= 8))
    if cont:
        out.append(("engine idle <= 5% of wall time (continuous)", f"{100 * cont['idle_share']:.1f}%",
                    cont["idle_share"] <= 0.05))
    if len(by) > 1:
        out.append(("identical trajectories across schedules", "yes" if identical else "NO", identical))
    return out


def section(results: list[dict], workload: dict, args, command: str, identical: bool, note: str,
            protocol_name: str) -> str:
    by = {r["schedule"]: r for r in results}
    base = by.get("turn-sync") or results[0]
    lines = [f"{SECTION}: {workload_label(args.image_tokens)}", "", f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d')}  ", f"Model: {args.model}; batch size (open trajectories) "
             f"{args.batch_size}; vLLM with prefix caching, caches emptied before each schedule", "",
             f"Workload: {args.samples} generated samples, one JPEG each (1200x900 to 2000x1500), "
             f"{workload_label(args.image_tokens)} (protocol {protocol_name}), every turn forced with structured outputs: tool calls per sample {workload['calls']} "
             f"({workload['generations']} generations, {workload['prompt_tokens']} prompt and "
             f"{workload['output_tokens']} output tokens in all; stop reasons {workload['stop_reasons']}).", "",
             "| schedule | wall s | samples/s | vs turn-sync | engine idle, share of wall time | "
             "peak RSS, process tree (MiB) | machine load (1-min average, before / after) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['schedule']} | {r['wall_s']:.1f} | {r['samples_per_s']:.2f} | "
                     f"{r['samples_per_s'] / base['samples_per_s']:.2f}x | {100 * r['idle_share']:.1f}% | "
                     f"{r['peak_tree_mib']:.0f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in verdicts(by, identical)]
    lines += ["", "Engine idle: the share of wall time during which the engine held no request (nothing "
              "submitted and not yet answered), i.e. the loop was loading images, running tools or "
              "handing work around while the engine had nothing to do; for the turn-synchronous "
              "schedules, the time outside `generate` calls.", ""]
    lines += steps_table(results)
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def steps_table(results: list[dict]) -> list[str]:
    """How long an engine step took by the number of requests in it, per schedule, and what that
    means for batching."""
    timed = [r for r in results if r.get("steps") and r["steps"]["steps"]]
    if not timed:
        return []
    buckets = list(dict.fromkeys(b for r in timed for b in r["steps"]["buckets"]))
    lines = ["Engine steps (one model step of every request in flight, as the loop waits for it). Decode-only "
             "steps by the number of requests they held: mean ms (count); steps right after requests were "
             "added mostly also ran their prefill and vision encoder:", "",
             "| schedule | steps | mean requests per step | " + " | ".join(f"decode, {b} requests" for b in buckets)
             + " | steps that started requests |", "|---|---|---|" + "---|" * (len(buckets) + 1)]
    for r in timed:
        cells = [f"{r['steps']['buckets'][b][1]:.1f} ms ({r['steps']['buckets'][b][0]})"
                 if b in r["steps"]["buckets"] else "" for b in buckets]
        count, ms = r["steps"]["starting"]
        lines.append(f"| {r['schedule']} | {r['steps']['steps']} | {r['steps']['mean_requests']:.1f} | "
                     + " | ".join(cells) + f" | {ms:.1f} ms ({count}) |")
    fits = [r["steps"]["fit"] for r in timed if r["steps"]["fit"]]
    fixed = sum(f[0] for f in fits) / len(fits) if fits else 0.0
    per_request = sum(f[1] for f in fits) / len(fits) if fits else 0.0
    if fixed > 0 and per_request > 0:
        lines += ["", f"A decode step took about {fixed:.1f} ms plus {per_request:.2f} ms per request it held "
                  "(least squares over the decode-only steps). Batching shares only the fixed part: at best "
                  f"{(fixed + per_request) / per_request:.0f}x the tokens per second of one request alone, and "
                  f"half of that is reached at about {fixed / per_request:.0f} requests. That bounds what any "
                  "schedule can win over one-at-a-time, and what keeping the batch full (what continuous adds "
                  "over turn-sync) can win once a batch holds more than that."]
    return lines + [""]


# --- main --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples in the workload (default 200)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="trajectories open at once (continuous) / per batch (turn-sync); default 64")
    parser.add_argument("--schedules", default="continuous,turn-sync,one-at-a-time",
                        help="comma-separated, in the order to run them")
    parser.add_argument("--model", default="tiny", help="a model name or checkpoint path (default: tiny)")
    parser.add_argument("--image-tokens", type=int, default=128,
                        help="most visual tokens the model sees per image (default 128; 0: the protocol's bounds)")
    parser.add_argument("--seed", type=int, default=0, help="workload seed")
    parser.add_argument("--warmup", type=int, default=8, help="samples run first and not counted")
    parser.add_argument("--note", default="", help="a sentence added under the numbers (e.g. how busy the machine was)")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args(argv)
    from pr_eval.loop.steps import SCHEDULES

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown or not schedules:
        parser.error(f"unknown schedule(s) {unknown}; choose from: {', '.join(SCHEDULES)}")
    if args.samples < 1 or args.batch_size < 1:
        parser.error("--samples and --batch-size must be at least 1")
    if args.image_tokens and args.image_tokens < 4:
        parser.error("--image-tokens must be 0 (the protocol's bounds) or at least 4")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from pr_eval.engines.vllm import VLLMEngine
    from pr_eval.models import resolve_model

    protocol = benchmark_protocol(args.image_tokens)

    with tempfile.TemporaryDirectory(prefix="pr-eval-throughput-") as tmp:
        started = time.perf_counter()
        samples, scripts = make_workload(args.samples + args.warmup, Path(tmp), seed=args.seed)
        warm, samples = samples[:args.warmup], samples[args.warmup:]
        print(f"workload: {len(samples)} samples (+{len(warm)} warm-up) in {time.perf_counter() - started:.0f} s",
              flush=True)
        engine = VLLMEngine(resolve_model(args.model), protocol)
        try:
            steps = StepTimer(engine)
            if warm:
                run_schedule(engine, warm, scripts, protocol, "continuous", args.batch_size)
            results = []
            for schedule in schedules:
                results.append(run_schedule(engine, samples, scripts, protocol, schedule, args.batch_size, steps))
                r = results[-1]
                print(f"{schedule}: {r['samples']} samples in {r['wall_s']:.1f} s = {r['samples_per_s']:.2f}/s, "
                      f"engine idle {100 * r['idle_share']:.1f}%, peak {r['peak_tree_mib']:.0f} MiB, "
                      f"load {r['load'][0]:.1f}/{r['load'][1]:.1f}", flush=True)
        finally:
            engine.close()
    identical = all(r["records"] == results[0]["records"] for r in results)
    command = command_line("throughput.py", argv)
    text = section(results, describe(results[0]["records"]), args, command, identical, args.note, protocol.name)
    for target, measured, ok in verdicts({r["schedule"]: r for r in results}, identical):
        print(f"{target}: {measured} ({'met' if ok else 'NOT met'})")
    publish(text, args.no_write)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
