"""A checkpoint's faithfulness card: the protocol's run beside its interventions' runs, on the same
questions, as figures with intervals (no verdicts).

    protocol run + each intervention's run (run folders) -> per benchmark:
        accuracy under each intervention, the paired difference to the protocol's with its
        interval and test (pr_eval.compare: McNemar, bootstrap), the questions that flipped;
        target-masked: its chance level; counterfactual-edit: how often the answer follows the edit
    and the derived figures: the share of tool-solved questions also solved without tools, and
    accuracy where the crops hit the target vs where they missed (pr_eval.scoring.grounding).

Questions an intervention does not apply to (no target box, no colour to change: a data error of
that run) are left out of its comparison on both sides, and counted.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from .. import benchmarks
from ..compare.delta import compare_benchmark, p_text, points, signed_points
from ..compare.sides import Benchmark, InputError, read_records, read_run, sample_mean
from ..compare.stats import DEFAULT_ALPHA
from ..scoring import answers
from ..trajectory import DATA_ERROR, Trajectory

SCHEMA = "pr-eval-probe/1"
PROTOCOL_KEY = "protocol"  # the card's name for the unedited run
MAX_LISTED = 50  # flipped questions listed per intervention and benchmark (all are counted)


def wilson(successes: int, n: int, alpha: float = DEFAULT_ALPHA) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without observations)."""
    if n <= 0:
        return None
    from scipy.stats import norm

    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = centre - half, centre + half
    return (0.0 if low < 1e-12 else low), (1.0 if high > 1 - 1e-12 else high)


def rate(successes: int, n: int, alpha: float = DEFAULT_ALPHA) -> dict:
    """A proportion as the card records it: rate, n, successes and its Wilson interval."""
    interval = wilson(successes, n, alpha)
    return {"rate": successes / n if n else None, "n": n, "successes": successes,
            "ci": list(interval) if interval else None, "interval": "Wilson"}


def records_by_key(folder: Path, bench: Benchmark) -> dict[tuple[str, str], dict]:
    """(task, sample_id) -> the run's per-sample record (greedy runs: one per question)."""
    found = {}
    for task in bench.tasks:
        for record in read_records(folder / f"samples_{task}.jsonl"):
            found.setdefault((task, str(record.get("sample_id"))), record)
    return found


def applied(record: dict) -> bool:
    """Whether the intervention reached this question (an input edit that does not apply ends the
    question as a data error before the model sees it)."""
    return record.get("stop_reason") != DATA_ERROR


def correct(metrics: dict, metric: str) -> bool:
    value = metrics.get(metric)
    return isinstance(value, (int, float)) and value >= 1


def flips(base: Benchmark, other: Benchmark, metric: str) -> dict:
    """The questions right under the protocol and wrong under the intervention (`lost`) and the
    reverse (`gained`), as "task/sample_id" (the first MAX_LISTED of each listed)."""
    lost = sorted(f"{k[0]}/{k[1]}" for k in other.samples if k in base.samples
                  and correct(base.samples[k], metric) and not correct(other.samples[k], metric))
    gained = sorted(f"{k[0]}/{k[1]}" for k in other.samples if k in base.samples
                    and not correct(base.samples[k], metric) and correct(other.samples[k], metric))
    return {"lost": len(lost), "gained": len(gained), "lost_ids": lost[:MAX_LISTED],
            "gained_ids": gained[:MAX_LISTED]}


def chance(records: list[dict]) -> float | None:
    """The mean chance level of multiple-choice questions (1 / number of options)."""
    levels = [1 / len(options) for r in records if (options := answers.parse_options(str(r.get("question", ""))))]
    return sum(levels) / len(levels) if levels else None


def follows(records: list[dict], alpha: float) -> dict:
    """Counterfactual edits: how often the answer is the edited option, and how often it stays
    with the option the picture no longer shows (read as the benchmark reads a letter)."""
    edited = [r for r in records if applied(r) and _edit(r).get("edited_answer")]
    to_new = sum(1 for r in edited if _chose(r, _edit(r)["edited_answer"]))
    to_old = sum(1 for r in edited if _chose(r, _edit(r)["original_answer"]))
    return {"follows_edit": rate(to_new, len(edited), alpha), "stays_original": rate(to_old, len(edited), alpha)}


def _edit(record: dict) -> dict:
    return (record.get("meta") or {}).get("intervention") or {}


def _chose(record: dict, letter: str) -> bool:
    """Whether the trajectory's answer is option `letter` (V*'s and MVBench's letter rule)."""
    traj = Trajectory.from_record(record)
    options = answers.parse_options(traj.question)
    return answers.letter_accuracy(traj.answer_text, letter, options) >= 1


