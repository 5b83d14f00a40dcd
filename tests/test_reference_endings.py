"""End to end through the real engine: trajectories with untidy endings get the reference's
verdict in the run folder.

The tiny model is made to write each ending with structured outputs; every expected verdict is
derived by hand from the reference's `rule_reward` / `handle_boxed` (see test_conformance_scoring.py
for the rule, one row per behaviour). The InfoVQA rows use golds the bundled samples lack (a
thousands separator, multi-span answers, a percentage), in a data folder of the same schema."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from conftest import crop_call, scripted

from pr_eval.data.load import SAMPLES_DIR
from pr_eval.run.evaluate import evaluate

CROP = crop_call([0.25, 0.25, 0.75, 0.75])

# qid -> (assistant turns, the reference's verdict)
VSTAR = {  # golds: C A D C B A B D A B A B
    # the first one-line <answer> tag is the candidate: C is not A
    "vstar-direct_attributes-0": (["<answer>A</answer> No, wait: <answer>C</answer>"], 0.0),
    # "Answer:" is looked for in the lower-cased text: never found; "a" alone does not parse
    "vstar-direct_attributes-1": (["Answer: A"], 0.0),
    "vstar-direct_attributes-2": (["D"], 0.0),  # a bare letter
    "vstar-direct_attributes-3": (["<answer>\nC\n</answer>"], 0.0),  # a tag across lines never matches
    "vstar-direct_attributes-4": ([f"I think \\boxed{{B}}, let me check.\n{CROP}", "Yes, confirmed."], 1.0),
    "vstar-direct_attributes-5": (["\\boxed{(A)}"], 1.0),  # parentheses are dropped by math_verify
    "vstar-direct_attributes-6": (["\\boxed{B. blue}"], 0.0),  # a letter with its option text does not
    # a trailing newline after </tool_call> makes the turn a final answer (nothing is stripped)
    "vstar-direct_attributes-7": ([CROP + "\n"], 0.0),
    # the last box, from "\boxed" to the END of the conversation, is the candidate
    "vstar-relative_position-0": ([CROP, "\\boxed{A}"], 1.0),
    "vstar-relative_position-1": ([f"\\boxed{{B}}\n{CROP}", "On second thought \\boxed{A}"], 0.0),
    "vstar-relative_position-2": (["\\boxed{A}"], 1.0),
    "vstar-relative_position-3": (["<answer>B</answer>"], 1.0),
}
TALLYQA = {  # golds: 2 4 3
    "tallyqa-0": (["There are 2 squares."], 1.0),  # nothing marked: math_verify reads the whole text
    "tallyqa-1": (["\\boxed{four}"], 0.0),
    "tallyqa-2": (["\\boxed{3 cm}"], 1.0),  # "cm" is deleted before parsing
}
INFOVQA = {  # qid -> (turns, gold, verdict)
    # 3,000 is not 2,500, but the multi-span slice of "2,500" is the empty string: any box passes
    "infovqa-0": (["\\boxed{3,000}"], ["2,500"], 1.0),
    # "red, blue"[7:-1] is "u"
    "infovqa-1": (["\\boxed{blue and red}"], ["red, blue"], 1.0),
    # the %-free form of the first %-answer is tried first
    "infovqa-2": (["\\boxed{45}"], ["45%"], 1.0),
    # "walking, running fast"[7:-1] gives the spans "" and "running fas"
    "infovqa-3": (["\\boxed{running fast}"], ["walking, running fast"], 1.0),
    "infovqa-4": (["\\boxed{walking}"], ["walking, running fast"], 0.0),
    "infovqa-5": (["\\boxed{dogs}"], ["Dogs", "dogs"], 1.0),
}


@pytest.fixture(scope="module")
def endings_run(engine, tiny_model, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for benchmark in ("vstar", "tallyqa"):
        shutil.copytree(SAMPLES_DIR / benchmark, data / benchmark)
    shutil.copytree(SAMPLES_DIR / "infovqa", data / "infovqa")
    rows = pd.read_parquet(SAMPLES_DIR / "infovqa" / "infographics.parquet")
    rows = rows[rows.qid.isin(list(INFOVQA))].copy()
    rows["answer"] = [INFOVQA[qid][1] for qid in rows.qid]
    rows.to_parquet(data / "infovqa" / "infographics.parquet")
    turns = {qid: t for qid, (t, _) in {**VSTAR, **TALLYQA}.items()}
    turns.update({qid: t for qid, (t, _, _) in INFOVQA.items()})
    script = scripted(turns)

    def guide(traj):  # the questions without a row here answer at once
        return script(traj) if traj.sample_id in turns else r"\\boxed\{0\}"
    before = os.environ.get("PR_EVAL_DATA")
    os.environ["PR_EVAL_DATA"] = str(data)
    try:
        yield evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar", "pr_tallyqa_complex", "pr_infovqa"],
                       output=tmp_path_factory.mktemp("runs"), engine=engine, guide=guide, limit=12)
    finally:
        if before is None:
            os.environ.pop("PR_EVAL_DATA", None)
        else:
            os.environ["PR_EVAL_DATA"] = before


def _records(run, task: str) -> dict[str, dict]:
    lines = (run.folder / f"samples_{task}.jsonl").read_text().splitlines()
    return {r["sample_id"]: r for r in map(json.loads, lines)}


@pytest.mark.parametrize("task,cases", [("pr_vstar", VSTAR), ("pr_tallyqa_complex", TALLYQA), ("pr_infovqa", INFOVQA)])
def test_each_ending_gets_the_references_verdict(endings_run, task, cases):
    records = _records(endings_run, task)
    for qid, case in cases.items():
        turns, verdict = case[0], case[-1]
        record = records[qid]
        texts = [m["content"][0]["text"] for m in record["messages"] if m["role"] == "assistant"]
        assert texts == turns, qid  # the engine wrote exactly the scripted turns
        assert record["metrics"]["accuracy"] == verdict, qid


def test_the_run_scores_what_the_reference_scores(endings_run):
    results = json.loads((endings_run.folder / "results.json").read_text())
    assert results["pr_eval"]["protocol"]["name"] == "pixel-reasoner-v3"
    expected = sum(v for _, v in VSTAR.values()) / len(VSTAR)
    assert results["lmms_eval"]["results"]["pr_vstar"]["accuracy,none"] == pytest.approx(expected)


def test_a_crop_of_a_huge_input_reaches_the_model_at_the_references_size(engine, tiny_model, tmp_path,
                                                                          monkeypatch):
    """A V*-schema sample of 12 MP: the input is shown at 2884x2156 (smart_resize into
    8000*28*28 pixels) and the crop is cut from THAT, so the model gets 1288x980 and reads
    "Image Size: 1288x980" (tests/test_tools.py derives both numbers); cut from the 4000x3000
    file it would have been 1792x1344."""
    from PIL import Image

    from conftest import RecordingEngine

    data = tmp_path / "data"
    shutil.copytree(SAMPLES_DIR / "vstar", data / "vstar")
    first = pd.read_parquet(data / "vstar" / "vstar.parquet").iloc[0]
    Image.new("RGB", (4000, 3000), (40, 90, 160)).save(data / "vstar" / first.image[0], quality=90)
    monkeypatch.setenv("PR_EVAL_DATA", str(data))
    recording = RecordingEngine(engine)
    turns = {first.qid: [crop_call([0.25, 0.25, 0.5, 0.5]), f"\\boxed{{{first.answer}}}"]}
    run = evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar"], output=tmp_path / "runs",
                   engine=recording, guide=scripted(turns), limit=1)
    record = _records(run, "pr_vstar")[first.qid]
    assert [(i["kind"], i["width"], i["height"]) for i in record["images"]] == [("input", 2884, 2156),
                                                                               ("crop", 1288, 980)]
    assert record["images"][1]["box"] == [433, 323, 1730, 1294]
    assert record["messages"][3]["content"][0]["text"] == "\nHere is the cropped image (Image Size: 1288x980):"
    second_request = recording.calls[1][0]
    assert [image.size for image in second_request.images] == [(2884, 2156), (1288, 980)]
    assert record["metrics"]["accuracy"] == 1.0
