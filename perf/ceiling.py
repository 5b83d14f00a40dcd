"""The harness's own ceiling: the whole pipeline against an engine that answers at once.

    python perf/ceiling.py                      # writes its section of BENCHMARKS.md
    python perf/ceiling.py --samples 40,120 --no-write

On a GPU the engine gets fast and the harness's own work decides the speed. Here the engine costs
nothing: every turn is answered at once with a scripted text (0 to 4 crop calls per question,
then a boxed letter), so what is left is pr-eval: lmms-eval's task and request handling, loading
and resizing the images, running the crops, encoding images for the transport, the run store,
scoring and the report. Two engines:
- in-process: an `InstantEngine` object (no transport at all);
- over HTTP: pr-eval's real OpenAI engine against a scripted OpenAI-compatible server on
  loopback in another process (`--serve`), so every image goes out with every turn as it goes to
  a `vllm serve`: inline as a data URL, or as a file:// URL with `--media-dir`.

Workload: V*-sized photos (2246x1582 JPEGs: the generator's scenes scaled up with some sensor
noise, so PNG does not compress them unrealistically well), each question with its own crop count
(skewed: 0 crops 20%, 1 30%, 2 25%, 3 15%, 4 10%, chosen from the question's text, so both engines
do the same work). Each configuration runs at two sizes and the MARGINAL wall time per sample,
(T(n2) - T(n1)) / (n2 - n1), is reported, which leaves out what a run pays once (task loading,
lmms-eval's set-up, the report's fixed part); a discarded warm-up run of each engine comes first, so
the first row's smaller run does not also pay the process's one-time start.

Measured in the same process, on the same images: the image work no harness can skip (decode,
input resize, the crops and their resize, single-threaded), per sample; and for each run the CPU
seconds per sample by stage (thread CPU time inside decode, resize, crop, encode, store, scoring;
"other" is the process's CPU beyond them: lmms-eval, JSON, the loop, threads), and the peak
resident memory of pr-eval's process (the scripted server's own is left out). Over HTTP four image transports run: PNG encoded again on
every turn (the behaviour before `EncodedImages`), PNG once per image, BMP inline once per image
(what pr-eval sends a vLLM server by default), and BMP files written once and sent by reference
(`--media-dir`; the scripted server reads each file, as a vLLM server would), so before and after
come from one run on one machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
sys.path.insert(0, str(ROOT / "tests"))
from conftest import JsonHandler, chat_completion  # noqa: E402  (the tests' stub-server pieces)
from memory import PeakSampler, command_line, machine, publish  # noqa: E402

SECTION = "## Harness ceiling: the whole pipeline against an instant engine"
SIZE = (2246, 1582)  # a typical V* image
CROP_MIX = [0, 0, 1, 1, 1, 2, 2, 2, 3, 4]  # k crops for hash(question) % 10 (skewed, as real runs)
BOXES = [[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.7, 0.7], [0.5, 0.1, 0.9, 0.5], [0.2, 0.5, 0.6, 0.9]]


# --- The script both engines follow ------------------------------------------------------------------

def crops_of(question: str) -> int:
    return CROP_MIX[int(hashlib.sha256(question.encode()).hexdigest(), 16) % 10]


def turn_text(question: str, turn: int) -> str:
    """The scripted assistant turn `turn` (0-based) of a question: its crops, then an answer."""
    if turn < crops_of(question):
        box = BOXES[turn % len(BOXES)]
        target = 1 if turn == 0 else turn + 1  # a crop of the previous crop after the first
        return ('Let me look closer.\n<tool_call>\n{"name": "crop_image_normalized", "arguments": '
                f'{{"bbox_2d": {box}, "target_image": {target}}}}}\n</tool_call>')
    return "I can see it now. \\boxed{A}"


def conversation_turn(messages: list[dict]) -> tuple[str, int]:
    """(the question's text, the index of the turn asked for) of a neutral or OpenAI conversation."""
    user = next(m for m in messages if m["role"] == "user")
    content = user["content"]
    question = content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")
    return question, sum(1 for m in messages if m["role"] == "assistant")


class InstantEngine:
    """Answers every request at once with its scripted turn (a ContinuousEngine)."""

    name = "instant"

    def generate(self, requests, decoding):
        return [self._answer(r) for r in requests]

    def submit(self, request, decoding):
        future: Future = Future()
        future.set_result(self._answer(request))
        return future

    def _answer(self, request):
        from pr_eval.engines.base import GenerationResult

        question, turn = conversation_turn(request.messages)
        return GenerationResult(text=turn_text(question, turn), prompt_tokens=1000, output_tokens=40,
                                finish_reason="stop", stop="<|im_end|>")

    def close(self):
        pass


class Scripted(JsonHandler):
    """The same script as an OpenAI-compatible chat-completions server."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [{"id": "instant", "object": "model"}]})

    def do_POST(self):
        messages = self.read_json()["messages"]
        for path in file_paths(messages):  # read what a server would read (vLLM: the file's bytes)
            with open(path, "rb") as f:
                f.read()
        question, turn = conversation_turn(messages)
        self.send_json(200, chat_completion(turn_text(question, turn) + "<|im_end|>", "instant",
                                            prompt_tokens=1000, completion_tokens=40))


def file_paths(messages: list[dict]) -> list[str]:
    """The local files of a conversation's `file://` image URLs (pr-eval's --media-dir)."""
    from pr_eval.engines.media import file_path

    return [file_path(part["image_url"]["url"]) for m in messages if isinstance(m["content"], list)
            for part in m["content"] if part["type"] == "image_url" and part["image_url"]["url"].startswith("file:")]


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Scripted)
    server.daemon_threads = True
    server.serve_forever()


# --- Data ------------------------------------------------------------------------------------------------

def make_data(folder: Path, n: int) -> Path:
    """DIR/vstar/ in the hub schema: n questions over 40 V*-sized photos."""
    import numpy as np
    from memory import make_data as make_small
    from PIL import Image

    make_small(folder, n)
    rng = np.random.default_rng(0)
    for path in sorted((folder / "vstar").rglob("*.jpg")):
        image = Image.open(path).convert("RGB").resize(SIZE, Image.Resampling.BICUBIC)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (SIZE[1], SIZE[0], 3)).astype(np.int16)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return folder


def unskippable_ms(folder: Path) -> float:
    """Decode, input resize, crops and crop resizes of every question, single-threaded (ms/question),
    on the documents and images the run reads (`pr_eval.lmms.task`'s)."""
    from pr_eval.lmms import task as lmms_task
    from pr_eval.data.imaging import fit_image
    from pr_eval.protocol import PIXEL_REASONER as P

    _source, docs = lmms_task._documents("vstar", str(folder))
    started = time.thread_time()
    for doc in docs:
        source = fit_image(lmms_task.doc_to_visual(doc)[0], P.input_pixels)
        for k in range(crops_of(P.user_text(lmms_task.doc_to_text(doc)))):
            x1, y1, x2, y2 = BOXES[k % len(BOXES)]
            w, h = source.size
            box = (max(0, x1 - 0.1) * w, max(0, y1 - 0.1) * h, min(1, x2 + 0.1) * w, min(1, y2 + 0.1) * h)
            source = fit_image(source.crop(box), P.crop_pixels)
    return 1000 * (time.thread_time() - started) / len(docs)


# --- Stage timing ----------------------------------------------------------------------------------

class Stages:
    """Thread CPU seconds spent inside a few functions, by stage, while patched in."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._undo = []

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


MODES = {"in-process": ["none"], "http": ["png-every-turn", "png-once", "bmp-once", "bmp-files"]}
MODE_LABELS = {"none": "-", "png-every-turn": "PNG, every turn (before)", "png-once": "PNG, once per image",
               "bmp-once": "BMP inline, once per image (default)",
               "bmp-files": "BMP files, once per image (`--media-dir`)"}


def patch_stages(stages: Stages, mode: str) -> None:
    from pr_eval.data import load as data
    from pr_eval.families import pixel_reasoner as family  # calls fit_image and execute by these names
    from pr_eval.scoring import metrics
    from pr_eval.run import store
    from pr_eval.engines import media

    stages.wrap(data, "load_image", "decode")
    stages.wrap(family, "fit_image", "resize")
    stages.wrap(family, "execute", "crop")
    stages.wrap(media, "encode_base64", "encode")
    stages.wrap(media.SharedFolder, "make", "encode")  # --media-dir: the file's write
    stages.wrap(store.RunStore, "append", "store")
    stages.wrap(metrics, "sample_metrics", "scoring")
    if mode == "png-every-turn":  # the behaviour before EncodedImages: every turn encodes every image again
        stages._undo.append((media.EncodedImages, "base64", media.EncodedImages.base64))
        media.EncodedImages.base64 = lambda self, image: media.encode_base64(image, "png")


def one_run(engine_kind: str, n: int, data: Path, port: int | None, mode: str) -> dict:
    from pr_eval.engines.media import EncodedImages
    from pr_eval.engines.openai import OpenAIEngine
    from pr_eval.run.evaluate import evaluate

    os.environ["PR_EVAL_DATA"] = str(data)
    stages = Stages()
    patch_stages(stages, mode)
    media = tempfile.TemporaryDirectory()
    engine = InstantEngine() if engine_kind == "in-process" else \
        OpenAIEngine(f"http://127.0.0.1:{port}/v1", "instant", max_concurrency=64,
                     media_dir=media.name if mode == "bmp-files" else None)
    if mode.startswith("png"):
        engine.images = EncodedImages("png")
    sampler = PeakSampler(children=False)  # pr-eval's process, not the scripted server's
    sampler.start()
    cpu_before = _cpu()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as out, media:
            run = evaluate(model="instant", model_path="instant", tasks=["pr_vstar"], limit=n, output=out,
                           engine=engine, batch_size=64)
        seconds = time.perf_counter() - started
    finally:
        stages.undo()
        sampler.stop.set()
        sampler.join()
        engine.close()
    cpu = _cpu() - cpu_before
    assert run.counts["pr_vstar"] == n and run.metrics["pr_vstar"]["error_rate"] == 0, run.metrics
    return {"engine": engine_kind, "n": n, "mode": mode, "seconds": seconds, "cpu": cpu,
            "stages": dict(stages.seconds), "peak_mib": sampler.peak / 2 ** 20,
            "calls": run.metrics["pr_vstar"]["tool_calls"]}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- The section ---------------------------------------------------------------------------------

STAGES = ("decode", "resize", "crop", "encode", "store", "scoring")


def marginal(small: dict, large: dict) -> dict:
    dn = large["n"] - small["n"]
    per = {s: 1000 * (large["stages"].get(s, 0) - small["stages"].get(s, 0)) / dn for s in STAGES}
    cpu = 1000 * (large["cpu"] - small["cpu"]) / dn
    per["other"] = cpu - sum(per.values())
    return {"wall_ms": 1000 * (large["seconds"] - small["seconds"]) / dn, "cpu_ms": cpu, "stages": per,
            "samples_per_s": large["n"] / large["seconds"], "peak_mib": max(small["peak_mib"], large["peak_mib"])}


def section(rows: list[tuple[str, str, dict]], floor_ms: float, sizes: list[int], command: str) -> str:
    lines = [SECTION, "", f"Command: `{command}`  ", f"Machine: {machine()}  ", f"Date: {time.strftime('%Y-%m-%d')}", "",
             f"{sizes[0]} and {sizes[1]} V* questions (2246x1582 JPEGs), 0-4 crops each (mean "
             f"{sum(CROP_MIX) / len(CROP_MIX):.1f}), answered at once by a scripted engine; marginal figures per "
             f"question between the two sizes. The image work no harness can skip (decode, input resize, crops "
             f"and their resize, one thread), timed in the same process on the same images: **{floor_ms:.0f} ms "
             "per question**.", "",
             "| engine | encoding | wall ms/question (marginal) | x unskippable | samples/s (larger run) | CPU ms/question | "
             + " | ".join(STAGES) + " | other | peak RSS MiB (pr-eval) |",
             "|---|---|---|---|---|---|" + "---|" * (len(STAGES) + 2)]
    for engine, mode, m in rows:
        lines.append(f"| {engine} | {MODE_LABELS[mode]} | {m['wall_ms']:.0f} | "
                     f"{m['wall_ms'] / floor_ms:.1f}x | {m['samples_per_s']:.2f} | {m['cpu_ms']:.0f} | "
                     + " | ".join(f"{m['stages'][s]:.0f}" for s in STAGES) + f" | {m['stages']['other']:.0f} | "
                     f"{m['peak_mib']:.0f} |")
    lines += ["", "Stages are CPU ms per question inside: decode `imaging.load_image`, resize `imaging.fit_image` (inputs), "
              "crop `tools.execute` (the cut and the crop's resize), encode `media.encode_base64` (over HTTP only), store "
              "`RunStore.append` (the shown images as files, the journal line), scoring `metrics.sample_metrics`; "
              "other: the rest of the process's CPU (lmms-eval, the loop, JSON, the HTTP client and its threads). "
              "Over HTTP the scripted server runs in its own process, not counted here."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default="40,120", help="the two run sizes (default 40,120)")
    parser.add_argument("--engines", default="in-process,http")
    parser.add_argument("--modes", default=None, help="http image transports to run (default: all of "
                        + ", ".join(MODES["http"]) + ")")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pr_eval.run import quiet

    quiet.enable()
    sizes = [int(x) for x in args.samples.split(",")]
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = make_data(Path(tmp) / "data", max(sizes))
            floor = unskippable_ms(data)
            time.sleep(1.0)
            # a discarded warm-up run of each engine first: the first run of a process pays once for
            # imports, lmms-eval's set-up and first calls, which would otherwise fall into the
            # smaller size of whichever row came first and make its marginal figure look too good
            for engine in args.engines.split(","):
                one_run(engine, 2, data, port, "none" if engine == "in-process" else "bmp-once")
            for engine in args.engines.split(","):
                modes = MODES[engine] if engine == "in-process" or not args.modes else args.modes.split(",")
                for mode in modes:
                    runs = [one_run(engine, n, data, port, mode) for n in sizes]
                    rows.append((engine, mode, marginal(*runs)))
                    print(engine, mode, {k: round(v, 1) if isinstance(v, float) else v
                                         for k, v in rows[-1][2].items() if k != "stages"}, file=sys.stderr)
    finally:
        server.terminate()
    publish(section(rows, floor, sizes, command_line("ceiling.py", argv)), args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
