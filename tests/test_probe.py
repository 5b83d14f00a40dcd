"""`pr-eval probe`: interventions as named, fingerprinted variants of every protocol; what they do
to a sample and to a crop; the card from real runs (the demo model on zoom, which reads the dot it
zooms into) and from a test double that answers from the question alone (which the card must show
as not looking: no significant drop anywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pr_eval import engines
from pr_eval.benchmarks import zoom
from pr_eval.engines.base import GenerationResult
from pr_eval.errors import DataError
from pr_eval.families import PROTOCOLS, base as family_base, get_protocol
from pr_eval.probe import variants
from pr_eval.protocol import BLIND_TOOL, BLIND_TOOL_BLANK, NO_TOOL, PIXEL_REASONER
from pr_eval.run import quiet
from pr_eval.trajectory import ImageInfo, Sample, Trajectory


def zoom_sample(index: int = 0) -> Sample:
    item = zoom.make_benchmark()[index]
    return Sample(task="pr_zoom", sample_id=item.qid, question=item.question, answer=item.answer,
                  load_images=lambda: [item.image], meta={"targets": [list(item.card)]})


# --- variants --------------------------------------------------------------------------------------

def test_every_protocol_has_variants_with_their_own_fingerprints():
    plain = {p.fingerprint for p in PROTOCOLS.values()}
    seen = set()
    for protocol in PROTOCOLS.values():
        if protocol.blind or not protocol.tools_enabled:
            continue
        names = variants.applicable(protocol)
        if protocol.sampling is not None:  # not probed: its card would need per-rollout pairing
            assert names == [], protocol.name
            continue
        expected = {"target-masked", "counterfactual-edit", "crop-blank", "crop-uncropped"}
        if protocol.name == "deepeyes-correct-first":  # it reorders the options: no edited letter
            expected.discard("counterfactual-edit")
        assert expected <= set(names), protocol.name
        for name in names:
            v = variants.variant(protocol, name)
            if protocol is PIXEL_REASONER and name in variants.OWN_VARIANTS:
                continue  # its published ablations
            assert v.fingerprint not in plain and v.fingerprint not in seen, (protocol.name, name)
            assert v.name == f"{protocol.name}+{name}" and get_protocol(v.name) == v
            seen.add(v.fingerprint)
    assert variants.variant(PIXEL_REASONER, "crop-blank") is BLIND_TOOL_BLANK
    assert variants.variant(PIXEL_REASONER, "crop-uncropped") is BLIND_TOOL
    assert variants.variant(PIXEL_REASONER, "no-tool") is NO_TOOL
    assert "no-tool" not in variants.applicable(PROTOCOLS["deepeyes"])
    with pytest.raises(ValueError, match="unknown intervention"):
        variants.variant(PIXEL_REASONER, "squint")
    with pytest.raises(ValueError, match="already an ablation"):
        variants.variant(BLIND_TOOL, "target-masked")
    record = variants.variant(PROTOCOLS["mini-o3"], "target-masked").record()
    assert record["settings"]["intervention"]["name"] == "target-masked"
    assert "mean colour" in record["settings"]["intervention"]["method"]


def test_target_masked_changes_only_the_target_box():
    protocol = variants.variant(PIXEL_REASONER, "target-masked")
    sample = zoom_sample()
    edited, record = variants.intervene_sample(sample, protocol)
    before = np.asarray(sample.load_images()[0])
    after = np.asarray(edited.load_images()[0])
    x1, y1, x2, y2 = record["targets"][0]
    inside = np.zeros(before.shape[:2], bool)
    inside[int(y1):int(y2), int(x1):int(x2)] = True
    assert (before[~inside] == after[~inside]).all() and not (before[inside] == after[inside]).all()
    assert len({tuple(p) for p in after[inside]}) == 1  # one fill colour: the dot is gone
    with pytest.raises(DataError, match="no target box"):
        variants.intervene_sample(Sample("t", "1", "q", "A", lambda: [], meta={}), protocol)


def test_the_counterfactual_moves_the_answer_to_the_edited_option():
    protocol = variants.variant(PROTOCOLS["deepeyes"], "counterfactual-edit")
    item = zoom.make_benchmark()[0]
    edited, record = variants.intervene_sample(zoom_sample(), protocol)
    image = edited.load_images()[0]
    colours = list(zoom.COLORS)
    assert record["original_answer"] == item.answer and record["edited_answer"] != item.answer
    assert record["from"] == item.color and record["to"] == colours["ABCD".index(record["edited_answer"])]
    assert record["changed_pixels"] == zoom.DOT * zoom.DOT
    # the picture is now the generator's picture of the edited colour, pixel for pixel
    x, y = (item.card[0] + item.card[2]) // 2, (item.card[1] + item.card[3]) // 2
    assert image.getpixel((x, y)) == zoom.COLORS[record["to"]]
    question = Sample("t", "2", "How many?\n(A) 1\n(B) 2", "A", lambda: [], meta={"targets": [[0, 0, 4, 4]]})
    with pytest.raises(DataError, match="colour to change"):
        variants.intervene_sample(question, protocol)


def test_the_counterfactual_rotates_hues_where_the_benchmark_draws_no_palette():
    """V* (official release, with its `bbox`): a red object in the box becomes the next colour
    option's hue; the rest of the picture, and pixels of other colours in the box, stay."""
    picture = Image.new("RGB", (40, 30), (200, 200, 200))
    picture.paste((220, 20, 20), (10, 10, 20, 20))   # the red object
    picture.paste((250, 250, 250), (20, 10, 24, 20))  # a white patch inside the box
    question = "What is the color of the cup?\n(A) white\n(B) red\n(C) blue\n(D) black"
    sample = Sample("pr_vstar", "v1", question, "B", lambda: [picture.copy()], meta={"targets": [[8, 8, 26, 22]]})
    edited, record = variants.intervene_sample(sample, variants.variant(PIXEL_REASONER, "counterfactual-edit"))
    image = np.asarray(edited.load_images()[0])
    assert (record["edited_answer"], record["from"], record["to"]) == ("C", "red", "blue")  # white, black: no hue
    assert record["changed_pixels"] == 100 and "hue" in record["method"]
    r, g, b = image[15, 15]
    assert b > 200 and r < 40 and g < 40  # the object is blue now, as bright and as saturated
    before = np.asarray(picture)
    outside = np.ones(before.shape[:2], bool)
    outside[10:20, 10:20] = False
    assert (image[outside] == before[outside]).all()


