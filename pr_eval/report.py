"""The HTML report of a run: one self-contained page to read a run by, with no network and no
files beside it (images are inlined), so it can be mailed, archived or opened years later.

    run folder (results.json, samples_<task>.jsonl, trajectories.jsonl, images/)
        -> RunView (what the page shows) -> HTML: header, score table, breakdowns, tool use,
           trajectory viewer

Everything that came from a model or a dataset is escaped on the server side (`esc`), and the
page's only script toggles CSS classes; a Content-Security-Policy lets nothing else run or load,
so a model answer that contains markup shows as text.

An unfinished run (run.json and the journal only) gets a banner and no score table; its samples
are scored here with the paper's answer rule (`metrics.sample_metrics`), marked provisional.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import html
import io
import json
import logging
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from PIL import Image

from . import __version__
from .metrics import CALL_BINS, SCORERS, sample_metrics
from .runner import (
    COLUMNS,
    FOOTNOTE,
    MAIN_LABELS,
    TOOL_COLUMNS,
    TOOL_FOOTNOTE,
    Run,
    RunError,
    leaf_tasks,
    load_run,
    plain_value,
)
from .runner import (
    _cell as cell_text,  # the text table's number format, so both tables agree
)
from .store import sample_key, write_atomic
from .trajectory import ERRORS, Generation, ImageInfo, ToolCall, Trajectory

REPORT_NAME = "report.html"
DEFAULT_MAX_SAMPLES = 200
DOT = " \u00b7 "
BOX_COLOUR = "#ff00ff"     # crop boxes drawn on their parent image (tests look for this colour)
IMAGE_SIDE = 560           # inlined images are re-encoded to at most this many pixels a side
FRAME_SIDE = 160           # ... and a video's frames to this (a 200-sample task stays near 10 MB)
STOP_COLOURS = {"answered": "#2e7d32", "max_tool_calls": "#ef6c00", "max_images": "#f9a825",
                "max_tokens": "#6a1b9a", "engine_error": "#c62828", "data_error": "#8d1c1c",
                "unfinished": "#9e9e9e"}


class ReportError(Exception):
    """The folder cannot be reported on (not a run folder); the message says how to fix it."""


# --- Escaping -------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")


def html_text(value) -> str:
    """The text as an HTML parser will hand it to the DOM: line breaks as "\\n" (the parser turns
    CR and CRLF into LF), NUL and unpaired surrogates (which UTF-8 cannot carry) as U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")
    return _SURROGATES.sub("\ufffd", text)


def esc(value) -> str:
    """Any value as HTML text or attribute content: what the page shows is exactly `html_text`."""
    return html.escape(html_text(value), quote=True)


def shown(value) -> str:
    """A target or answer as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


# --- What the page shows ----------------------------------------------------------------------------

@dataclass
class SampleView:
    """One sample in the viewer: its trajectory, its scores (None: not scored) and saved images."""

    task: str
    doc_id: str
    traj: Trajectory
    metrics: dict | None = None
    images: dict = field(default_factory=dict)     # journal: "<k>" -> relative path (a video: a list)
    seconds: float | None = None
    provisional: bool = False

    @property
    def correct(self) -> bool | None:
        value = (self.metrics or {}).get("accuracy")
        return None if value is None else value >= 1

    @property
    def lost(self) -> bool:
        return self.traj.stop_reason in ERRORS

    @property
    def failed_calls(self) -> int:
        return sum(1 for c in self.traj.tool_calls if not c.ok)


@dataclass
class RunView:
    folder: Path
    info: dict                     # run.json, or what results.json says about the run
    run: Run | None                # None while the run is unfinished
    samples: dict[str, list[SampleView]]
    sections: list[tuple[str, list[str]]]   # (table row name, its leaf tasks), in table order
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.run is not None


def load_view(folder: str | Path) -> RunView:
    """Everything the page needs from a run folder, finished or not."""
    folder = Path(folder)
    has = {name: (folder / name).is_file() for name in ("results.json", "run.json", "trajectories.jsonl")}
    if not folder.is_dir() or not any(has.values()):
        raise ReportError(f"{folder} is not a run folder (it holds no results.json, run.json or "
                          f"trajectories.jsonl); give a folder pr-eval wrote, e.g. results/<model>-<protocol>-<time>/")
    problems: list[str] = []
    summary = _read_json(folder / "results.json", problems) if has["results.json"] else None
    info = _run_info(summary, _read_json(folder / "run.json", problems) if has["run.json"] else None)
    run = None
    if summary is not None:
        try:
            run = load_run(folder, summary)
        except RunError as exc:
            problems.append(str(exc))
    journal = _journal(folder / "trajectories.jsonl", problems)
    if run is not None:
        samples = _finished_samples(folder, run, journal, problems)
        sections = [(name, leaf_tasks(name, run.members)) for name, _, depth in run._layout() if depth == 0]
    else:
        samples = _journal_samples(journal, info, problems)
        sections = _unfinished_sections(info.get("tasks") or [], list(samples))
    return RunView(folder, info, run, samples, sections, problems)


def _read_json(path: Path, problems: list[str]):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} could not be read ({exc})")
        return None


def _run_info(summary: dict | None, run_json: dict | None) -> dict:
    """The run's description: run.json where there is one (newest first: results.json's copy),
    completed by results.json's pr_eval block for folders written before run.json existed."""
    info = dict((summary or {}).get("pr_eval") or {})
    info.update(run_json or {})
    info.update((summary or {}).get("run") or {})
    lmms = (summary or {}).get("lmms_eval") or {}
    versions = dict(info.get("versions") or {})
    versions.setdefault("pr_eval", info.get("version") or "?")
    if lmms.get("lmms_eval_version") and "lmms_eval" not in versions:
        versions["lmms_eval"] = lmms["lmms_eval_version"]
    info["versions"] = versions
    return info


