"""`pr-eval ask`: one question through exactly the evaluation loop, printed turn by turn.

The trajectory `ask` gives for a bundled zoom question and its image file is the one the run's
loop gives (`loop.run_samples`) and the one a real lmms-eval run records; what it prints names each
turn, the crop box and the final answer as they happen; the real command prints the same boxes and
writes the report's card as a page; bad input is refused in one line before any engine is built."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from pr_eval.cli import ask as asking
from pr_eval.lmms import task as lmms_task
from pr_eval.loop import steps as loop
from pr_eval.scoring.answers import extract_answer
from pr_eval.engines import EngineError
from pr_eval.engines.base import GenerationResult
from pr_eval.report.escape import esc
from pr_eval.data.imaging import resolve_inside
from pr_eval.models import resolve_model
from pr_eval.protocol import PIXEL_REASONER, SAMPLED
from pr_eval.loop.sampling import rollout_seed, turn_seed
from pr_eval.trajectory import ANSWERED, DATA_ERROR, Sample, Trajectory

ROOT = Path(__file__).resolve().parents[1]
DOC = 0  # the zoom question asked (doc 0 of the bundled samples; the demo model crops on it)


class Spy:
    """The real engine, with what the printed output held when each turn was asked for."""

    name = "spy"

    def __init__(self, inner, lines=None):
        self.inner, self.lines = inner, lines
        self.requests, self.printed_before = [], []

    def generate(self, requests, decoding):
        self.requests += list(requests)
        self.printed_before.append(list(self.lines) if self.lines is not None else None)
        return self.inner.generate(requests, decoding)


def essence(traj: Trajectory) -> dict:
    """What must agree between two runs of one question: everything but ids, meta and timing."""
    record = traj.to_record()
    return {k: record[k] for k in ("question", "messages", "images", "tool_calls", "generations", "stop_reason",
                                   "error", "frames_selected", "protocol", "fingerprint")}


def zoom_doc(index: int = DOC) -> dict:
    """A bundled zoom question as the run's task makes its document (PR_EVAL_DATA=samples)."""
    _source, docs = lmms_task._documents("zoom", "samples")
    return docs[index]


def image_file(doc: dict) -> Path:
    """The file `doc_to_visual` opens for the document's image."""
    return resolve_inside(doc["data_root"], doc["image"][0])


def run_sample(doc: dict) -> Sample:
    """The Sample the model adapter makes of an lmms-eval request for `doc` (its _sample)."""
    return Sample(task="pr_zoom", sample_id=doc["qid"], question=lmms_task.doc_to_text(doc), answer=doc["answer"],
                  load_images=lambda: lmms_task.doc_to_visual(doc), is_video=False,
                  meta={"doc_id": DOC, "category": doc["category"], "subtask": doc["subtask"]})


def crop_lines(lines: list[str]) -> list[tuple[list[float], list[int]]]:
    """The (normalized, pixel) crop boxes printed, in order."""
    normalized = [json.loads(m.group(1)) for m in
                  (re.search(r"crop box \(normalized, after padding\): (\[.*\])", line) for line in lines) if m]
    pixels = [json.loads(m.group(1)) for m in (re.search(r"crop box \(pixels\): (\[.*?\])", line) for line in lines) if m]
    assert len(normalized) == len(pixels)
    return list(zip(normalized, pixels))


def expected_crops(traj: Trajectory) -> list[tuple[list[float], list[int]]]:
    return [([round(v, 4) for v in call.box_normalized], traj.images[index - 1].box)
            for call in traj.tool_calls if call.ok for index in call.new_images
            if traj.images[index - 1].kind == "crop"]


class Shared:
    """The session's demo engine as `build_engine` would return it, left open when ask closes it."""

    def __init__(self, inner):
        self.inner, self.name, self.built = inner, inner.name, []

    def generate(self, requests, decoding):
        return self.inner.generate(requests, decoding)

    def close(self):
        pass


