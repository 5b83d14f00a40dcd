"""Leaderboard submission files: one finished run as one versioned, checksummed JSON document.

    pr-eval submit RUN_DIR [--output FILE]         write it (default RUN_DIR/submission.json)
    pr-eval submit --validate FILE [--run RUN_DIR] check one: schema, checksums, consistency

The format is pr_eval/schemas/submission-v1.schema.json (every field documented there and in
docs/submission.md). A submission carries the model, the protocol (name, fingerprint and the full
record), per-benchmark scores and tool statistics from results.json, and one prediction per
question (extracted answer, scores, and the hash of the question's full per-sample record).

Integrity, from the inside out:
- each prediction's `record_sha256` hashes its full record in samples_<task>.jsonl (trajectory
  included), so `--run RUN_DIR` can tie every prediction to what the model actually wrote;
- `records_sha256` hashes the predictions: a changed, added or removed prediction shows;
- `checksum` hashes the whole file but itself: a changed model name or score shows;
- the protocol fingerprint is recomputed from its settings, and each benchmark's accuracy and
  headline score from its predictions, so the numbers cannot drift from the samples.
Hashes detect edits and corruption, not a forger who recomputes them; docs/submission.md says
what a leaderboard should do beyond this.

    ... -> score -> run folder (read by pr_eval.run.folder, checked by pr_eval.compare.sides.read_run)
        -> [submission here: build, validate] -> a leaderboard, or a baseline side for
           `pr-eval compare` / `check` (`read_submission`, which pr_eval.compare.gate calls)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

from .. import __version__, benchmarks
from ..benchmarks import grouped_metric
from ..families import family_of_record
from ..files import write_atomic
from ..protocol import fingerprint_of
from ..run.folder import RunError, Unreadable, read_json, read_summary
from ..scoring.answers import extract_answer
from ..scoring.metrics import TOOL_STATS, grouped_mean
from ..trajectory import Trajectory, last_assistant_text
from .sides import Benchmark, InputError, Side, read_records, read_run, rollout_means, schema_problems

SCHEMA_FILE = "submission-v1.schema.json"
SCHEMA_NAME = "pr-eval-submission"
SCHEMA_VERSION = "1.1"  # 1.1 added `sampling` and per-question `rollouts` (sampled runs, Avg@K)
# Scores are copied from results.json and recomputed from the predictions; float sums may differ
# in the last bits, an edited score does not.
TOLERANCE = 1e-9


# --- Canonical form and hashes --------------------------------------------------------------------

def canonical(value) -> bytes:
    """The bytes every hash is taken over: JSON with sorted keys, no spaces, ASCII escapes and no
    NaN (the canonical form of pr_eval.protocol.fingerprint_of). Python's float formatting makes it
    exact for files read and re-written by Python's json module."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def sha256(value) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def records_sha256(predictions: list[dict]) -> str:
    """Hash of the predictions (in file order, which `build` sorts by task and sample_id)."""
    return sha256(predictions)


def checksum(document: dict) -> str:
    """Hash of the whole document except its own checksum field."""
    return sha256({k: v for k, v in document.items() if k != "checksum"})


# --- Building a submission -------------------------------------------------------------------------

def prediction(record: dict, task: str, benchmark: str) -> dict:
    """One question's entry: its answer and scores, and the hash of its full record."""
    answer_text = last_assistant_text(record.get("messages") or [])
    answer = extract_answer(answer_text)
    if isinstance(record.get("family"), str):  # a peer's protocol: the answer its rule reads
        traj = Trajectory.from_record(record)
        answer = family_of_record(traj).final_answer(traj)
    metrics = record.get("metrics") or {}
    main = benchmarks.main_metric(benchmark)
    return {
        "task": task,
        "sample_id": str(record["sample_id"]),
        "doc_id": record.get("doc_id"),
        "benchmark": benchmark,
        "answer": answer,
        "stop_reason": record.get("stop_reason"),
        "tool_calls": len(record.get("tool_calls") or []),
        "scores": {name: metrics.get(name) for name in dict.fromkeys(["accuracy", main])},
        "record_sha256": sha256(record),
        **({"group": record["group"]} if isinstance(record.get("group"), str) else {}),
    }


