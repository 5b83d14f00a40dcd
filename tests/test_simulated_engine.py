"""The simulated GPU engine of perf/simulated.py: its cost model, its prefix and KV caches,
and that it drives the real loop to the same trajectories under all three schedules (no vLLM)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from pr_eval.loop import steps as loop
from pr_eval.engines.base import GenerationRequest
from pr_eval.protocol import PIXEL_REASONER, Decoding
from pr_eval.loop.tools import crop_call

ROOT = Path(__file__).resolve().parents[1]
FAST = 1e4  # simulated seconds per wall second: the tests barely sleep


def _load():
    spec = importlib.util.spec_from_file_location("simulated_benchmark", ROOT / "perf" / "simulated.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sim = _load()


def text_request(text: str, output: str) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": [loop.text_part(text)]}], images=[],
                             constraint=re.escape(output))


def noise(width, height, seed=0):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def test_the_engine_writes_the_forced_turn_exactly():
    for text in ["The detail is small.\n" + crop_call([0.1, 0.2, 0.6, 0.7], target=2), "\\boxed{B}", "a+b (c) [d] {e}"]:
        assert sim.scripted_text(re.escape(text)) == text
    with sim.SimulatedEngine(speed=FAST) as engine:
        [result] = engine.generate([text_request("hello", "x = 1 \\boxed{C}")], Decoding())
    assert (result.text, result.stop, result.finish_reason, result.error) == ("x = 1 \\boxed{C}", "<|im_end|>", "stop", None)


def test_one_request_costs_what_the_model_says():
    cost = sim.CostModel(c0_ms=5.0, c_seq_ms=0.5, c_kv_us=10.0, c_prefill_ms=0.1, c_vision_ms=0.0)
    with sim.SimulatedEngine(cost, speed=FAST) as engine:
        [result] = engine.generate([text_request("x" * 40, "y" * 20)], Decoding())
        stats = engine.stats
    prompt = 5 + 10 + 3          # message overhead + 40 chars / 4 + reply header
    output = 20 // 4 + 1         # + <|im_end|>
    assert (result.prompt_tokens, result.output_tokens) == (prompt, output)
    # step 1 prefills the prompt and yields the first token; then one step per token, each reading
    # the context so far
    expected = (5.0 + 0.5 + 0.1 * prompt) + sum(5.0 + 0.5 + 10.0 / 1000 * (prompt + k) for k in range(1, output))
    assert stats.steps == output
    assert stats.busy_s == pytest.approx(expected / 1000)
    assert stats.fixed_s == pytest.approx(output * 5.0 / 1000)
    assert stats.prefill_tokens == prompt and stats.cached_tokens == 0


def test_batching_shares_the_fixed_cost_of_a_step():
    cost = sim.CostModel(c0_ms=5.0, c_seq_ms=0.1, c_kv_us=0.0, c_prefill_ms=0.01)
    with sim.SimulatedEngine(cost, speed=FAST) as engine:
        engine.generate([text_request("a" * 40, "y" * 40)], Decoding())
        alone = engine.stats.busy_s
        engine.reset()
        engine.generate([text_request(c * 40, "y" * 40) for c in "bcdefgh"], Decoding())
        together = engine.stats
    assert together.steps == 11  # seven requests of 11 output tokens decode side by side
    assert together.seqs == 7 * 11
    assert together.busy_s < 1.5 * alone < 7 * alone


def test_prefill_is_chunked_within_the_step_budget():
    cost = sim.CostModel(max_batched_tokens=8)
    with sim.SimulatedEngine(cost, speed=FAST) as engine:
        [result] = engine.generate([text_request("x" * 40, "y")], Decoding())  # 18 prompt tokens, 2 output
        assert result.error is None
        assert engine.stats.steps == 4  # 8 + 8 + 2 prefill (with the first token), then the second token


def test_images_count_at_their_nominal_size_within_the_engine_bounds():
    tokens = sim.TokenModel(pixel_scale=4, engine_pixels=PIXEL_REASONER.engine_pixels)
    assert tokens.image(noise(504, 364)) == (2016 // 28) * (1456 // 28)
    assert 5000 <= tokens.image(noise(1000, 1000)) <= 5120   # clamped to 4,014,080 pixels
    assert tokens.image(noise(56, 56)) >= 512                # raised to 401,408 pixels
    small = sim.scaled_protocol(PIXEL_REASONER, 4)
    assert small.input_pixels.max_pixels == PIXEL_REASONER.input_pixels.max_pixels // 16


def _one_crop_sample():
    from pr_eval.trajectory import Sample

    image = noise(640, 480, seed=3)
    sample = Sample("sim", "one", "What is it?\n(A) x\n(B) y", "A", load_images=lambda: [image])
    scripts = {"one": ["Look closer. " + crop_call([0.2, 0.2, 0.7, 0.7]), "Now I see. \\boxed{A}"]}
    return sample, scripts


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_a_later_turn_prefills_only_its_new_turn(prefix_cache):
    sample, scripts = _one_crop_sample()
    with sim.SimulatedEngine(speed=FAST, prefix_cache=prefix_cache) as engine:
        [traj] = loop.run_samples(engine, [sample], PIXEL_REASONER, guide=loop.scripted(scripts))
        stats = engine.stats
    assert traj.stop_reason == "answered" and len(traj.tool_calls) == 1 and traj.tool_calls[0].ok
    first, second = (g.prompt_tokens for g in traj.generations)
    assert stats.requests == 2 and stats.prompt_tokens == first + second
    if prefix_cache:
        # the second turn reuses the first prompt and the reply; it prefills the crop's turn only
        assert stats.cached_tokens >= first + traj.generations[0].output_tokens
        assert stats.prefill_tokens == first + second - stats.cached_tokens
    tm = sim.TokenModel()
    source, crop = (tm.image(info) for info in traj.images)
    if prefix_cache:  # each image goes through the vision tower once
        assert stats.image_tokens == source + crop
    else:
        assert stats.cached_tokens == 0 and stats.prefill_tokens == first + second
        assert stats.image_tokens == 2 * source + crop


def test_a_full_kv_cache_evicts_idle_prefixes_and_refuses_what_never_fits():
    requests = [text_request(c * 400, "y" * 40) for c in "abcdef"]
    with sim.SimulatedEngine(sim.CostModel(kv_tokens=250), speed=FAST) as engine:
        first = engine.generate(requests[:3], Decoding())   # 3 x (108 + 11) tokens: two at a time
        assert all(r.error is None for r in first)
        assert engine.stats.peak_seqs == 2
        engine.generate(requests[3:], Decoding())
        assert engine.stats.evicted_tokens > 0
        [refused] = engine.generate([text_request("z" * 2000, "y")], Decoding())
    assert refused.error and "KV cache" in refused.error


def test_the_real_loop_gives_identical_trajectories_under_every_schedule():
    protocol = sim.scaled_protocol(PIXEL_REASONER, 4)
    samples, scripts = sim.make_workload(12, seed=1, reasoning=1, scale=4)
    tokens = sim.TokenModel(pixel_scale=4, engine_pixels=PIXEL_REASONER.engine_pixels)
    runs = {}
    with sim.SimulatedEngine(tokens=tokens, speed=500) as engine:
        for schedule in ("continuous", "turn-sync", "one-at-a-time"):
            runs[schedule] = sim.run_schedule(engine, samples, scripts, protocol, schedule, batch_size=4)
    records = [r["records"] for r in runs.values()]
    assert records[0] == records[1] == records[2]
    assert [len(r["tool_calls"]) for r in records[0]] == [len(scripts[s.sample_id]) - 1 for s in samples]
    assert all(r["stop_reason"] == "answered" and all(c["ok"] for c in r["tool_calls"]) for r in records[0])
    rate = {k: r["samples_per_s"] for k, r in runs.items()}
    assert rate["continuous"] > rate["one-at-a-time"] and rate["turn-sync"] > rate["one-at-a-time"]
    assert runs["one-at-a-time"]["stats"].peak_seqs == 1
    assert runs["continuous"]["stats"].turnaround_wall  # the loop's turnaround was measured


def test_the_benchmark_prints_its_section(capsys):
    code = sim.main(["--samples", "4", "--batch-sizes", "2", "--reasoning", "1", "--speed", "1000",
                     "--no-speed-check", "--more-kv", "0", "--no-write"])
    out = capsys.readouterr().out
    assert code == 0
    assert sim.SECTION in out and "simulation, not a measurement" in out
    assert "| identical trajectories across all schedules, batch sizes, KV sizes and speeds | yes | yes |" in out


def test_a_closed_engine_answers_with_an_error():
    engine = sim.SimulatedEngine(speed=FAST)
    engine.close()
    [result] = engine.generate([text_request("x", "y")], Decoding())
    assert result.error


@pytest.mark.parametrize("kv_tokens, recomputed", [(250, True), (100_000, False)])
def test_an_evicted_conversation_is_prefilled_again(kv_tokens, recomputed):
    first = text_request("a" * 400, "y" * 40)
    reply = {"role": "assistant", "content": [loop.text_part("y" * 40)]}
    again = GenerationRequest(messages=first.messages + [reply, {"role": "user", "content": [loop.text_part("more")]}],
                              images=[], constraint=re.escape("done"))
    with sim.SimulatedEngine(sim.CostModel(kv_tokens=kv_tokens), speed=FAST) as engine:
        engine.generate([first], Decoding())
        engine.generate([text_request(c * 400, "y" * 40) for c in "bc"], Decoding())  # fill the cache
        before = engine.stats.prefill_tokens
        [result] = engine.generate([again], Decoding())
        prefilled = engine.stats.prefill_tokens - before
    assert result.error is None
    if recomputed:
        assert engine.stats.recomputed_tokens > 0 and prefilled > 100
    else:  # only the new user turn and the reply header
        assert engine.stats.recomputed_tokens == 0 and prefilled == 5 + 1 + 3
