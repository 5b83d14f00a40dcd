"""The report's trajectory viewer: one card per sample, its conversation turn by turn.

    RunView's samples (pr_eval.report.view) -> [cards here: facts, turns, tool calls, pictures]
        -> the page's "Trajectories" section, filtered by CSS classes (no script of its own)

Each card's one line shows the verdict, the question, the gold answer and the prediction (the
answer marked in the final turn) and the sample's wall-clock time; opened, it shows the question,
target, final and extracted answer, the scores, then the prompt with its images, each assistant
turn with its parsed tool call (or why it failed) and the feedback turn with the images the tool
added. A filter hides a task's section whole when none of its cards pass. A record too damaged
to show becomes a notice, not an error.
"""

from __future__ import annotations

import json
from collections import Counter

from ..families import family_of_record
from ..trajectory import ToolCall
from .escape import DOT, clip, esc, shown
from .pictures import images_html
from .view import RunView, SampleView

FILTERS = [("all", "all"), ("correct", "correct"), ("wrong", "wrong"), ("tool", "tool used"),
           ("notool", "no tool"), ("error", "error")]


def sample_classes(sample: SampleView) -> list[str]:
    correct = sample.correct
    classes = ["unscored" if correct is None else "correct" if correct else "wrong"]
    classes.append("tool" if sample.traj.used_tools else "notool")
    if sample.lost or sample.failed_calls:
        classes.append("error")
    return classes


WALL = ("wall-clock seconds from the sample's start to its finish, waiting in the batch for the engine "
        "included (not the engine's time on this sample alone)")


def prediction(sample: SampleView) -> str | None:
    """The answer the model gave, as read from its final turn (`answers.extract_answer`: the last
    \\boxed{}, <answer> or "Answer:"); None when it marked none."""
    return family_of_record(sample.traj).final_answer(sample.traj) if sample.traj.finished else None


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
    if traj.rollout is not None:
        facts.insert(0, f"rollout {traj.rollout + 1}")
    wall = (f"<span class='info' title='{esc(WALL)}'>{sample.seconds:.1f} s wall</span>"
            if sample.seconds is not None else "")
    predicted = prediction(sample)
    answers = (f"<span class='ans'><span class='k'>gold</span> <b class='gold'>{esc(clip(shown(traj.target), 28))}</b>"
               f" <span class='k'>pred</span> <b class='pred'>"
               f"{esc(clip(predicted, 28)) if predicted is not None else '<i>none</i>'}</b></span>")
    first_line = traj.question.strip().splitlines()[0] if traj.question.strip() else ""
    classes = " ".join("s-" + c for c in sample_classes(sample))
    summary = (f"<summary>{badge}<span class='sid'>{esc(traj.sample_id)}</span>"
               f"<span class='q'>{esc(clip(first_line, 90))}</span>{answers}"
               f"<span class='info'>{esc(DOT.join(facts))}</span>{wall}</summary>")
    return (f'<details class="sample {classes}" id="sample-{number}"{" open" if open_ else ""}>{summary}'
            f'<div class="body">{_facts_table(sample)}{_turns(view, sample)}</div></details>')


def _facts_table(sample: SampleView) -> str:
    traj = sample.traj
    predicted = prediction(sample)
    rows = [("question", traj.question), ("target", shown(traj.target)), ("final answer", traj.answer_text),
            ("extracted answer", predicted if predicted is not None else
             "none (no \\boxed{}, <answer> or Answer: in the final turn)")]
    if traj.error:
        rows.append(("error", traj.error))
    metrics = sample.metrics or {}
    own = [k for k in ("accuracy", "letter_accuracy", "count_accuracy", "anls") if metrics.get(k) is not None]
    if own:
        rows.append(("scores" + (" (provisional)" if sample.provisional else ""),
                     DOT.join(f"{k} {metrics[k]:g}" for k in own)))
    if sample.seconds is not None:
        rows.append(("time", f"{sample.seconds:.1f} s: {WALL}"))
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
            while turn < len(traj.generations) and traj.generations[turn].dropped is not None:
                out.append(_dropped_html(turn, traj.generations[turn].dropped))  # not in the conversation
                turn += 1
            call = calls.get(turn)
            out.append(f'<li class="turn assistant"><div class="role">assistant, turn {turn + 1}</div>'
                       f'<div class="text model">{esc(text)}</div>'
                       f'{_call_html(call) if call else ""}</li>')
            turn += 1
    for number in range(turn, len(traj.generations)):  # dropped turns after the last kept one
        if traj.generations[number].dropped is not None:
            out.append(_dropped_html(number, traj.generations[number].dropped))
    out.append(f'<li class="turn end"><div class="role">ended</div>{esc(traj.stop_reason or "unfinished")}</li>')
    return f'<ol class="turns">{"".join(out)}</ol>'


def _dropped_html(turn: int, text: str) -> str:
    """A generated turn its protocol kept out of the conversation (the same request went again)."""
    return (f'<li class="turn assistant"><div class="role">assistant, turn {turn + 1} (not kept: the protocol sent '
            f'the same request again)</div><div class="text model">{esc(text)}</div></li>')


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
        cards, present = [], set()
        for sample in chosen:
            present.update(sample_classes(sample))
            totals.update(sample_classes(sample) + ["all"])
            cards.append(_card_or_notice(view, sample, totals["all"], sample is opened))
        cap = (f'<p class="note">showing {len(chosen)} of {everything} samples (the first {max_samples}; '
               f'pr-eval report --max-samples N shows more)</p>' if everything > len(chosen) else "")
        # has-<filter>: the section has a card the filter shows; a filter hides the other sections whole
        has = " ".join(f"has-{key}" for key, _ in FILTERS[1:] if key in present)
        blocks.append(f'<section class="task {has}"><h3>{esc(name)} <span class="n">{everything} samples</span></h3>'
                      f'{cap}{"".join(cards)}</section>')
    buttons = "".join(f'<button type="button" data-filter="{key}"{" class=on" if key == "all" else ""}>'
                      f'{label} <b>{totals[key]}</b></button>' for key, label in FILTERS)
    rule = ("correct/wrong: the paper's answer rule (accuracy)" if view.finished
            else "correct/wrong: scored by this report with the paper's answer rule, provisional until the run finishes")
    rule += ("; gold: the target, pred: the answer marked in the final turn (\\boxed{}, <answer>, Answer:); "
             "s wall: from the sample's start to its finish, waiting in the batch included")
    return (f'<div class="filters">{buttons}<button type="button" data-expand="1">expand all</button>'
            f'<button type="button" data-expand="0">collapse all</button></div>'
            f'<p class="note">{esc(rule)}; error: a lost sample or a failed tool call; at most {max_samples} samples per task shown</p>'
            f'<div id="viewer" class="f-all">{"".join(blocks) or "<p class=note>no samples</p>"}</div>')
