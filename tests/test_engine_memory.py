"""The CPU engine's memory follows the model, not the machine (issue 26: `make demo` needed
10.5 GB because vLLM reserved a quarter of RAM for a 6.6 MB model's KV cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pr_eval.engines import vllm as engine_module
from pr_eval.engines.vllm import CPU_KV_SEQUENCES, cpu_kv_cache_bytes, default_engine_args, kv_bytes_per_token
from pr_eval.protocol import PIXEL_REASONER

pytestmark = pytest.mark.engine  # starts an engine: not in make test-fast

GIB = 2 ** 30


def config(folder: Path, **fields) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields))
    return str(folder)


def test_kv_bytes_per_token_read_from_the_models_config(tmp_path, tiny_model):
    # Qwen2.5-VL-7B: 28 layers, 4 KV heads of 128 (hidden 3584 / 28 heads), float32 keys and values
    qwen7b = config(tmp_path / "7b", num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_size=3584)
    assert kv_bytes_per_token(qwen7b) == 2 * 28 * 4 * 128 * 4
    tiny = json.loads((Path(tiny_model) / "config.json").read_text())
    text = tiny.get("text_config") or tiny
    assert kv_bytes_per_token(tiny_model) == (2 * text["num_hidden_layers"] * text["num_key_value_heads"]
                                              * text["head_dim"] * 4)


def test_the_cache_holds_full_length_sequences_capped_by_a_share_of_ram(tmp_path):
    small = config(tmp_path / "small", num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, hidden_size=128)
    assert cpu_kv_cache_bytes(small, 18192, total_ram=24 * GIB) == 2 * 3 * 64 * 4 * 18192 * CPU_KV_SEQUENCES
    big = config(tmp_path / "big", num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, hidden_size=3584)
    assert cpu_kv_cache_bytes(big, 18192, total_ram=24 * GIB) == 6 * GIB  # a quarter of RAM, as before
    assert cpu_kv_cache_bytes(config(tmp_path / "unknown"), 18192) is None  # unknown: vLLM's share of RAM decides


def test_engine_args_on_cpu(monkeypatch, tiny_model):
    monkeypatch.setattr(engine_module, "_on_cpu", lambda: True)
    args = default_engine_args(PIXEL_REASONER, tiny_model)
    assert args["kv_cache_memory_bytes"] == cpu_kv_cache_bytes(tiny_model, PIXEL_REASONER.max_model_len) < GIB
    assert "gpu_memory_utilization" not in args and args["mm_processor_cache_gb"] <= 1
    longer = default_engine_args(PIXEL_REASONER, tiny_model, max_model_len=4 * PIXEL_REASONER.max_model_len)
    assert longer["kv_cache_memory_bytes"] == 4 * args["kv_cache_memory_bytes"]
    assert default_engine_args(PIXEL_REASONER)["gpu_memory_utilization"] == 0.25  # no model to size it by


def test_the_real_engine_reserves_what_the_model_needs(engine, tiny_model):
    """The shared tiny engine runs with the sized cache: vLLM's own config shows it, and the
    blocks it made hold the CPU_KV_SEQUENCES full-length sequences."""
    cache = engine.llm.llm_engine.vllm_config.cache_config
    assert cache.kv_cache_memory_bytes == cpu_kv_cache_bytes(tiny_model, PIXEL_REASONER.max_model_len) < GIB
    blocks = cache.num_gpu_blocks
    if blocks is not None:
        assert blocks * cache.block_size >= PIXEL_REASONER.max_model_len * CPU_KV_SEQUENCES * 0.9


@pytest.mark.parametrize("share", [0.05])
def test_a_share_asked_for_by_name_wins(share, tiny_model, monkeypatch):
    """--gpu-memory-utilization still sets vLLM's share of RAM (the sizing steps aside)."""
    captured = {}

    class FakeLLM:
        def __init__(self, model, **args):
            captured.update(args)
            raise RuntimeError("stop here")

    import vllm

    monkeypatch.setattr(vllm, "LLM", FakeLLM)
    monkeypatch.setattr(engine_module, "_on_cpu", lambda: True)
    with pytest.raises(engine_module.EngineError):
        engine_module.VLLMEngine(tiny_model, PIXEL_REASONER, gpu_memory_utilization=share)
    assert captured["gpu_memory_utilization"] == share and "kv_cache_memory_bytes" not in captured
