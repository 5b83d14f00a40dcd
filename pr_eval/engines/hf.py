"""The transformers engine: `model.generate`, one request at a time, for debugging and machines
without vLLM. It has no `submit`: generating one request at a time gains nothing from letting
trajectories overtake each other, so the continuous schedule runs it turn by turn.

It is built to write what the vLLM engine writes on the same checkpoint, so a trajectory can be
replayed and inspected in plain PyTorch:
- the same prompt: the checkpoint's chat template, the same processor with the protocol's engine
  pixel bounds for images AND video frames (vLLM's `mm_processor_kwargs` reach both), and a video
  passed as its 16 already-chosen frames with the same metadata vLLM gets (no resampling; the
  metadata's fps also sets the video's M-RoPE time steps);
- the same decoding: greedy at temperature 0, the stop tokens as token ids (plus the tokenizer's and
  the checkpoint's eos ids, which vLLM also stops on), the stop strings checked on the decoded text
  as vLLM checks them, special tokens kept in the text as the protocol says, `min_tokens`, and
  none of the checkpoint's own sampling defaults (`generation_config.json` may set e.g. a repetition penalty; vLLM ignores
  it when it is given explicit SamplingParams, and so does this engine);
- the same structured outputs: a request's regex `constraint` is compiled by xgrammar, the library
  vLLM uses, over the same vocabulary and stop tokens, and masks the logits of every step;
- the same limits: a prompt of `max_model_len` tokens or more is refused, generation ends at
  `max_model_len`, and at most `caps.max_images` images and one video go in a prompt.

Token counts follow vLLM: prompt tokens = input ids with the image/video pads expanded; output
tokens = generated ids, the final stop token included.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..protocol import Decoding, Protocol
from .base import (EngineError, GenerationRequest, GenerationResult, media_in_order, to_chat_messages,
                   video_input)

log = logging.getLogger(__name__)


class _StopOnText:
    """Stops when the decoded output contains a stop string written as plain text (a literal
    "<|im_end|>" written piece by piece, "<|eot_id|>"), as vLLM's stop strings do. Special tokens
    are skipped here: the stop strings that are special tokens are stop ids of this engine and
    end the turn as tokens (vLLM reports the same stop either way)."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int):
        self.tokenizer, self.stop, self.prompt_len = tokenizer, tuple(s for s in stop if s), prompt_len
        self.matched = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        text = self.tokenizer.decode(input_ids[0, self.prompt_len:], skip_special_tokens=True)
        self.matched = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), self.matched, dtype=torch.bool, device=input_ids.device)


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """The text before the first stop string (vLLM leaves the stop string out of the output),
    and that stop string (the one that ended the turn); the text whole and None without one."""
    found = [(text.find(s), s) for s in stop if s and s in text]
    if not found:
        return text, None
    cut, first = min(found)
    return text[:cut], first


def _torch_dtype(dtype, device: str):
    import torch

    if dtype is None or dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise EngineError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return value


