"""pr-eval compare / check: the statistics as pure functions, then the gate on real runs.

Two real runs of the same (scripted) model must pass `check`; a copy of one with wrong answers
injected beyond the tolerance must fail it, and small or insignificant drops must not."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, crop_call, scripted
from hypothesis import given, settings
from hypothesis import strategies as st

from pr_eval.compare import gate, sides
from pr_eval.compare.delta import compare_benchmark
from pr_eval.compare.gate import decide
from pr_eval.compare.sides import Benchmark
from pr_eval.compare.stats import bootstrap_means, mcnemar, percentile_ci
from pr_eval.cli import compare as cli_compare

PAPER = ROOT / "results" / "paper_table1.json"
TASKS = ["pr_vstar", "pr_tallyqa_complex"]
LIMIT = 8


# --- Pure statistics ---------------------------------------------------------------------------------

scores = st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=40)
graded = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_contains_the_delta(data, seed):
    a = data.draw(st.one_of(scores, graded))
    b = data.draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=len(a), max_size=len(a)))
    delta = float(np.mean(np.array(b) - np.array(a)))
    low, high = percentile_ci(bootstrap_means(np.array(b) - np.array(a), resamples=400, seed=seed))
    assert low - 1e-12 <= delta <= high + 1e-12
    assert -1 <= low <= high <= 1


def test_bootstrap_is_seeded():
    values = np.random.default_rng(3).random(50)
    assert np.array_equal(bootstrap_means(values, 500, seed=7), bootstrap_means(values, 500, seed=7))
    assert not np.array_equal(bootstrap_means(values, 500, seed=7), bootstrap_means(values, 500, seed=8))


@settings(deadline=None)  # the first example imports scipy.stats (pr_eval.compare.stats imports it on first use)
@given(st.integers(0, 60), st.integers(0, 60))
def test_mcnemar_is_symmetric_and_one_sided_is_the_smaller_tail(a_only, b_only):
    assert mcnemar(a_only, b_only) == pytest.approx(mcnemar(b_only, a_only))
    assert 0 <= mcnemar(a_only, b_only, "b-lower") <= 1
    if a_only > b_only:  # evidence that B is lower: the one-sided p is half the two-sided one
        assert mcnemar(a_only, b_only, "b-lower") == pytest.approx(mcnemar(a_only, b_only) / 2)


def test_mcnemar_exact_values():
    # 5 discordant pairs all A's: P = 0.5**5 one-sided, twice that two-sided; none: no evidence
    assert mcnemar(5, 0, "b-lower") == pytest.approx(0.5 ** 5)
    assert mcnemar(5, 0) == pytest.approx(2 * 0.5 ** 5)
    assert mcnemar(0, 5, "b-lower") == pytest.approx(1.0)
    assert mcnemar(0, 0) == 1.0


def _bench(values: dict[str, float], metric="accuracy", name="vstar") -> Benchmark:
    return Benchmark(name, ["pr_" + name], {("pr_" + name, k): {metric: v} for k, v in values.items()})


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), st.tuples(st.sampled_from([0.0, 1.0]),
                                                                             st.sampled_from([0.0, 1.0])),
                       min_size=1, max_size=30), st.randoms())
def test_pairing_ignores_the_order_of_records(pairs, rnd):
    def records(which, order):
        return [{"sample_id": k, "metrics": {"accuracy": pairs[k][which]}} for k in order]

    keys = list(pairs)
    first = [sides.index_samples(records(i, keys), "pr_vstar") for i in (0, 1)]
    rnd.shuffle(keys)
    second = [sides.index_samples(records(i, keys), "pr_vstar") for i in (0, 1)]
    rows = [compare_benchmark(Benchmark("vstar", samples=a), Benchmark("vstar", samples=b), "accuracy",
                              resamples=300).to_json(0.05) for a, b in (first, second)]
    assert rows[0] == rows[1]
    assert rows[0]["n"] == len(pairs)


def test_pairing_matches_ids_not_positions_and_reports_the_unmatched():
    a = _bench({"q1": 1, "q2": 1, "q3": 0, "only-a": 1})
    b = _bench({"q3": 0, "q2": 0, "q1": 1, "only-b": 0})
    row = compare_benchmark(a, b, "accuracy", resamples=300)
    assert (row.n, row.only_a, row.only_b) == (3, 1, 1)
    assert row.a == pytest.approx(2 / 3) and row.b == pytest.approx(1 / 3)
    assert any("1 only in A, 1 only in B" in note for note in row.notes)


def test_repeated_sample_id_is_refused():
    with pytest.raises(gate.InputError, match="occurs twice"):
        sides.index_samples([{"sample_id": "x", "metrics": {}}, {"sample_id": "x", "metrics": {}}], "pr_vstar")


def _flipped(n: int, wrong: int) -> tuple[Benchmark, Benchmark]:
    baseline = _bench({f"q{i}": 1.0 for i in range(n)})
    run = _bench({f"q{i}": 0.0 if i < wrong else 1.0 for i in range(n)})
    return baseline, run


@pytest.mark.parametrize("n,wrong,max_drop,status", [
    (40, 10, 5, "REGRESSION"),        # 25 points, one-sided McNemar p = 0.5**10
    (40, 10, 30, "within tolerance"),
    (10, 3, 5, "not significant"),    # 30 points, but p = 0.5**3 = 0.125
    (10, 0, 0, "within tolerance"),
])
def test_decide_needs_a_drop_beyond_tolerance_and_significance(n, wrong, max_drop, status):
    baseline, run = _flipped(n, wrong)
    decision = decide(compare_benchmark(baseline, run, "accuracy", resamples=500), max_drop)
    assert decision.status == status, decision.reason
    assert decision.failed == (status == "REGRESSION")


def test_graded_metric_uses_the_bootstrap_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1, 60)
    a = _bench({f"q{i}": float(v) for i, v in enumerate(base)}, "anls", "infovqa")
    same = compare_benchmark(a, a, "anls", resamples=1000)
    assert same.test == "bootstrap" and same.p is None and same.verdict(0.05) == "n.s."
    lower = _bench({f"q{i}": float(v) * 0.5 for i, v in enumerate(base)}, "anls", "infovqa")
    row = compare_benchmark(a, lower, "anls", resamples=1000)
    assert row.ci[1] < 0 and row.verdict(0.05) == "B lower"
    assert decide(row, 5).status == "REGRESSION" and "bootstrap" in decide(row, 5).reason


def test_against_a_reference_number():
    reference = Benchmark("vstar", reported={"accuracy": 0.843}, metric="accuracy", size=191)
    good = _bench({f"q{i}": 1.0 if i < 170 else 0.0 for i in range(191)})  # 89.0
    bad = _bench({f"q{i}": 1.0 if i < 130 else 0.0 for i in range(191)})   # 68.1
    row = compare_benchmark(reference, good, "accuracy")
    assert row.test == "binomial" and row.delta == pytest.approx(170 / 191 - 0.843)
    assert row.ci[0] <= row.delta <= row.ci[1]
    assert decide(row, 2).status == "within tolerance"
    row = compare_benchmark(reference, bad, "accuracy")
    assert decide(row, 2).status == "REGRESSION" and "binomial" in decide(row, 2).reason
    # 12 questions: the point estimate drops 17.6 points, but 12 questions cannot show it
    few = _bench({f"q{i}": 1.0 if i < 8 else 0.0 for i in range(12)})
    row = compare_benchmark(reference, few, "accuracy")
    assert decide(row, 5).status == "not significant"
    assert any("12 of the 191 questions" in note for note in row.notes)


def test_paper_reference_file():
    document = json.loads(PAPER.read_text())
    assert sides.schema_problems(document, "reference-v1.schema.json") == []
    assert len(document["models"]) == 6
    assert all(set(row) == set(document["metric"]) for row in document["models"].values())
    side = gate.load_side(PAPER)
    assert side.model == "Pixel-Reasoner 7B" and side.fingerprint is None
    assert side.benchmarks["vstar"].reported == {"accuracy": pytest.approx(0.843)}
    assert side.benchmarks["infovqa"].metric == "anls"
    gemini = gate.load_side(PAPER, "Gemini-2.5-Pro")
    assert gemini.benchmarks["mvbench"].reported == {"accuracy": None}
    with pytest.raises(gate.InputError, match="choose --baseline-model from: 'Pixel-Reasoner 7B'"):
        gate.load_side(PAPER, "GPT-5")


# --- Real runs -----------------------------------------------------------------------------------------

def answer_key(benchmark: str, limit: int) -> dict[str, str]:
    from pr_eval.data.load import load_samples

    return {s.sample_id: str(s.answer) for s in load_samples(benchmark, "samples", limit=limit)[1]}


def make_run(engine, tiny_model, output: Path, limit: int = LIMIT):
    """A real run of the scripted model on V* and TallyQA (PR_EVAL_DATA=samples): every answer
    right, every third question after a crop."""
    from pr_eval.run.evaluate import evaluate

    turns = {}
    key = {**answer_key("vstar", limit), **answer_key("tallyqa", limit)}
    for i, (qid, answer) in enumerate(sorted(key.items())):
        final = f"\\boxed{{{answer}}}"
        turns[qid] = [crop_call([0.2, 0.2, 0.7, 0.7]), "Zoomed. " + final] if i % 3 == 1 else [final]
    before = os.environ.get("PR_EVAL_DATA")
    os.environ["PR_EVAL_DATA"] = "samples"
    try:
        return evaluate(model="tiny", model_path=tiny_model, tasks=TASKS, limit=limit, output=output,
                        engine=engine, guide=scripted(turns))
    finally:
        if before is None:
            del os.environ["PR_EVAL_DATA"]
        else:
            os.environ["PR_EVAL_DATA"] = before


@pytest.fixture(scope="module")
def runs(engine, tiny_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("gate")
    first = make_run(engine, tiny_model, base / "first").folder
    second = make_run(engine, tiny_model, base / "second").folder
    return first, second, base


SCORE_KEYS = ("accuracy", "letter_accuracy", "count_accuracy", "attribute_accuracy", "spatial_accuracy",
              "accuracy_with_tools", "accuracy_without_tools")


def inject_wrong(run: Path, dest: Path, task: str, count: int) -> list[str]:
    """A copy of `run` in which `count` right answers of `task` are wrong: the final answer text,
    the per-sample scores, and results.json's figures recomputed from the samples as pr_eval.run.evaluate
    computes them (lmms-eval's own copy under "lmms_eval" is left as it was)."""
    shutil.copytree(run, dest)
    path = dest / f"samples_{task}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    flipped = []
    for record in records:
        if len(flipped) == count:
            break
        if record["metrics"]["accuracy"] != 1.0:
            continue
        wrong = "A" if record["target"] != "A" else "B"
        record["messages"][-1]["content"][0]["text"] = f"\\boxed{{{wrong}}}"
        for key in SCORE_KEYS:
            if record["metrics"].get(key) is not None:
                record["metrics"][key] = 0.0
        flipped.append(record["sample_id"])
    assert len(flipped) == count, f"{task} has fewer than {count} right answers to make wrong"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = json.loads((dest / "results.json").read_text())
    row = summary["metrics"][task]
    for key in SCORE_KEYS:
        values = [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]
        if key in row and values:
            row[key] = sum(values) / len(values)
    (dest / "results.json").write_text(json.dumps(summary))
    return flipped


def test_the_runs_are_real_and_right(runs):
    first, _, _ = runs
    summary = json.loads((first / "results.json").read_text())
    assert summary["n_samples"] == {"pr_vstar": LIMIT, "pr_tallyqa_complex": LIMIT}
    assert summary["metrics"]["pr_vstar"]["letter_accuracy"] == 1.0
    assert summary["metrics"]["pr_tallyqa_complex"]["count_accuracy"] == 1.0
    vstar = summary["metrics"]["pr_vstar"]
    assert 0 < vstar["rapr"] < 1 and vstar["tool_calls"] == vstar["rapr"] and vstar["accuracy_with_tools"] == 1.0


def test_check_passes_two_runs_of_the_same_model(runs, capsys):
    first, second, _ = runs
    assert cli_compare.check([str(second), "--baseline", str(first), "--max-drop", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^vstar\s+within tolerance\s+letter_accuracy 100.0 vs baseline 100.0", out, re.MULTILINE)
    assert re.search(r"^tallyqa\s+within tolerance", out, re.MULTILINE)
    assert "passed" in out.splitlines()[-1]


def test_check_fails_on_injected_wrong_answers_beyond_tolerance(runs, capsys):
    first, second, base = runs
    inject_wrong(second, base / "broken", "pr_vstar", 6)  # 100 -> 25: drop 75 points, p = 0.5**6
    assert cli_compare.check([str(base / "broken"), "--baseline", str(first), "--max-drop", "10"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("vstar"))
    assert "REGRESSION" in line and "drop 75.0 > 10 points" in line and "McNemar p=0.0156" in line
    assert re.search(r"^tallyqa\s+within tolerance", out, re.MULTILINE)
    assert out.splitlines()[-1].startswith("FAILED: 1 regression (vstar)")
    # against the paper's number too (25.0 on 8 questions vs 84.3)
    assert cli_compare.check([str(base / "broken"), "--baseline", str(PAPER), "--max-drop", "10"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^vstar\s+REGRESSION\s+accuracy 25.0 vs baseline 84.3.*binomial", out, re.MULTILINE)
    assert re.search(r"^mvbench\s+not in run", out, re.MULTILINE)  # reported, not skipped


def test_small_or_insignificant_drops_pass(runs, capsys):
    first, second, base = runs
    inject_wrong(second, base / "one", "pr_tallyqa_complex", 1)  # 12.5 points
    assert cli_compare.check([str(base / "one"), "--baseline", str(first), "--max-drop", "15"]) == 0
    assert re.search(r"^tallyqa\s+within tolerance.*drop 12.5 <= 15 points", capsys.readouterr().out, re.MULTILINE)
    inject_wrong(second, base / "two", "pr_tallyqa_complex", 2)  # 25 points, one-sided p = 0.25
    assert cli_compare.check([str(base / "two"), "--baseline", str(first), "--max-drop", "5"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tallyqa"))
    assert "not significant" in line and "p=0.25 >= 0.05" in line


def test_compare_prints_paired_intervals(runs, capsys):
    first, second, base = runs
    if not (base / "broken").exists():
        inject_wrong(second, base / "broken", "pr_vstar", 6)
    assert cli_compare.compare([str(first), str(base / "broken")]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        found = re.match(r"^(\w+)\s+(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([+-][\d.]+)\s+"
                         r"\[([+-][\d.]+), ([+-][\d.]+)\]\s+([\d.e-]+)\s+(\w+)\s+(.+)$", line)
        if found:
            rows[found.group(1)] = found.groups()
    assert set(rows) == {"vstar", "tallyqa"}
    _, metric, n, a, b, delta, low, high, p, test, verdict = rows["vstar"]
    assert (metric, n, a, b, delta, test) == ("letter_accuracy", "8", "100.0", "25.0", "-75.0", "McNemar")
    assert float(low) <= float(delta) <= float(high) < 0
    assert float(p) == pytest.approx(2 * 0.5 ** 6, abs=1e-3) and verdict.strip() == "B lower"
    assert rows["tallyqa"][5:8] == ("+0.0", "+0.0", "+0.0") and rows["tallyqa"][10].strip() == "n.s."
    assert "95% CI" in out and "McNemar" in out
    # the same, for machines
    assert cli_compare.compare([str(first), str(base / "broken"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    vstar = next(r for r in data["rows"] if r["benchmark"] == "vstar")
    assert vstar["delta"] == pytest.approx(-0.75) and vstar["ci"][0] <= -0.75 <= vstar["ci"][1]
    assert vstar["p"] == pytest.approx(2 * 0.5 ** 6) and vstar["p_b_lower"] == pytest.approx(0.5 ** 6)


def test_compare_with_the_paper_reports_every_benchmark(runs, capsys):
    first, _, _ = runs
    assert cli_compare.compare([str(first), str(PAPER), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    statuses = {r["benchmark"]: r["status"] for r in data["rows"]}
    assert statuses == {"vstar": "compared", "tallyqa": "compared", "mvbench": "only in B", "infovqa": "only in B"}
    vstar = data["rows"][0]
    assert vstar["metric"] == "accuracy" and vstar["test"] == "binomial"
    assert vstar["delta"] == pytest.approx(0.843 - 1.0) and vstar["ci"][0] <= vstar["delta"] <= vstar["ci"][1]


def test_protocol_mismatch_is_refused_unless_allowed(runs, capsys):
    first, second, base = runs
    other = base / "other-protocol"
    shutil.copytree(second, other)
    summary = json.loads((other / "results.json").read_text())
    summary["pr_eval"]["protocol"].update(name="no-tool", fingerprint="0123456789abcdef")
    (other / "results.json").write_text(json.dumps(summary))
    assert cli_compare.check([str(other), "--baseline", str(first), "--max-drop", "1"]) == 2
    refusal = capsys.readouterr().err
    assert "the protocols differ: the baseline ran pixel-reasoner-v3" in refusal and ", the run ran no-tool" in refusal
    assert cli_compare.check([str(other), "--baseline", str(first), "--max-drop", "1", "--allow-protocol-mismatch"]) == 0
    assert "WARNING: the protocols differ" in capsys.readouterr().err
    assert cli_compare.compare([str(first), str(other)]) == 0
    assert "WARNING: the protocols differ" in capsys.readouterr().err


@pytest.mark.parametrize("damage,message", [
    ("results", "results.json gives vstar letter_accuracy 0.500000 but the per-sample records"),
    ("samples", "lists pr_vstar but samples_pr_vstar.jsonl is missing"),
    ("unfinished", "not a finished run folder"),
    ("missing", "no such run folder or file"),
])
def test_bad_inputs_exit_2_with_a_clear_message(runs, capsys, damage, message):
    first, _, base = runs
    bad = base / f"bad-{damage}"
    if damage != "missing":
        shutil.copytree(first, bad)
    if damage == "results":
        summary = json.loads((bad / "results.json").read_text())
        summary["metrics"]["pr_vstar"]["letter_accuracy"] = 0.5
        (bad / "results.json").write_text(json.dumps(summary))
    elif damage == "samples":
        (bad / "samples_pr_vstar.jsonl").unlink()
    elif damage == "unfinished":
        (bad / "results.json").rename(bad / "run.json")
    assert cli_compare.check([str(bad), "--baseline", str(first), "--max-drop", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pr-eval check: error: ") and message in err, err


def test_bad_command_lines_exit_2(runs, capsys):
    first, _, _ = runs
    assert cli_compare.check([str(first), "--max-drop", "1"]) == 2  # no --baseline
    assert cli_compare.check([str(first), "--baseline", str(first), "--max-drop", "-1"]) == 2
    assert cli_compare.check([str(PAPER), "--baseline", str(first), "--max-drop", "1"]) == 2
    assert "RUN must be a run folder" in capsys.readouterr().err
    assert cli_compare.compare([str(first), str(first), "--metric", "nope"]) == 2
    assert "no metric 'nope'; choose --metric from" in capsys.readouterr().err


def test_bootstrap_of_a_large_benchmark_is_quick():
    import time

    values = np.array([random.Random(1).random() < 0.8 for _ in range(4000)], dtype=float)
    started = time.perf_counter()
    bootstrap_means(values, 10_000)
    assert time.perf_counter() - started < 10


def _write_group_run(folder: Path, group_accuracy: float) -> None:
    """A run folder laid out as pr_eval.run.evaluate writes MVBench: two subtasks under the pr_mvbench group
    (members and benchmarks as results.json saves them)."""
    folder.mkdir(parents=True)
    scores = {"pr_mvbench_action_count": [1.0, 0.0, 1.0], "pr_mvbench_moving_count": [1.0, 1.0]}
    for task, values in scores.items():
        (folder / f"samples_{task}.jsonl").write_text("".join(
            json.dumps({"sample_id": f"{task}-{i}", "metrics": {"accuracy": v, "letter_accuracy": v}}) + "\n"
            for i, v in enumerate(values)))
    metrics = {task: {"accuracy": sum(v) / len(v), "letter_accuracy": sum(v) / len(v)} for task, v in scores.items()}
    metrics = {"pr_mvbench": {"accuracy": group_accuracy, "letter_accuracy": group_accuracy}, **metrics}
    summary = {"pr_eval": {"model": "m", "protocol": {"name": "pixel-reasoner-v3", "fingerprint": "0" * 16},
                           "data": {task: {"benchmark": "mvbench"} for task in scores}},
               "metrics": metrics, "n_samples": {"pr_mvbench": 5, **{t: len(v) for t, v in scores.items()}},
               "members": {"pr_mvbench": list(scores)},
               "benchmarks": {name: "mvbench" for name in metrics}}
    (folder / "results.json").write_text(json.dumps(summary))


def test_a_benchmark_of_several_tasks_is_one_benchmark(tmp_path):
    _write_group_run(tmp_path / "run", 4 / 5)  # the mean over all questions, as lmms-eval pools it
    side = sides.read_run(tmp_path / "run")
    assert list(side.benchmarks) == ["mvbench"]
    mvbench = side.benchmarks["mvbench"]
    assert len(mvbench.samples) == 5 and mvbench.reported["letter_accuracy"] == pytest.approx(0.8)
    # the mean of the subtask means (0.83) is not the benchmark's number: refused as inconsistent
    _write_group_run(tmp_path / "bad", (2 / 3 + 1) / 2)
    with pytest.raises(gate.InputError, match="results.json gives mvbench accuracy"):
        sides.read_run(tmp_path / "bad")
