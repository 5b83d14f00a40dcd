"""The field's table: runs, submissions and published rows in one paper-style table, one row per
(model, protocol), one column per benchmark's main metric and the splits it reports, each cell
with its 95% interval and n.

    sides (pr_eval.compare.sides) -> columns (registry order: main metric, then its splits)
        -> cells: the mean over questions, a bootstrap interval over questions (a sampled run's
           questions are the means of their rollouts, so the interval is clustered by question),
           n; a published number as it was published
        -> with a baseline row: each cell's difference and its test (pr_eval.compare.delta:
           paired where the questions are the same, against a fixed number otherwise)

Cells of different protocols are never presented as comparable: the protocol (name and
fingerprint) is part of each row, and a column whose rows ran under different protocols is
marked and footnoted.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

from .. import benchmarks
from .delta import compare_benchmark
from .sides import Benchmark, InputError, Side, is_grouped, sample_mean
from .stats import DEFAULT_ALPHA, DEFAULT_RESAMPLES, bootstrap_means, percentile_ci

# Split columns a benchmark reports beside its main metric: metric -> its label
SPLITS = {"vstar": {"attribute_accuracy": "attribute", "spatial_accuracy": "spatial"},
          "hrbench4k": {"fsp_accuracy": "FSP", "fcp_accuracy": "FCP"},
          "hrbench8k": {"fsp_accuracy": "FSP", "fcp_accuracy": "FCP"}}


@dataclass(frozen=True)
class Column:
    benchmark: str
    metric: str
    label: str


@dataclass
class Cell:
    value: float | None = None
    ci: tuple[float, float] | None = None
    n: int | None = None
    published: bool = False
    # against the baseline row
    delta: float | None = None
    p: float | None = None
    test: str | None = None
    significant: bool = False
    paired: bool | None = None
    status: str | None = None


@dataclass
class Row:
    label: str
    model: str
    protocol: str                  # its name and fingerprint, as the table shows them
    name: str                      # the protocol's name
    fingerprint: str | None        # None: a published row, matched by the protocol's name
    kind: str                      # run, submission or reference (published)
    cells: dict[Column, Cell] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.kind == "reference"


@dataclass
class Table:
    rows: list[Row]
    columns: list[Column]
    mixed: dict[Column, list[str]]    # columns whose rows ran under different protocols
    baseline: int | None = None
    alpha: float = DEFAULT_ALPHA


def protocol_label(side: Side) -> str:
    return f"{side.protocol} ({side.fingerprint[:8]})" if side.fingerprint else side.protocol


def columns_for(sides: list[Side]) -> list[Column]:
    """Every benchmark of any side, in the registry's order (unknown ones last), each as its main
    metric's column followed by its split columns."""
    present = list(dict.fromkeys(name for side in sides for name in side.benchmarks))
    order = {name: k for k, name in enumerate(benchmarks.BENCHMARKS)}
    present.sort(key=lambda name: order.get(name, len(order)))
    columns = []
    for name in present:
        info = benchmarks.BENCHMARKS.get(name)
        title = (info.cli or info.name) if info else name
        main = benchmarks.main_metric(name)
        columns.append(Column(name, main, title))
        for metric, label in SPLITS.get(name, {}).items():
            columns.append(Column(name, metric, f"{title} {label}"))
        published = [s.benchmarks[name].metric for s in sides
                     if name in s.benchmarks and not s.benchmarks[name].paired and s.benchmarks[name].metric]
        for metric in dict.fromkeys(published):  # a published number of another metric: its own column
            if metric != main and metric not in SPLITS.get(name, {}):
                columns.append(Column(name, metric, f"{title} ({metric})"))
    return columns


