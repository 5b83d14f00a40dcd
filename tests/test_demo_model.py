"""The demo model: its training inputs are what the engines show, its training is reproducible,
and the committed checkpoint really zooms under the real vLLM engine and lmms-eval task."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import load_script

from pr_eval.loop import steps as loop
from pr_eval.benchmarks import zoom as synthetic
from pr_eval.engines.base import GenerationRequest, to_chat_messages
from pr_eval.models import DEMO_MODEL_DIR, ModelNotFound, demo_model_path, resolve_model
from pr_eval.protocol import BLIND_TOOL, PIXEL_REASONER
from pr_eval.scoring.answers import letter_accuracy, parse_options

pytestmark = pytest.mark.engine  # starts an engine: not in make test-fast

train_demo = load_script("train_demo")


def test_demo_resolves_to_the_committed_checkpoint(tmp_path):
    path = resolve_model("demo")
    assert path == str(DEMO_MODEL_DIR)
    done = json.loads((DEMO_MODEL_DIR / "DONE").read_text())
    weights = (DEMO_MODEL_DIR / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == done["weights_sha256"]
    assert len(weights) < 12e6  # small enough to commit
    with pytest.raises(ModelNotFound, match="scripts/train_demo.py --seed 0 --output"):
        demo_model_path(tmp_path)


def test_scripted_trajectories_are_what_the_engine_would_be_shown():
    """The training sequence starts with exactly the tokens and pixels the transformers engine
    builds for the same conversation, and only the assistant turns carry labels."""
    from pr_eval.engines.hf import HFEngine

    engine = HFEngine(str(DEMO_MODEL_DIR), PIXEL_REASONER)
    item = synthetic.make_benchmark(96)[7]
    traj = train_demo.scripted_trajectory(item)
    assert traj.tool_calls[0].ok and [i.kind for i in traj.images] == ["input", "crop"]
    batch = train_demo.model_inputs(engine.processor, traj)
    # the prompt of the answer turn: everything before the last assistant message
    prompt = engine.inputs(GenerationRequest(messages=traj.messages[:-1], images=traj.pixels))
    n = prompt["input_ids"].shape[1]
    assert batch["input_ids"][0, :n].tolist() == prompt["input_ids"][0].tolist()
    assert batch["pixel_values"].equal(prompt["pixel_values"])
    assert batch["image_grid_thw"].tolist() == [[1, 46, 46], [1, 46, 46]]  # both seen at 644x644
    tokenizer = engine.tokenizer
    supervised = tokenizer.decode([t for t in batch["labels"][0].tolist() if t != -100], skip_special_tokens=False)
    turns = [train_demo.zoom_turn(item), train_demo.answer_turn(item)]
    assert supervised == "<|im_end|>".join(turns) + "<|im_end|>"
    engine.close()


def test_training_is_deterministic(tmp_path):
    """Three steps (a warm-up step and two whole trajectories) twice with the same seed: the same
    tokenizer, losses and bit-identical weights; another seed gives other weights."""
    def train(name, seed):
        record = train_demo.train(tmp_path / name, seed=seed, steps=3, warmup=2, threads=1, log_every=1,
                                  log=lambda _: None)
        curve = [{k: v for k, v in entry.items() if k != "seconds"} for entry in record["loss"]]
        return json.loads((tmp_path / name / "DONE").read_text())["weights_sha256"], curve

    (first, curve), (again, repeat) = train("a", 0), train("b", 0)
    assert first == again and curve == repeat and len(curve) == 3
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert train("c", 1)[0] != first


def test_vllm_renders_the_prompts_the_model_was_trained_on(demo_engine):
    """Each turn's prompt, as vLLM renders it, is the start of the training text."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(DEMO_MODEL_DIR)
    traj = train_demo.scripted_trajectory(synthetic.make_benchmark()[3])
    trained = processor.apply_chat_template(to_chat_messages(traj.messages), tokenize=False)
    for end in (2, 4):  # before the tool call, before the answer
        prompt = demo_engine.render(GenerationRequest(messages=traj.messages[:end], images=traj.pixels))
        assert prompt.endswith("<|im_start|>assistant\n") and trained.startswith(prompt)


def test_the_demo_model_zooms_and_reads_the_square(demo_engine):
    """Under the real engine and protocol, the model crops the card's cell on most questions
    and answers most of them; with the crop blinded (the uncropped picture returned instead),
    it still calls the tool but answers far worse."""
    items = synthetic.make_benchmark(96)[:32]

    def run(protocol):
        trajs = loop.run_samples(demo_engine, [i.sample() for i in items], protocol)
        accuracy = sum(letter_accuracy(t.answer_text, i.answer, parse_options(i.question))
                       for t, i in zip(trajs, items)) / len(items)
        cropped = [i for t, i in zip(trajs, items)
                   if t.tool_calls and t.tool_calls[0].ok and t.tool_calls[0].name == "crop_image_normalized"]
        on_target = [t for t, i in zip(trajs, items) if t.tool_calls and t.tool_calls[0].arguments
                     and [round(v, 2) for v in t.tool_calls[0].arguments["bbox_2d"]] == list(i.box)]
        return accuracy, len(cropped) / len(items), len(on_target) / len(items)

    # measured when the checkpoint was committed: every call crops the card's cell, 78% right;
    # blind: 22%. The thresholds leave room; a change to the prompt or the tools breaks them.
    accuracy, crop_rate, on_target = run(PIXEL_REASONER)
    assert crop_rate >= 0.9 and on_target >= 0.9
    assert accuracy >= 0.5  # chance: 0.25
    blind_accuracy, blind_crop_rate, _ = run(BLIND_TOOL)
    assert blind_crop_rate >= 0.9
    assert blind_accuracy <= accuracy - 0.25


def test_the_zoom_task_runs_through_lmms_eval(demo_engine, tmp_path, monkeypatch):
    """pr_zoom end to end: generated data, the task YAML, the zoom scorer, the tool figures."""
    from pr_eval.run import evaluate as runner

    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    run = runner.evaluate("demo", resolve_model("demo"), ["pr_zoom"], limit=8, output=tmp_path / "out",
                          engine=demo_engine)
    values = run.metrics["pr_zoom"]
    assert run.benchmarks["pr_zoom"] == "zoom" and run.counts["pr_zoom"] == 8
    assert values["rapr"] >= 0.9 and values["letter_accuracy"] >= 0.5
    assert "letter acc" in run.table()
    summary = json.loads((run.folder / "results.json").read_text())
    assert summary["pr_eval"]["data"]["pr_zoom"]["benchmark"] == "zoom"
