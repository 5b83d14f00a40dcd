"""One engine configuration: `pr-eval`, `pr-eval ask` and lmms-eval's model_args all build an
`EngineConfig`, and the engine is built from it alone (no engine is started here: `build_engine`
is replaced by a recorder)."""

from __future__ import annotations

import dataclasses

import pytest

from pr_eval import engines
from pr_eval.cli import ask, run
from pr_eval.engines.config import EngineConfig, parse_bool
from pr_eval.lmms.adapter import ENGINE_MODEL_ARGS, PixelReasoner
from pr_eval.models import DEMO_MODEL_DIR, ModelNotFound
from pr_eval.protocol import PIXEL_REASONER

SERVED = ["--model", "served-name", "--engine", "openai", "--base-url", "http://a:1/v1", "--base-url",
          "http://b:2/v1", "--request-timeout", "7", "--retries", "2", "--no-pixel-check"]


@pytest.fixture
def built(monkeypatch):
    """What `build_engine` was asked for, instead of an engine."""
    calls = []

    def build_engine(kind, model, protocol, **options):
        calls.append((kind, model, protocol.name, options))
        return "engine"

    monkeypatch.setattr(engines, "build_engine", build_engine)
    return calls


def test_the_model_rule_is_applied_once_for_every_front_end():
    served = EngineConfig.for_model("any/served-name", "openai")
    assert served.model == "any/served-name"  # a served model is named, not looked up
    assert EngineConfig.for_model("demo").model == str(DEMO_MODEL_DIR)  # a built-in name is resolved
    with pytest.raises(ModelNotFound):
        EngineConfig.for_model("./no/such/checkpoint", "vllm")


def test_the_command_lines_and_the_model_args_give_the_same_configuration():
    args = run.build_parser().parse_args([*SERVED, "--tasks", "vstar", "--batch-size", "8"])
    from_cli = EngineConfig.from_options(args, max_concurrency=args.batch_size)
    asked = ask.build_parser().parse_args([*SERVED, "--image", "x.png", "question"])
    from_ask = EngineConfig.from_options(asked, max_concurrency=8)
    from_lmms = PixelReasoner(pretrained="served-name", engine="openai", base_url="http://a:1/v1|http://b:2/v1",
                              request_timeout="7", retries="2", pixel_check="false", batch_size="8").engine_config
    assert from_cli == from_ask == from_lmms
    assert from_cli.base_urls == ("http://a:1/v1", "http://b:2/v1") and from_cli.pixel_check is False
    assert (from_cli.request_timeout, from_cli.retries, from_cli.max_concurrency) == (7.0, 2, 8)


def test_build_hands_every_setting_to_build_engine(built):
    config = EngineConfig(kind="openai", model="m", base_urls=("http://a/v1",), api_model="served",
                          max_concurrency=3, request_timeout=5.0, retries=0, routing="round-robin",
                          media_dir="/srv/media", pixel_check=False)
    assert config.build(PIXEL_REASONER) == "engine"
    kind, model, protocol, options = built[0]
    assert (kind, model, protocol) == ("openai", "m", PIXEL_REASONER.name)
    assert options["base_urls"] == ["http://a/v1"] and options["api_model"] == "served"
    assert (options["max_concurrency"], options["request_timeout"], options["retries"]) == (3, 5.0, 0)
    assert (options["routing"], options["media_dir"], options["pixel_check"]) == ("round-robin", "/srv/media", False)


def test_every_field_is_an_option_of_pr_eval_and_a_model_arg():
    """A new engine option is one field: the command line and lmms-eval's model_args reach it."""
    parser = run.build_parser()
    dests = {action.dest for action in parser._actions}
    spelled = {"kind": "engine", "model": "model", "base_urls": "base_url", "max_concurrency": "batch_size"}
    for field in dataclasses.fields(EngineConfig):
        assert spelled.get(field.name, field.name) in dests, f"pr-eval has no option for EngineConfig.{field.name}"
        if field.name not in ("kind", "model", "base_urls"):
            assert field.name in ENGINE_MODEL_ARGS, f"lmms-eval's model_args cannot set {field.name}"


def test_model_args_are_parsed_and_bad_ones_refused():
    config = EngineConfig.from_model_args(pretrained="demo", max_model_len="4096", gpu_memory_utilization="0.5",
                                          tensor_parallel_size=2, mm_cache_gb="0", max_concurrency="")
    assert (config.kind, config.model) == ("vllm", str(DEMO_MODEL_DIR))
    assert (config.max_model_len, config.gpu_memory_utilization, config.tensor_parallel_size) == (4096, 0.5, 2)
    assert config.mm_cache_gb == 0.0 and config.max_concurrency is None
    with pytest.raises(TypeError, match="unknown engine option 'no_such'"):
        EngineConfig.from_model_args(no_such="1")
    with pytest.raises(ValueError):
        EngineConfig.from_model_args(pretrained="demo", max_model_len="many")
    assert [parse_bool(v) for v in ("true", "No", "1", "off", True)] == [True, False, True, False, True]
    with pytest.raises(ValueError, match="expected true or false"):
        parse_bool("maybe")


def test_the_adapter_takes_a_configuration_and_builds_it_on_first_use(built):
    model = PixelReasoner(engine_config=EngineConfig(model="m"), batch_size=16)
    assert not model.engine_built and model.engine_config.max_concurrency == 16  # a batch in flight
    assert model.engine == "engine" and model.engine_built
    assert [(kind, name) for kind, name, _, _ in built] == [("vllm", "m")]