def cell_of(bench: Benchmark, metric: str, alpha: float, resamples: int, seed: int) -> Cell:
    """A benchmark's figure on one side: measured (its questions' mean, a bootstrap interval over
    questions, n) or published (the number, its stated n)."""
    if not bench.paired:
        value = bench.reported.get(metric) if metric == (bench.metric or metric) else None
        return Cell(value=value, n=bench.size if value is not None else None, published=True)
    keys = [k for k, m in bench.samples.items() if _number(m.get(metric))]
    if not keys:
        return Cell(n=0)
    if is_grouped(bench, metric, keys):  # HR-Bench's cycles: resample the groups
        groups: dict[str, list[float]] = {}
        for k in keys:
            groups.setdefault(bench.groups[k], []).append(float(bench.samples[k][metric]))
        values = [float(np.mean(v)) for v in groups.values()]
    else:
        values = [float(bench.samples[k][metric]) for k in keys]
    interval = percentile_ci(bootstrap_means(values, resamples, seed), alpha) if len(values) > 1 else None
    return Cell(value=sample_mean(bench, metric, keys), ci=interval, n=len(keys))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build(sides: list[Side], baseline: int | None = None, alpha: float = DEFAULT_ALPHA,
          resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Table:
    """The table of `sides` (in the order given); `baseline`: the index of the row every other
    cell is compared with."""
    columns = columns_for(sides)
    rows = []
    for side in sides:
        row = Row(label=side.model, model=side.model, protocol=protocol_label(side), name=side.protocol,
                  fingerprint=side.fingerprint, kind=side.kind)
        for column in columns:
            bench = side.benchmarks.get(column.benchmark)
            if bench is not None:
                row.cells[column] = cell_of(bench, column.metric, alpha, resamples, seed)
        rows.append(row)
    if baseline is not None:
        base = sides[baseline]
        for side, row in zip(sides, rows):
            if side is base:
                continue
            for column, cell in row.cells.items():
                a, b = base.benchmarks.get(column.benchmark), side.benchmarks.get(column.benchmark)
                if a is None or b is None:
                    continue
                if cell.value is None:
                    continue
                try:
                    compared = compare_benchmark(_only(a, column.metric), _only(b, column.metric), column.metric,
                                                 alpha, resamples, seed)
                except InputError:  # the baseline has no figure of this metric: nothing to compare
                    continue
                cell.delta, cell.p, cell.status = compared.delta, compared.p, compared.status
                cell.test = None if compared.test == "-" else compared.test
                cell.significant, cell.paired = compared.significant(alpha), compared.paired
    # a column no row has a number for (a published file's benchmark of another metric) says nothing
    columns = [c for c in columns if any(c in r.cells and r.cells[c].value is not None for r in rows)]
    for row in rows:
        row.cells = {c: cell for c, cell in row.cells.items() if c in columns}
    mixed = {}
    for column in columns:
        shown = [r for r in rows if column in r.cells and r.cells[column].value is not None]
        if mixes(shown):
            mixed[column] = list(dict.fromkeys(r.protocol for r in shown))
    return Table(rows, columns, mixed, baseline, alpha)


def mixes(rows: list[Row]) -> bool:
    """Whether rows ran under different protocols: different names, or one name with different
    fingerprints (a published row without one is matched by its protocol's name)."""
    if len({r.name for r in rows}) > 1:
        return True
    return len({r.fingerprint for r in rows if r.fingerprint}) > 1


def _only(bench: Benchmark, metric: str) -> Benchmark:
    """The benchmark as seen through one metric (a published row's number is only its own)."""
    if bench.paired:
        return bench
    value = bench.reported.get(metric) if metric == bench.metric else None
    return dataclasses.replace(bench, reported={metric: value}, metric=metric)


# --- Output -------------------------------------------------------------------------------------

def cell_text(cell: Cell | None, intervals: bool = True) -> str:
    """A cell in points: "75.0 [66.7, 83.3]" (measured), "84.3 pub." (published), "-" (none); with
    a baseline, the difference and its mark ("+2.1*": significant at alpha)."""
    if cell is None or cell.value is None:
        return "-"
    text = f"{100 * cell.value:.1f}"
    if cell.published:
        text += " pub."
    elif intervals and cell.ci is not None:
        text += f" [{100 * cell.ci[0]:.1f}, {100 * cell.ci[1]:.1f}]"
    if cell.delta is not None:
        text += f" ({100 * cell.delta:+.1f}{'*' if cell.significant else ''})"
    return text


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def header(table: Table) -> list[str]:
    marks = {column: "\u2020" for column in table.mixed}
    return ["model", "protocol"] + [_one_line(c.label) + marks.get(c, "") for c in table.columns]


def body(table: Table, intervals: bool = True) -> list[list[str]]:
    rows = []
    for k, row in enumerate(table.rows):
        label = row.label + (" (published)" if row.published else "") + (" [baseline]" if k == table.baseline else "")
        rows.append([_one_line(label), _one_line(row.protocol)]
                    + [cell_text(row.cells.get(c), intervals) for c in table.columns])
    return rows


def footnotes(table: Table) -> list[str]:
    notes = ["cells: mean over questions in points, 95% bootstrap interval over questions (a sampled run's "
             "questions are the means of their rollouts); pub.: a published number, as published"]
    for column, protocols in table.mixed.items():
        notes.append(f"\u2020 {column.label}: rows of different protocols ({', '.join(protocols)}); "
                     "their numbers are not comparable")
    if table.baseline is not None:
        base = table.rows[table.baseline]
        notes.append(f"(+d*): difference to {base.label} under {base.protocol}; * significant at alpha "
                     f"{table.alpha:g} (McNemar where the questions are paired, bootstrap for graded metrics, "
                     "binomial against a published number)")
    notes = [_one_line(n) for n in notes]
    ns = {c.label: sorted({r.cells[c].n for r in table.rows if c in r.cells and r.cells[c].n}) for c in table.columns}
    notes.append("n (questions): " + "; ".join(f"{label} {'/'.join(map(str, n))}" for label, n in ns.items() if n))
    return notes


def text(table: Table) -> str:
    rows = [header(table)] + body(table)
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + footnotes(table))


