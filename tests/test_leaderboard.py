"""`pr-eval leaderboard`: a site from a folder of 35 submissions made from real runs (twelve
accepted, twenty-three forged or malformed in as many ways), each rejected file with its reason,
the accepted ranked per benchmark and protocol with ties; the pages escape what submissions say,
and headless Chromium renders them without a console error."""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from canned import boxed
from report_folder import CHROMIUM, Page, chromium, needs_chromium
from test_submission import _forge

from pr_eval.cli import leaderboard as command
from pr_eval.cli import submit
from pr_eval.compare import submission
from pr_eval.compare.table import Cell
from pr_eval.engines.base import GenerationResult
from pr_eval.leaderboard.rank import Standing, rank
from pr_eval.protocol import PIXEL_REASONER, RETIRED, SAMPLED, fingerprint_of, with_overrides
from pr_eval.run.evaluate import evaluate

PAYLOAD = '<img src=x onerror="document.title=\'pwned\'">'


class Looks:
    """An engine that reads the zoom set's answer off the pixels: the colour most of the image's
    strongly coloured pixels have (right on 86 of the 96 questions)."""

    name = "looks"

    def generate(self, requests, decoding):
        return [GenerationResult(text="\\boxed{%s}" % self.colour(r.images[0]), prompt_tokens=10, output_tokens=4,
                                 finish_reason="stop", stop="<|im_end|>") for r in requests]

    @staticmethod
    def colour(image) -> str:
        r, g, b = np.moveaxis(np.asarray(image.convert("RGB")).astype(int), 2, 0)
        counts = {"A": ((r > 150) & (g < 90) & (b < 90)).sum(), "B": ((g > 120) & (r < 90) & (b < 90)).sum(),
                  "C": ((b > 150) & (r < 90) & (g < 120)).sum(), "D": ((r > 180) & (g > 180) & (b < 90)).sum()}
        return max(counts, key=counts.get)

    def close(self):
        pass


def _rehash(edit):
    """An edit after which every hash is recomputed (a forger's)."""
    return lambda d: _forge(d, edit)


def _raw(edit):
    """An edit that leaves the hashes as they were."""
    def apply(d):
        d = copy.deepcopy(d)
        edit(d)
        return d
    return apply


def _set_score(d):
    d["benchmarks"]["zoom"]["score"] = d["benchmarks"]["zoom"]["scores"]["letter_accuracy"] = 0.99


def _retired(d):
    d["protocol"]["name"] = d["protocol"]["record"]["name"] = "pixel-reasoner-v2"


def _unknown(d):
    d["protocol"]["name"] = d["protocol"]["record"]["name"] = "my-own-protocol"


def _recap(d):
    record = d["protocol"]["record"]
    record["settings"]["caps"]["max_tool_calls"] = 99
    record["fingerprint"] = d["protocol"]["fingerprint"] = fingerprint_of(record["settings"])


def _foreign(d):
    for p in d["predictions"]:
        p["sample_id"] = "other-" + p["sample_id"]


def _lucky(d):
    q = d["predictions"][0]
    q["rollouts"] = q["rollouts"][:1]


def _copy(d):
    d["model"]["name"] = "Totally-New-Model"
    d["created"] = d["created"][:8] + "31" + d["created"][10:]  # a later day of the month


def _copy_as_payload(d):
    _copy(d)
    _payload(d)
    d["predictions"][0]["answer"] = PAYLOAD


def _regroup(d):
    """HR-Bench's score is a mean of group means: each right answer its own group, the wrong ones
    one group together, and the score recomputed the same way."""
    from pr_eval.scoring.metrics import grouped_mean

    for k, p in enumerate(d["predictions"]):
        p["group"] = f"right-{k}" if p["scores"]["cycle_accuracy"] else "wrong"
    entry = d["benchmarks"]["hrbench4k"]
    entry["score"] = entry["scores"]["cycle_accuracy"] = grouped_mean(
        (p["scores"]["cycle_accuracy"], p["group"]) for p in d["predictions"])