def _jsonl(path: Path, problems: list[str]) -> list[tuple[int, dict]]:
    """The objects of a JSON-lines file with their line numbers. A damaged line is skipped and reported on the page; an
    unterminated last line (a write in progress, or the tail a crash left) is skipped quietly."""
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    records = []
    for number, line in enumerate(lines + [tail], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number <= len(lines):
                problems.append(f"{path.name} line {number} is not JSON (skipped)")
            continue
        if isinstance(record, dict):
            records.append((number, record))
        else:
            problems.append(f"{path.name} line {number} is not an object (skipped)")
    return records


def _journal(path: Path, problems: list[str]) -> dict[str, dict]:
    """The journal by sample key; a key's first line wins, as when the run resumes (store.parse_journal)."""
    journal: dict[str, dict] = {}
    for _, record in _jsonl(path, problems):
        journal.setdefault(sample_key(record.get("task"), record.get("doc_id")), record)
    return journal


def _trajectory(record: dict) -> Trajectory:
    """A Trajectory from a record, ignoring keys it does not know (a per-sample record also has
    doc_id and metrics; a newer writer may add fields). Raises TypeError/ValueError when broken."""
    known = {f.name for f in fields(Trajectory) if not f.metadata.get("runtime")}
    data = {k: v for k, v in record.items() if k in known}
    data["images"] = [_only(ImageInfo, i) for i in data.get("images") or []]
    data["tool_calls"] = [_only(ToolCall, c) for c in data.get("tool_calls") or []]
    data["generations"] = [_only(Generation, g) for g in data.get("generations") or []]
    data["messages"] = [m for m in data.get("messages") or [] if isinstance(m, dict) and "role" in m]
    for name in ("task", "sample_id", "question", "protocol", "fingerprint"):
        data[name] = "" if data.get(name) is None else str(data[name])
    data["meta"] = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    for name in ("stop_reason", "error"):
        data[name] = None if data.get(name) is None else str(data[name])
    return Trajectory(**data)


def _only(cls, value):
    if not isinstance(value, dict):
        raise TypeError(f"{cls.__name__} is not an object: {str(value)[:60]}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in value.items() if k in names})


def _sample(task: str, record: dict, journal_line: dict | None, problems: list[str], where: str):
    try:
        traj = _trajectory(record)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: not a trajectory ({exc}); skipped")
        return None
    line = journal_line or {}
    # a finished run's per-sample record carries copies of the journal's timing and image map
    timing = line.get("timing") or record.get("timing") or {}
    images = line.get("images") or record.get("image_files")
    return SampleView(task=task, doc_id=str(record.get("doc_id", line.get("doc_id", ""))),
                      traj=traj, images=images if isinstance(images, dict) else {},
                      seconds=timing.get("seconds") if isinstance(timing, dict) else None)


def _finished_samples(folder: Path, run: Run, journal: dict, problems: list[str]) -> dict[str, list[SampleView]]:
    samples = {}
    for task in run.leaves:
        views = []
        for number, record in _jsonl(folder / f"samples_{task}.jsonl", problems):
            view = _sample(task, record, journal.get(sample_key(task, record.get("doc_id"))), problems,
                           f"samples_{task}.jsonl line {number}")
            if view:
                view.metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else None
                views.append(view)
        samples[task] = views
    return samples


def _journal_samples(journal: dict, info: dict, problems: list[str]) -> dict[str, list[SampleView]]:
    """An unfinished run's samples, scored here (provisionally) where the benchmark is known."""
    samples: dict[str, list[SampleView]] = {}
    for key, line in journal.items():
        record = dict(line.get("trajectory") or {}, doc_id=line.get("doc_id"))
        task = str(line.get("task"))
        view = _sample(task, record, line, problems, f"trajectories.jsonl {key}")
        if view is None:
            continue
        benchmark = ((info.get("data") or {}).get(task) or {}).get("benchmark")
        if benchmark in SCORERS and view.traj.finished:
            doc = {"answer": view.traj.target, "question": view.traj.question,
                   "category": view.traj.meta.get("category")}
            try:
                scores = sample_metrics(view.traj, doc, benchmark)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a damaged record
                problems.append(f"trajectories.jsonl {key}: could not be scored ({type(exc).__name__}: {exc})")
            else:
                view.metrics = {k: plain_value(v) for k, v in scores.items()}  # as a finished run's records
                view.provisional = True
        samples.setdefault(task, []).append(view)
    for views in samples.values():  # the journal is in finishing order; show dataset order
        views.sort(key=lambda v: (0, int(v.doc_id), "") if v.doc_id.isdigit() else (1, 0, v.doc_id))
    return samples


def _unfinished_sections(requested: list[str], found: list[str]) -> list[tuple[str, list[str]]]:
    """Without lmms-eval's group list: a requested task holds the journal's tasks named after it
    (pr_mvbench holds pr_mvbench_<subtask>); tasks nobody requested stand for themselves."""
    sections, placed = [], set()
    for name in requested:
        leaves = [t for t in found if t == name or t.startswith(name + "_")]
        if leaves:
            sections.append((name, leaves))
            placed.update(leaves)
    return sections + [(t, [t]) for t in found if t not in placed]


# --- Images -------------------------------------------------------------------------------------------

@dataclass
class Picture:
    """An image ready to inline, or why it cannot be shown (`uri` None)."""

    uri: str | None
    width: int
    height: int
    problem: str = ""


def picture(folder: Path, relative: str | None, side: int, fallback: tuple[int, int]) -> Picture:
    """A saved image re-encoded small as a data URI. Anything wrong (missing, outside the run
    folder, unreadable) gives a placeholder of the size the model saw, never an exception."""
    if not relative:
        return Picture(None, *fallback, "not saved")
    root = folder.resolve()
    path = (root / str(relative)).resolve()
    if not path.is_relative_to(root):
        return Picture(None, *fallback, "path outside the run folder")
    try:
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
            image.thumbnail((side, side))
            rgb = image.convert("RGB")
    except FileNotFoundError:
        return Picture(None, *fallback, "file missing")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return Picture(None, *fallback, f"unreadable ({type(exc).__name__})")
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=80)
    return Picture("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), *rgb.size)


def image_path(sample: SampleView, index: int, frame: int | None = None) -> str | None:
    """Where image `index` (or frame `frame` of the video `index`) of a sample was saved, from the
    image map the store wrote with it ({"<k>": path}, a video's {"<k>": [frame paths]}); None when
    it was not saved."""
    saved = sample.images.get(str(index))
    if frame is None and isinstance(saved, str):
        return saved
    if frame is not None and isinstance(saved, list) and 1 <= frame <= len(saved) and isinstance(saved[frame - 1], str):
        return saved[frame - 1]
    return None


def crops_on(traj: Trajectory, index: int, frame: int | None = None) -> list[int]:
    """The crops cut from image `index` (1-based), or from frame `frame` of the video `index`."""
    images = traj.images
    if not 1 <= index <= len(images):
        return []
    is_video = images[index - 1].kind == "video"
    return [k for k, info in enumerate(images, start=1)
            if info.kind == "crop" and info.parent == index and (not is_video or info.frame == frame)]


def box_overlay(traj: Trajectory, crops: list[int], width: int, height: int) -> str:
    """SVG boxes of `crops` over an image displayed at width x height: each box is scaled from
    the pixels of the image that was cut (ImageInfo.source_size), so down-scaling keeps it right."""
    shapes = []
    for k in crops:
        info = traj.images[k - 1]
        box, size = info.box, info.source_size
        if not (isinstance(box, list) and len(box) == 4 and isinstance(size, list) and len(size) == 2
                and all(isinstance(v, (int, float)) for v in box + size) and size[0] > 0 and size[1] > 0):
            continue
        x1, y1 = box[0] / size[0] * width, box[1] / size[1] * height
        x2, y2 = box[2] / size[0] * width, box[3] / size[1] * height
        rect = f'x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 1):.1f}" height="{max(y2 - y1, 1):.1f}"'
        shapes.append(f'<rect class="halo" {rect}/><rect class="box" {rect}/>'
                      f'<text x="{x1 + 4:.1f}" y="{y1 + 4:.1f}" dy="1em">{k}</text>')
    if not shapes:
        return ""
    return (f'<svg class="overlay" viewBox="0 0 {width} {height}" preserveAspectRatio="none" aria-hidden="true">'
            + "".join(shapes) + "</svg>")


def figure(view: RunView, sample: SampleView, index: int, frame: int | None = None) -> str:
    """Image `index` of a sample (or one frame of its video) with the boxes of its crops."""
    traj = sample.traj
    info = traj.images[index - 1] if 1 <= index <= len(traj.images) else None
    key = f"{index}-f{frame}" if frame else str(index)
    size = (info.width, info.height) if info else (4, 3)
    fallback = size if all(isinstance(v, int) and v > 0 for v in size) else (4, 3)
    pic = picture(view.folder, image_path(sample, index, frame), FRAME_SIDE if frame else IMAGE_SIDE,
                  fallback)
    overlay = box_overlay(traj, crops_on(traj, index, frame), pic.width, pic.height)
    caption = f"frame {frame}" if frame else _caption(traj, index, info)
    if pic.uri:
        body = f'<img src="{pic.uri}" width="{pic.width}" height="{pic.height}" alt="image {index}">'
    else:
        body = (f'<div class="missing" style="aspect-ratio:{pic.width}/{pic.height}">'
                f'<span>image {key}<br>{esc(pic.problem)}</span></div>')
    return (f'<figure class="{"frame" if frame else "image"}"><div class="pic">{body}{overlay}</div>'
            f'<figcaption>{esc(caption)}</figcaption></figure>')


def _caption(traj: Trajectory, index: int, info: ImageInfo | None) -> str:
    if info is None:
        return f"image {index}"
    size = f"{info.width}\u00d7{info.height}"
    if info.kind == "crop":
        parent = traj.images[info.parent - 1] if info.parent and 1 <= info.parent <= len(traj.images) else None
        source = f"frame {info.frame} of image {info.parent}" if parent and parent.kind == "video" else f"image {info.parent}"
        return f"image {index}: crop of {source}, box {info.box} of {info.source_size}, shown {size}"
    if info.kind == "frame":
        return f"image {index}: frame {info.frame} of the video, shown {size}"
    return f"image {index} ({info.kind}), shown {size}"


def images_html(view: RunView, sample: SampleView, indices: list[int]) -> str:
    parts = []
    for index in indices:
        info = sample.traj.images[index - 1] if 1 <= index <= len(sample.traj.images) else None
        if info is not None and info.kind == "video":
            frames = "".join(figure(view, sample, index, f) for f in range(1, _frame_count(sample, index) + 1))
            parts.append(f'<div class="video"><div class="label">image {index}: video</div>'
                         f'<div class="frames">{frames}</div></div>')
        else:
            parts.append(figure(view, sample, index))
    return f'<div class="images">{"".join(parts)}</div>' if parts else ""


def _frame_count(sample: SampleView, index: int) -> int:
    """A video's frames: as many as were saved, else as many as the protocol shows (16)."""
    saved = sample.images.get(str(index))
    return len(saved) if isinstance(saved, list) and saved else 16


# --- Tables and charts ------------------------------------------------------------------------------

def score_table(run: Run) -> str:
    """The run's table (`Run.table`) as HTML: a group's members indented under it, V*'s breakdowns
    under V*."""
    head = "".join(f"<th>{esc(h)}</th>" for h in ["task", "n", "metric"]) \
        + "".join(f'<th class="num">{esc(h)}</th>' for _, h in COLUMNS)
    body = []
    for name, label, depth in run._layout():
        for i, row in enumerate(run._rows(name, label, depth)):
            kind = "breakdown" if i else "group" if name in run.members else "member" if depth else "task"
            level = depth + (1 if i else 0)
            cells = [f'<td class="name" style="padding-left:{0.6 + 1.2 * level:.1f}em">{esc(row[0].strip())}</td>']
            cells += [f"<td>{esc(cell)}</td>" for cell in row[1:3]]
            cells += [f'<td class="num">{esc(cell)}</td>' for cell in row[3:]]
            body.append(f'<tr class="{kind}">{"".join(cells)}</tr>')
    return (f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(_one_line(FOOTNOTE))}</p>')


def tool_table(run: Run) -> str:
    head = "<th>tool use</th><th>n</th>" + "".join(f'<th class="num">{esc(h)}</th>' for _, h in TOOL_COLUMNS)
    body = []
    for name, label, depth in run._layout():
        if depth == 0:
            values = run.metrics[name]
            cells = [f'<td class="name">{esc(label)}</td><td>{esc(run.counts.get(name, ""))}</td>']
            cells += [f'<td class="num">{esc(cell_text(key, values.get(key)))}</td>' for key, _ in TOOL_COLUMNS]
            body.append(f'<tr>{"".join(cells)}</tr>')
    return (f'<table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(_one_line(TOOL_FOOTNOTE))}</p>')


def _svg_open(width: int, height: int, title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
            f"<title>{esc(title)}</title>")


def _one_line(text: str) -> str:
    """A footnote of the text table (wrapped for a terminal) as one paragraph."""
    return re.sub(r"\s*\n\s*", " ", text)


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def hbars(rows: list[tuple[str, float | None, str]], title: str, width: int = 460) -> str:
    """Horizontal bars of shares (0..1): one (label, value, note) per row; a missing value is
    drawn as "-"."""
    label_w = int(min(max(8 + 6.5 * max((len(_clip(r[0], 28)) for r in rows), default=0), 60), 190))
    bar_w, row_h = width - label_w - 90, 20
    height = row_h * len(rows) + 8
    out = [_svg_open(width, height, title)]
    for i, (label, value, note) in enumerate(rows):
        y = 4 + i * row_h
        value = _number(value)
        out.append(f'<text class="axis" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(_clip(label, 28))}</text>')
        out.append(f'<rect class="track" x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 6}"/>')
        if value is not None:
            out.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w * min(max(value, 0), 1):.1f}" '
                       f'height="{row_h - 6}"/>')
        text = "-" if value is None else f"{100 * value:.1f}"
        out.append(f'<text class="value" x="{label_w + bar_w + 6}" y="{y + 14}">{esc(text)}'
                   f'<tspan class="n"> {esc(note)}</tspan></text>')
    return "".join(out) + "</svg>"


