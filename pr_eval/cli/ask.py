"""`pr-eval ask`: one question through exactly the evaluation loop, shown turn by turn.

    pr-eval ask --model demo --image card.png "What color is the dot on the small white card?"
    pr-eval ask --model M --video clip.mp4 "What happens first?" --html ask.html --json ask.json

The files are decoded as a run decodes a dataset's (`imaging.load_image`, `video.read_frames`), the
question goes through the protocol as a run's does (`loop.start`), and each turn is one
`engine.generate([loop.request(traj)])` + `loop.step`: the functions a run uses, so the trajectory
is the one a run would record for the same question and image. Every turn is printed as it ends
(the model's text, its tool call, whether it ran, the crop box in normalized units and in pixels,
the new image's size), then the final answer and why the trajectory stopped. `--html` writes the
trajectory as the run report's viewer shows it (one self-contained page, images inlined);
`--json` its record (`Trajectory.to_record`).

Bad input (a missing or unreadable file, no image, an image and a video, an empty question, an
unknown protocol) is refused in one line, exit 2, before any engine is built. Exit 1: the engine
could not be built or stopped serving; 0 after a finished trajectory, whatever ended it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

from ..data.imaging import load_image
from ..engines import ENGINES, EngineError
from ..errors import DataError, UsageError
from ..families import PROTOCOLS, family_of_record, get_protocol
from ..loop import steps as loop
from ..loop.chat import message_text
from ..loop.sampling import rollout_seed
from ..protocol import DEFAULT_PROTOCOL, Protocol, with_overrides
from ..report.escape import esc
from ..run import quiet
from ..trajectory import DATA_ERROR, MAX_TOKENS, MAX_TOOL_CALLS, Sample, ToolCall, Trajectory
from .checks import OneLineParser
from .compat import check_environment

TASK = "ask"  # the task name of an asked question (records, seeds, the page)
MAX_SHOWN_ARGUMENTS = 2000  # characters of a call's arguments printed (the record keeps them whole)

Out = Callable[[str], None]


def say(line: str) -> None:  # the default output: stdout, flushed at once (turns show as they happen)
    print(line, flush=True)


# --- The question ------------------------------------------------------------------------------------

def file_sample(question: str, images: Sequence[str | Path] = (), video: str | Path | None = None,
                protocol: Protocol | None = None, seed: int = 0, sample_id: str | None = None) -> Sample:
    """The Sample of a question about image files (or one video), decoded NOW as a run decodes a
    dataset's files (`imaging.load_image`; a video as `video.read_frames`' 16 frames of the whole
    video), so a bad file is a DataError before any engine is built. Under a sampled protocol the
    question is rollout 0 with the seed `sampling.rollout_seed(seed, "ask", sample_id, 0)`."""
    from ..data.video import NUM_FRAMES, read_frames

    if bool(images) == (video is not None):
        raise DataError("give one or more --image files or one --video")
    paths = [Path(p) for p in images] if images else [Path(video)]
    if video is not None:
        decoded = read_frames(paths[0], NUM_FRAMES, -1.0, -1.0)  # a folder of frames works too, as in a run
        meta = {"video": str(paths[0])}
    else:
        decoded = [load_image(path.resolve()) for path in paths]
        meta = {"image": [str(p) for p in paths]}
    sample_id = sample_id or paths[0].stem or "question"
    sampled = protocol is not None and protocol.sampling is not None
    return Sample(task=TASK, sample_id=sample_id, question=question, answer=None,
                  load_images=lambda: list(decoded), is_video=video is not None, meta=meta,
                  rollout=0 if sampled else None,
                  seed=rollout_seed(seed, TASK, sample_id, 0) if sampled else None)


# --- The loop ----------------------------------------------------------------------------------------

def ask(engine, protocol: Protocol, sample: Sample, out: Out = say, guide: loop.Guide | None = None,
        on_finish: Callable[[Trajectory], None] | None = None) -> Trajectory:
    """Run one sample through the evaluation loop on `engine`, printing each turn through `out`
    as it ends; the finished trajectory (its pixels dropped after `on_finish`, as in a run)."""
    return follow(engine, loop.start(sample, protocol), protocol, out, guide, on_finish)


def follow(engine, traj: Trajectory, protocol: Protocol, out: Out = say, guide: loop.Guide | None = None,
           on_finish: Callable[[Trajectory], None] | None = None) -> Trajectory:
    """`ask` from a trajectory `loop.start` made: turn after turn until it is finished. An
    EngineError (the engine can serve no one) is raised, as a run raises it."""
    began = time.monotonic()
    for line in start_lines(traj):
        out(line)
    while not traj.finished:
        if len(traj.generations) >= loop.max_generations(protocol):  # unreachable by step's caps, as in the loop
            traj.stop_reason = MAX_TOOL_CALLS
            break
        counts = (len(traj.messages), len(traj.generations), len(traj.tool_calls))
        [result] = engine.generate([loop.request(traj, guide)], protocol.decoding)
        loop.step(traj, result, protocol)
        for line in step_lines(traj, *counts, protocol):
            out(line)
    for line in end_lines(traj, time.monotonic() - began):
        out(line)
    loop.finished(traj, on_finish)
    return traj


# --- What is printed -----------------------------------------------------------------------------------

def printable(text: str) -> str:
    """Model or file text for a terminal: line breaks and tabs kept, every other control
    character (ESC, CR, ...) shown as an escape, so the text cannot drive the terminal."""
    out = []
    for ch in text:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"):
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)


def _indented(text: str, prefix: str = "    ") -> list[str]:
    return [prefix + line for line in printable(text).split("\n")] if text else [prefix + "(empty)"]


def _size(width_height) -> str:  # [w, h] -> "wxh"
    return f"{width_height[0]}x{width_height[1]}"


def numbers(values) -> str:
    """A box as printed: normalized values to 4 decimals, pixels as integers."""
    return "[" + ", ".join(repr(round(v, 4)) if isinstance(v, float) else str(v) for v in values) + "]"


def start_lines(traj: Trajectory) -> list[str]:
    lines = ["question:", *_indented(traj.question)]
    files = traj.meta.get("image") or ([traj.meta["video"]] if traj.meta.get("video") else [])
    for k, info in enumerate(traj.images, start=1):
        name = files[k - 1] if k - 1 < len(files) else ""
        if info.kind == "video":
            lines.append(f"image {k}: video {printable(str(name))}, {len(traj.pixels[k - 1])} frames shown at "
                         f"{info.width}x{info.height}")
        else:
            stored = f"{_size(info.original_size)} as stored, " if info.original_size else ""
            lines.append(f"image {k}: {printable(str(name))}, {stored}shown at {info.width}x{info.height}")
    if traj.seed is not None:
        lines.append(f"rollout {traj.rollout}, seed {traj.seed}")
    return lines


def step_lines(traj: Trajectory, n_messages: int, n_generations: int, n_calls: int,
               protocol: Protocol) -> list[str]:
    """What one `loop.step` added: the turn's text, its tool call and what came of it."""
    number = n_generations + 1
    if len(traj.generations) == n_generations:  # no turn: the engine failed on this request
        return [f"turn {number}: engine error: {printable(str(traj.error))}"]
    generation = traj.generations[-1]
    message = next((m for m in traj.messages[n_messages:] if m.get("role") == "assistant"), None)
    ending = (f"ended by {generation.stop}" if generation.stop else
              "cut at the token limit" if generation.finish_reason == "length" else
              f"finish reason {generation.finish_reason}")
    header = (f"turn {number} ({generation.prompt_tokens} prompt + {generation.output_tokens} output tokens, "
              f"{printable(str(ending))}):")
    lines = ["", header, *_indented(message_text(message) if message else generation.dropped or "")]
    if message is None:  # the protocol kept the turn out of the conversation (Generation.dropped)
        lines.append("  (not kept in the conversation: the protocol sends the same request again)")
    if len(traj.tool_calls) > n_calls:
        lines += call_lines(traj, traj.tool_calls[-1])
    elif traj.stop_reason == MAX_TOOL_CALLS:
        lines.append(f"  tool call: not run, the cap of {protocol.caps.max_tool_calls} executed calls is reached")
    elif traj.stop_reason == MAX_TOKENS:
        lines.append(f"  tool call: not run, prompt + output passed the cap of {protocol.caps.max_total_tokens} tokens")
    return lines


