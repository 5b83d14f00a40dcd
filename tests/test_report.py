"""The HTML report of a run: built from a real run folder (pr_eval.run.evaluate with the session's vLLM
engine, scripted crops, one answer that tries to inject markup), read back by headless Chromium.

The browser tests are skipped only where /usr/bin/chromium is missing (`make test` installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import crop_call, scripted, select_call
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.report import page as report, pictures as report_pictures
from pr_eval.data.load import SAMPLES_DIR
from pr_eval.run.evaluate import evaluate
from pr_eval.cli import report as cli_report

INJECTION = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(/usr/bin/chromium); `make test` installs it on Debian")
WINDOW = (1280, 3200)
TASKS = ["pr_vstar", "pr_mvbench_moving_direction"]


def _scripts() -> dict[str, list[str]]:
    """V* in file order: crop then an answer carrying markup; crop, crop of the crop, answer; a
    wrong plain answer; a broken call then an answer. MVBench: select frames, crop one, answer."""
    vstar = pd.read_parquet(SAMPLES_DIR / "vstar" / "vstar.parquet")
    turns = {}
    for i, (qid, letter) in enumerate(zip(vstar.qid, vstar.answer)):
        wrong = "A" if letter != "A" else "B"
        turns[qid] = [
            [crop_call([0.25, 0.25, 0.75, 0.75]), f"Zoomed. {INJECTION} \\boxed{{{letter}}}"],
            [crop_call([0.5, 0.1, 0.9, 0.5]), crop_call([0.2, 0.2, 0.6, 0.6], target=2), f"\\boxed{{{letter}}}"],
            [f"\\boxed{{{wrong}}}"],
            ['<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1\n</tool_call>',
             f"\\boxed{{{letter}}}"],
        ][i % 4]
    mvbench = pd.read_parquet(SAMPLES_DIR / "mvbench" / "mvbench.parquet")
    for qid, letter in zip(mvbench.qid, mvbench.answer):
        turns[qid] = [select_call(3, 7), crop_call([0.2, 0.2, 0.6, 0.6], target=2), f"\\boxed{{{letter}}}"]
    return turns


@pytest.fixture(scope="module")
def run_folder(engine, tiny_model, tmp_path_factory) -> Path:
    """A finished run folder as pr-eval writes it (4 V* questions, 1 MVBench video question),
    and its report (written by pr_eval.run.evaluate at the end of the run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        run = evaluate(model="tiny", model_path=tiny_model, tasks=TASKS, output=tmp_path_factory.mktemp("runs"),
                       engine=engine, limit=4, guide=scripted(_scripts()))
    return run.folder


def records(folder: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"samples_{task}.jsonl").read_text().splitlines()]


