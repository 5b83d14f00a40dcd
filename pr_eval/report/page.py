"""The HTML report of a run: one self-contained page to read a run by, with no network and no
files beside it (images are inlined), so it can be mailed, archived or opened years later.

    run folder (results.json, samples_<task>.jsonl, trajectories.jsonl, images/)
        -> RunView (pr_eval.report.view: what the page shows) -> HTML: title (here), score table
           (pr_eval.report.charts), what was run and its data (here), breakdowns, tool use (charts),
           trajectory viewer (pr_eval.report.viewer, with pr_eval.report.pictures)
        -> report.html (`write_report`, `pr-eval report`)

Everything that came from a model or a dataset is escaped on the server side (pr_eval.report.escape), and
the page's only script toggles CSS classes; a Content-Security-Policy lets nothing else run or
load, so a model answer that contains markup shows as text.

The scores come first; what was run (model, protocol, command, data sources) follows them. An
unfinished run (run.json and the journal only) gets a banner with the exact command that resumes
it and no score table; its samples are scored with the paper's answer rule, marked provisional.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import shlex
from pathlib import Path

from .. import __version__, benchmarks
from ..files import write_atomic
from ..run import interrupts
from .charts import breakdowns, grounding_table, sampled_table, score_table, tool_charts, tool_table
from .escape import DOT, esc
from .judge import view_section as judge_section
from .pictures import BOX_COLOUR
from .tables import DEMO_FOOTNOTE, DEMO_MODEL
from .view import ReportError, RunView, load_view
from .viewer import viewer

REPORT_NAME = "report.html"
DEFAULT_MAX_SAMPLES = 200


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
.banner code.command{display:inline-block;margin-top:4px;font:12px "DejaVu Sans Mono",monospace;font-weight:400;color:var(--ink);background:#fff;padding:3px 6px;border-radius:4px;overflow-wrap:anywhere;user-select:all}
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
#viewer.f-correct section.task:not(.has-correct),#viewer.f-wrong section.task:not(.has-wrong),#viewer.f-tool section.task:not(.has-tool),
#viewer.f-notool section.task:not(.has-notool),#viewer.f-error section.task:not(.has-error){display:none}
section.task{margin:14px 0}
details.sample{background:#fff;border:1px solid var(--line);border-radius:8px;margin:6px 0}
details.sample>summary{cursor:pointer;padding:7px 12px;display:flex;gap:10px;align-items:baseline;list-style:none}
details.sample>summary::before{content:"\\25B8";color:var(--mute)}details.sample[open]>summary::before{content:"\\25BE"}
details.sample[open]>summary{border-bottom:1px solid var(--line)}
.sid{font-family:"DejaVu Sans Mono",monospace;font-size:12px;white-space:nowrap}
.q{flex:1;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:var(--mute)}
.info{font-size:12px;white-space:nowrap;color:var(--mute)}
.ans{font-size:12px;white-space:nowrap}.ans .k{color:var(--mute)}.ans b{font-family:"DejaVu Sans Mono",monospace;font-weight:600;margin-right:6px}
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
svg.overlay .halo{stroke:#000;stroke-opacity:.55;stroke-width:7}svg.overlay .box{stroke:var(--box);stroke-width:3}svg.overlay .target{fill:none;stroke:#00c853;stroke-width:3;stroke-dasharray:8 5}
svg.overlay text{fill:var(--box);font-weight:700;font-size:22px;paint-order:stroke;stroke:#000;stroke-width:3px}
figure.frame svg.overlay text{font-size:40px}
.video .frames{display:flex;flex-wrap:wrap;gap:4px}.video .label{font-size:11px;color:var(--mute)}
footer{margin-top:30px;color:var(--mute);font-size:12px}
"""


def heading(view: RunView) -> str:
    """The page's title and one line: protocol, when it started, finished or not."""
    info = view.info
    protocol = info.get("protocol") or {}
    state = "finished" if view.finished else "unfinished"
    subtitle = DOT.join([f"protocol {protocol.get('name', '?')} {protocol.get('fingerprint', '')}".strip(),
                         f"started {_when(info.get('started'))}", state])
    return (f'<h1>pr-eval report: {esc(info.get("model") or view.folder.name)}</h1>'
            f'<p class="subtitle">{esc(subtitle)}</p>')


def run_details(view: RunView) -> str:
    """What was run (model, protocol and fingerprint, tasks, caps, versions, command) and the data
    sources, under the scores."""
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
        ("command", shlex.join(map(str, command)) if isinstance(command, list) else command),
        ("folder", str(view.folder)),
    ]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    settings = json.dumps(protocol, indent=2, ensure_ascii=False, default=str)
    return (f'<h2 id="run">Run</h2><dl class="meta">{meta}</dl>{data_sources(info)}'
            f'<details><summary class="note">protocol record (every setting)</summary>'
            f'<div class="text model">{esc(settings)}</div></details>')