class HFEngine:
    """Wraps a transformers Qwen2.5-VL (or any image-text-to-text model with a chat template).

    `device` defaults to CUDA when there is one, else CPU; `dtype` to float32 on CPU and bfloat16
    on a GPU (the reference runs are bf16). `max_model_len` defaults to the protocol's."""

    name = "hf"

    def __init__(self, model_path: str, protocol: Protocol, device: str | None = None, dtype=None,
                 max_model_len: int | None = None):
        try:
            import torch
            from transformers import AutoConfig, AutoProcessor, GenerationConfig
        except ImportError as exc:
            raise EngineError("transformers and torch are needed for --engine hf: run `make setup`") from exc
        self.model_path = model_path
        self.protocol = protocol
        self.media_route = {"pixel_bounds": "processor size", "video_fps": protocol.video_fps}
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"device {self.device!r} was asked for but torch sees no CUDA GPU")
        self.dtype = _torch_dtype(dtype, "cpu" if self.device == "cpu" else "cuda")
        self.max_model_len = max_model_len or protocol.max_model_len
        try:
            config = AutoConfig.from_pretrained(model_path)
            self.processor = AutoProcessor.from_pretrained(model_path)
            self.model = _model_class(config).from_pretrained(model_path, dtype=self.dtype).to(self.device).eval()
        except Exception as exc:
            raise EngineError(f"transformers could not load {model_path!r}: {type(exc).__name__}: {exc}") from exc
        if getattr(config, "model_type", None) == "qwen2_5_vl":
            import types

            inner = self.model.model
            inner.get_rope_index = types.MethodType(_released_rope_index, inner)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if not getattr(self.processor, "chat_template", None) and not getattr(self.tokenizer, "chat_template", None):
            raise EngineError(f"{model_path!r} has no chat template; the engine cannot render prompts")
        # The checkpoint's eos ids, kept before its sampling defaults are dropped (see the module doc).
        checkpoint_eos = self.model.generation_config.eos_token_id
        self._checkpoint_eos = {checkpoint_eos} if isinstance(checkpoint_eos, int) else set(checkpoint_eos or ())
        self.model.generation_config = GenerationConfig(pad_token_id=self.tokenizer.pad_token_id)
        # The vocabulary as the model's output layer sees it (padded past the tokenizer's), as vLLM
        # sizes its grammar bitmask.
        self.vocab_size = config.get_text_config().vocab_size
        bounds = protocol.engine_pixels
        self._size = {"shortest_edge": bounds.min_pixels, "longest_edge": bounds.max_pixels}
        self._compilers: dict[tuple[int, ...], object] = {}

    def close(self) -> None:
        """Free the model's memory now (the engine cannot be used afterwards)."""
        self.model = None
        _free_cuda_cache()

    # --- prompt ------------------------------------------------------------------------------
    def render(self, request: GenerationRequest) -> str:
        """The prompt text: the checkpoint's own chat template, with the generation prompt."""
        templater = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        return templater.apply_chat_template(to_chat_messages(request.messages), tokenize=False,
                                             add_generation_prompt=True)

    def inputs(self, request: GenerationRequest):
        """The model inputs of a request, as the processor makes them (tensors on the device)."""
        images, videos = media_in_order(request)
        caps = self.protocol.caps
        if len(images) > caps.max_images:
            raise ValueError(f"{len(images)} images in one prompt; at most {caps.max_images} are allowed")
        if len(videos) > 1:
            raise ValueError(f"{len(videos)} videos in one prompt; at most 1 is allowed")
        kwargs = {}
        if images:
            kwargs.update(images=images, images_kwargs={"size": dict(self._size)})
        if videos:
            from transformers.video_utils import VideoMetadata

            arrays, metadata = zip(*(video_input(frames, self.protocol.video_fps) for frames in videos))
            kwargs.update(videos=list(arrays), videos_kwargs={
                "size": dict(self._size), "do_sample_frames": False,
                # vLLM's default; transformers would warn about the unset value on every video
                "cap_pixels_per_frame": False,
                "video_metadata": [VideoMetadata(**{k: v for k, v in m.items() if k != "do_sample_frames"})
                                   for m in metadata]})
        return self.processor(text=[self.render(request)], return_tensors="pt", **kwargs).to(self.device)

    # --- decoding ----------------------------------------------------------------------------
    def stop_token_ids(self, decoding: Decoding) -> list[int]:
        """The protocol's stop tokens as ids, plus the eos ids vLLM also stops on."""
        ids = set(self._checkpoint_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        for token in decoding.stop_tokens:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and token_id != unk:
                ids.add(token_id)
        return sorted(ids)

    def _constraint(self, regex: str, stop_ids: list[int]):
        """A fresh xgrammar logits processor forcing the output to match `regex`, then a stop token.

        The grammar compiler is kept per set of stop tokens; vLLM likewise lets the matcher end
        on the request's stop token ids."""
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor

        key = tuple(stop_ids)
        if key not in self._compilers:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                      stop_token_ids=list(stop_ids))
            self._compilers[key] = xgr.GrammarCompiler(info)
        return LogitsProcessor(self._compilers[key].compile_regex(regex))

    def _generation_config(self, decoding: Decoding, max_new_tokens: int, stop_ids: list[int]):
        from transformers import GenerationConfig

        sample = decoding.temperature > 0
        args = dict(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                    do_sample=sample, num_beams=1, repetition_penalty=1.0,
                    min_new_tokens=decoding.min_tokens)
        if sample:
            args.update(temperature=decoding.temperature, top_p=decoding.top_p,
                        top_k=max(0, decoding.top_k))  # vLLM -1 = off = HF 0
        return GenerationConfig(**args)

    def _generate_one(self, request: GenerationRequest, decoding: Decoding) -> GenerationResult:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        batch = self.inputs(request)
        prompt_len = int(batch["input_ids"].shape[1])
        if prompt_len >= self.max_model_len:  # vLLM's check: the prompt must leave room for one token
            raise ValueError(f"the prompt (length {prompt_len}) plus at least one output token is longer "
                             f"than the maximum model length of {self.max_model_len}")
        max_new = min(decoding.max_new_tokens, self.max_model_len - prompt_len)
        stop_ids = self.stop_token_ids(decoding)
        processors = LogitsProcessorList()
        if request.constraint:
            processors.append(self._constraint(request.constraint, stop_ids))
        stop_text = _StopOnText(self.tokenizer, decoding.stop_tokens, prompt_len)
        if decoding.temperature > 0:
            torch.manual_seed(request.seed_or(decoding))  # reproducible, but not vLLM's sampler: samples differ
        config = self._generation_config(decoding, max_new, stop_ids)
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=config, logits_processor=processors,
                                         stopping_criteria=StoppingCriteriaList([stop_text]))
        generated = output[0, prompt_len:].tolist()
        ended_by_token = bool(generated) and generated[-1] in stop_ids
        body = generated[:-1] if ended_by_token else generated  # vLLM's text leaves the stop token out
        text = self.tokenizer.decode(body, skip_special_tokens=decoding.skip_special_tokens)
        stop = self.tokenizer.decode(generated[-1:], skip_special_tokens=False) if ended_by_token else None
        if stop_text.matched:
            text, first = _cut_at_stop(text, decoding.stop_tokens)
            stop = first or stop
        stopped = stop_text.matched or ended_by_token
        return GenerationResult(text=text, prompt_tokens=prompt_len, output_tokens=len(generated),
                                finish_reason="stop" if stopped else "length", stop=stop)

    def generate(self, requests: Sequence[GenerationRequest], decoding: Decoding) -> list[GenerationResult]:
        if self.model is None:
            raise EngineError("the engine was closed")
        results = []
        for request in requests:
            try:
                results.append(self._generate_one(request, decoding))
            except Exception as exc:  # this request only: bad image, too long, bad constraint, ...
                log.debug("request failed", exc_info=True)
                if type(exc).__name__ == "OutOfMemoryError":
                    _free_cuda_cache()  # so the next request starts from a clean allocator
                results.append(GenerationResult(text="", error=f"{type(exc).__name__}: {exc}"))
        return results