def histogram(counts: list[int], labels: list[str], title: str, width: int = 260, height: int = 150) -> str:
    """Vertical bars of counts, each labelled with its share of the total."""
    total = sum(counts) or 1
    top, bottom, gap = 18, 22, 8
    slot = (width - 10) / len(counts)
    out = [_svg_open(width, height, title)]
    peak = max(counts) or 1
    for i, (count, label) in enumerate(zip(counts, labels)):
        h = (height - top - bottom) * count / peak
        x = 5 + i * slot
        out.append(f'<rect class="bar" x="{x + gap / 2:.1f}" y="{height - bottom - h:.1f}" '
                   f'width="{slot - gap:.1f}" height="{h:.1f}"/>')
        out.append(f'<text class="value" x="{x + slot / 2:.1f}" y="{height - bottom - h - 4:.1f}" '
                   f'text-anchor="middle">{100 * count / total:.0f}%</text>')
        out.append(f'<text class="axis" x="{x + slot / 2:.1f}" y="{height - 6}" text-anchor="middle">{esc(label)}</text>')
    out.append(f'<line class="base" x1="5" x2="{width - 5}" y1="{height - bottom}" y2="{height - bottom}"/>')
    return "".join(out) + "</svg>"


def stacked(parts: list[tuple[str, int]], title: str, width: int = 300) -> str:
    """One 100% bar of counts with its legend (how trajectories ended)."""
    total = sum(n for _, n in parts) or 1
    out = [f'<svg class="chart" viewBox="0 0 {width} 26" width="{width}" height="26" role="img"><title>{esc(title)}</title>']
    x = 0.0
    for label, n in parts:
        w = width * n / total
        out.append(f'<rect x="{x:.1f}" y="3" width="{w:.1f}" height="20" fill="{STOP_COLOURS.get(label, "#607d8b")}"/>')
        x += w
    legend = "".join(f'<li><i style="background:{STOP_COLOURS.get(label, "#607d8b")}"></i>{esc(label)} '
                     f'<b>{n}</b> ({100 * n / total:.0f}%)</li>' for label, n in parts)
    return "".join(out) + f'</svg><ul class="legend">{legend}</ul>'


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


