"""The loop's three schedules against a SIMULATED GPU engine: a cost model, not a measurement.

    python perf/simulated.py                      # writes its section of BENCHMARKS.md
    python perf/simulated.py --samples 64 --no-write   # a quick look

`perf/throughput.py` measures the schedules against the real vLLM engine, on this repo's
CPU machines, where batching pays little (a decode step of the tiny model costs about 2.6 ms plus
0.24 ms per request). On a GPU a decode step of a 7B model is mostly a fixed cost (reading the
weights), so what a schedule can win is different there. No GPU is needed to see how much: this
script drives the REAL loop (`pr_eval.loop.steps.run_samples`, all three schedules, real images decoded,
resized and cropped by the loop) against `SimulatedEngine`, a continuous-batching engine whose
steps take the time a cost model gives (`CostModel`; every parameter is an assumption, stated with
what it is based on), slept on a real clock `--speed` times faster than simulated time.

The engine: one scheduler thread; requests wait in a queue; each step runs every running
sequence (one decode token each) plus prefill chunks of waiting or partly prefilled requests up to
a token budget (vLLM's chunked prefill), admitting requests while the KV cache has room for their
whole prompt and output. A step takes

    t_step = c0 + c_seq * n_seqs + c_kv * (context tokens of the decoding sequences)
             + c_prefill * (prefill tokens this step) + c_vision * (image tokens encoded this step)

A request's prefill is its prompt tokens not in the prefix cache: the cache holds, per trajectory,
the conversation so far (prompt and reply of its last turn) and, shared by all, the system prompt;
idle prefixes are evicted least recently used, from their end, when the KV cache is full (a
conversation that lost its prefix is prefilled again: "recomputed"). A request then decodes its
output one token per step (the first comes with the last prefill chunk) and is answered when all
are decoded. Token counts: text ceil(chars / 4), plus 5 per message and 3 for the reply header;
images by Qwen2.5-VL's rule (one token per 28x28 pixels, within the engine's pixel bounds) applied
to the image's NOMINAL size: the benchmark's real images are `--scale` times smaller on each side
than the V*-like images they stand for (the protocol's pixel bounds are scaled to match), so that
the loop's real CPU work (decode, resize, crop) stays small next to the sped-up engine (see
"Clocks"). The engine writes exactly the turn the loop's guide forces (`request.constraint`, the
scripted text `re.escape`d), so every schedule gets the same trajectories; the script checks.

Clocks: simulated time = the sum of the step times (the engine busy) + the wall time during which
the engine held no request at all (the loop loading images, running tools, or waiting between
turns), counted one to one, as the loop's own work takes on a GPU host. The loop's work that
overlaps with engine steps (continuous) is real wall time against steps slept `--speed` times
faster, i.e. `--speed` times slower than it would be next to a real GPU (images 16x smaller in
pixels, `--scale 4`, make that work smaller to begin with). The section reports both clocks, the
continuous loop's turnaround (answer -> next request of that trajectory) in steps, and the first
reasoning length's continuous runs repeated at half and twice `--speed`: how much the overlap
moves the result. `--more-kv` adds rows with a larger KV cache, to tell the cache's size from the
schedules.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import re
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
sys.path.insert(0, str(ROOT))
from memory import command_line, machine, publish  # noqa: E402  (the memory benchmark's helpers)
from throughput import SENTENCE, SENTENCES, SIZES, TOOL_CALL_MIX, crop_call, make_image  # noqa: E402

from pr_eval.loop import chat  # noqa: E402
from pr_eval.engines.base import GenerationRequest, GenerationResult  # noqa: E402
from pr_eval.data.imaging import reference_size  # noqa: E402
from pr_eval.protocol import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, Decoding, PixelBounds  # noqa: E402

SECTION = "## Schedules in a simulated GPU regime (cost model, not a measurement)"
FACTOR = 28  # Qwen2.5-VL: one visual token per 28x28 pixels (14 px patches merged 2x2)
FALLBACK = "I can answer now. \\boxed{A}"  # the turn written when a request has no constraint


# --- the cost model ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CostModel:
    """Step time of a 7B vision-language model (Qwen2.5-VL-7B) on one H100 80 GB under vLLM.

    Every value is an ASSUMPTION (no GPU was used); `BASIS` says what each is based on."""

    c0_ms: float = 6.5              # fixed cost of any step
    c_seq_ms: float = 0.02          # per sequence in the step
    c_kv_us: float = 0.023          # per context token of each decoding sequence, per step
    c_prefill_ms: float = 1 / 30    # per prefill token (30,000 tokens/s)
    c_vision_ms: float = 0.014      # per image token encoded by the vision tower
    max_batched_tokens: int = 16384  # token budget of one step (decode tokens + prefill chunks)
    max_num_seqs: int = 1024        # running sequences at most
    kv_tokens: int = 800_000        # KV cache size in tokens

    def step_s(self, n_seqs: int, decode_context: int, prefill_tokens: float, image_tokens: float) -> float:
        return (self.c0_ms + self.c_seq_ms * n_seqs + self.c_kv_us / 1000 * decode_context
                + self.c_prefill_ms * prefill_tokens + self.c_vision_ms * image_tokens) / 1000


BASIS = {
    "c0_ms": "a decode step of a 7B model is bound by reading its weights: ~15 GB of bf16 LLM weights at "
             "~3 TB/s of H100 HBM3 is ~5 ms, plus ~1.5 ms of launch, sampling and scheduler overhead; "
             "published vLLM time-per-output-token figures for 7-8B models on one H100 at low "
             "concurrency are in the same few-ms range",
    "c_seq_ms": "the per-token matrix work of a 7B model (~15 GFLOP) at ~700 TFLOP/s, plus sampling",
    "c_kv_us": "reading one token's KV cache (Qwen2.5-VL-7B: 28 layers x 4 KV heads x 128 x 2 x 2 bytes "
               "= 57 KB) at ~2.5 TB/s; ~0.14 ms per step for a 6,000-token context",
    "c_prefill_ms": "~15 GFLOP per token at ~50% of the H100's 989 dense bf16 TFLOP/s, i.e. about 30,000 "
                    "tokens/s; 'tens of thousands of tokens/s' is the usual order for 7-8B prefill",
    "c_vision_ms": "the ~0.67 B-parameter vision tower on 4 patches per image token (~5.4 GFLOP) plus its "
                   "full-attention layers, at the same efficiency: ~40% of a text token's prefill",
    "max_batched_tokens": "vLLM's default for its LLM class on >= 70 GiB GPUs (installed vllm, "
                          "engine/arg_utils.py); chunked prefill on",
    "max_num_seqs": "vLLM's default there too (the loop never has more than --batch-size open)",
    "kv_tokens": "80 GiB x 0.85 (pr-eval's gpu_memory_utilization on CUDA) = 73 GB, - ~16.6 GB of weights - "
                 "a few GB of activations and profiling peaks, / 57 KB per token: 800-900k tokens; the lower end",
}


@dataclasses.dataclass(frozen=True)
class TokenModel:
    """How many tokens a request's parts cost (an approximation of Qwen2.5-VL's tokenizer)."""

    chars_per_token: float = 4.0
    message_overhead: int = 5   # <|im_start|>role\n ... <|im_end|>\n
    reply_header: int = 3       # <|im_start|>assistant\n
    image_overhead: int = 2     # <|vision_start|> <|vision_end|>
    pixel_scale: int = 1        # an image of w x h pixels stands for one of (w*scale) x (h*scale)
    engine_pixels: PixelBounds = PixelBounds(QWEN_MIN_PIXELS, QWEN_MAX_PIXELS)

    def text(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def image(self, image) -> int:
        """Visual tokens of an image at its nominal size, after the engine's pixel clamp."""
        w, h = reference_size(image.width * self.pixel_scale, image.height * self.pixel_scale, self.engine_pixels)
        return (w // FACTOR) * (h // FACTOR)

    def output(self, text: str) -> int:
        return max(1, self.text(text)) + 1  # and <|im_end|>


def scaled_protocol(protocol, scale: int):
    """`protocol` with every pixel bound divided by scale**2: images `scale` times smaller on each
    side go through the same resizes as the full-size images they stand for."""
    if scale == 1:
        return protocol

    def down(b: PixelBounds) -> PixelBounds:
        return PixelBounds(max(FACTOR * FACTOR, b.min_pixels // scale ** 2), b.max_pixels // scale ** 2)

    return dataclasses.replace(protocol, name=f"{protocol.name}-pixels-div{scale * scale}",
                               input_pixels=down(protocol.input_pixels), crop_pixels=down(protocol.crop_pixels),
                               frame_pixels=down(protocol.frame_pixels), engine_pixels=down(protocol.engine_pixels))


def scripted_text(constraint: str | None) -> str:
    """The text a constraint written by `pr_eval.loop.steps.scripted` forces (it is `re.escape(text)`)."""
    if constraint is None:
        return FALLBACK
    return re.sub(r"\\(.)", r"\1", constraint, flags=re.DOTALL)


# --- the engine --------------------------------------------------------------------------------

@dataclasses.dataclass
class Stats:
    steps: int = 0
    busy_s: float = 0.0       # sum of step times (simulated)
    fixed_s: float = 0.0      # c0 part
    seq_s: float = 0.0        # c_seq + c_kv part
    prefill_s: float = 0.0    # c_prefill + c_vision part
    idle_s: float = 0.0       # wall time with no request in the engine (counted 1:1)
    seqs: int = 0             # sum over steps of sequences in the step
    peak_seqs: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefill_tokens: int = 0
    image_tokens: int = 0
    output_tokens: int = 0
    evicted_tokens: int = 0
    recomputed_tokens: int = 0  # prefilled again because the conversation's cached prefix was evicted
    peak_kv: int = 0
    turnaround_wall: list = dataclasses.field(default_factory=list)  # answer -> next turn's request, s


class _Entry:
    """A cached prefix of a conversation (through the reply when `reply`): `own` tokens occupy KV
    blocks of their own (the rest is the pinned, shared system prompt); `lost` were evicted from
    its end."""

    __slots__ = ("answered_at", "lost", "own", "reply")

    def __init__(self, own: int, reply: bool):
        self.own, self.reply, self.lost, self.answered_at = own, reply, 0, None


class _Job:
    __slots__ = ("future", "text", "finish", "stop", "prompt", "output", "chain", "cum", "cum_img", "roles",
                 "reserve", "shared", "prefill_left", "prefill_total", "vision_total", "generated", "entry")

    def __init__(self):
        self.future: Future = Future()
        self.generated = 0
        self.entry = None


class SimulatedEngine:
    """A continuous-batching engine whose steps follow `CostModel`, slept `speed` times faster
    than simulated time. `generate` submits every request and waits for all; `submit` returns a
    Future at once (safe from any thread). `elapsed()` is the simulated time since `reset()`."""

    name = "simulated"

    def __init__(self, cost: CostModel = CostModel(), tokens: TokenModel = TokenModel(), speed: float = 10.0,
                 prefix_cache: bool = True):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.cost, self.tokens, self.speed, self.prefix_cache = cost, tokens, speed, prefix_cache
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._arrivals: deque[_Job] = deque()
        self._waiting: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._closed = False
        self.reset()
        self._thread = threading.Thread(target=self._serve, name="simulated-engine", daemon=True)
        self._thread.start()

    # -- public --------------------------------------------------------------------------------

    def reset(self) -> None:
        """Empty the caches and the statistics, and start the simulated clock (engine idle)."""
        with self._lock:
            if self._arrivals or self._waiting or self._running:
                raise RuntimeError("reset() while requests are in flight")
            self._cache: OrderedDict[int, _Entry] = OrderedDict()  # trajectory prefixes, LRU first
            self._pinned: dict[int, _Entry] = {}                   # shared system prompts
            self._kv_running = self._kv_idle = self._kv_pinned = 0
            self.stats = Stats()
            self._idle_since: float | None = time.perf_counter()

    def elapsed(self) -> float:
        """Simulated seconds since `reset()`: steps + idle wall time."""
        with self._lock:
            idle = time.perf_counter() - self._idle_since if self._idle_since is not None else 0.0
            return self.stats.busy_s + self.stats.idle_s + idle

    def submit(self, request: GenerationRequest, decoding: Decoding) -> Future[GenerationResult]:
        job = self._prepare(request, decoding)
        with self._lock:
            if self._closed:
                job.future.set_result(GenerationResult(text="", error="the simulated engine is closed"))
                return job.future
            if self.prefix_cache:  # how long the loop took to come back after this trajectory's last answer
                for L in range(len(job.chain) - 1, 0, -1):
                    entry = self._cache.get(job.chain[L])
                    if entry is not None:
                        if entry.answered_at is not None:
                            self.stats.turnaround_wall.append(time.perf_counter() - entry.answered_at)
                        break
            self._arrivals.append(job)
            self._wake.notify()
        return job.future

    def generate(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[GenerationResult]:
        futures = [self.submit(r, decoding) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests ------------------------------------------------------------------------------

    def _prepare(self, request: GenerationRequest, decoding: Decoding) -> _Job:
        """Token counts and prefix keys of a request (in the caller's thread)."""
        tm = self.tokens
        job = _Job()
        text = scripted_text(request.constraint)
        output = tm.output(text)
        job.finish, job.stop = "stop", chat.IM_END
        if output > decoding.max_new_tokens:
            output = decoding.max_new_tokens
            text = text[:int((output - 1) * tm.chars_per_token)]
            job.finish, job.stop = "length", None
        job.text, job.output = text, output
        chain, cum, cum_img, roles = [0], [0], [0], [None]
        for message in request.messages:
            content = message["content"]
            n, img, sig = tm.message_overhead, 0, []
            if isinstance(content, str):
                n += tm.text(content)
                sig.append(content)
            else:
                for part in content:
                    if part["type"] == "text":
                        n += tm.text(part["text"])
                        sig.append(part["text"])
                    else:
                        key = part[part["type"]]
                        media = request.images[key - 1]
                        frames = media if isinstance(media, list) else [media]
                        k = sum(tm.image(f) for f in frames) // (2 if part["type"] == "video" else 1)
                        n += k + tm.image_overhead
                        img += k
                        sig.append((part["type"], key, tuple(_fingerprint(f) for f in frames)))
            chain.append(hash((chain[-1], message["role"], tuple(sig))))
            cum.append(cum[-1] + n)
            cum_img.append(cum_img[-1] + img)
            roles.append(message["role"])
        job.chain, job.cum, job.cum_img, job.roles = chain, cum, cum_img, roles
        job.prompt = cum[-1] + tm.reply_header
        return job

    def _admit(self, job: _Job) -> bool:
        """Give the head of the queue its KV blocks (evicting idle prefixes) and its prefill; False
        when it does not fit yet."""
        m = len(job.chain) - 1
        shared, hit_key, hit, covered = 0, None, None, 0
        if self.prefix_cache:
            for L in range(m, 0, -1):
                pinned = self._pinned.get(job.chain[L])
                if pinned is not None:
                    shared = job.cum[L]
                    break
            for L in range(m - 1, 0, -1):
                entry = self._cache.get(job.chain[L])
                if entry is not None:
                    hit_key, hit = job.chain[L], entry
                    covered = L + 1 if entry.reply and L + 1 <= m - 1 and job.roles[L + 1] == "assistant" else L
                    break
        cached = max(shared, job.cum[covered] - hit.lost if hit is not None else 0)
        reserve = job.prompt + job.output - shared
        grow = reserve - (hit.own if hit else 0)
        free = self.cost.kv_tokens - self._kv_running - self._kv_idle - self._kv_pinned
        evictable = self._kv_idle - (hit.own if hit else 0)
        if grow > free + evictable:
            return False
        if hit is not None:
            del self._cache[hit_key]
            self._kv_idle -= hit.own
            free += hit.own
            grow = reserve
        while grow > free:  # the least recently used prefix first, from its end (as vLLM frees blocks)
            key, old = next(iter(self._cache.items()))
            take = min(old.own, grow - free)
            old.own -= take
            old.lost += take
            self._kv_idle -= take
            free += take
            self.stats.evicted_tokens += take
            if old.own <= 0:
                del self._cache[key]
        self._kv_running += reserve
        whole = max(k for k in range(len(job.cum)) if job.cum[k] <= cached)  # messages cached whole
        job.reserve, job.shared = reserve, shared
        job.prefill_total = job.prefill_left = job.prompt - cached
        job.vision_total = job.cum_img[-1] - job.cum_img[whole]
        s = self.stats
        s.requests += 1
        s.prompt_tokens += job.prompt
        s.cached_tokens += cached
        if self.prefix_cache:  # what an unbounded cache would have held: all but the new user turn
            ideal = m - 1 if m >= 2 and job.roles[m - 1] == "assistant" else (1 if job.roles[1:2] == ["system"] else 0)
            s.recomputed_tokens += max(0, job.cum[ideal] - cached)
        s.prefill_tokens += job.prefill_total
        s.image_tokens += job.vision_total
        s.output_tokens += job.output
        s.peak_kv = max(s.peak_kv, self._kv_running + self._kv_idle + self._kv_pinned)
        return True

    def _prefilled(self, job: _Job) -> None:
        """Pin the request's system prompt (shared by every trajectory) once it is computed."""
        if self.prefix_cache and len(job.roles) > 1 and job.roles[1] == "system" and job.chain[1] not in self._pinned:
            self._pinned[job.chain[1]] = _Entry(job.cum[1], False)
            self._kv_pinned += job.cum[1]

    def _answered(self, job: _Job) -> None:
        """Free the request's blocks; its conversation, reply included, stays cached (idle)."""
        self._kv_running -= job.reserve
        if self.prefix_cache:
            entry = _Entry(job.reserve, True)
            old = self._cache.pop(job.chain[-1], None)
            if old is not None:
                self._kv_idle -= old.own
            self._cache[job.chain[-1]] = entry
            self._kv_idle += entry.own
            job.entry = entry

    # -- the scheduler -------------------------------------------------------------------------

    def _step(self) -> tuple[float, list[_Job], list[_Job]]:
        """Plan and account one step: (simulated seconds, jobs answered, jobs refused)."""
        cost = self.cost
        budget = cost.max_batched_tokens
        decoders = [j for j in self._running if j.prefill_left == 0]
        budget -= len(decoders)
        context = sum(j.prompt + j.generated for j in decoders)
        chunks: list[tuple[_Job, int]] = []
        for j in self._running:
            if j.prefill_left > 0 and budget > 0:
                take = min(j.prefill_left, budget)
                chunks.append((j, take))
                budget -= take
        refused = []
        while self._waiting and len(self._running) < cost.max_num_seqs and budget > 0:
            job = self._waiting[0]
            if not self._admit(job):
                if not self._running:  # it can never fit
                    refused.append(self._waiting.popleft())
                    continue
                break
            self._waiting.popleft()
            self._running.append(job)
            take = min(job.prefill_left, budget)
            chunks.append((job, take))
            budget -= take
        if not decoders and not chunks:
            return 0.0, [], refused
        prefill = sum(take for _, take in chunks)
        vision = sum(j.vision_total * take / j.prefill_total for j, take in chunks)
        n = len(decoders) + len(chunks)
        seconds = cost.step_s(n, context, prefill, vision)
        s = self.stats
        s.steps += 1
        s.busy_s += seconds
        s.fixed_s += cost.c0_ms / 1000
        s.seq_s += (cost.c_seq_ms * n + cost.c_kv_us / 1000 * context) / 1000
        s.prefill_s += (cost.c_prefill_ms * prefill + cost.c_vision_ms * vision) / 1000
        s.seqs += n
        s.peak_seqs = max(s.peak_seqs, n)
        for j in decoders:
            j.generated += 1
        for j, take in chunks:
            j.prefill_left -= take
            if j.prefill_left == 0:
                j.generated += 1  # the last prefill chunk yields the first token
                self._prefilled(j)
        done = [j for j in self._running if j.generated >= j.output]
        if done:
            self._running = [j for j in self._running if j.generated < j.output]
            for j in done:
                self._answered(j)
        return seconds, done, refused

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not (self._arrivals or self._waiting or self._running or self._closed):
                    self._wake.wait()
                if self._closed:
                    pending = list(self._arrivals) + list(self._waiting) + self._running
                    self._arrivals.clear(), self._waiting.clear(), self._running.clear()
                    break
                if self._idle_since is not None:
                    self.stats.idle_s += time.perf_counter() - self._idle_since
                    self._idle_since = None
                self._waiting.extend(self._arrivals)
                self._arrivals.clear()
                seconds, done, refused = self._step()
            if seconds:
                time.sleep(seconds / self.speed)
            now = time.perf_counter()
            for j in done:
                if j.entry is not None:
                    j.entry.answered_at = now
                j.future.set_result(GenerationResult(text=j.text, prompt_tokens=j.prompt, output_tokens=j.output,
                                                     finish_reason=j.finish, stop=j.stop))
            for j in refused:
                j.future.set_result(GenerationResult(text="", prompt_tokens=j.prompt, error=(
                    f"the prompt ({j.prompt} tokens) and output do not fit in the KV cache ({self.cost.kv_tokens})")))
            with self._lock:
                if not (self._arrivals or self._waiting or self._running):
                    self._idle_since = time.perf_counter()
        for j in pending:
            j.future.set_result(GenerationResult(text="", error="the simulated engine was closed"))


def _fingerprint(image) -> tuple:
    """Enough of an image to tell two apart in a prefix key, cheaply: its size and a few pixels."""
    w, h = image.size
    return (w, h) + tuple(image.getpixel((w * i // 5, h * j // 5)) for i in (1, 2, 3, 4) for j in (1, 3))


# --- the workload ------------------------------------------------------------------------------

def make_workload(n: int, seed: int = 0, reasoning: int = 1, scale: int = 4):
    """n samples, each with one JPEG (in memory, decoded when its trajectory starts) `scale` times
    smaller on each side than throughput.py's 1200x900 to 2000x1500 images, and the forced turns
    of each: throughput.py's mix of 0 to 4 crop calls, each turn's reasoning `reasoning` times as
    long as there (the draws of calls, sizes, boxes and lengths do not depend on `reasoning`)."""
    import numpy as np

    from pr_eval.data.imaging import load_image
    from pr_eval.trajectory import Sample

    rng = np.random.default_rng(seed)
    lengths = np.random.default_rng([seed, 1])
    calls = rng.choice(list(TOOL_CALL_MIX), size=n, p=list(TOOL_CALL_MIX.values()))
    samples, scripts = [], {}
    for i in range(n):
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        buffer = io.BytesIO()
        make_image(rng, width // scale, height // scale).save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        sample_id = f"s{i:05d}"
        turns = [crop_call(k, rng) for k in range(int(calls[i]))] + [f"\\boxed{{{'ABCD'[i % 4]}}}"]
        scripts[sample_id] = [SENTENCE * (int(lengths.choice(SENTENCES)) * reasoning) + t for t in turns]
        samples.append(Sample("simulated", sample_id, f"Question {i}: what is in the picture?\n"
                              "(A) a cat\n(B) a dog\n(C) a car\n(D) a tree", "A",
                              load_images=lambda d=data, s=sample_id: [load_image(io.BytesIO(d), s)]))
    return samples, scripts


# --- running -----------------------------------------------------------------------------------

def run_schedule(engine: SimulatedEngine, samples, scripts, protocol, schedule: str, batch_size: int) -> dict:
    from pr_eval.loop.steps import run_samples, scripted

    engine.reset()
    started = time.perf_counter()
    trajs = run_samples(engine, samples, protocol, batch_size=batch_size, guide=scripted(scripts), schedule=schedule)
    wall = time.perf_counter() - started
    simulated = engine.elapsed()
    s = dataclasses.replace(engine.stats, turnaround_wall=list(engine.stats.turnaround_wall))
    return {"schedule": schedule, "batch_size": batch_size, "kv": engine.cost.kv_tokens, "speed": engine.speed,
            "samples": len(trajs), "wall_s": wall, "sim_s": simulated, "samples_per_s": len(trajs) / simulated,
            "stats": s, "mean_seqs": s.seqs / s.steps if s.steps else 0.0,
            "records": [t.to_record() for t in trajs]}


def describe(records: list[dict]) -> dict:
    gens = [g for r in records for g in r["generations"]]
    return {"calls": dict(sorted(Counter(len(r["tool_calls"]) for r in records).items())),
            "generations": len(gens), "output_tokens": sum(g["output_tokens"] for g in gens),
            "prompt_tokens": sum(g["prompt_tokens"] for g in gens),
            "stop_reasons": dict(Counter(r["stop_reason"] for r in records)),
            "failed_calls": sum(not c["ok"] for r in records for c in r["tool_calls"])}


def ratio(a: dict, b: dict | None) -> float | None:
    return a["samples_per_s"] / b["samples_per_s"] if b else None


def _alone(results: list[dict], reasoning: int) -> dict | None:
    return next((r for r in results if r["reasoning"] == reasoning and r["schedule"] == "one-at-a-time"), None)


def pairs(results: list[dict]):
    """(reasoning, kv, batch, continuous, turn-sync) for every configuration run with both."""
    for r in results:
        if r["schedule"] == "continuous":
            ts = next((x for x in results if x["schedule"] == "turn-sync" and
                       (x["reasoning"], x["kv"], x["batch_size"]) == (r["reasoning"], r["kv"], r["batch_size"])), None)
            yield r["reasoning"], r["kv"], r["batch_size"], r, ts


def verdicts(results: list[dict]) -> list[tuple[str, str, bool]]:
    out = []
    for reasoning, kv, batch, cont, ts in pairs(results):
        where = f"reasoning x{reasoning}, KV {kv:,}, batch {batch}"
        if ts:
            x = ratio(cont, ts)
            out.append((f"{where}: continuous >= 1.5x turn-sync", f"{x:.2f}x", x >= 1.5))
        alone = _alone(results, reasoning)
        if alone:
            x = ratio(cont, alone)
            out.append((f"{where}: continuous >= 8x one-at-a-time", f"{x:.2f}x", x >= 8))
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def section(results: list[dict], workloads: dict, args, command: str, identical: bool, cost: CostModel,
            tokens: TokenModel, protocol_name: str, note: str) -> str:
    lines = [SECTION, "", ("**A simulation, not a measurement.** No GPU ran: the real loop drove `SimulatedEngine` "
             "(`perf/simulated.py`), whose steps take the time of the cost model below, every parameter "
             "an assumption about Qwen2.5-VL-7B on one H100 80 GB under vLLM. What it shows is what the three "
             "schedules win *if* a step costs that; `perf/throughput.py --model <checkpoint>` on a GPU "
             "measures it."), "",
             f"Command: `{command}`  ", f"Machine (where the loop ran): {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             ("Step time: `t = c0 + c_seq * n_seqs + c_kv * (context tokens of the decoding sequences) + "
              "c_prefill * (prefill tokens) + c_vision * (image tokens encoded)`; chunked prefill within a "
              "per-step token budget; a request is admitted, first come first served, when the KV cache holds its "
              "whole prompt and output (no preemption), cached prefixes of idle conversations being evicted least "
              "recently used, from their end, as vLLM frees blocks; prefix cache per conversation (a later turn "
              "prefills only its feedback turn and new image, unless evicted) and for the shared system prompt. "
              "Not modelled: a prefill chunk's attention over its cached context (a few % at these lengths), "
              "preemption, detokenization, an OpenAI server's HTTP path."), "",
             "| parameter | value | based on (assumption) |", "|---|---|---|"]
    for f in dataclasses.fields(cost):
        lines.append(f"| {f.name} | {getattr(cost, f.name):g} | {BASIS[f.name]} |")
    if args.more_kv:
        lines += ["", (f"Rows with KV {args.more_kv:,} tokens: the same model with a larger KV cache (about what an "
                       "H200's 141 GB leaves at the same settings; its faster memory is not modelled), to separate "
                       "the cache's size from the schedules.")]
    lines += ["", (f"Tokens: text ceil(characters / {tokens.chars_per_token:g}), {tokens.message_overhead} per message, "
              f"{tokens.reply_header} for the reply header; an image one token per 28x28 pixels of its nominal "
              f"size within [{tokens.engine_pixels.min_pixels:,}, {tokens.engine_pixels.max_pixels:,}] pixels "
              f"(Qwen2.5-VL's rule, the protocol's engine bounds), + {tokens.image_overhead}. Output: the forced "
              "turn's tokens + `<|im_end|>`."), "",
              (f"Workload: {args.samples} generated samples, one JPEG each, real images {args.scale}x smaller on each "
              f"side than the 1200x900 to 2000x1500 pictures they stand for ({args.scale ** 2}x fewer pixels to "
              f"decode, resize and crop), through protocol {protocol_name} (PIXEL_REASONER with every pixel bound "
              f"divided by {args.scale ** 2}, so the loop resizes and crops them as the full-size ones); the "
              "engine counts each image at its nominal size. Turns forced as in `perf/throughput.py`: 0 to 4 "
              "crop calls per sample in its skewed mix, each turn with reasoning of varied length, its lengths "
              "repeated xN (x1: throughput.py's own):"), ""]
    for reasoning, w in workloads.items():
        per_turn = w["output_tokens"] / w["generations"]
        lines.append(f"- reasoning x{reasoning}: tool calls per sample {w['calls']}; {w['generations']} generations; "
                     f"{w['prompt_tokens']:,} prompt tokens (before the prefix cache) and {w['output_tokens']:,} output "
                     f"tokens (mean {per_turn:.0f} per turn); stop reasons {w['stop_reasons']}.")
    lines += ["", ("| reasoning | KV tokens | batch | schedule | simulated s | samples/s (simulated) | vs turn-sync "
              "| vs one-at-a-time | steps | mean seqs per step | peak seqs | prefill + vision s | c0 s (steps x c0) "
              "| per-seq + KV s | engine idle s | prefill tokens recomputed | wall s |"), "|---" * 17 + "|"]
    for r in results:
        s = r["stats"]
        ts = next((x for x in results if x["schedule"] == "turn-sync" and
                   (x["reasoning"], x["kv"], x["batch_size"]) == (r["reasoning"], r["kv"], r["batch_size"])), None)
        alone = _alone(results, r["reasoning"])
        solo = r["schedule"] == "one-at-a-time"
        lines.append(f"| x{r['reasoning']} | {r['kv']:,} | {1 if solo else r['batch_size']} | {r['schedule']} | "
                     f"{r['sim_s']:.1f} | {r['samples_per_s']:.2f} | {'' if solo else _fmt(ratio(r, ts))} | "
                     f"{_fmt(ratio(r, alone))} | {s.steps} | {r['mean_seqs']:.1f} | {s.peak_seqs} | "
                     f"{s.prefill_s:.1f} | {s.fixed_s:.1f} | {s.seq_s:.1f} | {s.idle_s:.2f} | "
                     f"{s.recomputed_tokens:,} | {r['wall_s']:.1f} |")
    lines += ["", ("Simulated s = the steps' times + the wall time during which the engine held no request (engine "
              "idle, counted one to one). The next four time columns split the steps' time by the cost model's "
              "terms. Prefill tokens recomputed: prefilled again because the conversation's cached prefix had been "
              "evicted. One-at-a-time runs each sample alone (batch 1), once per reasoning length."), "",
              "| target | simulated | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in verdicts(results)]
    lines.append(f"| identical trajectories across all schedules, batch sizes, KV sizes and speeds | "
                 f"{'yes' if identical else 'NO'} | {'yes' if identical else 'NO'} |")
    lines += ["", *explain(results, cost, args)]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def explain(results: list[dict], cost: CostModel, args) -> list[str]:
    """What the cost model says about the ratios, from this run's numbers."""
    out = ["What the model says:", ""]
    for reasoning in dict.fromkeys(r["reasoning"] for r in results):
        alone = _alone(results, reasoning)
        conts = [r for r in results if r["reasoning"] == reasoning and r["schedule"] == "continuous"]
        if alone and conts:
            a = alone["stats"]
            c = max(conts, key=lambda r: r["samples_per_s"])
            out.append(
                f"- Reasoning x{reasoning}, against one-at-a-time: alone, every output token is a step of its own, "
                f"so it pays c0 {a.steps:,} times ({a.fixed_s:.0f} s of its {alone['sim_s']:.0f} s); its prefill and "
                f"vision ({a.prefill_s:.0f} s) is work that no schedule shares, so no schedule can beat it by more "
                f"than {alone['sim_s'] / a.prefill_s:.1f}x on this workload. The best continuous run (batch "
                f"{c['batch_size']}, KV {c['kv']:,}) paid c0 {c['stats'].steps:,} times ({c['stats'].fixed_s:.0f} s): "
                f"{ratio(c, alone):.2f}x. The more of a sample's time goes to prefilling its images, i.e. the "
                "shorter its turns, the lower that ceiling.")
    for reasoning, kv, batch, cont, ts in pairs(results):
        if not ts:
            continue
        c, t = cont["stats"], ts["stats"]
        text = (f"- Reasoning x{reasoning}, KV {kv:,}, batch {batch}: continuous {ratio(cont, ts):.2f}x turn-sync. "
                f"Turn-sync waits at every turn for its slowest trajectory, so its batch drains to a few sequences at "
                f"the end of each turn and the next turn's prefill starts only then: {t.steps:,} steps of "
                f"{ts['mean_seqs']:.1f} sequences on average (c0: {t.fixed_s:.0f} s), against continuous's "
                f"{c.steps:,} of {cont['mean_seqs']:.1f} ({c.fixed_s:.0f} s), and {t.idle_s:.1f} s with the engine "
                f"empty between turns (continuous {c.idle_s:.1f} s). Prefill and vision: {c.prefill_s:.0f} s "
                f"continuous, {t.prefill_s:.0f} s turn-sync ({c.prefill_s / cont['sim_s']:.0%} of continuous's time).")
        if c.recomputed_tokens > 0.02 * c.prefill_tokens:
            text += (f" The KV cache cannot hold the conversations of {batch} open trajectories: while a "
                     "trajectory's next turn waits in the queue, newer requests evict its cached conversation and "
                     f"it is prefilled again ({c.recomputed_tokens:,} tokens, {c.prefill_s - t.prefill_s:.0f} s more "
                     "prefill than turn-sync, whose turns shrink as trajectories finish). Which prefixes get evicted "
                     "depends on the order in which requests arrive, so this is the run most sensitive to the loop's "
                     "timing (the speed check below). Fewer open trajectories, or a larger cache, avoid it.")
        elif c.peak_seqs < batch:
            text += (f" Continuous never had more than {c.peak_seqs} of its {batch} open trajectories in a step: "
                     f"requests enter only as fast as the {cost.max_batched_tokens:,}-token step budget prefills "
                     "their images, so the rest wait in the queue.")
        out.append(text)
    cont_runs = [r for r in results if r["schedule"] == "continuous" and r["stats"].turnaround_wall]
    if cont_runs:
        turns = [x for r in cont_runs for x in r["stats"].turnaround_wall]
        steps = sum(r["stats"].busy_s for r in cont_runs) / sum(r["stats"].steps for r in cont_runs)
        mean = sum(turns) / len(turns)
        out.append(
            f"- The loop's own work (continuous): between an answer and the trajectory's next request (the "
            f"tool run on a real image, the handing around, on this loaded 2-core machine) {1000 * mean:.1f} ms of "
            f"wall time on average over {len(turns):,} turns, i.e. {1000 * mean * args.speed:.0f} ms of simulated "
            f"time at --speed {args.speed:g}, against a mean step of {1000 * steps:.0f} ms: a trajectory waits "
            f"about {mean * args.speed / steps:.1f} steps between its turns, probably longer than next to a real "
            "GPU (a bias against continuous). How much that matters: the same continuous runs repeated at half "
            "and twice --speed (the loop's work then weighs twice or half as much in simulated time):")
        for batch, checks in getattr(args, "speed_checks", {}).items():
            out.append(f"  batch {batch}: " + ", ".join(f"{rate:.2f} samples/s at --speed {speed:g}"
                                                       for speed, rate in checks) + ".")
    return out + [""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=512, help="samples in the workload (default 512)")
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated (default 64,256)")
    parser.add_argument("--reasoning", default="1,5",
                        help="comma-separated multipliers of throughput.py's reasoning lengths (default 1,5)")
    parser.add_argument("--schedules", default="continuous,turn-sync,one-at-a-time")
    parser.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall second (default 10)")
    parser.add_argument("--scale", type=int, default=4,
                        help="real images are this many times smaller on each side than nominal (default 4)")
    parser.add_argument("--kv-tokens", type=int, default=CostModel.kv_tokens, help="KV cache size in tokens")
    parser.add_argument("--more-kv", type=int, default=1_700_000,
                        help="also run the largest batch size with this KV cache size (0: do not)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speed-check", dest="speed_check", action="store_false",
                        help="skip rerunning the first reasoning's continuous runs at half and twice --speed")
    parser.add_argument("--note", default="", help="a sentence added under the numbers")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = parser.parse_args(argv)
    from pr_eval.engines import SCHEDULES
    from pr_eval.protocol import PIXEL_REASONER

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    if not schedules or any(s not in SCHEDULES for s in schedules):
        parser.error(f"schedules must be among {', '.join(SCHEDULES)}")
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    reasonings = [int(r) for r in args.reasoning.split(",") if r.strip()]
    if args.samples < 1 or not batches or min(batches) < 1 or not reasonings or min(reasonings) < 1 or args.scale < 1:
        parser.error("--samples, --batch-sizes, --reasoning and --scale must be at least 1")

    protocol = scaled_protocol(PIXEL_REASONER, args.scale)
    cost = CostModel(kv_tokens=args.kv_tokens)
    tokens = TokenModel(pixel_scale=args.scale, engine_pixels=PIXEL_REASONER.engine_pixels)
    batched = [s for s in schedules if s != "one-at-a-time"]
    runs = [(s, b, args.kv_tokens) for b in batches for s in batched]
    if args.more_kv and args.more_kv != args.kv_tokens:
        runs += [(s, max(batches), args.more_kv) for s in batched]
    if "one-at-a-time" in schedules:
        runs.append(("one-at-a-time", 1, args.kv_tokens))
    results, workloads, identical = [], {}, True
    args.speed_checks = {}
    with SimulatedEngine(cost, tokens, speed=args.speed) as engine:
        for reasoning in reasonings:
            samples, scripts = make_workload(args.samples, seed=args.seed, reasoning=reasoning, scale=args.scale)
            group = []
            for schedule, batch, kv in runs:
                engine.cost = dataclasses.replace(cost, kv_tokens=kv)
                r = run_schedule(engine, samples, scripts, protocol, schedule, batch)
                r["reasoning"] = reasoning
                group.append(r)
                print(f"reasoning x{reasoning} KV {kv} batch {batch} {schedule}: {r['sim_s']:.1f} simulated s "
                      f"({r['samples_per_s']:.2f} samples/s), {r['stats'].steps} steps of {r['mean_seqs']:.1f}, "
                      f"recomputed {r['stats'].recomputed_tokens}, wall {r['wall_s']:.1f} s", flush=True)
            if args.speed_check and reasoning == reasonings[0]:
                # The loop's work overlapping engine steps runs at wall speed: does --speed move the result?
                engine.cost = cost
                for base in [r for r in group if r["schedule"] == "continuous" and r["kv"] == args.kv_tokens]:
                    checks = [(args.speed, base["samples_per_s"])]
                    for speed in (args.speed / 2, args.speed * 2):
                        engine.speed = speed
                        r = run_schedule(engine, samples, scripts, protocol, "continuous", base["batch_size"])
                        identical &= r["records"] == group[0]["records"]
                        checks.append((speed, r["samples_per_s"]))
                        print(f"speed check: continuous batch {base['batch_size']} at --speed {speed:g}: "
                              f"{r['samples_per_s']:.2f} samples/s", flush=True)
                    engine.speed = args.speed
                    args.speed_checks[base["batch_size"]] = checks
            identical &= all(r["records"] == group[0]["records"] for r in group)
            workloads[reasoning] = describe(group[0]["records"])
            results += group
    command = command_line("simulated.py", argv)
    text = section(results, workloads, args, command, identical, cost, tokens, protocol.name, args.note)
    for target, measured, ok in verdicts(results):
        print(f"{target}: {measured} ({'met' if ok else 'NOT met'})")
    print(f"identical trajectories: {identical}")
    publish(text, args.no_write)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