def _released_rope_index(self, input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None,
                         second_per_grid_ts=None, attention_mask=None, **unused):
    """Qwen2.5-VL's M-RoPE positions as the released model computes them (and vLLM does).

    Text tokens count on from the largest position of the vision block before them. For a video
    that is its last temporal position, (t - 1) * tokens_per_second * seconds per grid step, which
    exceeds the block's height and width; transformers 5.19 continues from max(height, width)
    instead (5.2 still took the maximum: see huggingface/transformers#45381, where the text after a
    video starts at 348 = 347 + 1). Images are unaffected (t = 1). Bound to the model instance in
    place of its `get_rope_index`; same arguments and results (positions [3, batch, seq], deltas)."""
    import itertools

    import torch

    merge = self.config.vision_config.spatial_merge_size
    tokens_per_second = self.config.vision_config.tokens_per_second
    grids = {1: iter([] if image_grid_thw is None else image_grid_thw.tolist()),
             2: iter([] if video_grid_thw is None else video_grid_thw.tolist())}
    seconds = iter([] if second_per_grid_ts is None else torch.as_tensor(second_per_grid_ts).tolist())
    batch, length = input_ids.shape
    positions = torch.zeros(3, batch, length, dtype=input_ids.dtype, device=input_ids.device)
    deltas = []
    for row in range(batch):
        keep = (attention_mask[row].bool() if attention_mask is not None
                else torch.ones(length, dtype=torch.bool, device=input_ids.device))
        parts, start = [], 0
        for kind, group in itertools.groupby(mm_token_type_ids[row][keep].tolist()):
            if kind == 0:  # text
                n = len(list(group))
                parts.append(torch.arange(n).expand(3, n) + start)
            else:  # 1 image, 2 video
                t, h, w = next(grids[kind])
                step = tokens_per_second * next(seconds, 1.0) if kind == 2 else 1
                # float64, then floor, as vLLM's numpy does: fractional steps quantize alike
                times = (torch.arange(t, dtype=torch.float64) * step).long()
                block = torch.meshgrid(times, torch.arange(h // merge), torch.arange(w // merge), indexing="ij")
                parts.append(torch.stack(block).reshape(3, -1) + start)
            start = int(parts[-1].max()) + 1
        positions[:, row, keep] = torch.cat(parts, dim=1).to(positions)
        deltas.append(start - int(keep.sum()))
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _model_class(config):
    """Qwen2.5-VL's own class when the checkpoint is one, else transformers' generic VLM class."""
    if getattr(config, "model_type", None) == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText
