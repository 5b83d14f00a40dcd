"""pr-eval submit: a real run becomes a submission that validates; any edit after that is caught
and named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from canned import boxed
from test_gate import inject_wrong, make_run

from pr_eval.compare import gate, submission
from pr_eval.cli import submit as cli_submit
from pr_eval.cli import compare as cli_compare

SCHEMA = Path(submission.__file__).parent.parent / "schemas" / submission.SCHEMA_FILE


@pytest.fixture(scope="module")
def run_and_file(engine, tiny_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("submit")
    folder = make_run(engine, tiny_model, base / "runs", limit=4).folder
    out = base / "submission.json"
    assert cli_submit.main([str(folder), "--output", str(out)]) == 0
    return folder, out


def test_schema_is_a_valid_draft_2020_12_schema_with_every_field_described():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

    def undocumented(node, path):
        for name, sub in (node.get("properties") or {}).items():
            if "description" not in sub and "$ref" not in sub:
                yield f"{path}/{name}"
            yield from undocumented(sub, f"{path}/{name}")

    missing = list(undocumented(schema, "")) + [m for name, d in schema["$defs"].items()
                                                 for m in undocumented(d, f"$defs/{name}")]
    assert missing == []


def test_submission_holds_the_run(run_and_file, capsys):
    folder, out = run_and_file
    document = json.loads(out.read_text())
    summary = json.loads((folder / "results.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(document)
    assert document["schema_version"] == "1.1" and document["model"]["name"] == "tiny"
    assert document["protocol"]["fingerprint"] == summary["pr_eval"]["protocol"]["fingerprint"]
    assert set(document["benchmarks"]) == {"vstar", "tallyqa"}
    vstar = document["benchmarks"]["vstar"]
    assert vstar["metric"] == "letter_accuracy" and vstar["score"] == 1.0 and vstar["n"] == 4
    assert vstar["tool_stats"]["rapr"] == summary["metrics"]["pr_vstar"]["rapr"] > 0
    assert vstar["scores"]["attribute_accuracy"] == summary["metrics"]["pr_vstar"]["attribute_accuracy"]
    assert len(document["predictions"]) == 8
    keys = [(p["task"], p["sample_id"]) for p in document["predictions"]]
    assert keys == sorted(keys)
    records = {r["sample_id"]: r for r in map(json.loads, (folder / "samples_pr_vstar.jsonl").read_text().splitlines())}
    for p in document["predictions"]:
        if p["task"] == "pr_vstar":
            record = records[p["sample_id"]]
            assert p["answer"] == record["target"] and p["scores"]["letter_accuracy"] == 1.0
            assert p["tool_calls"] == len(record["tool_calls"])
            assert p["record_sha256"] == submission.sha256(record)
    assert cli_submit.main(["--validate", str(out), "--run", str(folder)]) == 0
    assert "valid pr-eval-submission 1.1" in capsys.readouterr().out


def _tampered(out: Path, tmp_path: Path, edit) -> Path:
    document = json.loads(out.read_text())
    edit(document)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(document))
    return path


def _set_answer(d):
    d["predictions"][0]["answer"] = "Z"


def _set_score(d):
    d["benchmarks"]["vstar"]["score"] = 0.5


def _set_model(d):
    d["model"]["name"] = "Pixel-Reasoner-7B"


def _set_accuracy(d):  # a consistent-looking edit: both numbers changed together
    d["benchmarks"]["tallyqa"]["scores"]["accuracy"] = 0.9


def _drop_prediction(d):
    del d["predictions"][-1]


def _set_setting(d):
    d["protocol"]["record"]["settings"]["caps"]["max_tool_calls"] = 99


def _bad_type(d):
    d["predictions"][1]["tool_calls"] = "two"


@pytest.mark.parametrize("edit,messages", [
    (_set_answer, ["records_sha256 does not match the predictions", "checksum does not match"]),
    (_set_score, ["benchmarks/vstar/score is 0.5 but scores/letter_accuracy is 1.0", "checksum"]),
    (_set_model, ["checksum does not match the contents"]),
    (_set_accuracy, ["benchmarks/tallyqa/scores/accuracy is 0.9 but the mean over its 4 predictions is 1.0"]),
    (_drop_prediction, ["records_sha256", "n is 4 but 3 predictions belong to it"]),
    (_set_setting, ["does not match its settings"]),
    (_bad_type, ["at predictions/1/tool_calls: 'two' is not of type 'integer'"]),
])
def test_a_tampered_submission_is_rejected_with_the_reason(run_and_file, tmp_path, capsys, edit, messages):
    _, out = run_and_file
    path = _tampered(out, tmp_path, edit)
    assert cli_submit.main(["--validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "INVALID submission" in err
    for message in messages:
        assert message in err, err
    # a tampered submission is no baseline either
    with pytest.raises(gate.InputError, match="is not a valid submission"):
        gate.load_side(path)


def test_recomputed_checksums_still_fail_against_the_run(run_and_file, tmp_path, capsys):
    """A forger who recomputes both hashes passes --validate alone; --run ties each prediction
    to its full record."""
    folder, out = run_and_file
    document = json.loads(out.read_text())
    forged = copy.deepcopy(document)
    forged["predictions"][0]["answer"] = "Z"
    forged["records_sha256"] = submission.records_sha256(forged["predictions"])
    forged["checksum"] = submission.checksum(forged)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    assert cli_submit.main(["--validate", str(path)]) == 0
    assert cli_submit.main(["--validate", str(path), "--run", str(folder)]) == 1
    first = document["predictions"][0]
    assert f"prediction ({first['task']}, {first['sample_id']}) differs from its record" in capsys.readouterr().err


def test_a_submission_is_a_paired_baseline(run_and_file, tmp_path, capsys):
    folder, out = run_and_file
    assert cli_compare.check([str(folder), "--baseline", str(out), "--max-drop", "1"]) == 0
    assert "(n=4, paired)" in capsys.readouterr().out
    inject_wrong(folder, tmp_path / "worse", "pr_vstar", 4)  # 4 of 4: one-sided McNemar p = 1/16
    assert cli_compare.check([str(tmp_path / "worse"), "--baseline", str(out), "--max-drop", "5", "--alpha", "0.1"]) == 1
    assert cli_submit.main([str(tmp_path / "worse"), "--output", str(tmp_path / "worse.json")]) == 0
    worse = json.loads((tmp_path / "worse.json").read_text())
    assert worse["benchmarks"]["vstar"]["score"] == 0.0
    assert cli_submit.main(["--validate", str(tmp_path / "worse.json"), "--run", str(tmp_path / "worse")]) == 0


def test_bad_usage_exits_2(run_and_file, tmp_path, capsys):
    folder, out = run_and_file
    assert cli_submit.main([]) == 2
    assert cli_submit.main([str(folder), "--validate", str(out)]) == 2
    assert cli_submit.main(["--validate", str(tmp_path / "none.json")]) == 2
    assert cli_submit.main([str(tmp_path / "no-run")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{not json")
    assert cli_submit.main(["--validate", str(tmp_path / "junk.json")]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def _forge(document: dict, edit) -> dict:
    """A forger's edit with everything --validate alone checks fixed up: counts, scores, hashes."""
    forged = copy.deepcopy(document)
    edit(forged)
    forged["records_sha256"] = submission.records_sha256(forged["predictions"])
    forged["checksum"] = submission.checksum(forged)
    return forged