def markdown(table: Table) -> str:
    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
    rows = [line(header(table)), "|" + "---|" * len(table.columns + [0, 0])] + [line(r) for r in body(table)]
    return "\n".join(rows + [""] + [f"{n}  " for n in footnotes(table)]) + "\n"


_TEX = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{",
        "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "\u2020": "$^\\dagger$"}


def tex(value: str) -> str:
    """Text as LaTeX typesets it, in one pass (so an escape is never escaped again)."""
    return re.sub(r"[\\&%$#_{}~^\u2020]", lambda m: _TEX[m.group()], value)


def latex(table: Table) -> str:
    rows = [header(table)] + body(table, intervals=True)
    spec = "ll" + "r" * len(table.columns)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(tex(v) for v in rows[0]) + " \\\\",
             "\\midrule"] + [" & ".join(tex(v) for v in r) + " \\\\" for r in rows[1:]]
    lines += ["\\bottomrule", "\\end{tabular}"] + [f"% {tex(n)}" for n in footnotes(table)]
    return "\n".join(lines) + "\n"


def csv_text(table: Table) -> str:
    """One line per (row, column) cell, every figure in its own field (fractions, not points)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", "protocol", "fingerprint", "kind", "benchmark", "metric", "value", "ci_low",
                     "ci_high", "n", "delta", "p", "test", "significant", "mixed_protocols"])
    for row in table.rows:
        for column in table.columns:
            cell = row.cells.get(column)
            if cell is None:
                continue
            writer.writerow([_plain_text(row.model), _plain_text(row.protocol), _plain_text(row.fingerprint or ""),
                             row.kind, _plain_text(column.benchmark),
                             column.metric, cell.value, *(cell.ci or (None, None)), cell.n, cell.delta, cell.p,
                             cell.test or "", cell.significant if cell.delta is not None else "",
                             column in table.mixed])
    return out.getvalue()


def _plain_text(value: str) -> str:
    """A spreadsheet must not take a model's name for a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def html_page(table: Table, title: str = "pr-eval table") -> str:
    """The table as one self-contained page (no script, no network), everything escaped."""
    from ..report.escape import esc

    head = "".join(f"<th>{esc(v)}</th>" for v in header(table))
    rows = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in body(table))
    notes = "".join(f"<li>{esc(n)}</li>" for n in footnotes(table))
    style = ("body{font:14px system-ui,sans-serif;margin:2em;color:#1d2430}table{border-collapse:collapse}"
             "th,td{border:1px solid #e3e7ee;padding:4px 8px;text-align:right}th:first-child,td:first-child,"
             "th:nth-child(2),td:nth-child(2){text-align:left}th{background:#f6f7fb}")
    policy = "default-src 'none'; style-src 'unsafe-inline'"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
            f'content="{policy}"><title>{esc(title)}</title><style>{style}</style></head><body>'
            f"<h1>{esc(title)}</h1><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"<ul>{notes}</ul></body></html>\n")