class Dom(HTMLParser):
    """Elements (tag, attributes, classes) and text of a page, as Chromium's --dump-dom wrote it."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.title = ""
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_title = tag == "title" and len(self.find("title")) == 1  # the page's; not an SVG's

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.texts.append(data)
        if self._in_title:
            self.title += data

    def find(self, tag, cls=None):
        return [a for t, a in self.elements if t == tag and (cls is None or cls in (a.get("class") or "").split())]

    @property
    def text(self) -> str:
        return "".join(self.texts)


def chromium(url: str, profile: Path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# --- The page from a real run -----------------------------------------------------------------

def test_the_run_writes_its_report_and_the_page_holds_every_part(run_folder):
    page = (run_folder / "report.html").read_text(encoding="utf-8")
    dom = Dom(page)
    text = dom.text
    samples = [r for task in TASKS for r in records(run_folder, task)]
    assert len(records(run_folder, "pr_vstar")) == 4 and len(samples) > 4
    # header: model, protocol and fingerprint, data sources, versions
    summary = json.loads((run_folder / "results.json").read_text())
    fingerprint = summary["pr_eval"]["protocol"]["fingerprint"]
    assert f"pixel-reasoner-v3 (fingerprint {fingerprint})" in text
    assert "vllm" in text and "samples" in text and "lmms_eval" in text
    # every sample has a card; the crops drawn and shown
    assert len(dom.find("details", "sample")) == len(samples)
    # a box on the input of each V* sample that cropped, on its crop that was cropped again, on each
    # selected video frame that was cropped; every image the model saw is shown
    overlays = sum(1 for r in samples for k in range(1, len(r["images"]) + 1)
                   if any(i["kind"] == "crop" and i["parent"] == k for i in r["images"]))
    assert overlays >= 4 and len(dom.find("svg", "overlay")) == overlays
    assert len(dom.find("img")) == sum(16 if i["kind"] == "video" else 1 for r in samples for i in r["images"])
    # nothing external: every image inline, no link, no script source
    assert all(a["src"].startswith("data:image/jpeg;base64,") for a in dom.find("img"))
    assert not dom.find("link") and all("src" not in a for a in dom.find("script"))
    # tool use and the failed call
    assert "malformed" in text and "crop_image_normalized" in text
    assert "tool calls per sample" in text and "how trajectories ended" in text


def test_score_table_holds_the_runs_numbers(run_folder):
    dom = Dom((run_folder / "report.html").read_text(encoding="utf-8"))
    summary = json.loads((run_folder / "results.json").read_text())
    rows = _table_rows((run_folder / "report.html").read_text(encoding="utf-8"))
    by_name = {row[0]: row for row in rows}
    for task in TASKS:
        metrics = summary["metrics"][task]
        row = by_name[task]
        assert row[1] == str(summary["n_samples"][task])
        assert row[4] == f"{100 * metrics['accuracy']:.1f}" and row[5] == f"{100 * metrics['rapr']:.1f}"
    # V*: the scripted answers are right except the plain wrong one (1 of 4), all 4 attribute questions
    assert by_name["pr_vstar"][4] == "75.0"
    assert by_name["attribute"][4] == "75.0" and by_name["spatial"][4] == "-"
    assert len(dom.find("table", "scores")) == 1


def _table_rows(page: str) -> list[list[str]]:
    body = re.search(r'<table class="scores">.*?<tbody>(.*?)</tbody>', page, re.DOTALL).group(1)
    return [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body)]


def test_boxes_are_scaled_from_the_source_size():
    from pr_eval.trajectory import ImageInfo, Trajectory

    traj = Trajectory("t", "s", "q", "A", "p", "f", images=[
        ImageInfo("input", 1000, 800), ImageInfo("crop", 600, 480, parent=1, box=[100, 160, 700, 640],
                                                 source_size=[2000, 1600])])
    svg = report_pictures.box_overlay(traj, report_pictures.crops_on(traj, 1), 500, 400)
    assert 'viewBox="0 0 500 400"' in svg
    assert 'x="25.0" y="40.0" width="150.0" height="120.0"' in svg
    assert report_pictures.crops_on(traj, 2) == []


def test_missing_and_corrupt_images_become_placeholders(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    saved = sorted((folder / "images").rglob("*.*"))
    saved[0].write_bytes(b"not an image")
    saved[1].unlink()
    journal = folder / "trajectories.jsonl"
    lines = journal.read_text().splitlines()
    first = json.loads(lines[0])
    first["images"]["1"] = "../../../etc/passwd"
    journal.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    page = report.write_report(folder, tmp_path / "out.html").read_text(encoding="utf-8")
    placeholders = Dom(page).find("div", "missing")
    assert len(placeholders) >= 3
    assert "unreadable" in page and "file missing" in page and "path outside the run folder" in page


def test_a_finished_run_needs_no_journal_for_its_images(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder, ignore=shutil.ignore_patterns("trajectories.jsonl", "report.html"))
    dom = Dom(report.write_report(folder).read_text(encoding="utf-8"))
    assert not dom.find("div", "missing")
    assert len(dom.find("img")) == len(Dom((run_folder / "report.html").read_text(encoding="utf-8")).find("img"))


def test_damaged_records_are_listed_and_the_rest_is_shown(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    path = folder / "samples_pr_vstar.jsonl"
    good = path.read_text().splitlines()
    odd = json.loads(good[1])
    odd["question"], odd["meta"] = None, "not a dict"
    odd["tool_calls"][0]["box_normalized"] = ["not", "numbers"]
    odd["images"][0]["width"] = "wide"
    path.write_text("\n".join([good[0], "{not json", "[1, 2]", json.dumps({"doc_id": 9, "tool_calls": [3]}),
                               json.dumps(odd), good[2], good[3]]) + "\n")
    page = report.write_report(folder).read_text(encoding="utf-8")
    dom = Dom(page)
    assert "samples_pr_vstar.jsonl line 2 is not JSON" in dom.text
    assert "samples_pr_vstar.jsonl line 3 is not an object" in dom.text
    assert "samples_pr_vstar.jsonl line 4: not a trajectory" in dom.text
    assert "record could not be shown (TypeError" in dom.text
    assert len(dom.find("details", "sample")) == len(good) + sum(len(records(run_folder, t)) for t in TASKS[1:])
    assert len(dom.find("span", "badge")) and "damaged" in dom.text


def test_unfinished_run_shows_a_banner_no_table_and_provisional_scores(run_folder, tmp_path):
    """The folder of a run killed after its samples: run.json, the journal (with a crash's partial
    last line) and the images. The report scores the samples itself, as the run would have."""
    folder = tmp_path / "unfinished"
    shutil.copytree(run_folder, folder, ignore=shutil.ignore_patterns("results.json", "samples_*", "report.html"))
    journal = folder / "trajectories.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines) + lines[0][:40])
    page = report.write_report(folder).read_text(encoding="utf-8")
    dom = Dom(page)
    finished = {r["sample_id"]: r["metrics"]["accuracy"] for task in TASKS for r in records(run_folder, task)}
    assert f"unfinished: {len(finished)} samples so far" in dom.text
    assert not dom.find("table", "scores") and "Problems" not in dom.text
    assert len(dom.find("details", "sample")) == len(finished)
    verdicts = re.findall(r"<span class='badge (?:ok|bad)'>(correct|wrong) \(provisional\)</span>"
                          r"<span class='sid'>([^<]+)</span>", page)
    assert {sid: float(verdict == "correct") for verdict, sid in verdicts} == finished


def test_viewer_is_capped_per_task_and_says_so(run_folder, tmp_path):
    page = report.write_report(run_folder, tmp_path / "capped.html", max_samples=2).read_text(encoding="utf-8")
    counts = [len(records(run_folder, task)) for task in TASKS]
    assert len(Dom(page).find("details", "sample")) == sum(min(n, 2) for n in counts)
    assert all(f"showing 2 of {n} samples" in page for n in counts if n > 2)


def test_command_line(run_folder, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli_report.main([str(run_folder), "--output", str(out), "--max-samples", "1"]) == 0
    assert out.is_file() and capsys.readouterr().out.strip() == str(out)
    assert cli_report.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "pr-eval report: error:" in err and "is not a run folder" in err and "results/<model>" in err
    assert cli_report.main([str(run_folder), "--max-samples", "0"]) == 2
    assert "--max-samples must be a positive number" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert cli_report.main([str(run_folder), "--output", str(tmp_path / "a-file" / "r.html")]) == 1
    assert "cannot write the report" in capsys.readouterr().err


# --- In the browser ---------------------------------------------------------------------------------

PROBE = """<script>
function box(e) { var r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; }
document.title = JSON.stringify({
  image: box(document.querySelector('details.sample[open] li.prompt figure.image img')),
  table: box(document.querySelector('table.scores')),
  header: box(document.querySelector('table.scores thead'))});
