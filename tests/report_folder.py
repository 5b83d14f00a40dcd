"""A run folder written by hand for the report's and the tables' tests (no engine), and the
means to read the page: an HTML parser, headless Chromium and a probe run in the laid-out page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pr_eval import benchmarks
from pr_eval.trajectory import Generation, Trajectory

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(/usr/bin/chromium); `make test` installs it on Debian")
SUBTASKS = [f"pr_mvbench_{s}" for s in benchmarks.find("mvbench").subtasks]
INJECTED = "<b>bold</b> & \"q\""          # a gold answer with markup: shown as text
COMMAND = ["pr-eval", "--model", "demo", "--tasks", "zoom,vstar,tallyqa,infovqa,mvbench", "--resume", "auto",
           "--output", "my results/<x>", "--resume=old", "--limit", "4", "--resume"]


def _metrics(main: str) -> dict:
    """Every figure the tables show, at its widest (100.0, two-digit means)."""
    figures = {main: 1.0, "accuracy": 1.0, "rapr": 1.0, "tool_calls": 12.25, "tool_errors": 10.5, "error_rate": 1.0,
               "calls_0": 0.125, "calls_1": 0.25, "calls_2": 0.25, "calls_3": 0.25, "calls_4plus": 0.125,
               "stopped_max_tool_calls": 0.125, "stopped_max_images": 0.0, "stopped_max_tokens": 0.125,
               "turns": 10.25, "output_tokens": 12345.5, "call_error_rate": 1.0, "crop_area": 0.5,
               "accuracy_with_tools": 1.0, "accuracy_without_tools": 1.0}
    return figures


def _record(task: str, doc_id: int, target, answer: str, accuracy: float, calls: int = 0) -> dict:
    traj = Trajectory(task=task, sample_id=f"{task}-{doc_id}", question=f"Question {doc_id} of {task}?\n(A) a\n(B) b",
                      target=target, protocol="pixel-reasoner-v3", fingerprint="f00d",
                      meta={"doc_id": doc_id, "category": "direct_attributes"},
                      messages=[{"role": "user", "content": [{"type": "text", "text": "q"}]},
                                {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                      generations=[Generation(10, 5, "stop", "<|im_end|>")], stop_reason="answered")
    record = traj.to_record()
    record["tool_calls"] = [{"turn": 0, "raw": "{}", "ok": False, "error_kind": "malformed"}] * calls
    return {**record, "doc_id": doc_id, "timing": {"seconds": 42.25 + doc_id},
            "metrics": {"accuracy": accuracy, "letter_accuracy": accuracy}}


def write_run(folder: Path, model: str = "demo", tasks=("zoom", "vstar", "tallyqa", "infovqa", "mvbench")) -> Path:
    """A finished run folder as pr_eval.run.evaluate writes it: results.json, run.json and per-sample
    records of V* (one right, one wrong, one with markup in its gold answer) and two MVBench
    subtasks (all right; the other 18 hold no records)."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics, counts, members, names, data = {}, {}, {}, {}, {}
    for short in tasks:
        own = benchmarks.find(short)
        metrics[own.task], counts[own.task], names[own.task] = _metrics(own.main), 1000, short
        for key in own.breakdown:
            metrics[own.task][key] = 1.0
        leaves = [f"{own.task}_{s}" for s in own.subtasks] or [own.task]
        if own.subtasks:
            members[own.task] = leaves
            for leaf in leaves:
                metrics[leaf], counts[leaf], names[leaf] = _metrics(own.main), 50, short
        for n, leaf in enumerate(leaves):  # as the adapter logs them: one record per task, its own counts
            data[leaf] = {"benchmark": short, "kind": "samples", "origin": f"/data/{short}", "root": f"/data/{short}",
                          "revision": "0123456789abcdef0123", "rows": 4000, "task_rows": 1 + n % 3, "samples": 1 + n % 3}
    info = {"schema": "pr-eval-run/1", "model": model, "model_path": "/models/x", "engine": "vllm",
            "protocol": {"name": "pixel-reasoner-v3", "fingerprint": "f00d", "settings": {"caps": {"max_tool_calls": 4}}},
            "tasks": list(metrics)[:1], "limit": None, "command": COMMAND, "started": "2026-12-07T02:54:32+00:00",
            "data": data, "versions": {"pr_eval": "0.1.0"}}
    (folder / "run.json").write_text(json.dumps(info))
    summary = {"pr_eval": {"model": model, "data": data}, "metrics": metrics, "n_samples": counts, "members": members,
               "benchmarks": names, "run": info}
    (folder / "results.json").write_text(json.dumps(summary))
    if "vstar" in tasks:
        vstar = [_record("pr_vstar", 0, "A", "I see it. \\boxed{A}", 1.0, calls=1),
                 _record("pr_vstar", 1, "B", "\\boxed{A}", 0.0), _record("pr_vstar", 2, INJECTED, "no answer", 0.0)]
        (folder / "samples_pr_vstar.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vstar))
    if "mvbench" in tasks:
        for n, leaf in enumerate(SUBTASKS[:2]):
            (folder / f"samples_{leaf}.jsonl").write_text(json.dumps(_record(leaf, n, "C", "\\boxed{C}", 1.0)) + "\n")
    return folder


class Page(HTMLParser):
    """The page's elements in document order (tag, attributes) and its text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.title = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)
        if self.elements and self.elements[-1][0] == "title":
            self.title += data

    def index(self, tag, cls=None, id_=None) -> int:
        return next(i for i, (t, a) in enumerate(self.elements) if t == tag
                    and (cls is None or cls in (a.get("class") or "").split()) and (id_ is None or a.get("id") == id_))


def chromium(url: str, profile: Path, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--window-size=1280,1600", *args, url]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probed(page: str, folder: Path, script: str) -> dict:
    """What `script` (JavaScript setting `result`) finds in the page as Chromium lays it out: a
    copy without the page's script policy (which would block the probe), the page's own script run."""
    path = folder / "probe.html"
    path.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page).replace(
        "</body>", f"<script>var result = {{}};try {{{script};}} catch (e) {{ result.error = String(e); }}"
        "document.title = JSON.stringify(result);</script></body>"),
        encoding="utf-8")
    dump = chromium(path.as_uri() + "#show=wrong", folder / "profile", "--dump-dom")
    return json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dump, re.DOTALL).group(1)))
