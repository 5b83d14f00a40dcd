"""The probe's page, "Does it look?": the card's table per benchmark, and the questions that flipped
under each intervention, the protocol's input beside the intervened one, with the crop boxes each
run made and the target boxes drawn. One self-contained file (probe.html), no script, everything
from a model or a dataset escaped.

    probe.json (pr_eval.cli.probe) + the variants' run folders -> [here] -> probe.html
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .. import __version__
from ..families import family_of_record
from ..compare.delta import points
from ..files import write_atomic
from ..report.escape import clip, esc, shown
from ..report.page import STYLE
from ..report.pictures import figure
from ..report.view import load_view
from .card import PROTOCOL_KEY
from .variants import CROP_EDITS, INPUT_EDITS

PAGE_FILE = "probe.html"
SHOWN_FLIPS = 6  # flipped questions drawn per intervention and benchmark, each way


def _rate(figure_: dict | None) -> str:
    if not figure_ or not figure_.get("n"):
        return "-"
    low, high = figure_["ci"]
    return f"{points(figure_['rate'])}% [{points(low)}, {points(high)}], n={figure_['n']}"


def card_table(entry: dict) -> str:
    rows = [f"<tr><td>protocol</td><td>{entry['n']}</td><td>{points(entry['protocol_accuracy'])}</td>"
            "<td></td><td></td><td></td><td></td><td></td><td></td></tr>"]
    for name, f in entry["interventions"].items():
        interval = f"[{100 * f['ci'][0]:+.1f}, {100 * f['ci'][1]:+.1f}]" if f["ci"] else "-"
        extra = []
        if f.get("chance") is not None:
            extra.append(f"chance {points(f['chance'])}")
        if "follows_edit" in f:
            extra.append(f"follows the edit {_rate(f['follows_edit'])}; stays {_rate(f['stays_original'])}")
        if f["not_applied"]:
            extra.append(f"{f['not_applied']} not applicable")
        delta = "-" if f["delta"] is None else f"{100 * f['delta']:+.1f}"
        p_value = "-" if f["p"] is None else f"{f['p']:.3g}"
        rows.append(f"<tr><td>{esc(name)}</td><td>{f['n']}</td><td>{points(f['accuracy'])}</td><td>{delta}</td>"
                    f"<td>{interval}</td><td>{esc(f['test'] or '-')}</td>"
                    f"<td>{p_value}</td>"
                    f"<td>{f['flips']['lost']} / {f['flips']['gained']}</td><td>{esc('; '.join(extra))}</td></tr>")
    derived = "".join(f"<li>{esc(name.replace('_', ' '))}: {_rate(value)}</li>"
                      for name, value in entry["derived"].items())
    return ('<div class="scroll"><table><thead><tr><th>run</th><th>n</th><th>accuracy</th><th>delta</th>'
            '<th>95% interval</th><th>test</th><th>p</th><th>lost / gained</th><th>also</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>" + (f"<ul>{derived}</ul>" if derived else ""))


def _answer(traj) -> str:
    """The trajectory's answer as its family reads it ("-" when it gave none)."""
    return family_of_record(traj).final_answer(traj) or "-"


def _index(view) -> dict[str, object]:
    return {f"{s.task}/{s.traj.sample_id}": s for samples in view.samples.values() for s in samples}


def pictures(views: dict, base, other, name: str) -> str:
    """What differs between the two runs: the input image as each saw it (input edits), or the
    protocol's input with its crop boxes, its first crop, and the first crop the intervention
    returned in its place (crop edits)."""
    def labelled(view, sample, index, label):
        return f'<div><small>{esc(label)}</small>{figure(view, sample, index)}</div>'
    shown = [labelled(views[PROTOCOL_KEY], base, 1, "protocol")]
    if name in CROP_EDITS:
        for run, sample, label in ((PROTOCOL_KEY, base, "protocol"), (name, other, name)):
            crop = next((k for k, info in enumerate(sample.traj.images, 1) if info.kind == "crop"), None)
            if crop is not None:
                shown.append(labelled(views[run], sample, crop, f"{label}: image {crop}, returned by the tool"))
    else:
        shown.append(labelled(views[name], other, 1, name))
    return "".join(shown)


def flipped(views: dict, indexes: dict, name: str, figure_: dict) -> str:
    """Up to SHOWN_FLIPS lost and gained questions: both runs' pictures and answers; for an input
    edit also the first questions it edited whatever their answers (the before/after pictures of
    an edit the model followed would otherwise never be shown)."""
    cards = []
    ways = [("lost", figure_["flips"]["lost_ids"]), ("gained", figure_["flips"]["gained_ids"])]
    if name in INPUT_EDITS:
        edited = [k for k, s in indexes[name].items() if (s.traj.meta.get("intervention") or {}).get("targets")
                  and s.traj.stop_reason != "data_error" and k in indexes[PROTOCOL_KEY]]
        ways.insert(0, ("edited", sorted(edited)[:3]))
    for way, ids in ways:
        for key in ids[:SHOWN_FLIPS]:
            base, other = indexes[PROTOCOL_KEY].get(key), indexes[name].get(key)
            if base is None or other is None:
                continue
            answers = (f"protocol: {esc(clip(_answer(base.traj), 40))} &middot; {esc(name)}: "
                       f"{esc(clip(_answer(other.traj), 40))} &middot; gold: {esc(shown(base.traj.target))}"
                       + (f" (edited: {esc(shown(other.traj.target))})" if other.traj.target != base.traj.target
                          else ""))
            cards.append(f'<div class="card"><b>{esc(key)}</b> ({way}): {esc(clip(base.traj.question, 160))}'
                         f'<br><small>{answers}</small><div class="pics">{pictures(views, base, other, name)}'
                         "</div></div>")
    return "".join(cards)


def render(folder: Path, plan: dict) -> str:
    views = {key: load_view(folder / name) for key, name in plan["runs"].items()}
    indexes = {key: _index(view) for key, view in views.items()}
    protocol = plan["protocol"]
    sections = [f"<h1>Does it look? {esc(plan['model'])}</h1>",
                f"<p>protocol {esc(protocol['name'])} (fingerprint {esc(protocol['fingerprint'])}); "
                f"tasks {esc(', '.join(plan['tasks']))}; each intervention is a run of its own on the same "
                "questions, compared question by question with the protocol's run.</p>",
                "<ul>" + "".join(f"<li><b>{esc(k)}</b> ({esc(plan['variants'][k]['fingerprint'])}): {esc(v)}</li>"
                                 for k, v in plan["methods"].items()) + "</ul>"]
    for bench, entry in plan["card"].items():
        sections.append(f"<h2>{esc(bench)} ({esc(entry['metric'])})</h2>{card_table(entry)}")
        for name, figure_ in entry["interventions"].items():
            cards = flipped(views, indexes, name, figure_)
            if cards:
                sections.append(f"<h3>{esc(bench)}: {esc(name)}, edited and flipped questions</h3>{cards}"
                                if name in INPUT_EDITS else f"<h3>{esc(bench)}: flipped under {esc(name)}</h3>{cards}")
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f"<title>pr-eval probe: {esc(plan['model'])}</title><style>{STYLE}"
            ".pics{display:flex;gap:12px;flex-wrap:wrap}</style></head><body><main>" + "".join(sections)
            + f"<footer>pr-eval {esc(__version__)} probe, generated {generated}</footer></main></body></html>\n")


def write_page(folder: Path, plan: dict) -> Path:
    path = Path(folder) / PAGE_FILE
    write_atomic(path, render(Path(folder), plan))
    return path