def sampled_prediction(rollouts: list[dict], task: str, benchmark: str) -> dict:
    """One question of a sampled run (schema 1.1): its scores are the means over its rollouts
    (their mean over questions is Avg@K), `tool_calls` their sum, `record_sha256` the hash of the
    rollouts' record hashes, and `rollouts` each rollout's own entry (index, seed, answer, stop,
    calls, scores, record hash). A question has no single answer or stop: both are null."""
    parts = []
    for record in sorted(rollouts, key=_rollout_order):
        own = prediction(record, task, benchmark)
        parts.append({"rollout": record.get("rollout"), "seed": record.get("seed"),
                      **{k: own[k] for k in ("answer", "stop_reason", "tool_calls", "scores", "record_sha256")}})
    first = prediction(rollouts[0], task, benchmark)
    return {**first, "answer": None, "stop_reason": None, "tool_calls": sum(p["tool_calls"] for p in parts),
            "scores": rollout_means([p["scores"] for p in parts]),
            "record_sha256": sha256([p["record_sha256"] for p in parts]), "rollouts": parts}


def _rollout_order(record: dict) -> tuple:
    rollout = record.get("rollout")
    return (0, rollout, "") if isinstance(rollout, int) else (1, 0, str(rollout))


def task_predictions(records: list[dict], task: str, benchmark: str, sampled: bool) -> dict[str, dict]:
    """sample_id -> the question's prediction, from its records in samples_<task>.jsonl (a sampled
    run's: its rollouts)."""
    if not sampled:
        return {str(r.get("sample_id")): prediction(r, task, benchmark) for r in records}
    by_question: dict[str, list[dict]] = {}
    for record in records:
        by_question.setdefault(str(record.get("sample_id")), []).append(record)
    return {q: sampled_prediction(group, task, benchmark) for q, group in by_question.items()}


def benchmark_entry(name: str, tasks: list[str], n: int, row: dict) -> dict:
    """A benchmark's figures from its results.json row (its task's or its group's)."""
    main = benchmarks.main_metric(name)
    own = benchmarks.find(name)
    score_names = ["accuracy", main] + list(own.breakdown if own else ())
    return {"tasks": list(tasks), "n": n, "metric": main, "score": row.get(main),
            "scores": {k: row.get(k) for k in dict.fromkeys(score_names)},
            "tool_stats": {k: row.get(k) for k in TOOL_STATS}}


def build(folder: str | Path) -> dict:
    """The submission of a finished run folder (read and checked by pr_eval.compare.sides.read_run)."""
    folder = Path(folder)
    try:
        summary = read_summary(folder)
    except RunError as exc:
        raise InputError(str(exc)) from None
    side = read_run(folder, summary)  # refuses unfinished, incomplete or inconsistent folders
    meta = summary.get("pr_eval") or {}
    protocol = meta.get("protocol") or {}
    if not protocol.get("fingerprint") or not isinstance(protocol.get("settings"), dict):
        raise InputError(f"{folder}/results.json records no protocol fingerprint and settings; "
                         "a submission needs them (re-run with this pr-eval)")
    sampling = protocol["settings"].get("sampling")
    benchmarks, predictions = {}, []
    for name, bench in side.benchmarks.items():
        if not bench.reported:
            raise InputError(f"{folder}: results.json has no figures for the whole of {name} (tasks "
                             f"{', '.join(bench.tasks)}); a submission needs whole benchmarks")
        benchmarks[name] = benchmark_entry(name, bench.tasks, len(bench.samples), bench.reported)
        for task in bench.tasks:
            records = read_records(folder / f"samples_{task}.jsonl")
            predictions += task_predictions(records, task, name, bool(sampling)).values()
    predictions.sort(key=lambda p: (p["task"], p["sample_id"]))
    document = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pr_eval_version": str(meta.get("version") or "unknown"),
        "submitted_with": __version__,
        "model": {"name": str(meta.get("model") or "unknown"), "path": meta.get("model_path"),
                  "engine": meta.get("engine")},
        "protocol": {"name": protocol.get("name"), "fingerprint": protocol["fingerprint"], "record": protocol},
        "data": meta.get("data") or {},
        "run": {"folder": folder.resolve().name, "started": meta.get("started"),
                "tasks": list(meta.get("tasks") or []), "limit": meta.get("limit")},
        **({"sampling": {"rollouts": sampling.get("rollouts"), "seed": (summary.get("run") or {}).get("seed") or 0}}
           if sampling else {}),
        "benchmarks": benchmarks,
        "predictions": predictions,
        "records_sha256": records_sha256(predictions),
    }
    document["checksum"] = checksum(document)
    return document