@pytest.mark.parametrize("name", ["crop-blank", "crop-uncropped"])
def test_crop_edits_reach_every_family_through_add_image(name):
    source = Image.new("RGB", (64, 48), (10, 200, 30))
    crop = source.crop((8, 8, 40, 40))
    traj = Trajectory(task="t", sample_id="1", question="q", target="A", protocol="p", fingerprint="f",
                      meta={"intervention": {"name": name}})
    family_base.add_image(traj, source, ImageInfo(kind="input", width=64, height=48))
    family_base.add_image(traj, crop, family_base.crop_info(crop, [8, 8, 40, 40], (64, 48), parent=1))
    shown, info = traj.pixels[1], traj.images[1]
    if name == "crop-blank":
        assert shown.size == crop.size and (np.asarray(shown) == 128).all()
    else:
        assert shown is source and (info.width, info.height) == (64, 48)
    assert info.kind == "crop" and info.box == [8, 8, 40, 40]  # the record says what was asked
    # what a family shows for a call that failed (Chain-of-Focus' fallbacks: a crop without a box)
    # is not a crop the tool returned: it stays
    fallback = source.resize((128, 96))
    family_base.add_image(traj, fallback, ImageInfo(kind="crop", width=128, height=96, parent=1))
    assert traj.pixels[2] is fallback


# --- the command and the card ------------------------------------------------------------------------

class FromTheQuestion:
    """A test double that never looks: answers (A) to every question, without a tool call."""

    name = "from-the-question"

    def generate(self, requests, decoding):
        return [GenerationResult(text="\\boxed{A}", prompt_tokens=10, output_tokens=4, finish_reason="stop",
                                 stop="<|im_end|>") for _ in requests]

    def close(self):
        pass


class Looks:
    """A test double that looks: it finds the white card, crops around it (Pixel Reasoner's call),
    then names the colour of the dot in the crop it got back (a letter of zoom's drawn colours)."""

    name = "looks"

    def generate(self, requests, decoding):
        return [self._turn(r) for r in requests]

    def _turn(self, request):
        if len(request.images) == 1:
            pixels = np.asarray(request.images[0].convert("RGB")).astype(int)
            ys, xs = np.nonzero((pixels == 255).all(axis=-1))
            if len(xs) == 0:  # no card to find (it was masked): answer without looking closer
                return self._say("\\boxed{A}")
            h, w = pixels.shape[:2]
            box = [round(float(v), 3) for v in (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)]
            call = {"name": "crop_image_normalized", "arguments": {"bbox_2d": box, "target_image": 1}}
            return self._say("<tool_call>\n" + json.dumps(call) + "\n</tool_call>")
        crop = np.asarray(request.images[-1].convert("RGB")).astype(int)
        ys, xs = np.nonzero((crop > 235).all(axis=-1))  # the card, resized: near-white
        if len(xs) == 0:
            return self._say("\\boxed{A}")
        card = crop[ys.min():ys.max() + 1, xs.min():xs.max() + 1].reshape(-1, 3)
        dot = card[(np.abs(card - 255).sum(axis=1) > 150)]  # what is on the card
        if len(dot) < 20:
            return self._say("\\boxed{A}")
        distance = [np.abs(dot.mean(axis=0) - np.array(rgb)).sum() for rgb in zoom.COLORS.values()]
        return self._say("\\boxed{%s}" % "ABCD"[int(np.argmin(distance))])

    @staticmethod
    def _say(text):
        return GenerationResult(text=text, prompt_tokens=10, output_tokens=4, finish_reason="stop", stop="<|im_end|>")

    def close(self):
        pass


