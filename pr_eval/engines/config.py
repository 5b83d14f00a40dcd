"""The engine configuration: which engine, which model, and every option that shapes the engine,
as one object that each front end builds and nothing else assembles.

    pr-eval --engine ... --base-url ...     EngineConfig.from_options(args)   (pr_eval.cli.run)
    pr-eval ask --engine ...                EngineConfig.from_options(args)   (pr_eval.cli.ask)
    lmms-eval --model_args engine=...,...   EngineConfig.from_model_args(...) (pr_eval.lmms.adapter)

`config.build(protocol)` is `build_engine` with these settings. A new engine option is one field
here, its command-line option (pr_eval.cli.checks' parsers) and its model_arg name below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# lmms-eval model_arg -> field, where the names differ (model_args are lmms-eval's spelling)
MODEL_ARG_FIELDS = {"pretrained": "model", "engine": "kind", "base_url": "base_urls"}


@dataclass(frozen=True)
class EngineConfig:
    kind: str = "vllm"
    # What the engine loads (vllm, hf: a checkpoint path) or asks for by name (openai). Built with
    # `for_model`, which applies the one rule: a served model is named as given, any other is resolved
    # (a built-in name, a local checkpoint or a hub id) to the path the engine loads.
    model: str = "tiny"
    base_urls: tuple[str, ...] = ()         # openai: one server or several (routing)
    api_model: str | None = None            # openai: the served name (default: `model`)
    max_concurrency: int | None = None      # openai: requests in flight (default: the batch size)
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None  # vllm
    gpu_memory_utilization: float | None = None  # vllm
    request_timeout: float | None = None    # openai: seconds per request
    retries: int | None = None              # openai: further attempts after a transient failure
    mm_cache_gb: float | None = None        # vllm: processed-image cache per process
    routing: str | None = None              # openai: sticky or round-robin over several servers
    media_dir: str | None = None            # openai: images as files in a folder the server reads
    pixel_check: bool = True                # openai: refuse a server that does not show the protocol's pixels

    @classmethod
    def for_model(cls, name: str, kind: str = "vllm", **options) -> EngineConfig:
        """The configuration for model `name` (as the user gave it). ModelNotFound (a ValueError)
        when a model to load cannot be found."""
        from ..models import resolve_model

        model = name if kind == "openai" else str(resolve_model(name))
        return cls(kind=kind, model=model, **{k: v for k, v in options.items() if v is not None})

    @classmethod
    def from_options(cls, args, model_path: str | None = None, **overrides) -> EngineConfig:
        """From a parsed command line (`pr-eval`'s or `pr-eval ask`'s; an option a command lacks is
        left at its default). `model_path`: the model already resolved (else `args.model` is)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if f.name not in ("kind", "model") and getattr(args, f.name, None) is not None}
        values["base_urls"] = tuple(getattr(args, "base_url", None) or ())
        values.update(overrides)
        if model_path is not None:
            return cls(kind=args.engine, model=str(model_path), **values)
        return cls.for_model(args.model, args.engine, **values)

    @classmethod
    def from_model_args(cls, **model_args) -> EngineConfig:
        """From lmms-eval's model_args (strings, or numbers already parsed): `pretrained`, `engine`,
        `base_url` (several separated by |) and the fields' own names."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for name, value in model_args.items():
            field = MODEL_ARG_FIELDS.get(name, name)
            if field not in fields:
                raise TypeError(f"unknown engine option {name!r}")
            if value is None or value == "":
                continue
            values[field] = parse_model_arg(field, value)
        name, kind = values.pop("model", "tiny"), values.pop("kind", "vllm")
        return cls.for_model(name, kind, **values)

    def build(self, protocol):
        """The engine (pr_eval.engines.build_engine), its model loaded or its server checked."""
        from . import build_engine  # looked up when called, so a test can lend an engine in its place

        return build_engine(self.kind, self.model, protocol, base_urls=list(self.base_urls) or None,
                            api_model=self.api_model, max_concurrency=self.max_concurrency or 64,
                            max_model_len=self.max_model_len, tensor_parallel_size=self.tensor_parallel_size,
                            gpu_memory_utilization=self.gpu_memory_utilization,
                            request_timeout=self.request_timeout, retries=self.retries,
                            mm_cache_gb=self.mm_cache_gb, routing=self.routing, media_dir=self.media_dir,
                            pixel_check=self.pixel_check)


INTS = ("max_concurrency", "max_model_len", "tensor_parallel_size", "retries")
FLOATS = ("gpu_memory_utilization", "request_timeout", "mm_cache_gb")


def parse_model_arg(field: str, value):
    """A model_arg's value as the field's type: lmms-eval passes strings (or numbers it parsed)."""
    if field in INTS:
        return int(value)
    if field in FLOATS:
        return float(value)
    if field == "pixel_check":
        return parse_bool(value)
    if field == "base_urls":
        return tuple(value.split("|")) if isinstance(value, str) else tuple(value)
    return str(value)


def parse_bool(value) -> bool:
    """On/off model_args: true/false, yes/no, 1/0, on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")