def write(document: dict, path: Path) -> None:
    """Atomically: a reader never sees half a file."""
    write_atomic(path, json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


# --- Validating a submission ---------------------------------------------------------------------

def validate(document) -> list[str]:
    """Every problem of a submission document ([] when it is valid): schema, then both hashes,
    the protocol fingerprint, and the scores against the predictions."""
    if not isinstance(document, dict):
        return ["the file is not a JSON object"]
    version = document.get("schema_version")
    if isinstance(version, str) and not version.startswith("1."):
        return [f"schema_version {version!r} is not supported by pr-eval {__version__}, which reads 1.x; upgrade pr-eval"]
    problems = schema_problems(document, SCHEMA_FILE)
    if not problems:  # with a broken structure the checks below would only repeat the schema's words
        try:
            records_sha256(document["predictions"])
        except (ValueError, RecursionError) as exc:  # NaN, infinities: not canonical JSON
            return [f"the predictions hold a value canonical JSON cannot represent ({type(exc).__name__}: {exc})"]
        if records_sha256(document["predictions"]) != document["records_sha256"]:
            problems.append("records_sha256 does not match the predictions: a prediction was changed, added "
                            "or removed after `pr-eval submit` wrote the file")
        problems += protocol_problems(document["protocol"])
        problems += sampling_problems(document)
        problems += consistency_problems(document["benchmarks"], document["predictions"])
    if isinstance(document.get("checksum"), str):
        try:
            if checksum(document) != document["checksum"]:
                problems.append("checksum does not match the contents: a field was changed after "
                                "`pr-eval submit` wrote the file (the checksum covers every field but itself)")
        except (ValueError, RecursionError) as exc:  # NaN or infinity, or nested past Python's limit
            problems.append(f"the file holds a value canonical JSON cannot represent ({type(exc).__name__})")
    return problems


def protocol_problems(protocol: dict) -> list[str]:
    record = protocol["record"]
    found = []
    if record.get("name") != protocol["name"] or record.get("fingerprint") != protocol["fingerprint"]:
        found.append("protocol name/fingerprint differ from protocol/record's")
    recomputed = fingerprint_of(record["settings"])
    if recomputed != protocol["fingerprint"]:
        found.append(f"protocol fingerprint {protocol['fingerprint']} does not match its settings "
                     f"(they hash to {recomputed}): the protocol record was edited")
    return found


def sampling_problems(document: dict) -> list[str]:
    """A sampled run's submission (1.1): `sampling` as its protocol says, every question with
    exactly rollouts 0..K-1, each with the seed the run's seed rule gives it, and the question's
    figures derived from its rollouts'. A run cut down to its lucky rollouts, or reseeded, shows."""
    from ..loop.sampling import rollout_seed

    declared = (document["protocol"]["record"]["settings"].get("sampling") or {})
    sampling = document.get("sampling")
    has_rollouts = [p for p in document["predictions"] if "rollouts" in p]
    if not declared:
        if sampling is not None or has_rollouts:
            return [f"protocol {document['protocol']['name']} does not sample, but the file carries rollouts"]
        return []
    if sampling is None:
        return [f"protocol {document['protocol']['name']} samples {declared.get('rollouts')} rollouts per question, "
                "but the file has no `sampling` (schema 1.1 carries sampled runs)"]
    k, seed = sampling["rollouts"], sampling["seed"]
    if k != declared.get("rollouts"):
        return [f"sampling/rollouts is {k} but the protocol's settings say {declared.get('rollouts')}"]
    found = []
    for p in document["predictions"]:
        where = f"prediction ({p['task']}, {p['sample_id']})"
        parts = p.get("rollouts")
        if not isinstance(parts, list) or [r["rollout"] for r in parts] != list(range(k)):
            found.append(f"{where} must hold rollouts 0..{k - 1} in order")
            continue
        reseeded = [r["rollout"] for r in parts if r["seed"] != rollout_seed(seed, p["task"], p["sample_id"], r["rollout"])]
        if reseeded:
            found.append(f"{where}: rollout(s) {', '.join(map(str, reseeded))} do not carry the seed run seed {seed} gives them")
        means = rollout_means([r["scores"] for r in parts])
        if (p["tool_calls"] != sum(r["tool_calls"] for r in parts)
                or p["record_sha256"] != sha256([r["record_sha256"] for r in parts])
                or any(not _close(p["scores"].get(m), means.get(m)) for m in set(means) | set(p["scores"]))):
            found.append(f"{where}: its scores, tool_calls or record_sha256 are not those of its rollouts")
    return found


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a)) + 1e-12