def call_lines(traj: Trajectory, call: ToolCall) -> list[str]:
    """A tool call: its name and arguments, whether it ran, and for a crop its box (normalized,
    and in pixels of the image it was cut from) and the new image's size."""
    if call.arguments is not None:
        arguments = json.dumps(call.arguments, ensure_ascii=False, default=str)
        if len(arguments) > MAX_SHOWN_ARGUMENTS:
            arguments = arguments[:MAX_SHOWN_ARGUMENTS] + f"... ({len(arguments)} characters)"
        lines = [f"  tool call: {printable(call.name or '?')} {printable(arguments)}"]
    else:
        lines = [f"  tool call: unreadable: {printable(call.raw.strip()[:MAX_SHOWN_ARGUMENTS])}"]
    if not call.ok:
        return lines + [f"  ran: no ({printable(call.error_kind or 'error')}): {printable(call.error or '')}"]
    lines.append(f"  ran: yes, added image {', '.join(map(str, call.new_images)) or '-'}")
    for index in call.new_images:
        info = traj.images[index - 1]
        if info.kind == "crop":
            if call.box_normalized is not None:
                lines.append(f"  crop box (normalized, after padding): {numbers(call.box_normalized)}")
            source = f"frame {info.frame} of image {info.parent}" if info.frame is not None else f"image {info.parent}"
            lines.append(f"  crop box (pixels): {numbers(info.box)} of {source} ({_size(info.source_size)})")
            lines.append(f"  new image {index}: {info.width}x{info.height}")
        elif info.kind == "frame":
            lines.append(f"  new image {index}: frame {info.frame} of the video, {info.width}x{info.height}")
        else:
            lines.append(f"  new image {index}: {info.kind}, {info.width}x{info.height}")
    return lines


