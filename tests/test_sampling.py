"""Sampled evaluation: seeds, pass@k, Avg@k's interval, majority vote (pure), and sampled runs of
the demo model under the real engine: identical rollouts on a rerun, and a SIGKILLed run resumed
rollout by rollout to the same numbers."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from pr_eval.cli import run as cli
from pr_eval.scoring import metrics
from pr_eval.loop import sampling
from pr_eval.protocol import PIXEL_REASONER, PROTOCOLS, SAMPLED, with_overrides
from pr_eval.compare.sides import InputError, index_samples
from pr_eval.run.store import JOURNAL_FILE, RESULTS_FILE
from pr_eval.cli import compare as cli_compare

# --- pass@k -----------------------------------------------------------------------------------------


def brute_pass_at_k(verdicts: list[int], k: int) -> float:
    """pass@k by definition: the share of all k-subsets of the rollouts with a correct one."""
    subsets = list(combinations(verdicts, k))
    return sum(1 for s in subsets if any(s)) / len(subsets)


# Hand-computed: n=4 rollouts, c correct. pass@1 = c/n; pass@2 = 1 - C(n-c,2)/C(4,2).
HAND = [(4, 0, 1, 0.0), (4, 1, 1, 0.25), (4, 1, 2, 0.5), (4, 2, 2, 5 / 6), (4, 1, 4, 1.0),
        (4, 3, 2, 1.0), (8, 1, 4, 0.5), (8, 2, 4, 1 - 15 / 70), (5, 2, 3, 0.9)]


@pytest.mark.parametrize("n,c,k,expected", HAND)
def test_pass_at_k_on_a_hand_computed_table(n, c, k, expected):
    assert sampling.pass_at_k(n, c, k) == pytest.approx(expected)
    assert sampling.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k([1] * c + [0] * (n - c), k))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=9), st.data())
def test_pass_at_k_is_the_subset_definition_and_grows_with_k(verdicts, data):
    n, c = len(verdicts), sum(verdicts)
    k = data.draw(st.integers(1, n))
    assert sampling.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k([int(v) for v in verdicts], k))
    assert sampling.pass_at_k(n, c, 1) == pytest.approx(c / n)
    assert all(sampling.pass_at_k(n, c, j) <= sampling.pass_at_k(n, c, j + 1) + 1e-12 for j in range(1, n))


def test_pass_at_k_refuses_impossible_counts():
    for n, c, k in ((4, 5, 1), (4, 1, 0), (4, 1, 5), (3, -1, 1)):
        with pytest.raises(ValueError):
            sampling.pass_at_k(n, c, k)


# --- Avg@k's interval ---------------------------------------------------------------------------------

def simulate(n_questions: int, k: int, runs: int, seed: int = 0):
    """Coverage of the clustered and the naive interval: questions with their own difficulty
    (Beta(0.6, 0.4): most are nearly always right or nearly always wrong, as real benchmarks),
    k rollouts each; the true Avg@k is the population mean of the difficulties."""
    rng = np.random.default_rng(seed)
    a, b = 0.6, 0.4
    truth = a / (a + b)
    clustered = naive = 0
    for _ in range(runs):
        p = rng.beta(a, b, n_questions)
        verdicts = (rng.random((n_questions, k)) < p[:, None]).astype(float)
        c = sampling.clustered_interval(verdicts.mean(axis=1))
        w = sampling.naive_interval(verdicts.tolist())
        clustered += c.low <= truth <= c.high
        naive += w.low <= truth <= w.high
    return clustered / runs, naive / runs


def test_the_clustered_interval_covers_as_promised_and_the_naive_one_does_not():
    clustered, naive = simulate(n_questions=191, k=8, runs=1500)
    # 1500 runs: the binomial sd of a 95% coverage is 0.56 points
    assert 0.93 <= clustered <= 0.97, clustered
    assert naive < 0.85, naive  # rollouts counted as independent questions: far too narrow


def test_interval_edge_cases():
    one = sampling.clustered_interval([0.5])
    assert (one.low, one.high) == (0.0, 1.0)
    same = sampling.clustered_interval([1.0, 1.0, 1.0])
    assert (same.mean, same.low, same.high) == (1.0, 1.0, 1.0)
    assert math.isnan(sampling.clustered_interval([]).mean)


# --- majority vote and the summary ----------------------------------------------------------------

def test_majority_vote_agreement_and_abstentions():
    assert sampling.majority(["A", "B", "A", None], [1, 0, 1, 0]) == ("A", 1.0, 0.5)
    assert sampling.majority(["B", "A", "A", "B"], [0, 1, 1, 0]) == ("B", 0.0, 0.5)  # tie: first answer
    assert sampling.majority([None, ""], [0, 0]) == (None, 0.0, 0.0)


def test_summary_of_a_hand_built_task():
    questions = [([1, 1, 1, 1], ["A"] * 4), ([1, 0, 0, 0], ["A", "B", "B", "C"]), ([0, 0, 1, 1], ["C", "C", "A", "A"])]
    s = sampling.summarize(questions)
    assert s["questions"] == 3 and s["rollouts"] == 12 and s["k"] == 4
    assert s["avg"] == pytest.approx((1 + 0.25 + 0.5) / 3)
    assert s["pass_at"]["1"] == pytest.approx(s["avg"])
    assert s["pass_at"]["2"] == pytest.approx((1 + 0.5 + 5 / 6) / 3)
    assert s["pass_at"]["4"] == 1.0
    assert s["majority_accuracy"] == pytest.approx((1 + 0 + 0) / 3)  # B wins q2; C (first of the tie) wins q3
    assert s["agreement"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert s["avg_ci"][0] < s["avg"] < s["avg_ci"][1]


# --- seeds and protocols -------------------------------------------------------------------------

def test_rollout_seeds_are_stable_distinct_and_in_range():
    seeds = {sampling.rollout_seed(0, "pr_zoom", str(q), r) for q in range(50) for r in range(8)}
    assert len(seeds) == 400 and all(0 <= s < 2 ** 31 for s in seeds)
    assert sampling.rollout_seed(0, "t", "q", 3) == sampling.rollout_seed(0, "t", "q", 3)
    assert sampling.rollout_seed(1, "t", "q", 3) != sampling.rollout_seed(0, "t", "q", 3)
    assert sampling.turn_seed(7, 0) != sampling.turn_seed(7, 1)


def test_the_paper_protocols_keep_their_published_fingerprints():
    published = {"pixel-reasoner-v3": "6e2c10c24001516b", "no-tool": "2694944ebf22fb35",
                 "blind-tool": "909eba4228f07d7c", "blind-tool-blank": "0f8d22c26fe29f6b"}
    assert {name: PROTOCOLS[name].fingerprint for name in published} == published
    assert "sampling" not in PIXEL_REASONER.settings() and PIXEL_REASONER.rollouts == 1


def test_samples_per_question_renames_the_sampled_protocol_and_refuses_greedy_ones():
    eight = with_overrides(SAMPLED, samples_per_question=8)
    assert eight.name == "pixel-reasoner-sampled+samples=8" and eight.rollouts == 8
    assert len({SAMPLED.fingerprint, eight.fingerprint, with_overrides(SAMPLED, samples_per_question=4).fingerprint}) == 3
    assert SAMPLED.decoding.temperature == 1.0 and SAMPLED.decoding.top_p == 1.0 and SAMPLED.decoding.top_k == -1
    assert with_overrides(SAMPLED, samples_per_question=1) is SAMPLED
    with pytest.raises(ValueError, match="pixel-reasoner-sampled"):
        with_overrides(PIXEL_REASONER, samples_per_question=8)


@pytest.mark.parametrize("args,message", [
    (["--samples-per-question", "8"], "decodes greedily"),
    (["--samples-per-question", "0", "--protocol", "pixel-reasoner-sampled"], "at least 1"),
])
def test_samples_per_question_usage_errors(args, message, capsys):
    status = cli.main(["--model", "demo", "--tasks", "zoom", "--data", "samples", *args])
    assert status == 2 and message in capsys.readouterr().err


# --- per-question metrics and pairing -------------------------------------------------------------

def test_a_questions_metrics_pool_its_rollouts():
    per = [{"accuracy": 1.0, "turns": 2.0, "accuracy_with_tools": {"value": 1.0, "weight": 1.0}},
           {"accuracy": 0.0, "turns": 1.0, "accuracy_with_tools": {"value": 0.0, "weight": 0.0}},
           {"accuracy": 0.0, "turns": 2.0, "accuracy_with_tools": {"value": 0.0, "weight": 1.0}}]
    combined = metrics.combine(per)
    assert combined["accuracy"] == pytest.approx(1 / 3) and combined["turns"] == pytest.approx(5 / 3)
    assert combined["accuracy_with_tools"] == {"value": 0.5, "weight": 2.0}  # pooled over the rollouts that used tools


def test_rollout_records_pair_by_question():
    records = [{"sample_id": "q1", "rollout": r, "metrics": {"accuracy": float(r < 3)}} for r in range(4)]
    records += [{"sample_id": "q2", "rollout": r, "metrics": {"accuracy": 0.0}} for r in range(4)]
    indexed = index_samples(records, "t")
    assert indexed == {("t", "q1"): {"accuracy": 0.75}, ("t", "q2"): {"accuracy": 0.0}}
    with pytest.raises(InputError, match="rollout 1 of sample_id 'q1' occurs twice"):
        index_samples(records + [records[1]], "t")


# --- the real engine --------------------------------------------------------------------------------

K = 8
QUESTIONS = 4
COMMAND = ["--model", "demo", "--tasks", "zoom", "--data", "samples", "--protocol", "pixel-reasoner-sampled",
           "--samples-per-question", str(K), "--limit", str(QUESTIONS)]


def records(folder: Path) -> list[dict]:
    """samples_pr_zoom.jsonl without timings, in (doc, rollout) order."""
    lines = [json.loads(x) for x in (folder / "samples_pr_zoom.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k != "timing"} for r in lines),
                  key=lambda r: (r["doc_id"], r["rollout"]))


def evaluate(demo_engine, output: Path, **options):
    from pr_eval.run import evaluate as runner
    from pr_eval.models import resolve_model

    protocol = with_overrides(SAMPLED, samples_per_question=K)
    return runner.evaluate("demo", resolve_model("demo"), ["pr_zoom"], protocol=protocol, limit=QUESTIONS,
                           output=output, engine=demo_engine, seed=0, **options)


@pytest.fixture(scope="module")
def sampled_run(demo_engine, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("PR_EVAL_DATA", "samples")
    return evaluate(demo_engine, tmp_path_factory.mktemp("sampled"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_sampled_run_reports_avg_at_k_pass_at_k_and_the_vote(sampled_run):
    run = sampled_run
    summary = json.loads((run.folder / RESULTS_FILE).read_text())
    s = summary["sampled"]["pr_zoom"]
    assert s["questions"] == QUESTIONS and s["rollouts"] == QUESTIONS * K and s["k"] == K
    rows = records(run.folder)
    assert [(r["doc_id"], r["rollout"]) for r in rows] == [(q, r) for q in range(QUESTIONS) for r in range(K)]
    per_question = [np.mean([r["metrics"]["accuracy"] for r in rows if r["doc_id"] == q]) for q in range(QUESTIONS)]
    assert s["avg"] == pytest.approx(np.mean(per_question))
    assert run.metrics["pr_zoom"]["accuracy"] == pytest.approx(s["avg"])  # lmms-eval's mean is Avg@K
    assert s["avg_ci"][0] <= s["avg"] <= s["avg_ci"][1]
    assert list(s["pass_at"]) == [str(k) for k in range(1, K + 1)]
    assert s["pass_at"]["1"] == pytest.approx(s["avg"]) and s["pass_at"][str(K)] >= s["pass_at"]["1"]
    assert 0 < s["agreement"] <= 1
    # every rollout carries its own seed, derived from the run seed, question and rollout
    assert all(r["seed"] == sampling.rollout_seed(0, "pr_zoom", r["sample_id"], r["rollout"]) for r in rows)
    # sampling at temperature 1 really gives different rollouts of one question (different turns)
    texts = {json.dumps(r["messages"][2:]) for r in rows}
    assert len(texts) > QUESTIONS
    table = run.table()
    assert f"Avg@{K}" in table and f"pass@{K}" in table and "vote" in table
    assert "Sampled rollouts" in (run.folder / "report.html").read_text()


def test_rerunning_gives_identical_rollouts_whatever_the_batching(sampled_run, demo_engine, tmp_path):
    again = evaluate(demo_engine, tmp_path, batch_size=5, schedule="turn-sync")
    assert records(again.folder) == records(sampled_run.folder)
    assert again.sampled == sampled_run.sampled


def test_compare_pairs_sampled_runs_by_question(sampled_run, capsys):

    status = cli_compare.compare([str(sampled_run.folder), str(sampled_run.folder), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert status == 0 and rows[0]["n"] == QUESTIONS and rows[0]["delta"] == 0.0


def test_a_sampled_run_cut_to_its_lucky_rollouts_or_reseeded_is_refused(sampled_run, tmp_path, capsys):
    """Every question must carry exactly its K rollouts with the seeds the run's rule gives them:
    a copy keeping only the correct rollouts, or with a rollout from another seed, is refused by
    compare and check, naming the questions."""
    import shutil


    rows = records(sampled_run.folder)
    for name, edit in (("cut", lambda rs: [r for r in rs if r["metrics"]["accuracy"] == 1.0]),
                       ("reseeded", lambda rs: [dict(r, seed=r["seed"] + 1) if i == 0 else r for i, r in enumerate(rs)])):
        folder = tmp_path / name
        shutil.copytree(sampled_run.folder, folder)
        edited = edit([dict(r) for r in rows])
        assert edited != rows
        (folder / "samples_pr_zoom.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
        status = cli_compare.compare([str(sampled_run.folder), str(folder)])
        err = capsys.readouterr().err
        assert status == 2, err
        if name == "cut":
            assert f"must hold rollouts 0..{K - 1} of every question" in err and f"of {K})" in err
        else:
            assert "1 rollouts do not carry the seed the run's seed rule gives them (seed 0)" in err


def test_a_sigkilled_sampled_run_resumes_rollout_by_rollout(sampled_run, demo_engine, tmp_path):
    """The CLI, killed in the middle of writing its 11th journal line, then resumed (in this
    process, on the session's engine: one engine start less): the same rollouts and numbers as the
    uninterrupted run, each (question, rollout) run exactly once."""
    env = dict(os.environ, PR_EVAL_DATA="samples", PR_EVAL_FAULT="kill-mid-write:11", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    pr_eval = Path(sys.executable).parent / "pr-eval"
    killed = subprocess.Popen([str(pr_eval), *COMMAND, "--output", str(tmp_path)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = killed.communicate(timeout=600)
    finally:
        try:
            os.killpg(killed.pid, signal.SIGKILL)  # vLLM's engine processes outlive a killed parent
        except (ProcessLookupError, PermissionError):
            pass
    assert killed.returncode == -signal.SIGKILL, err[-3000:]
    folder = next(tmp_path.iterdir())
    lines = (folder / JOURNAL_FILE).read_bytes().split(b"\n")
    assert len(lines) == 11 and lines[-1]  # 10 whole lines and the cut 11th
    said = []
    resumed = evaluate(demo_engine, tmp_path, resume=folder, announce=lambda store: said.append(len(store.done)))
    assert resumed.folder == folder and said == [10]
    keys = [json.loads(line)["key"] for line in (folder / JOURNAL_FILE).read_text().splitlines()]
    assert sorted(keys) == sorted(f"pr_zoom/{q}#{r}" for q in range(QUESTIONS) for r in range(K))
    assert records(folder) == records(sampled_run.folder)
    got, want = (json.loads((f / RESULTS_FILE).read_text()) for f in (folder, sampled_run.folder))
    assert got["sampled"] == want["sampled"] and got["metrics"] == want["metrics"]