def consistency_problems(benchmarks: dict, predictions: list[dict]) -> list[str]:
    """Each benchmark's n, tasks and per-sample scores must add up to its figures."""
    found = []
    seen, by_benchmark = set(), {}
    for p in predictions:
        key = (p["task"], p["sample_id"])
        if key in seen:
            found.append(f"predictions: ({p['task']}, {p['sample_id']}) occurs twice")
        seen.add(key)
        by_benchmark.setdefault(p["benchmark"], []).append(p)
    for name in sorted(set(by_benchmark) - set(benchmarks)):
        found.append(f"predictions name benchmark {name!r}, which benchmarks does not list")
    for name, entry in benchmarks.items():
        mine = by_benchmark.get(name, [])
        if entry["n"] != len(mine):
            found.append(f"benchmarks/{name}/n is {entry['n']} but {len(mine)} predictions belong to it")
        stray = sorted({p["task"] for p in mine} - set(entry["tasks"]))
        if stray:
            found.append(f"benchmarks/{name}: predictions of tasks {', '.join(stray)} are not among its tasks")
        if entry["score"] != entry["scores"].get(entry["metric"]):
            found.append(f"benchmarks/{name}/score is {entry['score']} but scores/{entry['metric']} is "
                         f"{entry['scores'].get(entry['metric'])}")
        for metric in dict.fromkeys(["accuracy", entry["metric"]]):
            scored = [p for p in mine if p["scores"].get(metric) is not None]
            values = [p["scores"][metric] for p in scored]
            stated = entry["scores"].get(metric)
            if not values or stated is None:
                continue
            grouped = (metric == grouped_metric(name) and all(isinstance(p.get("group"), str) for p in scored))
            mean = (grouped_mean((p["scores"][metric], p["group"]) for p in scored) if grouped
                    else sum(values) / len(values))
            if abs(mean - stated) > TOLERANCE * max(1.0, abs(mean)) + 1e-12:
                found.append(f"benchmarks/{name}/scores/{metric} is {stated} but the mean over its "
                             f"{len(values)} predictions is {mean}")
    return found