CALL_LABELS = [str(k) for k in range(CALL_BINS)] + [f"{CALL_BINS}+"]  # 0, 1, 2, 3, 4+ as in the tool table


def tool_charts(view: RunView) -> str:
    """Per table row: the calls histogram, how trajectories ended, accuracy with and without tools
    (from the samples themselves, so an unfinished run has them too)."""
    cards = []
    for name, leaves in view.sections:
        samples = [s for leaf in leaves for s in view.samples.get(leaf, [])]
        if not samples:
            continue
        calls = Counter(min(len(s.traj.tool_calls), CALL_BINS) for s in samples)
        ended = Counter(s.traj.stop_reason or "unfinished" for s in samples)
        order = [r for r in STOP_COLOURS if r in ended] + sorted(r for r in ended if r not in STOP_COLOURS)
        scored = [s for s in samples if s.correct is not None]
        rows = []
        for label, used in (("with tools", True), ("without tools", False)):
            group = [s for s in scored if s.traj.used_tools == used]
            rows.append((label, sum(s.correct for s in group) / len(group) if group else None, f"n={len(group)}"))
        cards.append(
            f'<div class="card"><h3>{esc(name)} <span class="n">{len(samples)} samples</span></h3><div class="charts">'
            f'<div><h4>tool calls per sample</h4>{histogram([calls[k] for k in range(CALL_BINS + 1)], CALL_LABELS, "tool calls per sample")}</div>'
            f'<div><h4>how trajectories ended</h4>{stacked([(r, ended[r]) for r in order], "stop reasons")}</div>'
            f'<div><h4>accuracy with / without tools{" (provisional)" if not view.finished else ""}</h4>'
            f'{hbars(rows, "accuracy with and without tools", width=330) if scored else "<p class=note>not scored</p>"}</div>'
            "</div></div>")
    return "".join(cards) or '<p class="note">no samples yet</p>'