def resume_command(info: dict, folder: Path) -> str:
    """The command that finishes the run: run.json's exact command with `--resume FOLDER` (any
    --resume it had left out), shell-quoted; without a recorded command, its outline."""
    command = info.get("command")
    if not isinstance(command, list) or not command:
        return f"pr-eval ... --resume {shlex.quote(str(folder))}"
    args = [str(a) for a in command]
    return interrupts.resume_command(args[1:], folder, program=args[0])


def demo_note(view: RunView) -> str:
    """The demo model's run of the paper's benchmarks: a line that its zeros are expected."""
    names = set((view.run.benchmarks if view.run else {}).values())
    if view.info.get("model") != DEMO_MODEL or not names - {"zoom"}:
        return ""
    return f'<p class="note">{esc(DEMO_FOOTNOTE.strip("()"))}.</p>'


def _when(value) -> str:
    """An ISO time as "YYYY-MM-DD HH:MM:SS UTC" (anything else as it is)."""
    try:
        moment = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if moment.tzinfo is not None else "")


SOURCE_KEYS = ("benchmark", "kind", "origin", "revision", "rows")  # what names a data source


def data_sources(info: dict) -> str:
    """One row per data source: a benchmark's tasks that read the same data are one row (MVBench's
    20 subtasks, each an lmms-eval task of its own), with the samples they evaluated added up."""
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for task, record in (info.get("data") or {}).items():
        record = record if isinstance(record, dict) else {"origin": record}
        key = json.dumps([record.get(k) for k in SOURCE_KEYS], default=str)
        grouped.setdefault(key, []).append((task, record))
    if not grouped:
        return ""
    rows = []
    for members in grouped.values():
        tasks, r = [t for t, _ in members], members[0][1]
        own = benchmarks.find(str(r.get("benchmark") or ""))
        if len(tasks) == 1:
            names = tasks[0]
        elif own is not None and all(t.startswith(own.task + "_") for t in tasks):
            names = f"{own.task} ({len(tasks)} subtasks)"
        else:
            names = f"{tasks[0]} \u2026 ({len(tasks)} tasks)"
        counts = [m.get("samples") for _, m in members]
        evaluated = sum(counts) if all(isinstance(c, int) for c in counts) else ""
        rows.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in (
            r.get("benchmark", ""), names, r.get("kind", ""), r.get("origin", ""), str(r.get("revision") or "")[:16]))
            + "".join(f'<td class="num">{esc(v)}</td>' for v in (r.get("rows", ""), evaluated)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("benchmark", "tasks", "source", "origin", "revision")) \
        + '<th class="num">rows</th><th class="num">in this run</th>'
    return (f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f'</table></div><p class="note">rows: the data set\'s; in this run: the samples the run takes from it</p>')


def render(view: RunView, max_samples: int = DEFAULT_MAX_SAMPLES) -> str:
    """The whole page."""
    trajectories = viewer(view, max_samples)  # first: a damaged record adds to the problems
    sections = [heading(view)]
    if not view.finished:
        count = sum(len(v) for v in view.samples.values())
        sections.append(f'<div class="banner">unfinished: {count} samples so far. No scores until the run '
                        f'finishes; resume it with<br><code class="command">'
                        f'{esc(resume_command(view.info, view.folder))}</code></div>')
    if view.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in view.problems[:50])
        more = f"<li>\u2026 and {len(view.problems) - 50} more</li>" if len(view.problems) > 50 else ""
        sections.append(f'<div class="problems"><b>Problems reading the run folder</b><ul>{items}{more}</ul></div>')
    if view.finished:
        sections.append(f'<h2 id="scores">Scores</h2>{demo_note(view)}<div class="scroll">{score_table(view.run)}</div>')
        sampled = sampled_table(view.run)
        if sampled:
            sections.append(f'<h2 id="sampled">Sampled rollouts</h2><div class="scroll">{sampled}</div>')
    sections.append(run_details(view))
    if view.finished:
        parts = breakdowns(view)
        if parts:
            sections.append(f'<h2 id="breakdowns">Breakdowns</h2><div class="cards">{parts}</div>')
        sections.append(f'<h2 id="tools">Tool use</h2><div class="scroll">{tool_table(view.run)}</div>')
        grounded = grounding_table(view.run)
        if grounded:
            sections.append(f'<h2 id="grounding">Crop grounding</h2><div class="scroll">{grounded}</div>')
    else:
        sections.append('<h2 id="tools">Tool use</h2>')
    sections.append(tool_charts(view))
    sections.append(judge_section(view))  # "" when the run had no judge
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
