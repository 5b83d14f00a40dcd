"""Train the demo model: a tiny Qwen2.5-VL that zooms, on CPU, from scripted trajectories.

    python scripts/train_demo.py --seed 0 --output pr_eval/demo_model

The trajectories are made by the harness's own loop: `loop.start` builds the first prompt of a
generated `zoom` question (pr_eval/benchmarks/zoom.py), `loop.step` applies a scripted first turn (a
short thought and a `crop_image_normalized` call around the card), executes the crop and appends
the feedback turn, then a scripted answer turn (the dot's colour, its option, `\\boxed{letter}`)
ends it. The conversation is rendered with the checkpoint's chat template and processor exactly
as the engines render it, so training sees byte for byte what evaluation shows the model; the
loss covers the assistant turns only.

A model this small, trained from scratch on a few thousand examples, learns nothing from the
benchmark's own pictures: the dot is one or two of 1,600 tokens, and attention never finds it
(300-900 steps of that taught it nothing). So training starts easy and ends exact:
- the target (card and dot) starts 5x larger and shrinks to the benchmark's size over the first
  60% of the steps (`target_scale`);
- the first 30% of the steps are a warm-up on each turn alone: the question with the picture ->
  the tool call, the question with the crop -> the answer, without the tool block
  (`warm_up_conversation`; about a third of the tokens). All later steps are whole trajectories.

Everything is a function of `--seed`: the tokenizer (BPE trained on the protocol's strings and the
generated questions and turns), the initial weights, the training questions and their order. With
the same seed, thread count and library versions two runs write identical weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from pr_eval.loop import steps as loop  # noqa: E402
from pr_eval.benchmarks import zoom as synthetic  # noqa: E402
from pr_eval.engines.base import GenerationRequest, GenerationResult, media_in_order, to_chat_messages  # noqa: E402
from pr_eval.protocol import BLIND_TOOL, NO_TOOL, PIXEL_REASONER, Protocol  # noqa: E402
from pr_eval.tiny_model import Architecture, build_tokenizer, new_model, save_checkpoint  # noqa: E402
from pr_eval.loop.tools import crop_call  # noqa: E402
from pr_eval.trajectory import Trajectory  # noqa: E402

RECIPE = "demo-1"
ARCH = Architecture(
    vocab_size=832, hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=2,
    num_key_value_heads=1,
    # all vision blocks attend within 112 px windows: colours are local, and full attention over
    # 2,116 patches per picture would cost more than the language model
    vision=dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=4, fullatt_block_indexes=[]))
TOKENIZER_SIZE = 800           # BPE entries at most, before the 9 added tokens (below ARCH.vocab_size)
THOUGHT = "The dot on the card is too small to see here. Let me zoom in on the card."


# --- Scripted turns -----------------------------------------------------------------------------

def zoom_turn(item: synthetic.Item) -> str:
    return f"{THOUGHT}\n{crop_call(item.box, digits=2)}"  # two decimals per coordinate


def answer_turn(item: synthetic.Item) -> str:
    return f"Zoomed in, the dot is {item.color}: option ({item.answer}).\n\\boxed{{{item.answer}}}"


def scripted_trajectory(item: synthetic.Item, protocol: Protocol = PIXEL_REASONER) -> Trajectory:
    """The trajectory a perfect model would make, built by the harness's own loop."""
    traj = loop.start(item.sample(), protocol)
    for text in (zoom_turn(item), answer_turn(item)):
        loop.step(traj, GenerationResult(text=text), protocol)
    if traj.stop_reason != "answered" or len(traj.tool_calls) != 1 or not traj.tool_calls[0].ok:
        raise RuntimeError(f"the scripted trajectory of {item.qid} did not run as planned: "
                           f"{traj.stop_reason}, {traj.tool_calls}")
    return traj


# --- Tokenizer ----------------------------------------------------------------------------------