def breakdowns(view: RunView) -> str:
    """V*'s attribute/spatial accuracy, MVBench's subtasks: any breakdown a benchmark has and any
    group's members, as bars."""
    run = view.run
    cards = []
    for name, leaves in view.sections:
        own = SCORERS.get(run.benchmarks.get(name, ""))
        values = run.metrics[name]
        if own and own.breakdown:
            categories = Counter(str(s.traj.meta.get("category")) for leaf in leaves
                                 for s in view.samples.get(leaf, []))
            rows = [(key.removesuffix("_accuracy"), values.get(key), f"n={categories.get(wanted, 0)}")
                    for key, wanted in own.breakdown.items()]
            cards.append(f'<div class="card"><h3>{esc(name)}: accuracy by category</h3>{hbars(rows, name)}</div>')
        children = [c for c in run.members.get(name, []) if c in run.metrics]
        if children:
            main = own.main if own else "accuracy"
            rows = [(c.removeprefix(name + "_"), run.metrics[c].get(main), f"n={run.counts.get(c, '')}")
                    for c in children]
            cards.append(f'<div class="card"><h3>{esc(name)}: {esc(MAIN_LABELS.get(main, main))} by subtask</h3>'
                         f"{hbars(rows, name, width=520)}</div>")
    return "".join(cards)


# --- The trajectory viewer -----------------------------------------------------------------------------

FILTERS = [("all", "all"), ("correct", "correct"), ("wrong", "wrong"), ("tool", "tool used"),
           ("notool", "no tool"), ("error", "error")]


def sample_classes(sample: SampleView) -> list[str]:
    correct = sample.correct
    classes = ["unscored" if correct is None else "correct" if correct else "wrong"]
    classes.append("tool" if sample.traj.used_tools else "notool")
    if sample.lost or sample.failed_calls:
        classes.append("error")
    return classes


def sample_card(view: RunView, sample: SampleView, number: int, open_: bool) -> str:
    traj = sample.traj
    correct = sample.correct
    badge = ("<span class='badge none'>not scored</span>" if correct is None else
             f"<span class='badge {'ok' if correct else 'bad'}'>{'correct' if correct else 'wrong'}"
             f"{' (provisional)' if sample.provisional else ''}</span>")
    facts = [f"{len(traj.tool_calls)} call{'s' if len(traj.tool_calls) != 1 else ''}",
             traj.stop_reason or "unfinished"]
    if sample.failed_calls:
        facts.append(f"{sample.failed_calls} failed")
    if sample.seconds is not None:
        facts.append(f"{sample.seconds:.1f} s")
    first_line = traj.question.strip().splitlines()[0] if traj.question.strip() else ""
    classes = " ".join("s-" + c for c in sample_classes(sample))
    summary = (f"<summary>{badge}<span class='sid'>{esc(traj.sample_id)}</span>"
               f"<span class='q'>{esc(_clip(first_line, 90))}</span><span class='info'>{esc(DOT.join(facts))}</span></summary>")
    return (f'<details class="sample {classes}" id="sample-{number}"{" open" if open_ else ""}>{summary}'
            f'<div class="body">{_facts_table(sample)}{_turns(view, sample)}</div></details>')


