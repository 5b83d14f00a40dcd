"""The judge in a real run (demo model, real vLLM engine, lmms-eval) against a scripted local
OpenAI-compatible judge: verdicts recorded beside the rule scores, disagreements shown, a failing
judge loses judgements and leaves every rule score as it was, a resumed run asks nothing again."""

from __future__ import annotations

import json
import re

import pytest
from conftest import JsonHandler, chat_completion, start_server, stop_server

from pr_eval.run import evaluate as runner
from pr_eval.judge.client import JudgeSettings
from pr_eval.judge.run import JUDGEMENTS_FILE
from pr_eval.models import resolve_model
from pr_eval.run.store import RESULTS_FILE

LIMIT = 6


class LenientJudge(JsonHandler):
    """Says CORRECT exactly when the model's final answer is "A" (so it disagrees with the rules
    wherever the gold is not A and the model said A, or the gold is A and the model said another
    letter); with `server.down`, answers HTTP 500 to everything."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.read_json()
        user = body["messages"][-1]["content"]
        with self.server.lock:
            self.server.requests += 1
        if self.server.down:
            return self.send_json(500, {"error": {"message": "judge is down"}})
        answer = re.search(r"\n<<<ANSWER>>>\n(.*?)\n<<<ANSWER>>>", user, re.S).group(1).strip()
        reply = "CORRECT" if answer == "A" else "INCORRECT"
        self.send_json(200, chat_completion(reply, body["model"], prompt_tokens=9, completion_tokens=1))


@pytest.fixture(scope="module")
def judge_server():
    httpd = start_server(LenientJudge, requests=0, down=False)
    httpd.url = httpd.root + "/v1"
    yield httpd
    stop_server(httpd)


def evaluate(engine, output, judge=None, resume=None):
    return runner.evaluate("demo", resolve_model("demo"), ["pr_zoom"], limit=LIMIT, output=output, engine=engine,
                           judge=judge, resume=resume)


def records(folder):
    return [json.loads(x) for x in (folder / "samples_pr_zoom.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(demo_engine, judge_server, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        plain = evaluate(demo_engine, tmp_path_factory.mktemp("plain"))
        settings = JudgeSettings(base_url=judge_server.url, model="lenient", retries=0, timeout_s=10)
        judged = evaluate(demo_engine, tmp_path_factory.mktemp("judged"), judge=settings)
        asked = judge_server.requests
        again = evaluate(demo_engine, None, judge=settings, resume=judged.folder)
        asked_again = judge_server.requests - asked
        judge_server.down = True
        try:
            down = evaluate(demo_engine, tmp_path_factory.mktemp("down"), judge=settings)
        finally:
            judge_server.down = False
    return dict(plain=plain, judged=judged, again=again, down=down, settings=settings, asked=asked,
                asked_again=asked_again)


def without_judge(metrics: dict) -> dict:
    return {task: {k: v for k, v in values.items() if k != "judge_accuracy"} for task, values in metrics.items()}


def test_verdicts_are_recorded_beside_the_rule_scores(runs):
    plain, judged = runs["plain"], runs["judged"]
    assert without_judge(judged.metrics) == plain.metrics  # the rules' figures are untouched
    rows = records(judged.folder)
    verdicts = [r["judge"]["verdict"] for r in rows]
    answers = [re.search(r"\\boxed\{(.*?)\}", r["messages"][-1]["content"][0]["text"]) for r in rows]
    assert verdicts == [float(bool(m) and m.group(1) == "A") for m in answers]
    assert judged.metrics["pr_zoom"]["judge_accuracy"] == pytest.approx(sum(verdicts) / LIMIT)
    assert runs["asked"] == LIMIT  # one request per trajectory
    summary = json.loads((judged.folder / RESULTS_FILE).read_text())["judge"]
    assert summary["settings"]["fingerprint"] == runs["settings"].fingerprint
    assert summary["settings"]["model"] == "lenient"
    info = json.loads((judged.folder / "run.json").read_text())
    assert info["judge"]["fingerprint"] == runs["settings"].fingerprint


def test_disagreements_are_listed_and_shown(runs):
    judged = runs["judged"]
    rows = records(judged.folder)
    expected = [f"pr_zoom/{r['doc_id']}" for r in rows if r["judge"]["verdict"] != r["metrics"]["accuracy"]]
    summary = json.loads((judged.folder / RESULTS_FILE).read_text())["judge"]["tasks"]["pr_zoom"]
    assert [d["key"] for d in summary["disagreements"]] == expected
    assert summary["judged"] == LIMIT and summary["lost"] == 0
    assert summary["agreement"] == pytest.approx(1 - len(expected) / LIMIT)
    page = (judged.folder / "report.html").read_text()
    assert "Judge and rules" in page and "lenient" in page
    assert "judge" in judged.table()


def test_a_failing_judge_loses_judgements_and_leaves_the_rules_alone(runs):
    down = runs["down"]
    assert without_judge(down.metrics) == runs["plain"].metrics
    summary = json.loads((down.folder / RESULTS_FILE).read_text())["judge"]["tasks"]["pr_zoom"]
    assert summary["judge_accuracy"] is None and summary["judged"] == 0 and summary["lost"] == LIMIT
    assert set(summary["lost_reasons"]) == {"http 500"}
    assert all(r["judge"]["verdict"] is None and "500" in r["judge"]["error"] for r in records(down.folder))


def test_a_resumed_run_asks_the_judge_nothing_again(runs):
    assert runs["asked_again"] == 0
    judged, again = runs["judged"], runs["again"]
    assert again.folder == judged.folder and again.metrics == judged.metrics
    assert len((judged.folder / JUDGEMENTS_FILE).read_text().splitlines()) == LIMIT