@pytest.fixture(scope="module")
def command(tmp_path_factory, demo_engine):
    """`pr-eval ask` on zoom doc 0 through its command line (`main`, argument parsing, protocol,
    model resolution, output files), in this process with the session's demo engine in place of
    a second engine start (what `build_engine` is asked for is kept): (status, folder)."""
    import contextlib
    import io

    from pr_eval import engines
    from pr_eval.run import quiet

    doc = zoom_doc()
    folder = tmp_path_factory.mktemp("ask-command")
    shared = Shared(demo_engine)

    def build_engine(kind, model_path, protocol, **options):
        shared.built.append((kind, model_path, protocol.name))
        return shared

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines, "build_engine", build_engine)
        for name in quiet.ENVIRONMENT:
            patch.delenv(name, raising=False)  # main() sets them: restored afterwards
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = asking.main(["--model", "demo", "--image", str(image_file(doc)), doc["question"],
                                  "--html", str(folder / "out.html"), "--json", str(folder / "out.json")])
    (folder / "stdout").write_text(out.getvalue())
    (folder / "stderr").write_text(err.getvalue())
    assert shared.built == [("vllm", str(resolve_model("demo")), PIXEL_REASONER.name)]
    return status, folder


@pytest.fixture(scope="module")
def asked(demo_engine):
    """Zoom doc 0 asked in-process: (document, lines printed, trajectory, spy)."""
    doc = zoom_doc()
    lines: list[str] = []
    spy = Spy(demo_engine, lines)
    sample = asking.file_sample(lmms_task.doc_to_text(doc), [image_file(doc)], protocol=PIXEL_REASONER)
    traj = asking.ask(spy, PIXEL_REASONER, sample, out=lines.append)
    return doc, lines, traj, spy


def test_ask_gives_the_runs_trajectory(asked, demo_engine, tmp_path, monkeypatch):
    """The same question and image file: the trajectory of `ask` is the run loop's and the one a
    real lmms-eval run of pr_zoom records for that document."""
    from pr_eval.run import evaluate as runner
    from pr_eval.models import resolve_model

    doc, _lines, traj, spy = asked
    assert traj.stop_reason == ANSWERED and traj.tool_calls and traj.tool_calls[0].ok
    assert [i.kind for i in traj.images] == ["input", "crop"]
    assert [r.seed for r in spy.requests] == [None, None]  # greedy: the protocol's own seed

    [looped] = loop.run_samples(demo_engine, [run_sample(doc)], PIXEL_REASONER)
    assert essence(traj) == essence(looped)

    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    run = runner.evaluate("demo", resolve_model("demo"), ["pr_zoom"], limit=2, output=tmp_path, engine=demo_engine)
    records = [json.loads(line) for line in (run.folder / "samples_pr_zoom.jsonl").read_text().splitlines()]
    [record] = [r for r in records if r["doc_id"] == DOC]
    assert record["sample_id"] == doc["qid"] and record["question"] == traj.question
    assert essence(Trajectory.from_record(record)) == essence(traj)


def test_ask_prints_each_turn_as_it_happens(asked):
    doc, lines, traj, spy = asked
    text = "\n".join(lines)
    assert lines[0] == "question:" and lines[1] == "    " + doc["question"].splitlines()[0]
    assert f"image 1: {image_file(doc)}, 644x644 as stored, shown at 644x644" in lines
    for k, generation in enumerate(traj.generations, start=1):
        header = f"turn {k} ({generation.prompt_tokens} prompt + {generation.output_tokens} output tokens, "
        assert sum(line.startswith(header) for line in lines) == 1
    for message in (m for m in traj.messages if m["role"] == "assistant"):
        assert "\n".join("    " + line for line in message["content"][0]["text"].split("\n")) in text
    call = traj.tool_calls[0]
    assert f"  tool call: crop_image_normalized {json.dumps(call.arguments)}" in lines
    assert "  ran: yes, added image 2" in lines
    assert crop_lines(lines) == expected_crops(traj) and len(expected_crops(traj)) == 1
    crop = traj.images[1]
    assert f"  crop box (pixels): {asking.numbers(crop.box)} of image 1 ({crop.source_size[0]}x{crop.source_size[1]})" \
        in lines and f"  new image 2: {crop.width}x{crop.height}" in lines
    answer = extract_answer(traj.answer_text)
    assert answer in "ABCD" and f"final answer: {answer}" in lines
    assert any(line.startswith("stop reason: answered (2 turns, 1 tool call, ") for line in lines)
    # as it happens: when the answer turn was asked for, turn 1 and its crop were already printed
    before_answer = spy.printed_before[1]
    assert any(line.startswith("turn 1 (") for line in before_answer)
    assert crop_lines(before_answer) == expected_crops(traj)
    assert not any(line.startswith(("turn 2", "final answer")) for line in before_answer)