def _facts_table(sample: SampleView) -> str:
    traj = sample.traj
    rows = [("question", traj.question), ("target", shown(traj.target)), ("final answer", traj.answer_text)]
    if traj.error:
        rows.append(("error", traj.error))
    metrics = sample.metrics or {}
    own = [k for k in ("accuracy", "letter_accuracy", "count_accuracy", "anls") if metrics.get(k) is not None]
    if own:
        rows.append(("scores" + (" (provisional)" if sample.provisional else ""),
                     DOT.join(f"{k} {metrics[k]:g}" for k in own)))
    rows.append(("sample", f"{sample.task} doc {sample.doc_id} \u00b7 protocol {traj.protocol} {traj.fingerprint}"))
    cells = "".join(f'<tr><th>{esc(k)}</th><td><div class="text">{esc(v)}</div></td></tr>' for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _turns(view: RunView, sample: SampleView) -> str:
    """The conversation: prompt with its images, each assistant turn, its tool call (parsed
    arguments or error) and the feedback turn with the images the tool added."""
    traj = sample.traj
    calls = {c.turn: c for c in traj.tool_calls}
    out, turn, first_user = [], 0, True
    for message in traj.messages:
        role = message.get("role")
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": str(content or "")}]
        text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text")
        indices = [p.get(p.get("type")) for p in parts if isinstance(p, dict) and p.get("type") in ("image", "video")]
        indices = [i for i in indices if isinstance(i, int)]
        if role == "system":
            continue
        if role == "user" and first_user:
            first_user = False
            out.append(f'<li class="turn prompt"><div class="role">prompt</div>{images_html(view, sample, indices)}'
                       f'<details class="prompt-text"><summary>prompt text as sent</summary>'
                       f'<div class="text">{esc(text)}</div></details></li>')
        elif role == "user":
            out.append(f'<li class="turn feedback"><div class="role">tool feedback</div>'
                       f'<div class="text">{esc(text)}</div>{images_html(view, sample, indices)}</li>')
        elif role == "assistant":
            call = calls.get(turn)
            out.append(f'<li class="turn assistant"><div class="role">assistant, turn {turn + 1}</div>'
                       f'<div class="text model">{esc(text)}</div>'
                       f'{_call_html(call) if call else ""}</li>')
            turn += 1
    out.append(f'<li class="turn end"><div class="role">ended</div>{esc(traj.stop_reason or "unfinished")}</li>')
    return f'<ol class="turns">{"".join(out)}</ol>'


def _call_html(call: ToolCall) -> str:
    args = json.dumps(call.arguments, ensure_ascii=False, default=str) if call.arguments is not None else "-"
    if call.ok:
        result = f"ok: added image {', '.join(str(i) for i in call.new_images) or '-'}"
        if call.box_normalized:
            result += f" \u00b7 box after padding {[round(v, 3) for v in call.box_normalized]}"
    else:
        result = f"failed ({call.error_kind or 'error'}): {call.error or ''}"
    return (f'<div class="call {"ok" if call.ok else "failed"}"><span class="tool">{esc(call.name or "unparsed call")}</span>'
            f'<code>{esc(args)}</code><div class="result">{esc(result)}</div></div>')


def _card_or_notice(view: RunView, sample: SampleView, number: int, open_: bool) -> str:
    """A sample's card; a record too damaged to show (a hand-edited file) becomes a notice, so
    one bad line cannot cost the report."""
    try:
        return sample_card(view, sample, number, open_)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        view.problems.append(f"{sample.task} doc {sample.doc_id}: record could not be shown "
                             f"({type(exc).__name__}: {exc})")
        return (f'<details class="sample {" ".join("s-" + c for c in sample_classes(sample))}" id="sample-{number}">'
                f"<summary><span class='badge none'>damaged</span><span class='sid'>{esc(sample.traj.sample_id)}</span>"
                f"<span class='q'>{esc(type(exc).__name__)}: {esc(exc)}</span></summary></details>")


def viewer(view: RunView, max_samples: int) -> str:
    """Filter buttons and, per table row, up to `max_samples` sample cards (taken in turn from
    its tasks, so every MVBench subtask shows). The first sample with a crop is open."""
    blocks, totals = [], Counter()
    for name, leaves in view.sections:
        queues = [list(view.samples.get(leaf, [])) for leaf in leaves]
        everything = sum(len(q) for q in queues)
        chosen = []
        while len(chosen) < max_samples and any(queues):
            for queue in queues:
                if queue and len(chosen) < max_samples:
                    chosen.append(queue.pop(0))
        if not chosen:
            continue
        opened = next((s for s in chosen if any(i.kind == "crop" for i in s.traj.images)), chosen[0])
        cards = []
        for sample in chosen:
            totals.update(sample_classes(sample) + ["all"])
            cards.append(_card_or_notice(view, sample, totals["all"], sample is opened))
        cap = (f'<p class="note">showing {len(chosen)} of {everything} samples (the first {max_samples}; '
               f'pr-eval report --max-samples N shows more)</p>' if everything > len(chosen) else "")
        blocks.append(f'<section class="task"><h3>{esc(name)} <span class="n">{everything} samples</span></h3>'
                      f'{cap}{"".join(cards)}</section>')
    buttons = "".join(f'<button type="button" data-filter="{key}"{" class=on" if key == "all" else ""}>'
                      f'{label} <b>{totals[key]}</b></button>' for key, label in FILTERS)
    rule = ("correct/wrong: the paper's answer rule (accuracy)" if view.finished
            else "correct/wrong: scored by this report with the paper's answer rule, provisional until the run finishes")
    return (f'<div class="filters">{buttons}<button type="button" data-expand="1">expand all</button>'
            f'<button type="button" data-expand="0">collapse all</button></div>'
            f'<p class="note">{esc(rule)}; error: a lost sample or a failed tool call; at most {max_samples} samples per task shown</p>'
            f'<div id="viewer" class="f-all">{"".join(blocks) or "<p class=note>no samples</p>"}</div>')


# --- The page ---------------------------------------------------------------------------------------------

SCRIPT = """
(function () {
  var viewer = document.getElementById('viewer');
  var buttons = document.querySelectorAll('[data-filter]');
  function show(filter) {
    viewer.className = 'f-' + filter;
    buttons.forEach(function (b) { b.classList.toggle('on', b.dataset.filter === filter); });
  }
  buttons.forEach(function (b) { b.addEventListener('click', function () { show(b.dataset.filter); }); });
  document.querySelectorAll('[data-expand]').forEach(function (b) {
    b.addEventListener('click', function () {
      document.querySelectorAll('#viewer details.sample').forEach(function (d) { d.open = b.dataset.expand === '1'; });
    });
  });
  var wanted = /^#show=(\\w+)$/.exec(location.hash);
  if (wanted && document.querySelector('[data-filter="' + wanted[1] + '"]')) { show(wanted[1]); }
  document.documentElement.classList.add('js');
})();
"""

STYLE = f":root{{--ink:#1d2430;--mute:#667085;--line:#e3e7ee;--bg:#f6f7fb;--accent:#3559c7;--ok:#2e7d32;--bad:#c62828;--box:{BOX_COLOUR}}}" + """
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI","DejaVu Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:0 0 8px}h4{font-size:12px;margin:0 0 4px;color:var(--mute);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.n{color:var(--mute);font-weight:400;font-size:12px}
.note{color:var(--mute);font-size:12px;white-space:pre-wrap;margin:6px 0}
.banner{background:#fff4e5;border:1px solid #f5b971;color:#7a4100;padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.problems{background:#fdecea;border:1px solid #f5c2c0;padding:8px 14px;border-radius:6px;font-size:12px}
.subtitle{color:var(--mute);margin:0 0 10px}
.meta{display:grid;grid-template-columns:110px 1fr;gap:2px 14px;margin:10px 0 14px;font-size:13px}
.meta dt{color:var(--mute);font-weight:600}.meta dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#eef1f7;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.tools{font-size:12px}table.tools th,table.tools td{padding:4px 7px}
tr.group td,tr.task td{font-weight:600}tr.breakdown td{color:var(--mute);font-weight:400}
.scroll{overflow-x:auto}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:10px 0}
.cards{display:flex;flex-wrap:wrap;gap:0 14px;align-items:flex-start}
.charts{display:flex;flex-wrap:wrap;gap:18px 30px;align-items:flex-start}
svg.chart text{font-size:11px;fill:var(--ink)}svg.chart .axis{fill:var(--mute)}svg.chart .n{fill:var(--mute)}
svg.chart .bar{fill:var(--accent)}svg.chart .track{fill:#eef1f7}svg.chart .base{stroke:var(--line)}
.legend{list-style:none;padding:0;margin:6px 0 0;font-size:12px}.legend li{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.filters{position:sticky;top:0;z-index:5;background:var(--bg);padding:8px 0;display:flex;flex-wrap:wrap;gap:6px}
.filters button{border:1px solid var(--line);background:#fff;border-radius:16px;padding:4px 12px;font:inherit;cursor:pointer}
.filters button.on{background:var(--accent);border-color:var(--accent);color:#fff}
#viewer.f-correct .sample:not(.s-correct),#viewer.f-wrong .sample:not(.s-wrong),#viewer.f-tool .sample:not(.s-tool),
#viewer.f-notool .sample:not(.s-notool),#viewer.f-error .sample:not(.s-error){display:none}
section.task{margin:14px 0}
details.sample{background:#fff;border:1px solid var(--line);border-radius:8px;margin:6px 0}
details.sample>summary{cursor:pointer;padding:7px 12px;display:flex;gap:10px;align-items:baseline;list-style:none}
details.sample>summary::before{content:"\\25B8";color:var(--mute)}details.sample[open]>summary::before{content:"\\25BE"}
details.sample[open]>summary{border-bottom:1px solid var(--line)}
.sid{font-family:"DejaVu Sans Mono",monospace;font-size:12px;white-space:nowrap}
.q{flex:1;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:var(--mute)}
.info{font-size:12px;white-space:nowrap;color:var(--mute)}
.badge{border-radius:10px;padding:1px 8px;font-size:11px;font-weight:700;color:#fff;white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.none{background:#9e9e9e}
.body{padding:10px 14px}
table.facts{width:100%;border:0}table.facts th{width:120px;color:var(--mute);font-weight:600;border:0}table.facts td{border:0}
.text{white-space:pre-wrap;overflow-wrap:anywhere;max-height:18em;overflow:auto}
.text.model{font-family:"DejaVu Sans Mono",monospace;font-size:12px;background:#f8f9fc;border:1px solid var(--line);border-radius:4px;padding:6px 8px}
ol.turns{list-style:none;padding:0;margin:10px 0 0}
.turn{border-left:3px solid var(--line);padding:4px 0 8px 12px;margin-bottom:6px}
.turn.assistant{border-color:var(--accent)}.turn.feedback{border-color:#8e24aa}.turn.end{color:var(--mute);font-size:12px}
.role{font-size:11px;font-weight:700;text-transform:uppercase;color:var(--mute);letter-spacing:.04em;margin-bottom:3px}
.call{margin-top:6px;font-size:12px;border-radius:4px;padding:5px 8px;background:#eef3ff;overflow-wrap:anywhere}
.call.failed{background:#fdecea}.call .tool{font-weight:700;margin-right:8px}.call .result{color:var(--mute)}
.prompt-text summary{cursor:pointer;color:var(--mute);font-size:12px}
.images{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0}
figure{margin:0}figcaption{font-size:11px;color:var(--mute);max-width:420px}
.pic{position:relative;display:inline-block;line-height:0}
figure.image img{display:block;max-width:420px;max-height:360px;width:auto;height:auto}
figure.frame img{display:block;width:110px;height:auto}
.missing{display:flex;align-items:center;justify-content:center;width:220px;background:repeating-linear-gradient(45deg,#eee,#eee 8px,#f7f7f7 8px,#f7f7f7 16px);border:1px dashed #bbb;color:var(--mute);font-size:11px;line-height:1.3;text-align:center}
figure.frame .missing{width:110px}
svg.overlay{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible;pointer-events:none}
svg.overlay rect{fill:none;vector-effect:non-scaling-stroke}
svg.overlay .halo{stroke:#000;stroke-opacity:.55;stroke-width:7}svg.overlay .box{stroke:var(--box);stroke-width:3}
svg.overlay text{fill:var(--box);font-weight:700;font-size:22px;paint-order:stroke;stroke:#000;stroke-width:3px}
figure.frame svg.overlay text{font-size:40px}
.video .frames{display:flex;flex-wrap:wrap;gap:4px}.video .label{font-size:11px;color:var(--mute)}
footer{margin-top:30px;color:var(--mute);font-size:12px}
"""


def header(view: RunView) -> str:
    """Title, what was run (model, protocol and fingerprint, tasks, caps, versions, command) and
    the data sources."""
    info = view.info
    protocol = info.get("protocol") or {}
    caps = (protocol.get("settings") or {}).get("caps") or {}
    versions = info.get("versions") or {}
    git = info.get("git") or {}
    command = info.get("command")
    facts = [
        ("model", info.get("model")), ("checkpoint", info.get("model_path")), ("engine", info.get("engine")),
        ("protocol", f"{protocol.get('name', '?')} (fingerprint {protocol.get('fingerprint', '?')})"),
        ("caps", ", ".join(f"{k} {v}" for k, v in caps.items()) or None),
        ("tasks", ", ".join(map(str, info.get("tasks") or [])) or None),
        ("limit", info.get("limit")), ("schedule", info.get("schedule")), ("seed", info.get("seed")),
        ("started", _when(info.get("started"))), ("resumed", ", ".join(map(_when, info.get("resumed") or [])) or None),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        ("git", f"{git.get('revision', '?')}{' (uncommitted changes)' if git.get('dirty') else ''}" if git else None),
        ("command", " ".join(map(str, command)) if isinstance(command, list) else command),
        ("folder", str(view.folder)),
    ]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    settings = json.dumps(protocol, indent=2, ensure_ascii=False, default=str)
    state = "finished" if view.finished else "unfinished"
    subtitle = DOT.join([f"protocol {protocol.get('name', '?')} {protocol.get('fingerprint', '')}".strip(),
                         f"started {_when(info.get('started'))}", state])
    return (f'<h1>pr-eval report: {esc(info.get("model") or view.folder.name)}</h1>'
            f'<p class="subtitle">{esc(subtitle)}</p><dl class="meta">{meta}</dl>{data_sources(info)}'
            f'<details><summary class="note">protocol record (every setting)</summary>'
            f'<div class="text model">{esc(settings)}</div></details>')


def _when(value) -> str:
    """An ISO time as "YYYY-MM-DD HH:MM:SS UTC" (anything else as it is)."""
    try:
        moment = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo is not None else "")


