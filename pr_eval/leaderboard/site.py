"""The leaderboard's static site: plain HTML files a browser reads without a server or script.

    intake + boards -> [pages here] -> SITE_DIR/index.html            boards and the rejected list
                                       SITE_DIR/submissions/<id>.html  one per accepted submission
                                       SITE_DIR/protocols/<fp>.html    one per protocol on a board
                                       SITE_DIR/leaderboard.json       the same, for machines

Everything a submission says (model names, categories, answers, file names, reasons that quote
them) is untrusted: each page escapes it (pr_eval.report.escape.esc) and forbids everything but
its own style and one inline script by Content-Security-Policy. The script only sorts a table
when its header is clicked; the pages read the same without it. File names are hex digits that
validation has checked (a checksum, a fingerprint), never a name from a submission.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import shutil
from pathlib import Path

from .. import __version__
from ..compare.delta import points
from ..files import write_atomic
from ..report.escape import esc, shown
from .intake import Entry, Intake
from .rank import Board

# At most this many predictions are listed on a submission's page (the file holds them all).
PREDICTIONS_SHOWN = 500

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1d2430;padding:0 1em}"
         "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #e3e7ee;padding:4px 8px;"
         "text-align:right;vertical-align:top}th{background:#f6f7fb}th[data-sort]{cursor:pointer}"
         ".l{text-align:left}.tie{color:#8a5a00}.muted{color:#6b7280}pre{white-space:pre-wrap;"
         "background:#f6f7fb;padding:.8em;overflow-wrap:anywhere}td.reason{text-align:left;max-width:50em;"
         "overflow-wrap:anywhere}h2{margin-top:1.5em}a{color:#1a56db}")

# Click a column's header to sort by it (numbers by value); click again to reverse.
SORT_SCRIPT = ("document.querySelectorAll('table.sortable').forEach(function(t){"
               "t.querySelectorAll('th').forEach(function(th,i){th.setAttribute('data-sort','');"
               "th.addEventListener('click',function(){var b=t.tBodies[0],r=Array.from(b.rows),"
               "d=th.getAttribute('data-dir')==='asc'?-1:1;th.setAttribute('data-dir',d===1?'asc':'desc');"
               "r.sort(function(x,y){var p=x.cells[i].getAttribute('data-v')||x.cells[i].textContent,"
               "q=y.cells[i].getAttribute('data-v')||y.cells[i].textContent,m=parseFloat(p),n=parseFloat(q);"
               "return d*(isNaN(m)||isNaN(n)?p.localeCompare(q):m-n);});"
               "r.forEach(function(e){b.appendChild(e);});});});});")
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
POLICY = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'"


def page(title: str, body: str, up: str = "") -> str:
    nav = f'<p><a href="{up}index.html">Leaderboard</a></p>' if up else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{STYLE}</style></head><body>{nav}<h1>{esc(title)}</h1>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def table(head: list[str], rows: list[list[str]], sortable: bool = True, left: int = 1, kind: str = "") -> str:
    """`head` as text (escaped here); `rows` as HTML cells' inner HTML (escaped by the caller)."""
    def cls(k):
        return ' class="l"' if k < left else ""
    heads = "".join(f"<th{cls(k)}>{esc(h)}</th>" for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td{cls(k)}>{c}</td>" for k, c in enumerate(r))
                   + "</tr>" for r in rows)
    classes = " ".join(c for c in ("sortable" if sortable else "", kind) if c)
    thead = f"<thead><tr>{heads}</tr></thead>" if any(head) else ""
    return f'<table{f" class={chr(34)}{classes}{chr(34)}" if classes else ""}>{thead}<tbody>{body}</tbody></table>'