def corpus(seed: int, n_questions: int = 400):
    """Text like what the model reads and writes: the protocol's strings, the questions and the
    scripted turns of generated training questions (their pictures are not drawn)."""
    texts = [PIXEL_REASONER.system_prompt, PIXEL_REASONER.guideline, NO_TOOL.guideline,
             BLIND_TOOL.feedback.crop.format(w=644, h=644), PIXEL_REASONER.feedback.crop.format(w=448, h=448),
             "system\n", "user\n", "assistant\n"]
    for index in range(n_questions):
        item = synthetic.train_item(index, seed)
        texts += [PIXEL_REASONER.user_text(item.question), zoom_turn(item), answer_turn(item)]
    return texts


# --- Model inputs -------------------------------------------------------------------------------

def warm_up_conversation(traj: Trajectory, turn: int) -> Trajectory:
    """One turn of a scripted trajectory as a short conversation of its own, for the warm-up:
    the question with the picture (turn 0: the tool call to learn) or with the crop (turn 1: the
    answer to learn), without the tool block and the other picture. A third of the tokens, and
    the target is three times easier for attention to find."""
    image = traj.pixels[turn]
    question = next(m for m in traj.messages if m["role"] == "user")["content"][-1]["text"]
    answer = [m for m in traj.messages if m["role"] == "assistant"][turn]
    short = Trajectory(task=traj.task, sample_id=traj.sample_id, question=traj.question, target=traj.target,
                       protocol="warm-up", fingerprint="")
    short.messages = [{"role": "user", "content": [loop.image_part(1), loop.text_part(question)]}, answer]
    short.pixels = [image]
    return short


def model_inputs(processor, traj: Trajectory, protocol: Protocol = PIXEL_REASONER) -> dict:
    """The whole conversation as the engines render it: chat template, images in order, the
    protocol's engine pixel bounds (see pr_eval/engines/hf.py). `labels` keep the assistant
    turns (their text and closing <|im_end|>); everything else is -100."""
    request = GenerationRequest(messages=traj.messages, images=traj.pixels)
    text = processor.apply_chat_template(to_chat_messages(request.messages), tokenize=False,
                                         add_generation_prompt=False)
    images, _ = media_in_order(request)
    bounds = protocol.engine_pixels
    batch = processor(text=[text], images=images, return_tensors="pt",
                      images_kwargs={"size": {"shortest_edge": bounds.min_pixels, "longest_edge": bounds.max_pixels}})
    batch["labels"] = assistant_labels(batch["input_ids"], processor.tokenizer)
    return batch


def assistant_labels(input_ids, tokenizer):
    """`input_ids` with every token outside the assistant turns set to -100."""
    import torch

    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids = input_ids[0].tolist()
    keep = torch.zeros(len(ids), dtype=torch.bool)
    k = 0
    while k < len(ids):
        if ids[k:k + len(header)] == header:
            k += len(header)
            while k < len(ids) and ids[k] != end:
                keep[k] = True
                k += 1
            if k < len(ids):
                keep[k] = True  # the closing <|im_end|>: the model must learn to stop
        k += 1
    labels = input_ids.clone()
    labels[0, ~keep] = -100
    return labels


# --- Training -----------------------------------------------------------------------------------

def setup_torch(seed: int, threads: int):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return torch


def target_scale(step: int, steps: int, start: float = 5.0, share: float = 0.6) -> float:
    """How much larger than in the benchmark the training target is at `step`: from `start`
    down to 1 over the first `share` of the steps, then 1. A large target covers many visual
    tokens, so the model first learns where to look and what the colours mean."""
    until = int(steps * share)
    if step >= until:
        return 1.0
    return start + (1.0 - start) * step / until