def data_sources(info: dict) -> str:
    """One row per distinct data source (MVBench's 20 subtasks share one)."""
    grouped: dict[str, list[str]] = {}
    records = {}
    for task, record in (info.get("data") or {}).items():
        key = json.dumps(record, sort_keys=True, default=str)
        grouped.setdefault(key, []).append(task)
        records[key] = record if isinstance(record, dict) else {"origin": record}
    if not grouped:
        return ""
    rows = []
    for key, tasks in grouped.items():
        r = records[key]
        names = tasks[0] if len(tasks) == 1 else f"{tasks[0]} \u2026 ({len(tasks)} tasks)"
        rows.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in (
            r.get("benchmark", ""), names, r.get("kind", ""), r.get("origin", ""), str(r.get("revision") or "")[:16],
            r.get("rows", ""))) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("benchmark", "tasks", "source", "origin", "revision", "rows"))
    return f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def render(view: RunView, max_samples: int = DEFAULT_MAX_SAMPLES) -> str:
    """The whole page."""
    trajectories = viewer(view, max_samples)  # first: a damaged record adds to the problems
    sections = [header(view)]
    if view.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in view.problems[:50])
        more = f"<li>\u2026 and {len(view.problems) - 50} more</li>" if len(view.problems) > 50 else ""
        sections.append(f'<div class="problems"><b>Problems reading the run folder</b><ul>{items}{more}</ul></div>')
    if view.finished:
        sections.append(f'<h2 id="scores">Scores</h2><div class="scroll">{score_table(view.run)}</div>')
        parts = breakdowns(view)
        if parts:
            sections.append(f'<h2 id="breakdowns">Breakdowns</h2><div class="cards">{parts}</div>')
        sections.append(f'<h2 id="tools">Tool use</h2><div class="scroll">{tool_table(view.run)}</div>')
    else:
        count = sum(len(v) for v in view.samples.values())
        sections.insert(0, f'<div class="banner">unfinished: {count} samples so far. No scores until the run '
                           f'finishes (resume it with pr-eval ... --resume {esc(view.folder)}).</div>')
        sections.append('<h2 id="tools">Tool use</h2>')
    sections.append(tool_charts(view))
    sections.append(f'<h2 id="trajectories">Trajectories</h2>{trajectories}')
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"pr-eval report: {view.info.get('model') or view.folder.name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>"
            + "".join(sections)
            + f"<footer>pr-eval {esc(__version__)} report, generated {generated}</footer></main>"
            f"<script>{SCRIPT}</script></body></html>\n")


