"""The report's tables and charts: the score and tool tables as HTML, and small SVG charts.

    Run (pr_eval.run.folder) + RunView (pr_eval.report.view) -> [tables and charts here] -> the page

The HTML tables draw the rows of the text tables (pr_eval.report.tables), so both agree to the digit.
The charts (calls per sample, how trajectories ended, accuracy with and without tools) are drawn
from the samples themselves, so an unfinished run has them too. Plain SVG, no script.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from .. import benchmarks
from ..run.folder import Run
from ..scoring.metrics import CALL_BINS
from . import tables
from .escape import clip, esc
from .view import RunView

STOP_COLOURS = {"answered": "#2e7d32", "max_tool_calls": "#ef6c00", "max_images": "#f9a825",
                "max_tokens": "#6a1b9a", "engine_error": "#c62828", "data_error": "#8d1c1c",
                "tool_error": "#ad1457", "unfinished": "#9e9e9e"}


SCORE_NOTE = ("score: the benchmark's own metric, named under metric; accuracy: the paper's answer rule; "
              "score, accuracy, RaPR and lost samples in %")


def score_table(run: Run) -> str:
    """The run's table (`tables.run_table`) as HTML: a group's members indented under it, V*'s breakdowns
    under V*."""
    head = "".join(f"<th>{esc(h)}</th>" for h in ["task", "n", "metric"]) \
        + "".join(f'<th class="num">{esc(tables.HTML_HEADERS.get(key, h))}</th>' for key, h in tables.COLUMNS)
    body = []
    for name, label, depth in run.layout():
        for i, row in enumerate(tables.score_rows(run, name, label, depth)):
            kind = "breakdown" if i else "group" if name in run.members else "member" if depth else "task"
            level = depth + (1 if i else 0)
            cells = [f'<td class="name" style="padding-left:{0.6 + 1.2 * level:.1f}em">{esc(row[0].strip())}</td>']
            cells += [f"<td>{esc(cell)}</td>" for cell in row[1:3]]
            cells += [f'<td class="num">{esc(cell)}</td>' for cell in row[3:]]
            body.append(f'<tr class="{kind}">{"".join(cells)}</tr>')
    note = SCORE_NOTE
    if any(m.get("rule_only") for m in run.metrics.values()):  # a peer's rule: see "Rule, then judge"
        note = note.replace("accuracy: the paper's answer rule", "accuracy: the protocol's own rule, over the "
                            "questions it decided (undecided ones and the judge: Rule, then judge)")
    return (f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(note)}</p>')


def tool_table(run: Run) -> str:
    head = "<th>tool use</th><th>n</th>" + "".join(f'<th class="num">{esc(h)}</th>' for _, h in tables.TOOL_COLUMNS)
    body = []
    for name, label, depth in run.layout():
        if depth == 0:
            values = run.metrics[name]
            cells = [f'<td class="name">{esc(label)}</td><td>{esc(run.counts.get(name, ""))}</td>']
            cells += [f'<td class="num">{esc(tables.cell(key, values.get(key)))}</td>' for key, _ in tables.TOOL_COLUMNS]
            body.append(f'<tr>{"".join(cells)}</tr>')
    return (f'<table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(_one_line(tables.TOOL_FOOTNOTE))}</p>')


def sampled_table(run: Run) -> str:
    """A sampled run's Avg@K, its interval, pass@k, majority vote and agreement ("" for a greedy run)."""
    rows = tables.sampled_rows(run, width=math.inf)  # every pass@k column: the page has room
    if not rows:
        return ""
    head = f"<th>{esc(rows[0][0])}</th>" + "".join(f'<th class="num">{esc(h)}</th>' for h in rows[0][1:])
    body = [f'<tr><td class="name">{esc(row[0])}</td>' + "".join(f'<td class="num">{esc(c)}</td>' for c in row[1:])
            + "</tr>" for row in rows[1:]]
    return (f'<table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(_one_line(tables.SAMPLED_FOOTNOTE))} Each rollout is a trajectory of its own '
            f'below.</p>')


def grounding_table(run: Run) -> str:
    """Where the crops went, for the benchmarks with target boxes ("" when none has them)."""
    head = "<th>crop grounding</th><th>n</th>" + "".join(f'<th class="num">{esc(h)}</th>'
                                                         for _, h in tables.GROUNDING_COLUMNS)
    body = []
    for name, label, depth in run.layout():
        values = run.metrics[name]
        shown = [tables.cell(key, values.get(key)) for key, _ in tables.GROUNDING_COLUMNS]
        if depth == 0 and any(c != "-" for c in shown):
            cells = [f'<td class="name">{esc(label)}</td><td>{esc(run.counts.get(name, ""))}</td>']
            cells += [f'<td class="num">{esc(c)}</td>' for c in shown]
            body.append(f'<tr>{"".join(cells)}</tr>')
    if not body:
        return ""
    return (f'<table class="tools"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f'<p class="note">{esc(_one_line(tables.GROUNDING_FOOTNOTE))} Targets are drawn dashed green on the '
            f'images below.</p>')


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
    label_w = int(min(max(8 + 6.5 * max((len(clip(r[0], 28)) for r in rows), default=0), 60), 190))
    bar_w, row_h = width - label_w - 90, 20
    height = row_h * len(rows) + 8
    out = [_svg_open(width, height, title)]
    for i, (label, value, note) in enumerate(rows):
        y = 4 + i * row_h
        value = _number(value)
        out.append(f'<text class="axis" x="{label_w - 6}" y="{y + 14}" text-anchor="end">{esc(clip(label, 28))}</text>')
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
        own = benchmarks.find(run.benchmarks.get(name, ""))
        values = run.metrics[name]
        if own and own.breakdown:
            categories = Counter(str(s.traj.meta.get("category")) for leaf in leaves
                                 for s in view.samples.get(leaf, []))
            rows = [(key.removesuffix("_accuracy"), values.get(key),
                     f"n={sum(n for c, n in categories.items() if own.in_category(c, wanted))}")
                    for key, wanted in own.breakdown.items()]
            cards.append(f'<div class="card"><h3>{esc(name)}: accuracy by category</h3>{hbars(rows, name)}</div>')
        children = [c for c in run.members.get(name, []) if c in run.metrics]
        if children:
            main, label = (own.main, own.main_label) if own else ("accuracy", "accuracy")
            rows = [(c.removeprefix(name + "_"), run.metrics[c].get(main), f"n={run.counts.get(c, '')}")
                    for c in children]
            cards.append(f'<div class="card"><h3>{esc(name)}: {esc(label)} by subtask</h3>'
                         f"{hbars(rows, name, width=520)}</div>")
    return "".join(cards)
