"""A peer protocol's rule, then its own judge, in a real run (tiny model, real vLLM engine,
lmms-eval; structured outputs write the answers) against a scripted judge speaking the family's
reply format: the rule decides what it can, the judge gets the rest with the family's prompt,
lost judgements are never scored wrong, a run without a judge says how many are undecided, and
a resumed run asks nothing again."""

from __future__ import annotations

import json
import re

import pytest
from conftest import JsonHandler, chat_completion, scripted, start_server, stop_server

from pr_eval.run import evaluate as runner
from pr_eval.report import tables
from pr_eval.families import get_protocol
from pr_eval.families.deepeyes_judge import JUDGE_SYSTEM
from pr_eval.judge.client import JudgeSettings
from pr_eval.judge.run import JUDGEMENTS_FILE

# V*'s bundled samples: golds C, A, D (yellow), C. DeepEyes' rule decides a bare letter; "(A)" and a
# colour name go to its judge.
ANSWERS = {"vstar-direct_attributes-0": "<answer>C</answer>", "vstar-direct_attributes-1": "<answer>(A)</answer>",
           "vstar-direct_attributes-2": "<answer>yellow, I think</answer>",
           "vstar-direct_attributes-3": ["Let me think.", "<answer>B</answer>"]}  # the first turn is dropped


class DeepEyesJudge(JsonHandler):
    """Replies as DeepEyes' judge model would: "Judgement: 1" when the model's answer names the
    standard answer's letter in brackets or its colour, else "Judgement: 0"; 500 when down."""

    def do_POST(self):
        body = self.read_json()
        with self.server.lock:
            self.server.prompts.append(body["messages"])
        if self.server.down:
            return self.send_json(500, {"error": {"message": "judge is down"}})
        user = body["messages"][-1]["content"]
        standard, answer = re.findall(r"\[Standard Answer\]: (.*)\n\[Model_answer\] : (.*)\nJudgement:$", user)[0]
        letter, colour = standard.split(". ", 1)
        reply = "Judgement: 1" if f"({letter})" in answer or colour in answer else "Judgement: 0"
        self.send_json(200, chat_completion(reply, body["model"]))


@pytest.fixture(scope="module")
def runs(engine, tiny_model, tmp_path_factory):
    httpd = start_server(DeepEyesJudge, prompts=[], down=False)
    settings = JudgeSettings(base_url=httpd.root + "/v1", model="judge", retries=0, timeout_s=10)

    def evaluate(output, judge=None, resume=None):
        return runner.evaluate("tiny", tiny_model, ["pr_vstar"], protocol=get_protocol("deepeyes"), limit=4,
                               output=output, engine=engine, guide=scripted({k: v if isinstance(v, list) else [v] for k, v in ANSWERS.items()}),
                               judge=judge, resume=resume)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PR_EVAL_DATA", "samples")
            plain = evaluate(tmp_path_factory.mktemp("plain"))
            judged = evaluate(tmp_path_factory.mktemp("judged"), judge=settings)
            asked = len(httpd.prompts)
            again = evaluate(None, judge=settings, resume=judged.folder)
            asked_again = len(httpd.prompts) - asked
            httpd.down = True
            down = evaluate(tmp_path_factory.mktemp("down"), judge=settings)
    finally:
        stop_server(httpd)
    return dict(plain=plain, judged=judged, again=again, down=down, prompts=httpd.prompts[:asked],
                asked_again=asked_again)


def test_without_a_judge_the_undecided_are_counted_not_scored_wrong(runs):
    m = runs["plain"].metrics["pr_vstar"]
    assert m["undecided"] == 2 and m["rule_only"] is True
    assert m["accuracy"] == 0.5  # over the two questions the rule decided: C right, B wrong
    report = (runs["plain"].folder / "report.html").read_text()
    assert 'id="judge">Rule, then judge' in report and "This run had no judge" in report
    assert "accuracy: the protocol&#x27;s own rule, over the questions it decided" in report
    # DeepEyes re-sent the request after a turn with neither call nor answer: the report shows it
    assert "turn 1 (not kept: the protocol sent the same request again)" in report and "Let me think." in report
    table = tables.run_table(runs["plain"], "tiny")
    assert "rule, then judge" in table and "No judge: run with --judge-base-url" in table
    assert "accuracy: the protocol's own rule" in table and "the paper's answer rule" not in table