def write_report(run_dir: str | Path, output: str | Path | None = None,
                 max_samples: int = DEFAULT_MAX_SAMPLES) -> Path:
    """Write the HTML report of a run folder (default: <run_dir>/report.html); returns its path."""
    if max_samples < 1:
        raise ReportError(f"max_samples must be at least 1, got {max_samples}")
    view = load_view(run_dir)
    path = Path(output) if output is not None else view.folder / REPORT_NAME
    write_atomic(path, render(view, max_samples))
    return path


def main(argv: list[str]) -> int:
    """`pr-eval report RUN_DIR [--output FILE] [--max-samples N]`."""
    parser = argparse.ArgumentParser(prog="pr-eval report",
                                     description="Write the self-contained HTML report of a run folder.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder pr-eval wrote (finished or not)")
    parser.add_argument("--output", default=None, help="where to write it (default: RUN_DIR/report.html)")
    parser.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES,
                        help="trajectories shown per task (default: %(default)s)")
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # scoring an unfinished run's samples
    try:
        args = parser.parse_args(argv)
        if args.max_samples < 1:
            parser.error(f"--max-samples must be a positive number, got {args.max_samples}")
        try:
            path = write_report(args.run_dir, args.output, args.max_samples)
        except ReportError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0), as a status
        return int(exc.code or 0)
    except OSError as exc:
        print(f"pr-eval report: error: cannot write the report ({exc}); choose another --output", file=sys.stderr)
        return 1
    print(path)
    return 0