def run_probe(monkeypatch, engine, tmp_path, *extra, tasks="zoom") -> tuple[int, Path]:
    from pr_eval.cli import probe

    monkeypatch.setattr(engines, "build_engine", lambda *args, **kwargs: engine)
    for name in quiet.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    status = probe.main(["--model", "demo", "--tasks", tasks, "--data", "samples", "--output", str(tmp_path),
                         *extra])
    return status, next(p for p in tmp_path.iterdir() if p.is_dir())


def test_a_model_that_does_not_look_is_caught(monkeypatch, tmp_path, capsys):
    status, folder = run_probe(monkeypatch, FromTheQuestion(), tmp_path, "--limit", "24")
    assert status == 0, capsys.readouterr().err[-2000:]
    plan = json.loads((folder / "probe.json").read_text())
    card = plan["card"]["zoom"]
    assert set(card["interventions"]) == {"crop-blank", "crop-uncropped", "no-tool", "target-masked",
                                          "counterfactual-edit"}
    golds = [item.answer for item in zoom.make_benchmark()[:24]]
    for name, figure in card["interventions"].items():
        assert figure["n"] == 24 and not figure["significant"], name
        if name != "counterfactual-edit":  # the others keep every gold: nothing changes at all
            assert figure["delta"] == 0 and figure["flips"]["lost"] == figure["flips"]["gained"] == 0, name
    edit = card["interventions"]["counterfactual-edit"]
    # it answers A whatever the picture shows: it follows the edit only where the edit made A right
    # (the yellow dots, D, turned red), and stays where the answer was A
    assert edit["follows_edit"]["n"] == 24 and edit["follows_edit"]["successes"] == golds.count("D")
    assert edit["stays_original"]["successes"] == golds.count("A")
    assert plan["variants"]["target-masked"]["fingerprint"] != plan["protocol"]["fingerprint"]
    out = capsys.readouterr().out
    assert "target-masked" in out and "answer follows the edit" in out
    assert (folder / "probe.html").is_file()


@pytest.mark.engine
def test_the_demo_model_reads_the_dot_it_zooms_into(monkeypatch, tmp_path, demo_engine, capsys):
    from conftest import Borrowed

    status, folder = run_probe(monkeypatch, Borrowed(demo_engine), tmp_path, "--limit", "16",
                               "--interventions", "target-masked,counterfactual-edit")
    assert status == 0, capsys.readouterr().err[-2000:]
    card = json.loads((folder / "probe.json").read_text())["card"]["zoom"]
    masked, edit = card["interventions"]["target-masked"], card["interventions"]["counterfactual-edit"]
    assert card["protocol_accuracy"] >= 0.6
    assert masked["accuracy"] <= 0.5 and masked["delta"] < 0 and masked["chance"] == 0.25
    assert edit["follows_edit"]["rate"] >= 0.5 > edit["stays_original"]["rate"]
    page = (folder / "probe.html").read_text()
    assert "Does it look?" in page and "target-masked, edited and flipped questions" in page and "<script" not in page
    # --resume of a finished probe runs nothing again and writes the same card
    status, _ = run_probe(monkeypatch, None, tmp_path, "--limit", "16", "--interventions",
                          "target-masked,counterfactual-edit", "--resume", str(folder))
    assert status == 0
    assert json.loads((folder / "probe.json").read_text())["card"]["zoom"] == card


def test_an_interrupted_probe_finishes_with_resume(monkeypatch, tmp_path, capsys):
    """A variant's run that did not finish is resumed (its saved questions kept), the finished ones
    are not run again, and the card comes out as a whole probe's would."""
    status, folder = run_probe(monkeypatch, FromTheQuestion(), tmp_path, "--limit", "8",
                               "--interventions", "target-masked")
    assert status == 0
    first = json.loads((folder / "probe.json").read_text())["card"]
    masked = next(p for p in folder.iterdir() if "target-masked" in p.name)
    (masked / "results.json").unlink()  # as if it stopped before its end
    calls = []

    class Counting(FromTheQuestion):
        def generate(self, requests, decoding):
            calls.append(len(requests))
            return super().generate(requests, decoding)

    status, again = run_probe(monkeypatch, Counting(), tmp_path, "--limit", "8", "--interventions",
                              "target-masked", "--resume", str(folder))
    assert status == 0 and again == folder and calls == []  # every question was saved
    assert json.loads((folder / "probe.json").read_text())["card"] == first
    assert (masked / "results.json").is_file()