def test_the_judge_gets_only_the_undecided_with_the_familys_prompt(runs):
    prompts = runs["prompts"]
    assert len(prompts) == 2
    for messages in prompts:
        assert messages[0] == {"role": "system", "content": JUDGE_SYSTEM}
        assert messages[1]["content"].startswith("\nBelow are two answers to a question.")
    answers = sorted(re.search(r"\[Model_answer\] : (.*)\nJudgement:$", m[1]["content"]).group(1) for m in prompts)
    assert answers == ["(A)", "yellow, I think"]


def test_rule_and_judge_verdicts_make_the_protocols_accuracy(runs):
    judged = runs["judged"]
    m = judged.metrics["pr_vstar"]
    assert m["accuracy"] == 0.5 and m["undecided"] == 2  # the rule's figures stay as they were
    assert m["judge_accuracy"] == 0.75  # C right, B wrong, (A) and yellow right by the judge
    summary = json.loads((judged.folder / "results.json").read_text())["judge"]
    assert summary["settings"]["name"] == "deepeyes-judge" and summary["settings"]["family"] == "deepeyes"
    assert summary["tasks"]["pr_vstar"] == {"judge_accuracy": 0.75, "rule_decided": 2, "judged": 2, "lost": 0}
    rows = [json.loads(x) for x in (judged.folder / "samples_pr_vstar.jsonl").read_text().splitlines()]
    assert [("judge" in r) for r in rows] == [False, True, True, False]
    assert "with judge" in tables.run_table(judged, "tiny")
    report = (judged.folder / "report.html").read_text()
    assert "deepeyes-judge" in report and "Judge and rules" not in report


def test_a_resumed_run_asks_nothing_again(runs):
    assert runs["asked_again"] == 0
    assert runs["again"].metrics["pr_vstar"]["judge_accuracy"] == 0.75
    assert len((runs["judged"].folder / JUDGEMENTS_FILE).read_text().splitlines()) == 2


def test_lost_judgements_are_never_scored_wrong(runs):
    m = runs["down"].metrics["pr_vstar"]
    assert m["accuracy"] == 0.5 and m["judge_accuracy"] == 0.5  # over the questions with a verdict
    summary = json.loads((runs["down"].folder / "results.json").read_text())["judge"]["tasks"]["pr_vstar"]
    assert summary["lost"] == 2 and summary["judged"] == 0


def test_sampled_figures_take_the_rule_then_the_judge_and_leave_out_the_undecided():
    """mini-o3-sampled: Avg@K and pass@k from each rollout's verdict under its protocol (the rule's,
    else its judgement); an undecided rollout nobody judged counts neither way."""
    from pathlib import Path

    from pr_eval.run.folder import Run

    undecided = {"metrics": {"accuracy": None}, "undecided": True, "answer": "A"}
    records = [{"doc_id": 0, "rollout": 0, **undecided, "judge": {"verdict": 1.0}},
               {"doc_id": 0, "rollout": 1, **undecided, "judge": {"verdict": 1.0}},
               {"doc_id": 1, "rollout": 0, "metrics": {"accuracy": 0.0}, "answer": "B"},
               {"doc_id": 1, "rollout": 1, **undecided}]
    run = Run(folder=Path("."), metrics={"t": {}}, members={})
    figures = runner.sampled_figures(run, {"t": records})["t"]
    assert figures["rollouts"] == 3 and figures["avg"] == 0.5 and run.metrics["t"]["pass@1"] == 0.5


def test_a_peer_run_submits_validates_and_compares(runs):
    """Undecided predictions carry no accuracy; the figures agree with the run's; compare pairs the
    decided questions."""
    from pr_eval.compare import submission
    from pr_eval.compare.delta import compare_sides
    from pr_eval.compare.sides import read_run

    document = submission.build(runs["plain"].folder)
    assert submission.validate(document) == [] and submission.against_run(document, runs["plain"].folder) == []
    assert document["protocol"]["name"] == "deepeyes"
    scores = [p["scores"]["accuracy"] for p in document["predictions"]]
    assert scores == [1.0, None, None, 0.0]
    assert [p["answer"] for p in document["predictions"]] == ["C", "(A)", "yellow, I think", "B"]
    rows = compare_sides(read_run(runs["plain"].folder), read_run(runs["judged"].folder), metric="accuracy")
    assert [(r.a, r.b) for r in rows] == [(0.5, 0.5)]