def against_run(document: dict, folder: Path) -> list[str]:
    """Every prediction against the run folder it claims to come from (same records, same
    answers and scores), and the run against the submission: every question of the run must be
    there (a dropped prediction changes a score as surely as an edited one), and the protocol must
    be the one the run's own records carry (a protocol edited with its fingerprint recomputed
    still differs from the fingerprint stamped on every trajectory)."""
    found = []
    records: dict[tuple[str, str], list[dict]] = {}
    run_tasks = sorted(path.name[len("samples_"):-len(".jsonl")] for path in folder.glob("samples_*.jsonl"))
    claimed = {p["task"] for p in document["predictions"]}
    for task in sorted(claimed | set(run_tasks)):
        path = folder / f"samples_{task}.jsonl"
        if not path.exists():
            found.append(f"{folder} has no samples_{task}.jsonl")
            continue
        for record in read_records(path):
            records.setdefault((task, str(record.get("sample_id"))), []).append(record)
    sampled = "sampling" in document
    for p in document["predictions"]:
        held = records.get((p["task"], p["sample_id"]))
        if held is None:
            if (folder / f"samples_{p['task']}.jsonl").exists():
                found.append(f"prediction ({p['task']}, {p['sample_id']}) is not in {folder}")
            continue
        if task_predictions(held, p["task"], p["benchmark"], sampled).get(p["sample_id"]) != p:
            found.append(f"prediction ({p['task']}, {p['sample_id']}) differs from its record in {folder}")
    submitted = {(p["task"], p["sample_id"]) for p in document["predictions"]}
    missing = [key for key in records if key not in submitted]
    if missing:
        task, sample_id = missing[0]
        found.append(f"{len(missing)} question(s) of the run are missing from the submission, e.g. ({task}, "
                     f"{sample_id}): a submission holds every question its run answered")
    claimed_fingerprint = document["protocol"]["fingerprint"]
    carried = sorted({str(r.get("fingerprint")) for held in records.values() for r in held if r.get("fingerprint")})
    if carried and carried != [claimed_fingerprint]:
        found.append(f"protocol fingerprint {claimed_fingerprint} differs from {', '.join(carried)}, the one the "
                     f"run's records carry: the protocol was changed after the run")
    return found


def read_submission(path: Path, document: dict) -> Side:
    """A submission file (`document`: its parsed contents), validated in full (schema, checksums,
    scores) before it is trusted."""
    problems = validate(document)
    if problems:
        raise InputError(f"{path} is not a valid submission: " + "; ".join(problems))
    benchmarks = {name: Benchmark(name, tasks=list(entry["tasks"]), reported=dict(entry["scores"]))
                  for name, entry in document["benchmarks"].items()}
    # validate has checked that every prediction is unique and names a listed benchmark and task
    for prediction in document["predictions"]:
        key = (prediction["task"], prediction["sample_id"])
        benchmarks[prediction["benchmark"]].samples[key] = prediction["scores"]
        if isinstance(prediction.get("group"), str):  # HR-Bench's cycles, for its grouped metric
            benchmarks[prediction["benchmark"]].groups[key] = prediction["group"]
    protocol = document["protocol"]
    return Side(label=str(path), kind="submission", model=document["model"]["name"], protocol=protocol["name"],
                fingerprint=protocol["fingerprint"], benchmarks=benchmarks, data=document.get("data") or {})


def validate_file(path: str | Path, run: str | Path | None = None) -> tuple[dict | None, list[str]]:
    """(the document, its problems). Unreadable or non-JSON files are problems too."""
    path = Path(path)
    try:
        document = read_json(path)
    except Unreadable as exc:
        return None, [str(exc)]
    other = other_kind(document)
    if other:  # one line saying what the file is, not every schema rule it breaks
        return document, [f"{path} is {other}, not a submission (`pr-eval submit RUN_DIR` writes one)"]
    problems = validate(document)
    if run is not None and not problems:
        problems = against_run(document, Path(run))
    return document, problems


def other_kind(document) -> str | None:
    """What a pr-eval file that is not a submission is (a check baseline, a run's results.json or
    run.json), or None."""
    if not isinstance(document, dict) or document.get("schema") == SCHEMA_NAME:
        return None
    if document.get("schema") == "pr-eval-reference/1":
        return "a reference file of published numbers (for `pr-eval check --baseline`)"
    if document.get("schema") == "pr-eval-run/1":
        return "a run's run.json"
    if "pr_eval" in document and "metrics" in document and "lmms_eval" in document:
        return "a run's results.json"
    return None


# --- Command line ----------------------------------------------------------------------------------
