"""The Qwen2.5-VL chat template as a pure function of a trajectory's neutral messages.

The reference reads two things off the text of the conversation rather than off the model's
last turn: which tool call to run (the last `<tool_call>` of the whole conversation so far) and
what to score (everything after the first assistant header). Both are computed here from the
trajectory record, so they do not depend on which engine or tokenizer produced the turns: the
text is what the Qwen2.5-VL template renders, with each image as its vision markers (the
`<|image_pad|>` run that a tokenizer expands them to is left out, as the reference removes it).
"""

from __future__ import annotations

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ASSISTANT_HEADER = f"{IM_START}assistant\n"
DEFAULT_SYSTEM = "You are a helpful assistant."
PADS = ("<|image_pad|>", "<|video_pad|>")

_VISION = {
    "image": "<|vision_start|><|image_pad|><|vision_end|>",
    "video": "<|vision_start|><|video_pad|><|vision_end|>",
}
_VISION_NO_PADS = {kind: text.replace(pad, "") for (kind, text), pad in zip(_VISION.items(), PADS)}


def render(messages: list[dict], add_generation_prompt: bool = False, pads: bool = True) -> str:
    """The text the Qwen2.5-VL chat template gives `messages` (tests check it against the
    template through transformers). `pads=False` leaves out the pad token between the vision
    markers, as the reference's decoded prompts have it."""
    vision = _VISION if pads else _VISION_NO_PADS
    out: list[str] = []
    for i, message in enumerate(messages):
        if i == 0 and message["role"] != "system":
            out.append(f"{IM_START}system\n{DEFAULT_SYSTEM}{IM_END}\n")
        out.append(f"{IM_START}{message['role']}\n")
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            for part in content:
                kind = part.get("type")
                out.append(vision[kind] if kind in vision else str(part.get("text", "")))
        out.append(f"{IM_END}\n")
    if add_generation_prompt:
        out.append(ASSISTANT_HEADER)
    return "".join(out)


def message_text(message: dict) -> str:
    """The text of one message: its text parts joined (images and videos left out)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def after_first_assistant(text: str) -> str:
    """What the reference scores of a decoded conversation (`extract_qwen_query_and_response`):
    everything after the first assistant header, with every later assistant header removed; ""
    when there is none."""
    parts = text.split(ASSISTANT_HEADER)
    return "".join(parts[1:])


def scored_text(messages: list[dict], ends_with_eos: bool = True) -> str:
    """The text the reference scores for a finished conversation: the decoded last request (its
    prompt without pad tokens) followed by the decoded last output, cut after the first
    assistant header. The last output keeps its `<|im_end|>` when the turn ended with it
    (`ends_with_eos`); a turn cut off by the token limit has none. A conversation that does not
    end with an assistant turn (a data or engine error) is rendered as it stands."""
    if messages and messages[-1]["role"] == "assistant":
        text = render(messages[:-1], add_generation_prompt=True, pads=False) + message_text(messages[-1])
        if ends_with_eos:
            text += IM_END
    else:
        text = render(messages, pads=False)
    return after_first_assistant(text)