def test_a_sampled_protocol_asks_rollout_zero_with_its_seed(demo_engine):
    doc = zoom_doc(1)
    greedy = asking.file_sample("q", [image_file(doc)], protocol=PIXEL_REASONER, seed=3)
    assert greedy.rollout is None and greedy.seed is None
    sample = asking.file_sample(doc["question"], [image_file(doc)], protocol=SAMPLED, seed=3)
    assert sample.sample_id == "zoom-1" and sample.rollout == 0
    assert sample.seed == rollout_seed(3, "ask", "zoom-1", 0)
    spy = Spy(demo_engine)
    traj = asking.ask(spy, SAMPLED, sample, out=lambda line: None)
    assert traj.rollout == 0 and traj.seed == sample.seed and traj.finished
    assert [r.seed for r in spy.requests] == [turn_seed(sample.seed, k) for k in range(len(traj.generations))]
    [looped] = loop.run_samples(demo_engine, [dataclasses.replace(sample)], SAMPLED)
    assert essence(traj) == essence(looped)


def test_the_command(asked, command):
    """The real `pr-eval ask`: the same crop boxes as in-process, the page with the question
    escaped and the images inlined, the record of the same trajectory."""
    doc, _lines, traj, _spy = asked
    returncode, folder = command
    page, record = folder / "out.html", folder / "out.json"
    assert returncode == 0, (folder / "stderr").read_text()[-3000:]
    printed = (folder / "stdout").read_text().splitlines()
    assert crop_lines(printed) == expected_crops(traj)
    assert f"final answer: {extract_answer(traj.answer_text)}" in printed
    assert sum(line.startswith("turn ") for line in printed) == len(traj.generations)
    assert printed[-2:] == [f"wrote {page}", f"wrote {record}"]
    html = page.read_text()
    assert esc(doc["question"]) in html and "&#x27;s letter" in html
    shown = shlex.join(["pr-eval", "ask", "--model", "demo", "--image", str(image_file(doc)), doc["question"],
                        "--html", str(page), "--json", str(record)])
    assert esc(shown) in html  # the command as a shell reads it: the question quoted (issue 26)
    assert html.count('src="data:image/jpeg;base64,') == 2  # the input and the crop, inlined
    assert "<rect class=\"box\"" in html and "crop_image_normalized" in html
    assert essence(Trajectory.from_record(json.loads(record.read_text()))) == essence(traj)


def test_the_page_escapes_what_the_question_and_model_wrote(demo_engine):
    doc = zoom_doc()
    question = "<script>alert('x')</script> " + doc["question"]
    sample = asking.file_sample(question, [image_file(doc)], protocol=PIXEL_REASONER)
    pages: list[str] = []
    traj = asking.ask(demo_engine, PIXEL_REASONER, sample, out=lambda line: None,
                      on_finish=lambda done: pages.append(asking.trajectory_html(done, [("model", "<b>demo</b>")])))
    [page] = pages
    assert "<script" not in page and "<b>demo" not in page
    assert esc(question) in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;tool_call&gt;" in page and traj.tool_calls  # the model's own markup, as text
    assert page.count('src="data:image/jpeg;base64,') == len(traj.images)
    assert not traj.pixels  # dropped once handed on, as in a run