def test_a_dropped_prediction_with_every_number_fixed_up_is_rejected_against_the_run(run_and_file, tmp_path,
                                                                                       capsys):
    folder, out = run_and_file
    document = json.loads(out.read_text())
    victim = document["predictions"][-1]

    def drop(d):
        d["predictions"] = [p for p in d["predictions"] if p is not d["predictions"][-1]]
        entry = d["benchmarks"][victim["benchmark"]]
        kept = [p for p in d["predictions"] if p["benchmark"] == victim["benchmark"]]
        entry["n"] = len(kept)
        for name in dict.fromkeys(["accuracy", entry["metric"]]):
            values = [p["scores"][name] for p in kept if p["scores"].get(name) is not None]
            entry["scores"][name] = sum(values) / len(values)
        entry["score"] = entry["scores"][entry["metric"]]

    path = tmp_path / "dropped.json"
    path.write_text(json.dumps(_forge(document, drop)))
    assert cli_submit.main(["--validate", str(path)]) == 0  # consistent on its own
    assert cli_submit.main(["--validate", str(path), "--run", str(folder)]) == 1
    err = capsys.readouterr().err
    assert (f"1 question(s) of the run are missing from the submission, e.g. ({victim['task']}, "
            f"{victim['sample_id']})") in err


def test_a_changed_protocol_with_its_fingerprint_recomputed_is_rejected_against_the_run(run_and_file, tmp_path,
                                                                                         capsys):
    from pr_eval.protocol import fingerprint_of

    folder, out = run_and_file
    document = json.loads(out.read_text())
    original = document["protocol"]["fingerprint"]

    def recap(d):
        record = d["protocol"]["record"]
        record["settings"]["caps"]["max_tool_calls"] = 99
        record["fingerprint"] = d["protocol"]["fingerprint"] = fingerprint_of(record["settings"])

    forged = _forge(document, recap)
    path = tmp_path / "recapped.json"
    path.write_text(json.dumps(forged))
    assert cli_submit.main(["--validate", str(path)]) == 0
    assert cli_submit.main(["--validate", str(path), "--run", str(folder)]) == 1
    err = capsys.readouterr().err
    assert (f"protocol fingerprint {forged['protocol']['fingerprint']} differs from {original}, the one the "
            "run's records carry") in err