def compare_one(base: Benchmark, other: Benchmark, records: dict, name: str, alpha: float) -> dict:
    """One intervention on one benchmark."""
    metric = benchmarks.main_metric(base.name)
    keys = [k for k, r in records.items() if applied(r) and k in base.samples and k in other.samples]
    if not keys:  # e.g. no target boxes in this data: nothing to compare, and no figure to show
        return {"metric": metric, "status": "not applicable", "n": 0, "not_applied": len(records),
                "protocol_accuracy": None, "accuracy": None, "delta": None, "ci": None, "interval": None,
                "test": None, "p": None, "significant": False,
                "flips": {"lost": 0, "gained": 0, "lost_ids": [], "gained_ids": []}}
    # only the questions both runs answered; `reported` (whole-run figures) is never the fallback
    narrowed_base = dataclasses.replace(base, samples={k: base.samples[k] for k in keys}, reported={})
    narrowed = dataclasses.replace(other, samples={k: other.samples[k] for k in keys}, reported={})
    row = compare_benchmark(narrowed_base, narrowed, metric, alpha)
    figure = {"metric": metric, "status": row.status, "n": row.n, "not_applied": len(records) - len(keys),
              "protocol_accuracy": row.a, "accuracy": row.b, "delta": row.delta,
              "ci": list(row.ci) if row.ci else None, "interval": row.interval or None,
              "test": None if row.test == "-" else row.test, "p": row.p,
              "significant": row.significant(alpha), "flips": flips(narrowed_base, narrowed, metric)}
    kept = [records[k] for k in keys]
    if name == "target-masked":
        figure["chance"] = chance(kept)
    if name == "counterfactual-edit":
        figure.update(follows(kept, alpha))
    return figure


def derived(base_folder: Path, base: Benchmark, no_tool: Benchmark | None, alpha: float) -> dict:
    """Figures across runs: tool-solved questions also solved without tools (needs the no-tool run),
    and the protocol's accuracy where its crops hit a target vs where they missed."""
    metric = benchmarks.main_metric(base.name)
    records = records_by_key(base_folder, base)
    figures = {}
    if no_tool is not None:
        solved = [k for k, r in records.items() if r.get("tool_calls") and k in base.samples
                  and correct(base.samples[k], metric) and k in no_tool.samples]
        figures["tool_solved_also_without_tools"] = rate(
            sum(1 for k in solved if correct(no_tool.samples[k], metric)), len(solved), alpha)
    for name in ("accuracy_crop_hit", "accuracy_crop_miss"):
        values = [m[name] for m in base.samples.values() if isinstance(m.get(name), (int, float))]
        if values:
            figures[name] = rate(sum(1 for v in values if v >= 1), len(values), alpha)
    return figures


def build_card(base_folder: Path, variants: dict[str, Path], alpha: float = DEFAULT_ALPHA) -> dict:
    """The card of a probe: `variants` maps each intervention's name to its finished run folder."""
    base_side = read_run(base_folder)
    sides = {name: read_run(folder) for name, folder in variants.items()}
    card = {}
    for bench_name, base in base_side.benchmarks.items():
        entry = {"metric": benchmarks.main_metric(bench_name), "n": len(base.samples),
                 "protocol_accuracy": sample_mean(base, benchmarks.main_metric(bench_name)), "interventions": {}}
        for name, side in sides.items():
            other = side.benchmarks.get(bench_name)
            if other is None:
                raise InputError(f"{variants[name]} has no {bench_name}: not this probe's run")
            entry["interventions"][name] = compare_one(base, other, records_by_key(variants[name], other), name,
                                                       alpha)
        no_tool = sides.get("no-tool")
        entry["derived"] = derived(base_folder, base, no_tool.benchmarks.get(bench_name) if no_tool else None,
                                   alpha)
        card[bench_name] = entry
    return card


def card_text(card: dict, title: str, alpha: float = DEFAULT_ALPHA) -> str:
    """The card as the terminal shows it: one block per benchmark."""
    lines = [title]
    for bench, entry in card.items():
        lines.append(f"\n{bench} ({entry['metric']}, n={entry['n']}): protocol {points(entry['protocol_accuracy'])}")
        lines.append(f"  {'intervention':<20} {'n':>4} {'acc':>6} {'delta':>7}  {100 * (1 - alpha):g}% interval"
                     f"{'':<6} {'test':<9} {'p':>8}  lost/gained")
        for name, f in entry["interventions"].items():
            interval = f"[{100 * f['ci'][0]:+.1f}, {100 * f['ci'][1]:+.1f}]" if f["ci"] else "-"
            lines.append(f"  {name:<20} {f['n']:>4} {points(f['accuracy']):>6} {signed_points(f['delta']):>7}  "
                         f"{interval:<20} {f['test'] or '-':<9} {p_text(f['p']):>8}  "
                         f"{f['flips']['lost']}/{f['flips']['gained']}"
                         + (f"  ({f['not_applied']} not applicable)" if f["not_applied"] else ""))
            if f.get("chance") is not None:
                lines.append(f"  {'':<20} chance {points(f['chance'])}")
            if "follows_edit" in f:
                lines.append(f"  {'':<20} answer follows the edit {_rate(f['follows_edit'])}, "
                             f"stays with the original {_rate(f['stays_original'])}")
        for name, figure in entry["derived"].items():
            lines.append(f"  {name.replace('_', ' ')}: {_rate(figure)}")
    return "\n".join(lines)


def _rate(figure: dict) -> str:
    if not figure["n"]:
        return "- (n=0)"
    low, high = figure["ci"]
    return f"{points(figure['rate'])}% [{points(low)}, {points(high)}] (n={figure['n']})"
