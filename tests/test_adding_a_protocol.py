"""docs/adding-a-protocol.md works as written: its module, registered with its one line, makes a
protocol the loop runs, the metrics score and the judge asks about, with no other file changed;
and the field's families each live in their own module plus that one line."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from pr_eval import families
from pr_eval.loop import steps as loop
from pr_eval.scoring import metrics
from pr_eval.engines.base import GenerationResult
from pr_eval.trajectory import ANSWERED, Sample, Trajectory

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "adding-a-protocol.md"


def page_blocks() -> dict[str, str]:
    """The page's python blocks that start with a comment naming their file, and the registry line."""
    text = PAGE.read_text(encoding="utf-8")
    named = {name: body for body, name in re.findall(r"```python\n(# (\S+)\n.*?)```", text, re.S)}
    named["registry"] = re.search(r"```python\n(MODULES = .*?)\n```", text, re.S).group(1)
    return named


@pytest.fixture
def tagged_zoom(tmp_path, monkeypatch):
    """The page's module imported as pr_eval.families.tagged_zoom and registered as its line says."""
    module_file = tmp_path / "tagged_zoom.py"
    module_file.write_text(page_blocks()["pr_eval/families/tagged_zoom.py"], encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pr_eval.families.tagged_zoom", module_file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "pr_eval.families.tagged_zoom", module)
    spec.loader.exec_module(module)
    line = page_blocks()["registry"]
    assert line == "MODULES = (" + ", ".join(m.__name__.rsplit(".", 1)[1] for m in families.MODULES) + ", tagged_zoom)"
    monkeypatch.setitem(families.FAMILIES, module.FAMILY.name, module.FAMILY)
    for protocol in module.PROTOCOLS:
        monkeypatch.setitem(families.PROTOCOLS, protocol.name, protocol)
    return module


def turn(text: str) -> GenerationResult:
    return GenerationResult(text=text, prompt_tokens=50, output_tokens=10, stop="<|im_end|>")


def run(protocol, turns: list[str]) -> Trajectory:
    image = Image.new("RGB", (400, 200), (200, 30, 30))
    sample = Sample("pr_vstar", "q1", "What colour is it?\n(A) red\n(B) blue", "A", load_images=lambda: [image])
    traj = loop.start(sample, protocol)
    for text in turns:
        if traj.finished:
            break
        loop.step(traj, turn(text), protocol)
    return traj


def test_the_page_names_one_module_and_one_registry_line():
    assert set(page_blocks()) == {"pr_eval/families/tagged_zoom.py", "registry"}


def test_the_example_family_zooms_answers_and_is_scored(tagged_zoom):
    protocol = families.get_protocol("tagged-zoom")
    assert families.family_of(protocol) is tagged_zoom.FAMILY
    traj = run(protocol, ["Let me look. <zoom>[0.25, 0.5, 0.75, 1.0]</zoom>", "It is red. \\boxed{A}"])
    assert traj.stop_reason == ANSWERED and traj.family == "tagged-zoom"
    [call] = traj.tool_calls
    assert call.ok and call.box_normalized == [0.25, 0.5, 0.75, 1.0] and call.new_images == [2]
    assert traj.images[1].kind == "crop" and (traj.images[1].width, traj.images[1].height) == (200, 100)
    assert traj.messages[-2]["content"][0]["text"] == "Zoomed in:"
    # the record names the family, so a saved run is scored by its rules, not Pixel Reasoner's
    record = Trajectory.from_record(traj.to_record())
    scored = metrics.sample_metrics(record, {"answer": "A"}, "vstar")
    assert scored["accuracy"] == 1.0 and scored["rapr"] == 1.0 and "undecided" not in record.scores


def test_a_broken_call_is_fed_back_and_an_unboxed_answer_goes_to_the_judge(tagged_zoom):
    protocol = families.get_protocol("tagged-zoom")
    traj = run(protocol, ["<zoom>[0.1, oops]</zoom>", "red, I think"])
    [call] = traj.tool_calls
    assert not call.ok and call.error_kind == "malformed"
    assert traj.messages[3]["content"][0]["text"].startswith("Zoom failed: Expecting value")
    scored = metrics.sample_metrics(traj, {"answer": "A"}, "vstar")
    # lmms-eval's mean sees 0; the run marks it undecided (pr_eval.judge.family.rule_only), for the judge
    assert scored["accuracy"] == 0.0 and traj.scores["undecided"] is True
    assert scored["attribute_accuracy"]["weight"] == 0.0  # breakdowns leave it out
    family = families.family_of(protocol)
    verdict = family.verdict(traj, "A")
    assert family.judge_messages(traj, "A", verdict) == [
        {"role": "user", "content": "Is red, I think the option A? Reply yes or no."}]
    assert [family.judge_score(r) for r in ("yes", " No ", "maybe")] == [1.0, 0.0, None]


def test_the_fingerprint_covers_the_family_rules(tagged_zoom):
    import dataclasses

    protocol = families.get_protocol("tagged-zoom")
    settings = protocol.settings()
    assert settings["family"] == "tagged-zoom" and settings["rules"]["feedback"] == "Zoomed in:"
    assert "crop_padding" not in settings  # Pixel Reasoner's own settings are not another family's
    changed = dataclasses.replace(protocol, rules=dataclasses.replace(protocol.rules, feedback="Zoom:"))
    assert changed.fingerprint != protocol.fingerprint


def code_of(source: str) -> str:
    """The module's code without its docstrings and comments (prose may name a family)."""
    tree = ast.parse(source)
    prose = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            prose.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = source.splitlines()
    return "\n".join(line.split("#", 1)[0] for number, line in enumerate(lines, 1) if number not in prose)


# A family's name as a string of code, or its call grammar (VisualProbe's "mini-o3-json" release
# format is a data format, not the protocol).
FAMILY_WORDS = {"deepeyes": (r"[\"']deepeyes", r"DeepEyes\b", "<tool_response>"),
                "mini_o3": (r"[\"']mini-o3[\"']", r"[\"']mini-o3-", "<grounding>", "observation_"),
                "chain_of_focus": (r"[\"']chain-of-focus", r"Chain-of-Focus")}
# Modules that may name a family: its own, the registry, and the prose of the seam's own modules.
ALLOWED = {"families/__init__.py", "families/base.py", "protocol.py", "loop/safe_eval.py", "judge/family.py"}


@pytest.mark.parametrize("module", sorted(FAMILY_WORDS))
def test_a_family_touches_one_module_and_the_registry(module):
    """The goal of the seam: no module outside the family's own names it (the loop, metrics,
    judge, report, ask and CLI ask the family)."""
    source = ROOT / "pr_eval"
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source).as_posix()
        if relative.startswith(f"families/{module}") or relative in ALLOWED:
            continue
        code = code_of(path.read_text(encoding="utf-8"))
        for word in FAMILY_WORDS[module]:
            assert not re.search(word, code.replace("mini-o3-json", "")), f"{relative} names {word!r}: ask the family"


def test_the_protocols_page_lists_every_protocol_with_its_fingerprint():
    page = (ROOT / "docs" / "peer-protocols.md").read_text(encoding="utf-8")
    for name, protocol in families.PROTOCOLS.items():
        if protocol.family != "pixel-reasoner" or name == "pixel-reasoner-v3":
            assert f"| `{name}`" in page and f"`{protocol.fingerprint}`" in page, name


def test_a_video_benchmark_under_a_family_without_video_is_refused_in_one_line(capsys):
    from pr_eval.cli.run import main

    assert main(["--model", "demo", "--tasks", "vstar,mvbench", "--protocol", "mini-o3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pr-eval: error: protocol 'mini-o3' runs image benchmarks only (the mini-o3 release has no "
                   "video path); pr_mvbench is a video benchmark: run it under pixel-reasoner-v3 or leave it out"]