def test_validating_another_pr_eval_file_says_what_it_is(tmp_path):
    """Issue 26: a check baseline given to `submit --validate` listed 13 schema errors."""
    from pr_eval.compare.submission import validate_file

    reference = Path(__file__).resolve().parents[1] / "results" / "paper_table1.json"
    _, problems = validate_file(reference)
    assert problems == [f"{reference} is a reference file of published numbers (for `pr-eval check --baseline`), "
                        "not a submission (`pr-eval submit RUN_DIR` writes one)"]


# --- schema 1.1: sampled runs -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    from pr_eval.protocol import SAMPLED, with_overrides
    from pr_eval.run.evaluate import evaluate

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        folder = evaluate(model="sampler", model_path="x", tasks=["pr_zoom"], limit=6, seed=7,
                          protocol=with_overrides(SAMPLED, samples_per_question=3),
                          output=tmp_path_factory.mktemp("sampled"), engine=boxed(*"ABCD")).folder
    return folder, submission.build(folder)


def test_a_sampled_run_is_submitted_question_by_question_with_its_rollouts(sampled, tmp_path, capsys):
    folder, document = sampled
    assert document["schema_version"] == "1.1" and document["sampling"] == {"rollouts": 3, "seed": 7}
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(document)
    assert submission.validate(document) == [] and submission.against_run(document, folder) == []
    zoom = document["benchmarks"]["zoom"]
    assert zoom["n"] == len(document["predictions"]) == 6
    every = [r["scores"]["accuracy"] for p in document["predictions"] for r in p["rollouts"]]
    assert len(every) == 18 and 0 < sum(every) < 18
    assert zoom["scores"]["accuracy"] == pytest.approx(sum(every) / 18)  # Avg@3
    summary = json.loads((folder / "results.json").read_text())
    assert zoom["scores"]["accuracy"] == pytest.approx(summary["metrics"]["pr_zoom"]["accuracy"])
    for p in document["predictions"]:
        assert [r["rollout"] for r in p["rollouts"]] == [0, 1, 2] and p["answer"] is None
        assert p["scores"]["accuracy"] == pytest.approx(sum(r["scores"]["accuracy"] for r in p["rollouts"]) / 3)
    # a rollout's answer changed with every hash fixed up: only the run folder shows it
    forged = _forge(document, lambda d: d["predictions"][0]["rollouts"][1].update(answer="Z"))
    assert submission.validate(forged) == []
    assert submission.against_run(forged, folder) == [
        f"prediction (pr_zoom, {forged['predictions'][0]['sample_id']}) differs from its record in {folder}"]


def _refit(d, question: dict) -> None:
    """Make a question's own figures those of its (edited) rollouts, as a careful forger would."""
    question["scores"] = submission.rollout_means([r["scores"] for r in question["rollouts"]])
    question["tool_calls"] = sum(r["tool_calls"] for r in question["rollouts"])
    question["record_sha256"] = submission.sha256([r["record_sha256"] for r in question["rollouts"]])


def _keep_lucky_rollouts(d):
    q = d["predictions"][0]
    q["rollouts"] = [r for r in q["rollouts"] if r["scores"]["accuracy"] == 1] or q["rollouts"][:1]
    _refit(d, q)


def _reseed(d):
    d["predictions"][0]["rollouts"][2]["seed"] += 1
    _refit(d, d["predictions"][0])


def _flip_rollout(d):
    r = d["predictions"][0]["rollouts"][0]
    r["scores"] = {k: 1 - v for k, v in r["scores"].items()}


@pytest.mark.parametrize("edit, says", [
    (_keep_lucky_rollouts, "must hold rollouts 0..2 in order"),
    (_reseed, "rollout(s) 2 do not carry the seed run seed 7 gives them"),
    (_flip_rollout, "its scores, tool_calls or record_sha256 are not those of its rollouts"),
    (lambda d: d.pop("sampling"), "samples 3 rollouts per question, but the file has no `sampling`"),
    (lambda d: d["sampling"].update(rollouts=2), "sampling/rollouts is 2 but the protocol's settings say 3"),
])
def test_a_forged_sampled_submission_is_rejected_with_the_reason(sampled, edit, says):
    _, document = sampled
    problems = submission.validate(_forge(document, edit))
    assert any(says in p for p in problems), problems


def test_a_1_0_file_stays_valid_and_rollouts_need_a_sampled_protocol(run_and_file):
    _, out = run_and_file
    document = json.loads(out.read_text())
    assert document["schema_version"] == "1.1" and "sampling" not in document
    assert submission.validate(_forge(document, lambda d: d.update(schema_version="1.0"))) == []
    problems = submission.validate(_forge(document, lambda d: d.update(sampling={"rollouts": 1, "seed": 0})))
    assert problems == [f"protocol {document['protocol']['name']} does not sample, but the file carries rollouts"]
