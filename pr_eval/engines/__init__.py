"""Engines turn conversations into one assistant turn each. The loop never batches by hand: the
continuous schedule hands each trajectory's next turn to `submit` (ContinuousEngine: vllm, openai)
the moment it is ready and the engine batches whatever is in flight; the turn-synchronous one
hands every unfinished trajectory of a turn to `Engine.generate` at once (every engine).

    config.py    EngineConfig: which engine and model, and every engine option, built once by each
                 front end (pr-eval, pr-eval ask, lmms-eval's model_args)
    base.py      the Engine interface, requests and results, retries
    vllm.py      vLLM in this process (offline), continuous batching
    openai.py    OpenAI-compatible servers (vLLM serve, ...): concurrency, routing, retries
    served.py    what a server must show to be used (its pixel bounds, its model)
    hf.py        transformers, one request at a time (debugging; GPU machines without vLLM)
    media.py     how the openai engine sends images: lossless, each encoded once per trajectory
    deadline.py  a request's time limit
    reaper.py    engine processes die with their run

`build_engine` is the one place that chooses; `EngineConfig.build` calls it."""

from __future__ import annotations

from .base import (DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, ContinuousEngine, Engine, EngineError,
                    GenerationRequest, GenerationResult, can_submit)

ENGINES = ("vllm", "openai", "hf")
# How trajectories share an engine (pr_eval.loop.steps.run_samples); the first is the default.
SCHEDULES = ("continuous", "turn-sync", "one-at-a-time")


def build_engine(kind: str, model: str, protocol, *, base_urls=None, api_model: str | None = None,
                 max_concurrency: int = 64, max_model_len: int | None = None,
                 tensor_parallel_size: int | None = None, gpu_memory_utilization: float | None = None,
                 request_timeout: float | None = None, retries: int | None = None,
                 mm_cache_gb: float | None = None, routing: str | None = None,
                 media_dir: str | None = None, pixel_check: bool = True) -> Engine:
    """The engine `kind` names, the one place that chooses, reached through `EngineConfig.build`
    (what `pr-eval`, `pr-eval ask` and lmms-eval's model_args configure).

    `model` is a loadable checkpoint for vllm and hf, and the default served name for openai
    (which loads nothing itself; `api_model` overrides the name). `request_timeout` (seconds per
    request), `retries` (further attempts after a transient failure) and `routing` (how turns
    are spread over several servers: sticky by trajectory, or round-robin), `media_dir` (images
    as files in a folder the server reads, instead of inline) and `pixel_check` (refuse a server
    that does not show images at the protocol's pixel bounds, pr_eval.engines.served) apply to openai;
    `mm_cache_gb` (vLLM's processed-image cache per process, 4 GiB by default) to vllm."""
    if kind == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(model, protocol, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
                          gpu_memory_utilization=gpu_memory_utilization, mm_processor_cache_gb=mm_cache_gb)
    if kind == "hf":
        from .hf import HFEngine

        return HFEngine(model, protocol, max_model_len=max_model_len)
    if kind == "openai":
        from .openai import OpenAIEngine

        if not base_urls:
            raise EngineError("the openai engine needs the server's URL (pr-eval --base-url URL; "
                              "lmms-eval model_args base_url=URL, several separated by |)")
        # as many requests in flight as trajectories advance together: the server batches them,
        # as the offline engine batches one turn of the whole batch
        limits = {k: v for k, v in (("timeout", request_timeout), ("retries", retries), ("routing", routing),
                                    ("media_dir", media_dir)) if v is not None}
        return OpenAIEngine(base_urls, api_model or model, max_concurrency=max_concurrency, protocol=protocol,
                            pixel_check=pixel_check, **limits)
    raise EngineError(f"unknown engine {kind!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "ENGINES", "ContinuousEngine", "Engine", "EngineError", "GenerationRequest", "GenerationResult",
           "build_engine", "can_submit"]
