"""Small Qwen2.5-VL checkpoints, built offline and deterministically: the random `tiny` model for
tests, and the parts the trained `demo` model is built from (scripts/train_demo.py).

`tiny` has random weights (about 2 MB): it runs every real code path of vLLM and transformers on a
CPU in seconds, but answers nothing. Every checkpoint here keeps what the engines check: Qwen
special tokens, M-RoPE sections, a 64-wide attention head (vLLM's CPU kernel rejects 16), and a
real processor saved beside the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

RECIPE_VERSION = "2"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
# In the real Qwen2.5 tokenizer these are added tokens that are NOT special, so they survive
# decoding with skip_special_tokens=True; the tiny one keeps that property.
PLAIN_ADDED_TOKENS = ["<tool_call>", "</tool_call>"]

# The Qwen2-VL chat template (images as <|vision_start|><|image_pad|><|vision_end|>), written
# for this project; it renders the same text as the released checkpoints' template.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class Architecture:
    """The sizes of a small Qwen2.5-VL. `head_dim` stays 64: vLLM's CPU attention needs it."""

    vocab_size: int = 512          # a multiple of 64, above the tokenizer's size
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    mrope_section: tuple[int, int, int] = (8, 12, 12)  # sums to head_dim / 2
    vision: dict = field(default_factory=lambda: dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=4, fullatt_block_indexes=[1]))


TINY = Architecture()


def default_cache_dir() -> Path:
    root = os.environ.get("PR_EVAL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pr-eval")
    return Path(root)


def tiny_model_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the tiny checkpoint lives; built there on first use (a few seconds)."""
    path = Path(cache_dir or default_cache_dir()) / f"tiny-qwen2.5-vl-r{RECIPE_VERSION}"
    if not (path / "DONE").exists():
        build_tiny_model(path)
    return path


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 0):
    """A byte-level BPE tokenizer with the Qwen special tokens and chat template.

    Without a corpus: the 256 byte symbols and no merges, so every byte is a token (the tiny
    model). With one: merges learned on it (words split first, as GPT-2 does) up to `vocab_size`
    entries before the added tokens, so text like the corpus costs a few tokens per word while any
    other text still round-trips byte by byte. Training is deterministic for the same corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()
    if corpus is None:
        core = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(sorted(alphabet))}, merges=[]))
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
        core.train_from_iterator(corpus, trainer)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.add_tokens(PLAIN_ADDED_TOKENS, special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 32768
    return tokenizer


def new_model(tokenizer, arch: Architecture = TINY, seed: int = 0):
    """A randomly initialised Qwen2.5-VL of `arch` for `tokenizer` (float32, eval mode)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if len(tokenizer) > arch.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} entries; vocab_size {arch.vocab_size} is too small")
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=arch.vocab_size, hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
            num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
            num_key_value_heads=arch.num_key_value_heads, head_dim=64, max_position_embeddings=32768,
            rope_scaling={"type": "mrope", "mrope_section": list(arch.mrope_section)}, tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(out_hidden_size=arch.hidden_size, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112, in_chans=3, **arch.vision),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    # One end-of-turn token only: vLLM lets a structured-output turn end with any of the checkpoint's
    # eos ids, and a scripted tool call followed by <|endoftext|> is, by the reference's rule, a
    # final answer. With <|im_end|> alone, scripted turns end as the protocol's model ends them.
    # (<|endoftext|> still ends a free turn: it is one of the protocol's stop strings.)
    model.generation_config.eos_token_id = [ids["<|im_end|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def new_processor(tokenizer):
    """Qwen's image and video processors with `tokenizer`, as the released checkpoints pair them."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def save_checkpoint(model, tokenizer, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Write a loadable checkpoint (weights, config, tokenizer, processor) to `path`, atomically.

    It is written into a temporary sibling and renamed, so a half-written checkpoint is never
    loaded; `DONE` (JSON: `info` plus the weights' sha256) marks it complete. When another process
    has already written `path`, its copy is kept."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    new_processor(tokenizer).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    (tmp / "DONE").write_text(json.dumps({**(info or {}), "weights_sha256": digest}) + "\n")
    if path.exists():  # another process won the race; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(path)
    return path


def build_tiny_model(path: str | os.PathLike) -> Path:
    """Write the tiny checkpoint (random weights, seed 0) to `path`."""
    tokenizer = build_tokenizer()
    return save_checkpoint(new_model(tokenizer, TINY, seed=0), tokenizer, path, {"recipe": RECIPE_VERSION})