def end_lines(traj: Trajectory, seconds: float) -> list[str]:
    family = family_of_record(traj)
    answer = family.final_answer(traj) if traj.generations else None
    calls = len(traj.tool_calls)
    lines = [""]
    if traj.stop_reason == DATA_ERROR:
        lines.append(f"data error: {printable(str(traj.error))}")
    elif traj.error:
        lines.append(f"error: {printable(str(traj.error))}")
    lines.append("final answer: " + (family.no_answer if answer is None else printable(answer)))
    lines.append(f"stop reason: {traj.stop_reason} ({len(traj.generations)} turn{'s' * (len(traj.generations) != 1)}, "
                 f"{calls} tool call{'s' * (calls != 1)}, {seconds:.1f} s)")
    return lines


# --- The page ------------------------------------------------------------------------------------------

def trajectory_html(traj: Trajectory, facts: Sequence[tuple[str, object]] = (), seconds: float | None = None) -> str:
    """One self-contained page: the trajectory as the run report's viewer shows it (the same card,
    `pr_eval.report.viewer.sample_card`, with the images the model saw inlined), under `facts` (what
    was asked of which model). Call it before the trajectory's pixels are dropped."""
    from ..report.page import STYLE
    from ..report.view import RunView, SampleView
    from ..report.viewer import sample_card
    from ..run.store import save_images

    with tempfile.TemporaryDirectory(prefix="pr-eval-ask-") as folder:
        # the images as a run folder saves them, read back by the report's pictures (inlined)
        images = save_images(Path(folder), TASK, 0, traj) if traj.pixels else {}
        view = RunView(folder=Path(folder), info={}, run=None, samples={}, sections=[])
        sample = SampleView(task=traj.task, doc_id="0", traj=traj, images=images, seconds=seconds)
        card = sample_card(view, sample, 1, True)
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>pr-eval ask: {esc(traj.sample_id)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>pr-eval ask</h1><dl class=\"meta\">{meta}</dl>"
            f'<div id="viewer" class="f-all">{card}</div></main></body></html>\n')


# --- The command -------------------------------------------------------------------------------------