def test_a_video_is_asked_as_a_run_shows_it(demo_engine, tmp_path):
    """--video: the 16 frames a run decodes from the same file, then (scripted through the real
    engine) a frame selection and a crop of a selected frame, each printed."""
    from conftest import load_script, select_call

    from pr_eval.data import load as data
    from pr_eval.loop.tools import crop_call

    make_samples = load_script("make_samples")
    make_samples.write_video(tmp_path / "clip.mp4", make_samples.coded_frames())
    sample = asking.file_sample("What moves?", video=tmp_path / "clip.mp4", protocol=PIXEL_REASONER)
    row = {"qid": "clip", "video": "clip.mp4", "video_start": -1.0, "video_end": -1.0, "is_video": True}
    frames = data.load_visuals(row, tmp_path)
    assert sample.is_video and [f.tobytes() for f in sample.load_images()] == [f.tobytes() for f in frames]
    script = {"clip": [select_call(3, 7), crop_call([0.2, 0.2, 0.6, 0.6], target=2), "\\boxed{A}"]}
    lines: list[str] = []
    traj = asking.ask(demo_engine, PIXEL_REASONER, sample, out=lines.append, guide=loop.scripted(script))
    assert [i.kind for i in traj.images] == ["video", "frame", "frame", "crop"] and traj.stop_reason == ANSWERED
    shown = traj.images[0]
    assert lines[2] == f"image 1: video {tmp_path / 'clip.mp4'}, 16 frames shown at {shown.width}x{shown.height}"
    assert f"  tool call: select_frames {json.dumps({'target_frames': [3, 7]})}" in lines
    assert f"  new image 2: frame 3 of the video, {traj.images[1].width}x{traj.images[1].height}" in lines
    assert crop_lines(lines) == expected_crops(traj)
    assert any(line.startswith("  crop box (pixels): ") and line.endswith(
        f"of frame 3 of image 2 ({traj.images[3].source_size[0]}x{traj.images[3].source_size[1]})") for line in lines)
    assert "final answer: A" in lines


@pytest.fixture
def no_engine(monkeypatch):
    """Fails the test if `main` gets as far as building an engine."""
    import pr_eval.engines

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was built")

    monkeypatch.setattr(pr_eval.engines, "build_engine", refuse)


def test_bad_input_is_one_line_before_any_engine(tmp_path, capsys, no_engine):
    image = str(image_file(zoom_doc()))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really an image" * 10)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(Path(image).read_bytes()[:600])
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(os.urandom(2048))
    from test_loader_fuzz import png_with_garbled_second_idat

    garbled = tmp_path / "garbled.png"  # opens, then a SyntaxError while decoding
    garbled.write_bytes(png_with_garbled_second_idat())
    gif_video = tmp_path / "gif.mp4"  # decord's DECORDError, which is not a RuntimeError
    Image.new("RGB", (32, 32)).save(gif_video, format="GIF")
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    cases = {
        "unreadable image  ": ["--image", str(garbled), "q"],
        "unreadable video ": ["--video", str(gif_video), "q"],
        "not a regular file": ["--image", str(pipe), "q"],
        "image file not found": ["--image", str(tmp_path / "missing.png"), "q"],
        "unreadable image": ["--image", str(garbage), "q"],
        "unreadable image ": ["--image", image, "--image", str(truncated), "q"],
        "no image": ["q"],
        "exclude each other": ["--image", image, "--video", str(bad_video), "q"],
        "the question is empty": ["--image", image, "  \n"],
        "the question is empty ": ["--image", image],
        "unknown protocol 'nope'": ["--image", image, "--protocol", "nope", "q"],
        "was retired": ["--image", image, "--protocol", "pixel-reasoner-v1", "q"],
        "unreadable video": ["--video", str(bad_video), "q"],
        "video file not found": ["--video", str(tmp_path / "none.mp4"), "q"],
        "its folder does not exist": ["--image", image, "--html", str(tmp_path / "no" / "out.html"), "q"],
        "--engine openai needs --base-url": ["--image", image, "--engine", "openai", "q"],
        "--max-images must be at least 1": ["--image", image, "--max-images", "0", "q"],
    }
    for expected, args in cases.items():
        assert asking.main(["--model", "demo", *args]) == 2, expected
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("pr-eval ask: error: ") and expected.strip() in lines[0], \
            (expected, captured.err)