def key_tokens(labels, tokenizer) -> dict[str, list[int]]:
    """Where the answers sit among the supervised tokens (indices into labels[0]): the box's
    numbers, the colour's name and the chosen letter. Used to report online accuracies."""
    positions = [k for k, v in enumerate(labels[0].tolist()) if v != -100]
    pieces = tokenizer.convert_ids_to_tokens([int(labels[0, k]) for k in positions])

    def after(marker: str, skip: int = 0, stop: str | None = None) -> list[int]:
        if marker not in pieces:
            return []
        first = len(pieces) - pieces[::-1].index(marker) + skip  # after its last occurrence
        last = pieces.index(stop, first) if stop and stop in pieces[first:] else first + 1
        return positions[first:last]

    return {"box": after("Ġ[", stop="],"), "color": after("Ġdot", skip=1), "letter": after("Ġ(")}


def online_accuracy(logits, labels, keys: dict[str, list[int]]) -> dict[str, float]:
    """For each key: 1 when the model, before this step's update, predicted all its tokens (the
    training questions are fresh, so this is accuracy on unseen questions)."""
    predicted = logits[0].argmax(-1)
    return {name: float(all(int(predicted[k - 1]) == int(labels[0, k]) for k in where))
            for name, where in keys.items() if where}


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(output: str | os.PathLike, seed: int = 0, steps: int = 1800, lr: float = 1.5e-3, warmup: int = 100,
          threads: int = 1, log_every: int = 50, log=None, warm_share: float = 0.3) -> dict:
    """Build the tokenizer and model, train `steps` single-trajectory steps, save to `output`.
    Returns the run's record (also written to `output/training.json`)."""
    torch = setup_torch(seed, threads)
    log = log or (lambda message: print(message, flush=True))
    started, cpu_started = time.time(), time.process_time()
    tokenizer = build_tokenizer(corpus(seed), vocab_size=TOKENIZER_SIZE)
    from pr_eval.tiny_model import new_processor

    processor = new_processor(tokenizer)
    model = new_model(tokenizer, ARCH, seed=seed)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    log(f"tokenizer: {len(tokenizer)} entries; model: {params / 1e6:.2f}M parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    history, window = [], []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        item = synthetic.train_item(step, seed, scale=target_scale(step, steps))
        traj = scripted_trajectory(item)
        if step < warm_share * steps:
            traj = warm_up_conversation(traj, step % 2)
        batch = model_inputs(processor, traj)
        result = model(**batch)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window.append({"loss": result.loss.item(),
                       **online_accuracy(result.logits.detach(), batch["labels"], key_tokens(batch["labels"], tokenizer))})
        if (step + 1) % log_every == 0 or step + 1 == steps:
            means = {k: round(sum(w[k] for w in window if k in w) / max(1, sum(k in w for w in window)), 4)
                     for k in ("loss", "box", "color", "letter")}
            history.append({"step": step + 1, "scale": round(target_scale(step, steps), 3), **means,
                            "seconds": round(time.time() - started, 1)})
            log(f"step {step + 1}/{steps}  target x{target_scale(step, steps):.2f}  loss {means['loss']:.4f}  "
                f"online accuracy: box {means['box']:.2f} color {means['color']:.2f} "
                f"letter {means['letter']:.2f}  {time.time() - started:.0f}s")
            window = []
    model.eval()
    record = {"recipe": RECIPE, "seed": seed, "steps": steps, "lr": lr, "warmup": warmup, "threads": threads,
              "architecture": asdict(ARCH), "tokenizer_size": len(tokenizer), "parameters": params,
              "seconds": round(time.time() - started, 1),
              "cpu_seconds": round(time.process_time() - cpu_started, 1), "loss": history,
              "versions": _versions()}
    path = save_checkpoint(model, tokenizer, Path(output), {"recipe": RECIPE, "seed": seed, "steps": steps})
    (path / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def _versions() -> dict:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="checkpoint folder to write (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the weights depend on it; 1 also keeps a shared machine usable)")
    parser.add_argument("--log-every", type=int, default=50, help="print the mean loss every N steps")
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"{args.output} exists; remove it or choose another --output")
    record = train(args.output, args.seed, args.steps, args.lr, args.warmup, args.threads, args.log_every)
    print(f"wrote {args.output} in {record['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