@pytest.mark.parametrize("extra, says", [
    (["--interventions", "squint"], "--interventions: unknown intervention 'squint'"),
    (["--protocol", "deepeyes", "--interventions", "no-tool"], "has no no-tool prompt of its own"),
    (["--protocol", "blind-tool"], "already an ablation"),
    (["--resume"], "--resume needs the probe folder"),
])
def test_a_bad_probe_command_is_one_line(monkeypatch, tmp_path, capsys, extra, says):
    from pr_eval.cli import probe

    status = probe.main(["--model", "demo", "--tasks", "zoom", "--data", "samples", "--output", str(tmp_path),
                         *extra])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and says in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_looks_drops_under_the_edits_that_hide_what_it_reads(monkeypatch, tmp_path, capsys):
    """The CPU tier's counterpart of the demo model's probe: a double that reads the dot it crops
    loses it under crop-blank and target-masked, and follows every counterfactual edit."""
    status, folder = run_probe(monkeypatch, Looks(), tmp_path, "--limit", "16", "--interventions",
                               "crop-blank,target-masked,counterfactual-edit")
    assert status == 0, capsys.readouterr().err[-2000:]
    card = json.loads((folder / "probe.json").read_text())["card"]["zoom"]
    assert card["protocol_accuracy"] == 1.0
    blank, masked, edit = (card["interventions"][n] for n in ("crop-blank", "target-masked", "counterfactual-edit"))
    golds = [item.answer for item in zoom.make_benchmark()[:16]]
    assert blank["accuracy"] == golds.count("A") / 16 and blank["significant"] and blank["flips"]["gained"] == 0
    assert masked["accuracy"] == golds.count("A") / 16 and masked["significant"] and masked["chance"] == 0.25
    # scored against the edited colour: it follows every edit, and never stays with the old one
    assert edit["accuracy"] == 1.0 and edit["delta"] == 0 and edit["follows_edit"]["rate"] == 1.0
    assert edit["stays_original"]["successes"] == 0
    edited = next(p for p in folder.iterdir() if "counterfactual" in p.name)
    record = json.loads((edited / "samples_pr_zoom.jsonl").read_text().splitlines()[0])
    assert record["target"] == record["meta"]["intervention"]["edited_answer"] != golds[0]
    page = (folder / "probe.html").read_text()
    assert "flipped under crop-blank" in page and "target-masked, edited and flipped questions" in page
    assert page.count("(edited)") == 6  # three before/after pictures of each input edit


def test_an_edit_that_applies_to_no_question_says_so(monkeypatch, tmp_path, capsys):
    """The bundled V* rows carry no target boxes: each masked question is a data error of that run
    (the model never sees it), and the card has no figure for it rather than the protocol's
    accuracy against a run of errors."""
    status, folder = run_probe(monkeypatch, FromTheQuestion(), tmp_path, "--limit", "3", "--interventions",
                               "target-masked", tasks="vstar")
    assert status == 0, capsys.readouterr().err[-2000:]
    figure = json.loads((folder / "probe.json").read_text())["card"]["vstar"]["interventions"]["target-masked"]
    assert figure["status"] == "not applicable" and figure["n"] == 0 and figure["not_applied"] == 3
    assert figure["accuracy"] is None and figure["delta"] is None and not figure["significant"]
    assert "(3 not applicable)" in capsys.readouterr().out


def test_resume_refuses_another_probe(monkeypatch, tmp_path, capsys):
    status, folder = run_probe(monkeypatch, FromTheQuestion(), tmp_path, "--limit", "2", "--interventions",
                               "target-masked")
    assert status == 0
    capsys.readouterr()
    status, _ = run_probe(monkeypatch, FromTheQuestion(), tmp_path, "--limit", "2", "--interventions",
                          "target-masked", "--seed", "1", "--resume", str(folder))
    err = capsys.readouterr().err
    assert status == 2 and "that probe ran another seed" in err and err.count("\n") == 1


def test_the_page_shows_what_a_model_wrote_as_text(monkeypatch, tmp_path, capsys):
    class Hostile(FromTheQuestion):
        def generate(self, requests, decoding):
            text = "\\boxed{<script>alert(1)</script><img src=x onerror=alert(2)>}"
            return [GenerationResult(text=text, prompt_tokens=10, output_tokens=4, finish_reason="stop",
                                     stop="<|im_end|>") for _ in requests]

    status, folder = run_probe(monkeypatch, Hostile(), tmp_path, "--limit", "3", "--interventions", "target-masked")
    assert status == 0, capsys.readouterr().err[-2000:]
    page = (folder / "probe.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page and "<img src=x" not in page