def number(value, scale: float = 100.0, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    try:
        scaled = scale * float(value)
    except OverflowError:  # an integer too large for a float (the schema sets no maximum)
        return "-"
    return f"{scaled:.{digits}f}" if math.isfinite(scaled) else "-"


def score_cell(cell) -> str:
    if cell.value is None:
        return '<td data-v="-1">-</td>'
    ci = f' <span class="muted">[{points(cell.ci[0])}, {points(cell.ci[1])}]</span>' if cell.ci else ""
    return f'<td data-v="{cell.value:.6f}">{points(cell.value)}{ci}</td>'


def submission_link(entry: Entry, up: str = "") -> str:
    return f'<a href="{up}submissions/{entry.id}.html">{esc(entry.model)}</a>'


def protocol_link(name: str, fingerprint: str, up: str = "") -> str:
    return f'<a href="{up}protocols/{fingerprint}.html">{esc(name)}</a> <span class="muted">{esc(fingerprint)}</span>'


def board_html(board: Board, up: str = "") -> str:
    rows = []
    for s in board.standings:
        stats = s.entry.document["benchmarks"][board.benchmark]["tool_stats"]
        rank = f'<td data-v="{s.rank}"{" class=tie" if s.tied else ""}>{s.rank}{"=" if s.tied else ""}</td>'
        rows.append([rank, submission_link(s.entry, up), score_cell(s.cell), str(s.cell.n or 0),
                     number(stats.get("rapr")), number(stats.get("tool_calls"), 1.0, 2),
                     esc(str(s.entry.document["created"])[:10])])
    title = f"{board.title} \u00b7 {board.protocol}"
    return (f'<h2 id="{esc(board.benchmark)}-{board.fingerprint}">{esc(title)}</h2>'
            f"<p>{esc(board.metric)} in points, 95% interval over questions; protocol "
            f"{protocol_link(board.protocol, board.fingerprint, up)}</p>"
            + table(["rank", "model", "score", "n", "RaPR", "calls/q", "submitted"], rows, left=2, kind="board"))


def index_html(intake: Intake, boards: list[Board], built: str) -> str:
    parts = [f"<p>{len(intake.accepted)} submissions accepted, {len(intake.rejected)} rejected; built {esc(built)} "
             f"by pr-eval {esc(__version__)}. A board ranks submissions of one protocol only. Rank: 1 + the number "
             "of submissions whose interval lies wholly above; a shared rank (2=) is a tie.</p>"]
    parts += [board_html(b) for b in boards] or ["<p>No accepted submissions.</p>"]
    rejected = [[esc(r.path.name), f'<td class="reason">{esc(r.reason)}</td>'] for r in intake.rejected]
    parts.append('<h2 id="rejected">Rejected</h2>' + (table(["file", "reason"], rejected, left=2) if rejected
                                                       else "<p>None.</p>"))
    return page("pr-eval leaderboard", "".join(parts))


def submission_html(entry: Entry, boards: list[Board]) -> str:
    d = entry.document
    model, protocol, run = d["model"], d["protocol"], d["run"]
    facts = [["model", esc(model["name"])], ["path", esc(model.get("path") or "-")],
             ["engine", esc(model.get("engine") or "-")],
             ["protocol", protocol_link(protocol["name"], protocol["fingerprint"], "../")],
             ["pr-eval", esc(d["pr_eval_version"])], ["run started", esc(run.get("started") or "-")],
             ["submitted", esc(d["created"])], ["file", esc(entry.path.name)], ["checksum", esc(d["checksum"])]]
    if d.get("sampling"):
        facts.append(["sampling", esc(f"{d['sampling']['rollouts']} rollouts per question, seed {d['sampling']['seed']} (Avg@K)")])
    parts = [table(["", ""], facts, sortable=False, left=2)]
    for board in boards:
        for s in board.standings:
            if s.entry is entry:
                parts.append(f'<p>{esc(board.title)}: rank {s.rank}{"=" if s.tied else ""} of {len(board.standings)} '
                             f'on <a href="../index.html#{esc(board.benchmark)}-{board.fingerprint}">its board</a></p>')
    for name, bench in d["benchmarks"].items():
        parts.append(f"<h2>{esc(name)}</h2>")
        scores = [[esc(k), number(v)] for k, v in bench["scores"].items()]
        parts.append(table(["score", "points"], scores, left=1))
        stats = [[esc(k), number(v, 1.0, 3)] for k, v in bench["tool_stats"].items()]
        parts.append(table(["tool use", "value"], stats, left=1))
        mine = [p for p in d["predictions"] if p["benchmark"] == name]
        categories: dict[str, list[float]] = {}
        for p in mine:
            for category in dict.fromkeys([p["task"], *([p["group"]] if isinstance(p.get("group"), str) else [])]):
                if isinstance(p["scores"].get("accuracy"), (int, float)):
                    categories.setdefault(category, []).append(p["scores"]["accuracy"])
        if len(categories) > 1:
            rows = [[esc(c), number(sum(v) / len(v)), str(len(v))] for c, v in categories.items()]
            parts.append(table(["category", "accuracy", "n"], rows, left=1))
        shown_rows = [[esc(p["sample_id"]), esc(shown(p["answer"])) if p["answer"] is not None else "-",
                       number(p["scores"].get("accuracy")), str(p["tool_calls"]), esc(p["stop_reason"] or "-")]
                      for p in mine[:PREDICTIONS_SHOWN]]
        more = f"<p>and {len(mine) - PREDICTIONS_SHOWN} more in the file</p>" if len(mine) > PREDICTIONS_SHOWN else ""
        parts.append(table(["question", "answer", "accuracy", "calls", "stop"], shown_rows, left=2) + more)
    return page(f"{model['name']} \u00b7 {protocol['name']}", "".join(parts), up="../")


def protocol_html(name: str, fingerprint: str, record: dict, boards: list[Board]) -> str:
    from ..families import PROTOCOLS

    registered = PROTOCOLS.get(name.partition("+")[0])
    parts = [f"<p>fingerprint <code>{esc(fingerprint)}</code>: the first 16 hex digits of the SHA-256 of the "
             "canonical JSON of the settings below. Only submissions with this fingerprint share its boards.</p>"]
    if registered is not None:
        parts.append(f"<p>{esc(registered.notes)}</p>")
        parts.append(f"<p>Reproduces: <code>{esc(registered.reference.implementation)}</code> "
                     f"(family {esc(registered.family)}).</p>")
        if registered.differences:
            parts.append("<h2>Deliberate differences from the reference</h2><ul>"
                         + "".join(f"<li>{esc(x)}</li>" for x in registered.differences) + "</ul>")
    on = [f'<li><a href="../index.html#{esc(b.benchmark)}-{b.fingerprint}">{esc(b.title)}</a> '
          f"({len(b.standings)} submissions)</li>" for b in boards if b.fingerprint == fingerprint]
    parts.append("<h2>Boards</h2><ul>" + "".join(on) + "</ul>")
    parts.append("<h2>Settings</h2><pre>" + esc(json.dumps(record.get("settings"), indent=1, sort_keys=True)) + "</pre>")
    return page(f"protocol {name}", "".join(parts), up="../")


def site_json(intake: Intake, boards: list[Board], built: str) -> dict:
    return {"schema": "pr-eval-leaderboard/1", "built": built, "pr_eval_version": __version__,
            "boards": [{"benchmark": b.benchmark, "metric": b.metric, "protocol": b.protocol,
                        "fingerprint": b.fingerprint,
                        "standings": [{"rank": s.rank, "tied": s.tied, "model": s.entry.model, "submission": s.entry.id,
                                       "file": s.entry.path.name, "score": s.cell.value,
                                       "ci": list(s.cell.ci) if s.cell.ci else None, "n": s.cell.n}
                                      for s in b.standings]} for b in boards],
            "rejected": [{"file": r.path.name, "reason": r.reason} for r in intake.rejected]}


def write_site(intake: Intake, boards: list[Board], out: Path) -> Path:
    """Write the site into `out`, whole: built beside it and swapped in, so no page of an earlier
    build (a submission since rejected) survives and a reader never sees half a site. The
    index's path."""
    built = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out = Path(out)
    fresh, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    for leftover in (fresh, old):
        if leftover.is_dir():
            shutil.rmtree(leftover)
    for entry in intake.accepted:
        write_atomic(fresh / "submissions" / f"{entry.id}.html", submission_html(entry, boards), sync=False)
    protocols = {}
    for entry in intake.accepted:
        protocol = entry.document["protocol"]
        protocols.setdefault(protocol["fingerprint"], (protocol["name"], protocol["record"]))
    for fingerprint, (name, record) in protocols.items():
        write_atomic(fresh / "protocols" / f"{fingerprint}.html", protocol_html(name, fingerprint, record, boards),
                     sync=False)
    write_atomic(fresh / "leaderboard.json", json.dumps(site_json(intake, boards, built), indent=1) + "\n", sync=False)
    write_atomic(fresh / "index.html", index_html(intake, boards, built))
    if out.exists():
        out.rename(old)
    fresh.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return out / "index.html"
