"""Choosing an engine by name: the one factory behind --engine and lmms-eval's engine= model_arg."""

from __future__ import annotations

import pytest

from pr_eval.engines import EngineError, build_engine
from pr_eval.protocol import PIXEL_REASONER as P

pytestmark = pytest.mark.engine  # starts an engine: not in make test-fast


def test_unknown_engine_names_the_choices():
    with pytest.raises(EngineError, match="unknown engine 'foo'; choose one of: vllm, openai, hf"):
        build_engine("foo", "tiny", P)


def test_openai_engine_needs_a_url():
    with pytest.raises(EngineError, match="needs the server's URL"):
        build_engine("openai", "m", P)


def test_hf_engine_takes_the_context_length(tiny_model):
    engine = build_engine("hf", tiny_model, P, max_model_len=4096)
    assert engine.name == "hf" and engine.max_model_len == 4096