def test_engine_failures_exit_1(monkeypatch, capsys, tmp_path):
    import pr_eval.engines
    from pr_eval.run import quiet

    monkeypatch.setattr(quiet, "enable", lambda: pytest.fail("--verbose runs quiet"))

    image = str(image_file(zoom_doc()))

    def unbuildable(*args, **kwargs):
        raise EngineError("vLLM could not load 'x': out of memory")

    monkeypatch.setattr(pr_eval.engines, "build_engine", unbuildable)
    # --verbose: a quiet main would set its environment variables in this test process
    assert asking.main(["--model", "demo", "--image", image, "q", "--verbose"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "pr-eval ask: error: vLLM could not load 'x': out of memory"

    class Broken:  # an engine that stops serving mid-question
        name = "broken"
        closed = False

        def generate(self, requests, decoding):
            raise EngineError("the vLLM engine failed: RuntimeError: gone")

        def close(self):
            Broken.closed = True

    monkeypatch.setattr(pr_eval.engines, "build_engine", lambda *a, **k: Broken())
    assert asking.main(["--model", "demo", "--image", image, "q", "--html", str(tmp_path / "x.html"), "--verbose"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == "pr-eval ask: error: the vLLM engine failed: RuntimeError: gone"
    assert "question:" in captured.out and Broken.closed and not (tmp_path / "x.html").exists()


def test_what_the_engine_and_model_say_is_printed_as_text():
    """A refused request and control characters in a turn: the loop's own step, no engine."""
    sample = Sample("ask", "s", "Which?\x1b[2J", None, load_images=lambda: [_picture()])
    traj = loop.start(sample, PIXEL_REASONER)
    lines = asking.start_lines(traj)
    assert "    Which?\\x1b[2J" in lines
    loop.step(traj, GenerationResult(text="\x1b]0;owned\x07 <b>\\boxed{C}</b>", prompt_tokens=5, output_tokens=3,
                                     finish_reason="stop", stop="<|im_end|>"), PIXEL_REASONER)
    lines = asking.step_lines(traj, 2, 0, 0, PIXEL_REASONER) + asking.end_lines(traj, 0.0)
    assert "    \\x1b]0;owned\\x07 <b>\\boxed{C}</b>" in lines and "final answer: C" in lines
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    refused = loop.start(sample, PIXEL_REASONER)
    loop.step(refused, GenerationResult(text="", error="ValueError: prompt too long"), PIXEL_REASONER)
    assert asking.step_lines(refused, 2, 0, 0, PIXEL_REASONER) == ["turn 1: engine error: ValueError: prompt too long"]
    assert "stop reason: engine_error (0 turns, 0 tool calls, 0.0 s)" in asking.end_lines(refused, 0.0)


def test_a_data_error_ends_the_question_without_the_engine():
    def unreadable():
        from pr_eval.errors import DataError

        raise DataError("unreadable image x.png: truncated")

    class Untouched:
        name = "untouched"

        def generate(self, requests, decoding):
            raise AssertionError("the engine was asked")

    lines: list[str] = []
    traj = asking.ask(Untouched(), PIXEL_REASONER, Sample("ask", "x", "q", None, load_images=unreadable),
                      out=lines.append)
    assert traj.stop_reason == DATA_ERROR
    assert "data error: unreadable image x.png: truncated" in lines and "final answer: (none: no \\boxed{} answer)" in lines


def _picture():
    from PIL import Image

    return Image.new("RGB", (640, 480), (90, 120, 200))