class _Unwritable(Exception):
    """--html or --json could not be written (the trajectory was printed)."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pr-eval ask", description="One question through the evaluation loop, turn by turn: "
                     "each turn, tool call, crop box and the final answer as they happen.")
    parser.add_argument("question", nargs="?", default=None, help="the question (the protocol adds its guideline)")
    parser.add_argument("--model", required=True, help="checkpoint folder, hub id, 'demo' or 'tiny' (as in a run)")
    parser.add_argument("--image", action="append", default=[], metavar="FILE",
                        help="an image file; repeat for several images (image 1, 2, ... in this order)")
    parser.add_argument("--video", default=None, metavar="FILE",
                        help="a video file (or folder of frames), shown as 16 frames, instead of images")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL,
                        help=f"evaluation protocol (default: %(default)s; one of {', '.join(sorted(PROTOCOLS))})")
    for flag, what in (("tool-calls", "the cap on executed tool calls"), ("images", "the cap on images"),
                       ("new-tokens", "the tokens per turn")):
        parser.add_argument(f"--max-{flag}", type=int, default=None, help=f"override {what} (renames the protocol)")
    parser.add_argument("--seed", type=int, default=0,
                        help="run seed: a sampled protocol's rollout seed derives from it (default %(default)s)")
    parser.add_argument("--engine", default="vllm", choices=ENGINES, help="vllm (default), openai or hf, as in a run")
    parser.add_argument("--base-url", action="append", default=None, metavar="URL",
                        help="with --engine openai: the server's API root (repeatable)")
    parser.add_argument("--api-model", default=None, help="with --engine openai: the served model name")
    parser.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --engine openai: seconds one request may take")
    parser.add_argument("--retries", type=int, default=None, help="with --engine openai: further attempts")
    parser.add_argument("--no-pixel-check", dest="pixel_check", action="store_false",
                        help="with --engine openai: skip the server's pixel-bounds check, as in a run")
    parser.add_argument("--max-model-len", type=int, default=None, help="override the engine's context")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None, help="passed to vLLM")
    parser.add_argument("--html", default=None, metavar="FILE", help="write the trajectory as the report shows it")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the trajectory record")
    parser.add_argument("--verbose", action="store_true", help="show the engine's logs")
    return parser


def check_args(args) -> None:
    if args.question is None or not args.question.strip():
        raise UsageError("the question is empty; pass it as the last argument, e.g. "
                         "pr-eval ask --model demo --image FILE \"What color is the dot?\"")
    if not args.image and args.video is None:
        raise UsageError("no image: pass --image FILE (repeatable) or --video FILE")
    if args.image and args.video is not None:
        raise UsageError("--image and --video exclude each other: ask about images or about one video")
    if args.engine == "openai" and not args.base_url:
        raise UsageError("--engine openai needs --base-url (the server's API root, e.g. http://127.0.0.1:8000/v1)")
    if args.engine != "openai" and (args.base_url or args.api_model or args.request_timeout is not None
                                    or args.retries is not None):
        raise UsageError("--base-url, --api-model, --request-timeout and --retries go with --engine openai")
    for flag in ("max_tool_calls", "max_images", "max_new_tokens"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "max_tool_calls" else 1):
            raise UsageError(f"--{flag.replace('_', '-')} must be {'0 or more' if flag == 'max_tool_calls' else 'at least 1'}")
    for flag in ("html", "json"):
        value = getattr(args, flag)
        if value is not None and not Path(value).resolve().parent.is_dir():
            raise UsageError(f"--{flag} {value}: its folder does not exist")


@contextlib.contextmanager
def _native_stderr_hidden(hide: bool):
    """While files are decoded: what native code writes to file descriptor 2 (decord logs a
    video it cannot open before raising) is dropped, so a bad file gives our one line only."""
    if not hide:
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a detached process): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"pr-eval ask: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        check_args(args)
        try:
            protocol = with_overrides(get_protocol(args.protocol), args.max_tool_calls, args.max_images,
                                      args.max_new_tokens)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            with _native_stderr_hidden(not args.verbose):  # decord's own C++ log of a bad video
                sample = file_sample(args.question, args.image, args.video, protocol, args.seed)
        except DataError as exc:
            raise UsageError(str(exc)) from None
        traj = loop.start(sample, protocol)  # the files as the model will see them: refused here, not later
        if traj.stop_reason == DATA_ERROR:
            raise UsageError(traj.error)
        check_environment()
        from ..engines.config import EngineConfig
        from ..models import ModelNotFound

        try:  # one trajectory: one request in flight
            engine_config = EngineConfig.from_options(args, max_concurrency=1)
        except ModelNotFound as exc:
            raise UsageError(str(exc)) from None
    except UsageError as exc:
        print(f"pr-eval ask: error: {exc}", file=sys.stderr)
        return 2
    if not args.verbose:
        quiet.enable()
    facts = [("model", args.model), ("checkpoint", engine_config.model), ("engine", args.engine),
             ("protocol", f"{protocol.name} (fingerprint {protocol.fingerprint})"),
             ("seed", args.seed if protocol.sampling is not None else None),
             ("files", ", ".join(args.image) or args.video), ("command", shlex.join(["pr-eval", "ask", *argv]))]
    say(f"pr-eval ask: {args.model} ({args.engine}), protocol {protocol.name} (fingerprint {protocol.fingerprint})")
    print(f"pr-eval ask: loading {args.model} ...", file=sys.stderr, flush=True)
    engine, began, written = None, time.monotonic(), []

    def save(done: Trajectory) -> None:
        from ..files import write_atomic

        for path, text in ((args.html, lambda: trajectory_html(done, facts, time.monotonic() - began)),
                           (args.json, lambda: done.to_json() + "\n")):
            if path:
                try:
                    write_atomic(Path(path), text())
                except OSError as exc:
                    raise _Unwritable(f"cannot write {path} ({exc.strerror or exc})") from None
                written.append(path)

    try:
        engine = engine_config.build(protocol)
        began = time.monotonic()
        follow(engine, traj, protocol, say, on_finish=save)
    except EngineError as exc:
        print(f"pr-eval ask: error: {exc}", file=sys.stderr)
        return 1
    except _Unwritable as exc:
        print(f"pr-eval ask: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npr-eval ask: interrupted", file=sys.stderr)
        return 130
    finally:
        if engine is not None and callable(getattr(engine, "close", None)):
            engine.close()
    for path in written:
        say(f"wrote {path}")
    return 0