def _extra_tasks(d):
    """The right answers again under made-up tasks: more right answers, the same question ids."""
    right = [dict(p, task="pr_zoom_again") for p in d["predictions"] if p["scores"]["letter_accuracy"]]
    d["predictions"] += right
    entry = d["benchmarks"]["zoom"]
    entry["tasks"].append("pr_zoom_again")
    entry["n"] = len(d["predictions"])
    for name in ("accuracy", "letter_accuracy"):
        entry["scores"][name] = sum(p["scores"][name] for p in d["predictions"]) / entry["n"]
    entry["score"] = entry["scores"]["letter_accuracy"]


def _reversed_copy(d):
    _copy(d)
    d["predictions"].reverse()


def _unicode_samples(d):
    d["protocol"]["name"] = d["protocol"]["record"]["name"] = "pixel-reasoner-sampled+samples=\u00b2"


def _payload(d):
    d["benchmarks"]["zoom"]["tool_stats"]["turns"] = 10 ** 400  # no float holds it: shown as "-"
    d["model"]["name"] = PAYLOAD
    d["benchmarks"]["zoom"]["scores"][PAYLOAD] = 0.5
    d["predictions"][0]["group"] = PAYLOAD


# file -> (the run it is made from, how it is made, what its rejection says; None: accepted)
FORGERIES = {
    "tampered-score.json": ("says-a", _raw(_set_score), "checksum does not match"),
    "recomputed-score.json": ("says-a", _rehash(_set_score), "benchmarks/zoom/scores/letter_accuracy is 0.99 but"),
    "edited-setting.json": ("says-b", _raw(lambda d: d["protocol"]["record"]["settings"]["caps"].update(max_tool_calls=9)),
                            "does not match its settings"),
    "recapped-protocol.json": ("says-b", _rehash(_recap), "its settings differ from the registered protocol's"),
    "retired-protocol.json": ("says-c", _rehash(_retired), "was retired on 2026-12-07"),
    "unknown-protocol.json": ("says-c", _rehash(_unknown), "protocol 'my-own-protocol' is not one pr-eval"),
    "foreign-questions.json": ("says-d", _rehash(_foreign), "zoom: answers 0 of the benchmark's 96 questions"),
    "copy-of-cycle-0.json": ("cycle-0", _rehash(_copy), "its predictions are those of cycle-0.json (model cycle-0), "
                                                        "submitted earlier"),
    "lucky-rollouts.json": ("sampled", _rehash(_lucky), "must hold rollouts 0..1 in order"),
    "bad-type.json": ("says-a", _raw(lambda d: d["predictions"][1].update(tool_calls="two")),
                      "at predictions/1/tool_calls: 'two' is not of type 'integer'"),
    "version-2.json": ("says-a", _rehash(lambda d: d.update(schema_version="2.0")),
                       "schema_version '2.0' is not supported"),
    "payload.json": ("cycle-1", _rehash(_copy_as_payload), None),
    "regrouped.json": ("hr", _rehash(_regroup), "hrbench4k: question 'hrbench4k-0' is in group 'right-0'"),
    "extra-tasks.json": ("says-a", _rehash(_extra_tasks), "zoom: 'pr_zoom_again' is not one of its tasks"),
    "reversed-copy.json": ("says-b", _rehash(_reversed_copy), "its predictions are those of says-b.json"),
    "unicode-digit.json": ("sampled", _rehash(_unicode_samples), "with changed settings (samples=\u00b2)"),
    "not-a-date.json": ("says-c", _rehash(lambda d: d.update(created="not a date")),
                        "created 'not a date' is not an ISO 8601 date-time"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The submissions folder: real runs of the zoom set (and V*) under scripted engines."""
    base = tmp_path_factory.mktemp("leaderboard")
    runs = {}
    plan = [(f"says-{x.lower()}", boxed(x), PIXEL_REASONER, ["pr_zoom"], None) for x in "ABCD"]
    plan += [(f"cycle-{k}", boxed(*"ABCD", start=k), PIXEL_REASONER, ["pr_zoom"], None) for k in range(2)]
    plan += [("looks", Looks(), PIXEL_REASONER, ["pr_zoom"], None)]
    plan += [("peer", boxed("A"), "deepeyes", ["pr_zoom"], None),
             ("sampled", boxed(*"ABCD"), with_overrides(SAMPLED, samples_per_question=2), ["pr_zoom"], None),
             ("two-benchmarks", boxed(*"ABCD", start=1), PIXEL_REASONER, ["pr_zoom", "pr_vstar"], None),
             ("hr", boxed(*"ABCD", start=2), PIXEL_REASONER, ["pr_hrbench4k"], None),
             ("limited", boxed("A"), PIXEL_REASONER, ["pr_zoom"], 40),
             ("capped", boxed("A"), with_overrides(PIXEL_REASONER, max_tool_calls=2), ["pr_zoom"], None)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        for name, engine, protocol, tasks, limit in plan:
            folder = evaluate(model=name, model_path="x", tasks=tasks, protocol=protocol, limit=limit,
                              output=base / "runs" / name, engine=engine).folder
            runs[name] = submission.build(folder)
    out = base / "submissions"
    out.mkdir()
    for name, document in runs.items():
        (out / f"{name}.json").write_text(json.dumps(document))
    for file, (source, make, _) in FORGERIES.items():
        (out / file).write_text(json.dumps(make(runs[source])))
    (out / "truncated.json").write_text(json.dumps(runs["says-a"])[:5000])
    (out / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (out / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "nan.json").write_text(json.dumps(runs["says-a"]).replace('"letter_accuracy": 1.0', '"letter_accuracy": NaN', 1))
    nested = out / "more"
    nested.mkdir()
    shutil.copy(base / "runs" / "says-a" / next(p.name for p in (base / "runs" / "says-a").iterdir()) / "results.json",
                nested / "results.json")
    return out


REJECTED = {file: says for file, (_, _, says) in FORGERIES.items() if says} | {
    "limited.json": "zoom: answers 40 of the benchmark's 96 questions (misses 56",
    "capped.json": "is pixel-reasoner-v3 with changed settings (max_tool_calls=2)",
    "truncated.json": "not valid JSON",
    "binary.json": "not UTF-8 text",
    "deep.json": "not valid JSON",
    "nan.json": "not valid JSON (NaN is not a JSON number)",
    "results.json": "it is a run's results.json, not a submission",
}
ACCEPTED = {f"says-{x}" for x in "abcd"} | {"cycle-0", "cycle-1", "looks", "hr", "peer", "sampled", "two-benchmarks", PAYLOAD}


@pytest.fixture(scope="module")
def site(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        assert command.main([str(folder), "--out", str(out), "--resamples", "1000"]) == 0
        assert command.main([str(folder), "--out", str(out / "strict"), "--resamples", "1000", "--strict"]) == 1
    return out


def test_each_bad_file_is_rejected_with_its_reason_and_the_rest_accepted(folder, site):
    assert len(list(folder.rglob("*.json"))) == 35
    built = json.loads((site / "leaderboard.json").read_text())
    reasons = {r["file"]: r["reason"] for r in built["rejected"]}
    assert set(reasons) == set(REJECTED)
    for file, says in REJECTED.items():
        assert says in reasons[file], (file, reasons[file])
    accepted = {s["model"] for b in built["boards"] for s in b["standings"]}
    assert accepted == ACCEPTED


def test_boards_keep_protocols_apart_and_rank_with_ties(folder, site):
    built = json.loads((site / "leaderboard.json").read_text())
    boards = {(b["benchmark"], b["protocol"]): b for b in built["boards"]}
    assert set(boards) == {("zoom", "pixel-reasoner-v3"), ("zoom", "deepeyes"), ("vstar", "pixel-reasoner-v3"),
                           ("zoom", "pixel-reasoner-sampled+samples=2"), ("hrbench4k", "pixel-reasoner-v3")}
    sampled = json.loads((folder / "sampled.json").read_text())
    every = [r["scores"]["letter_accuracy"] for p in sampled["predictions"] for r in p["rollouts"]]
    assert len(every) == 192 and boards[("zoom", "pixel-reasoner-sampled+samples=2")]["standings"][0]["score"] == \
        pytest.approx(sum(every) / 192)  # Avg@2
    hr = json.loads((folder / "hr.json").read_text())
    assert boards[("hrbench4k", "pixel-reasoner-v3")]["standings"][0]["score"] == \
        pytest.approx(hr["benchmarks"]["hrbench4k"]["score"])  # the mean of its cycles' means
    v3 = boards[("zoom", "pixel-reasoner-v3")]["standings"]
    assert len(v3) == 9 and all(s["n"] == 96 for s in v3)
    scores = [s["score"] for s in v3]
    assert scores == sorted(scores, reverse=True)
    for s in v3:
        above = sum(1 for o in v3 if o["ci"][0] > s["ci"][1])
        assert s["rank"] == 1 + above
        assert s["tied"] == ([o["rank"] for o in v3].count(s["rank"]) > 1)
    assert (v3[0]["model"], v3[0]["rank"], v3[0]["tied"]) == ("looks", 1, False)
    assert v3[0]["score"] == pytest.approx(86 / 96)
    assert all(s["rank"] == 2 and s["tied"] for s in v3[1:])  # the guessers' intervals overlap
    says_a = next(s for s in v3 if s["model"] == "says-a")
    answers_a = json.loads((folder / "says-a.json").read_text())["predictions"]
    assert says_a["score"] == pytest.approx(sum(p["scores"]["letter_accuracy"] for p in answers_a) / 96)


def test_rank_counts_only_intervals_wholly_above():
    def standing(value, low, high):
        entry = type("E", (), {"model": f"m{value}", "id": str(value)})()
        return Standing(entry, Cell(value=value, ci=(low, high), n=10))

    ranked = rank([standing(0.5, 0.4, 0.6), standing(0.9, 0.85, 0.95), standing(0.55, 0.45, 0.65),
                   standing(0.1, 0.0, 0.2)])
    assert [(s.cell.value, s.rank, s.tied) for s in ranked] == [(0.9, 1, False), (0.55, 2, True), (0.5, 2, True),
                                                                  (0.1, 4, False)]
    # a lower score with a wide interval is above no one and below no one: it ranks with the top
    ranked = rank([standing(0.9, 0.3, 1.0), standing(0.8, 0.79, 0.81), standing(0.75, 0.74, 0.76),
                   standing(0.7, 0.1, 0.95)])
    assert [(s.cell.value, s.rank) for s in ranked] == [(0.9, 1), (0.8, 1), (0.7, 1), (0.75, 2)]


def test_pages_escape_what_submissions_say(site):
    pages = list(site.rglob("*.html"))
    assert len(list(site.glob("submissions/*.html"))) == len(ACCEPTED)
    assert len(list(site.glob("protocols/*.html"))) == 3
    for path in pages:
        text = path.read_text(encoding="utf-8")
        assert PAYLOAD not in text and "<img" not in text, path
    payload_page = next(p for p in site.glob("submissions/*.html") if html.escape(PAYLOAD) in p.read_text())
    assert Page(payload_page.read_text()).texts.count(PAYLOAD) >= 3  # the title, the model, a score's and a group's name


def _console(url: str, profile: Path) -> list[str]:
    """Chromium's console messages (errors, CSP refusals) while it loads the page."""
    import subprocess

    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]


@needs_chromium
@pytest.mark.server
def test_the_browser_renders_every_page_without_a_console_error(site, tmp_path):
    for path in [site / "index.html", *site.glob("submissions/*.html"), *site.glob("protocols/*.html")]:
        assert _console(path.as_uri(), tmp_path / "profile") == [], path
    dom = Page(chromium((site / "index.html").as_uri(), tmp_path / "profile", "--dump-dom"))
    assert dom.title == "pr-eval leaderboard"
    assert not any(tag == "img" for tag, _ in dom.elements)
    assert PAYLOAD in dom.texts


PROBE = """<script>
var t = Array.from(document.querySelectorAll('table.board')).sort(function (a, b) {
  return b.tBodies[0].rows.length - a.tBodies[0].rows.length; })[0];
var h = t.querySelector('thead'), r = t.getBoundingClientRect();
var rej = document.getElementById('rejected').getBoundingClientRect();
var before = Array.from(t.tBodies[0].rows).map(function (x) { return x.cells[2].getAttribute('data-v'); });
t.querySelectorAll('th')[2].click();
var after = Array.from(t.tBodies[0].rows).map(function (x) { return x.cells[2].getAttribute('data-v'); });
document.title = JSON.stringify({table: [r.x, r.y, r.width, r.height], header: [h.getBoundingClientRect().height],
                                 rejected: [rej.y], before: before, after: after});
</script>"""


@needs_chromium
@pytest.mark.server
def test_screenshot_shows_the_first_board_and_a_click_sorts_it(site, tmp_path):
    from PIL import Image

    page = (site / "index.html").read_text(encoding="utf-8")
    probe = site / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>", PROBE + "</body>"), encoding="utf-8")
    where = json.loads(html.unescape(Page(chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom")).title))
    probe.unlink()
    scores = [float(v) for v in where["before"]]
    assert len(scores) == 9 and scores == sorted(scores, reverse=True)  # as ranked
    assert [float(v) for v in where["after"]] == sorted(scores)        # a click on "score" sorts it ascending
    x, y, w, h = (int(v) for v in where["table"])
    assert h > 9 * 20 and y + h < 1600 and where["rejected"][0] > y + h
    shot = tmp_path / "leaderboard.png"
    chromium((site / "index.html").as_uri(), tmp_path / "profile", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    header = pixels[y + 2:y + int(where["header"][0]) - 2, x + 2:x + w - 2]
    assert (np.abs(header - [0xF6, 0xF7, 0xFB]).max(axis=2) <= 3).mean() > 0.5  # the board's header row
    assert (pixels[y:y + h, x:x + w].max(axis=2) < 90).sum() > 2000               # its rows' text
    if os.environ.get("PR_EVAL_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["PR_EVAL_KEEP_SCREENSHOT"])


@pytest.mark.parametrize("argv, says", [
    (["/nonexistent", "--out", "x"], "no such folder of submissions"),
    (["tests", "--out", "tests/site"], "lies inside the submissions folder"),
    (["tests", "--out", "x", "--alpha", "3"], "--alpha must lie between 0 and 1"),
])
def test_bad_usage_is_one_line(argv, says, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_benchmark_without_questions_here_rejects_its_files_only(folder, tmp_path, capsys):
    from pr_eval.data.load import load_samples

    questions = tmp_path / "q.json"
    questions.write_text(json.dumps({"zoom": [s.sample_id for s in load_samples("zoom", "samples")[1]]}))
    assert command.main([str(folder), "--out", str(tmp_path / "s"), "--questions", str(questions)]) == 0
    built = json.loads((tmp_path / "s" / "leaderboard.json").read_text())
    reasons = {r["file"]: r["reason"] for r in built["rejected"]}
    assert reasons["hr.json"] == "--questions lists no questions of hrbench4k, so its submissions cannot be judged"
    assert "says-a" in {s["model"] for b in built["boards"] for s in b["standings"]}
    questions.write_text("[1, 2]")
    assert command.main([str(folder), "--out", str(tmp_path / "s"), "--questions", str(questions)]) == 2
    assert "expected {benchmark: [sample_id, ...]}" in capsys.readouterr().err


def test_the_site_replaces_only_a_site(folder, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert command.main([str(folder), "--out", str(mine)]) == 2
    assert "holds other files" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"
