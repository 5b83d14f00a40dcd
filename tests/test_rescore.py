"""`pr-eval rescore`: a finished run judged from its saved trajectories gives exactly what the run
would have given with that judge, in a new folder that says what was re-scored; nothing runs again."""

from __future__ import annotations

import json

import pytest
from canned import Canned, boxed
from test_judge_run import judge_server  # noqa: F401 - the scripted judge, as a fixture

from pr_eval.cli import rescore as command
from pr_eval.judge.client import JudgeSettings
from pr_eval.run.evaluate import evaluate
from pr_eval.run.rescore import rescore

pytestmark = pytest.mark.server  # a local judge server


@pytest.fixture(scope="module")
def runs(judge_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    judge = JudgeSettings(base_url=judge_server.url, model="lenient")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        plain = evaluate("demo", "x", ["pr_zoom"], limit=8, output=out / "plain", engine=boxed("A", "B")).folder
        judged = evaluate("demo", "x", ["pr_zoom"], limit=8, output=out / "judged", engine=boxed("A", "B"),
                          judge=judge).folder
    return plain, judged, judge


def records(folder):
    return {r["sample_id"]: r for r in map(json.loads, (folder / "samples_pr_zoom.jsonl").read_text().splitlines())}


def test_rescoring_gives_what_the_run_would_have_given_with_that_judge(runs, judge_server, tmp_path):
    plain, judged, judge = runs
    asked = judge_server.requests
    out = rescore(plain, judge, tmp_path / "rescored")
    assert judge_server.requests - asked == 8  # every trajectory judged once, nothing generated
    got, want = json.loads((out / "results.json").read_text()), json.loads((judged / "results.json").read_text())
    assert got["metrics"] == want["metrics"] and 0 < got["metrics"]["pr_zoom"]["judge_accuracy"] < 1
    assert {k: r["judge"]["verdict"] for k, r in records(out).items()} == \
           {k: r["judge"]["verdict"] for k, r in records(judged).items()}
    assert got["rescored"]["from"] == str(plain.resolve()) and got["rescored"]["judge"]["model"] == "lenient"
    assert got["rescored"]["previous_judge"] is None and "judge_accuracy" not in json.loads(
        (plain / "results.json").read_text())["metrics"]["pr_zoom"]  # the run itself is left as it was
    assert (out / "report.html").is_file() and (out / "trajectories.jsonl").is_file()
    assert sorted(p.name for p in (out / "images").rglob("*.jpg")) == sorted(p.name for p in (plain / "images").rglob("*.jpg"))
    # a second judging of the same output resumes: nothing is asked again
    (out / "results.json").unlink()
    asked = judge_server.requests
    rescore(plain, judge, out)
    assert judge_server.requests == asked and json.loads((out / "results.json").read_text())["metrics"] == want["metrics"]


def test_the_command_and_its_refusals(runs, judge_server, tmp_path, capsys):
    plain, _, _ = runs
    status = command.main([str(plain), "--judge-base-url", judge_server.url, "--judge-model", "lenient",
                           "--output", str(tmp_path / "new")])
    assert status == 0 and f"rescored: {tmp_path / 'new'}" in capsys.readouterr().out
    for argv, says, code in (
            (["/nonexistent/run"], "no such run folder", 2),
            ([str(plain), "--output", str(plain)], "is the run itself", 1),
            ([str(plain), "--output", str(tmp_path / "new")], "already holds a finished run", 1)):
        assert command.main([*argv, "--judge-base-url", judge_server.url, "--judge-model", "lenient"]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err


def test_an_output_that_cannot_be_written_is_one_line(runs, judge_server, tmp_path, capsys):
    plain, _, _ = runs
    (tmp_path / "file").write_text("")
    status = command.main([str(plain), "--judge-base-url", judge_server.url, "--judge-model", "lenient",
                           "--output", str(tmp_path / "file" / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and "cannot write" in err[-1] and len(err) == 2 and "writing" in err[0]


# --- another answer rule: --scoring ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The same questions and answers under mini-o3 (its judge path: without a judge every answer
    is left open) and under mini-o3-mc (the multiple-choice rule decides them all)."""
    out = tmp_path_factory.mktemp("mini")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        return {name: evaluate("demo", "x", ["pr_zoom", "pr_vstar"], protocol=name, limit=9, output=out / name,
                               engine=Canned(*("I look. <answer>%s</answer>" % x for x in "ABC"))).folder for name in ("mini-o3", "mini-o3-mc")}


def _without(summary: dict, *keys) -> dict:
    return {task: {k: v for k, v in m.items() if k not in keys} for task, m in summary["metrics"].items()}


def test_scoring_under_a_sibling_rule_gives_what_a_run_under_it_gives(mini, tmp_path, capsys):
    assert command.main([str(mini["mini-o3"]), "--scoring", "mini-o3-mc", "--output", str(tmp_path / "mc")]) == 0
    got, want = (json.loads((f / "results.json").read_text()) for f in (tmp_path / "mc", mini["mini-o3-mc"]))
    before = json.loads((mini["mini-o3"] / "results.json").read_text())
    assert before["metrics"]["pr_zoom"]["accuracy"] is None and before["metrics"]["pr_zoom"]["undecided"] == 9
    assert got["metrics"] == want["metrics"] and 0 < got["metrics"]["pr_zoom"]["accuracy"] < 1
    assert got["pr_eval"]["protocol"] == want["pr_eval"]["protocol"]
    assert got["rescored"]["what"] == "scoring" and got["rescored"]["previous_protocol"]["name"] == "mini-o3"
    for task in ("pr_zoom", "pr_vstar"):
        def rows(folder):
            return {r["sample_id"]: (r["metrics"], r["protocol"], r["fingerprint"], r.get("undecided"))
                    for r in map(json.loads, (folder / f"samples_{task}.jsonl").read_text().splitlines())}
        assert rows(tmp_path / "mc") == rows(mini["mini-o3-mc"])


@pytest.fixture(scope="module")
def more(tmp_path_factory):
    """A sampled run (three rollouts a question) and a capped Mini-o3 run beside its MC twin."""
    from pr_eval.protocol import SAMPLED, with_overrides
    from pr_eval.families import get_protocol

    out = tmp_path_factory.mktemp("more")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        sampled = evaluate("demo", "x", ["pr_zoom", "pr_hrbench4k"], protocol=with_overrides(SAMPLED, samples_per_question=3),
                           limit=8, output=out / "sampled", engine=boxed(*"ABCD")).folder
        capped = {name: evaluate("demo", "x", ["pr_zoom"], limit=9, output=out / name, engine=Canned(
            *("I look. <answer>%s</answer>" % x for x in "ABC")),
            protocol=with_overrides(get_protocol(name), max_tool_calls=3)).folder for name in ("mini-o3", "mini-o3-mc")}
    return sampled, capped


@pytest.mark.parametrize("protocol", ["mini-o3", "pixel-reasoner-v3", "pixel-reasoner-sampled"])
def test_scoring_under_the_runs_own_rule_changes_nothing(mini, runs, more, tmp_path, protocol):
    """The identity: re-scoring recomputes every figure the rule touches exactly as the run did
    (a sampled run's too: a question's rollouts are averaged first, as lmms-eval does)."""
    folder = {"mini-o3": mini["mini-o3"], "pixel-reasoner-v3": runs[0], "pixel-reasoner-sampled": more[0]}[protocol]
    out = rescore(folder, None, tmp_path / "same", scoring=protocol)
    got, want = (json.loads((f / "results.json").read_text()) for f in (out, folder))
    assert got["metrics"] == want["metrics"]
    for path in folder.glob("samples_*.jsonl"):
        assert [json.loads(line)["metrics"] for line in (out / path.name).read_text().splitlines()] == \
               [json.loads(line)["metrics"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("argv, says", [
    (["--scoring", "deepeyes"], "differs from the run's protocol mini-o3 in more than its answer rule"),
    (["--scoring", "nonsense"], "unknown protocol 'nonsense'"),
    ([], "nothing to re-score"),
])
def test_a_scoring_that_cannot_be_is_refused_in_one_line(mini, argv, says, capsys):
    assert command.main([str(mini["mini-o3"]), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_a_capped_run_is_scored_under_the_sibling_with_the_same_caps(more, tmp_path):
    _, capped = more
    out = rescore(capped["mini-o3"], None, tmp_path / "mc", scoring="mini-o3-mc")
    got, want = (json.loads((f / "results.json").read_text()) for f in (out, capped["mini-o3-mc"]))
    assert got["pr_eval"]["protocol"]["name"] == "mini-o3-mc+max_tool_calls=3"
    assert got["metrics"] == want["metrics"] and got["pr_eval"]["protocol"] == want["pr_eval"]["protocol"]


def test_a_rescored_folder_says_so_and_is_not_resumed(mini, tmp_path):
    from pr_eval.run.store import ResumeRefused

    out = rescore(mini["mini-o3"], None, tmp_path / "mc", scoring="mini-o3-mc")
    summary = json.loads((out / "results.json").read_text())
    assert summary["run"]["protocol"]["name"] == "mini-o3-mc" and "judge" not in summary
    assert json.loads((out / "run.json").read_text())["rescored"]["what"] == "scoring"
    with pytest.MonkeyPatch.context() as patch, pytest.raises(ResumeRefused, match="is a finished re-scoring"):
        patch.setenv("PR_EVAL_DATA", "samples")
        evaluate("demo", "x", ["pr_zoom", "pr_vstar"], protocol="mini-o3-mc", limit=9, output=tmp_path, resume=out,
                 engine=boxed("A"))