</script>"""


@needs_chromium
@pytest.mark.server
def test_screenshot_shows_the_table_and_the_crop_box_where_the_crop_was_cut(run_folder, tmp_path):
    """The page as shown: a copy with a probe script (and without the page's script policy, which
    would block it) reports where the table and the first opened trajectory image are; the
    screenshot of that copy must have the table there and the crop box's colour on the box's edges."""
    page = (run_folder / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
                     .replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = Dom(chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom"))
    where = json.loads(dom.title)
    shot = tmp_path / "report.png"
    chromium(probe.as_uri(), tmp_path / "profile", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    x, y, w, h = where["image"]
    assert y + h < WINDOW[1], f"the first trajectory image is below the screenshot ({where})"

    crop = next(r for r in records(run_folder, "pr_vstar") if len(r["images"]) > 1)["images"][1]
    (l, t, r, b), (sw, sh) = crop["box"], crop["source_size"]
    edges = [(x + w * l / sw, y + h * (t + (b - t) * k / 40) / sh) for k in range(41)]
    edges += [(x + w * r / sw, y + h * (t + (b - t) * k / 40) / sh) for k in range(41)]
    edges += [(x + w * (l + (r - l) * k / 40) / sw, y + h * t / sh) for k in range(41)]
    edges += [(x + w * (l + (r - l) * k / 40) / sw, y + h * b / sh) for k in range(41)]
    colour = np.array([int(report.BOX_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    is_box = np.abs(pixels - colour).max(axis=2) <= 12

    def near(px, py):
        return is_box[int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3].any()

    hits = sum(near(px, py) for px, py in edges)
    assert hits >= 0.9 * len(edges), f"{hits} of {len(edges)} points of the crop box's edges have its colour"
    inside = is_box[int(y) + 1:int(y + h) - 1, int(x) + 1:int(x + w) - 1]
    assert inside.sum() > 200
    # the box's colour is the overlay's, not the image's: none far from the edges (labels aside)
    far = is_box.copy()
    far[int(y + h * t / sh) - 30:int(y + h * b / sh) + 6, int(x + w * l / sw) - 6:int(x + w * r / sw) + 6] = False
    assert far[int(y):int(y + h), int(x):int(x + w)].sum() < 20

    # the table: its header's background and dark text inside the rectangle the browser laid out
    tx, ty, tw, th = (int(v) for v in where["table"])
    hx, hy, hw, hh = (int(v) for v in where["header"])
    assert th > 40 and ty + th < WINDOW[1]
    header = pixels[hy + 2:hy + hh - 2, hx + 2:hx + hw - 2]
    assert (np.abs(header - [0xEE, 0xF1, 0xF7]).max(axis=2) <= 3).mean() > 0.5
    body = pixels[hy + hh:ty + th, tx:tx + tw]
    assert (body.max(axis=2) < 90).sum() > 500  # text of the rows
    rows = _table_rows(page)
    assert [row[0] for row in rows if row[0] in TASKS] == TASKS
    if os.environ.get("PR_EVAL_KEEP_SCREENSHOT"):  # a file name: keep the screenshot to look at
        shutil.copy(shot, os.environ["PR_EVAL_KEEP_SCREENSHOT"])


@needs_chromium
@pytest.mark.server
@pytest.mark.parametrize("policy", ["with the page's script policy", "without it"])
def test_model_markup_renders_as_text(run_folder, tmp_path, policy):
    """Escaping alone keeps the injected answer inert: the policy is only a second fence."""
    page = (run_folder / "report.html").read_text(encoding="utf-8")
    if policy == "without it":
        page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    dom = Dom(chromium(path.as_uri(), tmp_path / "profile", "--dump-dom"))
    assert dom.title == "pr-eval report: tiny"
    assert INJECTION in dom.text
    assert not [a for a in dom.find("img") if a.get("src") == "x" or "onerror" in a]
    assert len(dom.find("script")) == 1  # the page's own


@needs_chromium
@pytest.mark.server
def test_page_script_runs_under_its_policy_and_filters(run_folder, tmp_path):
    dom = Dom(chromium((run_folder / "report.html").as_uri() + "#show=wrong", tmp_path / "profile", "--dump-dom"))
    assert "js" in dom.find("html")[0].get("class", "").split()
    assert [a.get("class") for a in dom.find("div") if a.get("id") == "viewer"] == ["f-wrong"]
    verdicts = [r["metrics"]["accuracy"] for task in TASKS for r in records(run_folder, task)]
    assert len(dom.find("details", "s-wrong")) == verdicts.count(0.0) == 1
    assert len(dom.find("details", "s-correct")) == verdicts.count(1.0)


# --- Escaping, as a property of the browser's DOM ------------------------------------------------------

CHECK = """<script>
var expected = JSON.parse(document.getElementById('expected').textContent), bad = [];
expected.forEach(function (want, i) {
  var e = document.getElementById('t' + i);
  if (e.textContent !== want || e.getAttribute('title') !== want) bad.push(i);
});
document.title = bad.length ? 'bad ' + JSON.stringify(bad) : 'ok';
</script>"""


def as_the_dom_holds_it(text: str) -> str:
    """What an HTML parser makes of text: CR and CRLF become LF (input preprocessing); NUL and
    unpaired surrogates (not encodable in UTF-8) are shown as U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


@needs_chromium
@pytest.mark.server
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(exclude_categories=())), min_size=1, max_size=25))
@example([INJECTION, "</div><b>x</b>", "<!-- a", "&amp; &lt;", "a\r\nb\rc", "\x00", "\ud800", "\n lead",
          "'\"`", "]]>", "<\u0000script>", "\u2028\u2029"])
def test_any_text_reaches_the_dom_as_text(tmp_path, texts):
    cells = "".join(f'<div id="t{i}" title="{report.esc(t)}">{report.esc(t)}</div>' for i, t in enumerate(texts))
    expected = json.dumps([as_the_dom_holds_it(t) for t in texts]).replace("<", "\\u003c")
    page = tmp_path / "escape.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>{cells}'
                    f'<script type="application/json" id="expected">{expected}</script>{CHECK}</body></html>',
                    encoding="utf-8")
    assert Dom(chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")).title == "ok"
