"""Every file of a submissions folder, judged: accepted, or rejected with its reason.

    submissions folder -> [intake here: read, pr_eval.compare.submission.validate, then the
        leaderboard's rules] -> accepted Entries -> pr_eval.leaderboard.rank -> site

Submissions are untrusted input. Beyond `pr-eval submit --validate` (schema, hashes, protocol
fingerprint against its settings, scores against predictions, a sampled run's rollouts), a
leaderboard asks:
- the protocol is one pr-eval runs now, with its registered settings (a retired protocol, an
  unknown one, or a registered name over other settings is refused; a sampled protocol's
  `+samples=K` is the protocol at K rollouts);
- every benchmark is one pr-eval knows and the submission answers exactly its questions, each
  once, under its own task and (where the data says) in its own group (a `--limit` run, questions
  of another dataset, repeated questions, or HR-Bench's cycles regrouped are refused);
- `created` is a date-time, and no two accepted files hold the same answers and scores (a copy
  under another model name, in any order).
A file's reason is its first three problems (the rest are counted).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import __version__, benchmarks
from ..compare.sides import InputError, Side
from ..compare.submission import other_kind, read_submission, sha256, validate
from ..protocol import RETIRED, parse_overrides, with_overrides

# A submission bigger than this is refused unread (a 4,000-question MVBench file is ~3 MB; at 32
# rollouts a question, ~30 MB).
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class Entry:
    """An accepted submission."""

    path: Path
    document: dict
    side: Side
    id: str = ""                       # its page's name: the first 16 hex digits of its checksum

    @property
    def model(self) -> str:
        return self.document["model"]["name"]


@dataclass
class Rejected:
    path: Path
    reason: str


@dataclass
class Intake:
    accepted: list[Entry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def protocol_refusal(protocol: dict) -> str | None:
    """Why a (validated) submission's protocol is not rankable, or None."""
    from ..families import PROTOCOLS

    name, fingerprint = protocol["name"], protocol["fingerprint"]
    retired = RETIRED.get(name) or next((r for r in RETIRED.values() if r["fingerprint"] == fingerprint), None)
    if retired is not None:
        return (f"protocol {name} ({fingerprint}) was retired on {retired['retired']}: {retired['reason']}; "
                f"re-run under {retired['successor']}")
    base, _, changed = name.partition("+")
    registered = PROTOCOLS.get(base)
    if registered is None:
        return f"protocol {name!r} is not one pr-eval {__version__} runs (known: {', '.join(sorted(PROTOCOLS))})"
    if changed:
        overridden = parse_overrides(name)
        if overridden is None or set(overridden[1]) != {"samples_per_question"} or registered.sampling is None:
            return (f"protocol {name} is {base} with changed settings ({changed}); the leaderboard ranks "
                    "protocols as registered (a sampled protocol's +samples=K excepted)")
        registered = with_overrides(registered, **overridden[1])
        if registered.name != name:  # "+samples=K" where K is the protocol's own
            return f"protocol {name} is not a name pr-eval gives ({registered.name} is)"
    if registered.fingerprint != fingerprint:
        return (f"protocol {name} has fingerprint {fingerprint}, but pr-eval {__version__}'s {registered.name} is "
                f"{registered.fingerprint}: its settings differ from the registered protocol's")
    return None


def question_refusal(document: dict, questions: Callable[[str], dict]) -> str | None:
    """Why the submission's questions are not its benchmarks' whole question sets (each question
    once, under its own task and, where the data says, its own group), or None."""
    for name, entry in document["benchmarks"].items():
        own = benchmarks.find(name)
        if own is None:
            return f"benchmark {name!r} is not one pr-eval {__version__} knows"
        leaves = [f"{own.task}_{s}" for s in own.subtasks] or [own.task]
        stray = sorted(set(entry["tasks"]) - set(leaves))
        if stray:
            return f"{name}: {stray[0]!r} is not one of its tasks ({', '.join(leaves[:3])}{' ...' if len(leaves) > 3 else ''})"
        expected = questions(name)
        mine = [p for p in document["predictions"] if p["benchmark"] == name]
        twice = [q for q, k in Counter(p["sample_id"] for p in mine).items() if k > 1]
        if twice:
            return f"{name}: question {twice[0]!r} is answered {Counter(p['sample_id'] for p in mine)[twice[0]]} times"
        got = {p["sample_id"] for p in mine}
        if got != set(expected):
            missing, extra = sorted(set(expected) - got), sorted(got - set(expected))
            text = f"{name}: answers {len(got & set(expected))} of the benchmark's {len(expected)} questions"
            if missing:
                text += f" (misses {len(missing)}, e.g. {missing[0]!r})"
            if extra:
                text += f" and {len(extra)} that are not its questions (e.g. {extra[0]!r})"
            limit = document["run"].get("limit")
            return text + (f"; the run used --limit {limit}" if limit else "") + "; a leaderboard ranks whole benchmarks"
        for p in mine:
            task, group = expected[p["sample_id"]]
            if task is not None and p["task"] != task:
                return f"{name}: question {p['sample_id']!r} is under task {p['task']!r}; its task is {task!r}"
            if group and p.get("group") != group:
                return (f"{name}: question {p['sample_id']!r} is in group {p.get('group')!r}; the data puts it in "
                        f"{group!r} (the benchmark's score averages over these groups)")
    return None


def copy_key(document: dict) -> str:
    """What makes two submissions the same: one protocol, and every question's answer and scores,
    in any order, whatever the files' other fields say."""
    return sha256([document["protocol"]["fingerprint"],
                   sorted([p["benchmark"], p["sample_id"], p["answer"], p["scores"]] for p in document["predictions"])])


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def judge(path: Path, questions: Callable[[str], dict]) -> tuple[dict | None, Side | None, str | None]:
    """(document, side, None) for an acceptable file, else (…, None, its reason)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return None, None, f"{size} bytes, over the leaderboard's {MAX_BYTES}-byte limit"
        document = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except (ValueError, RecursionError) as exc:
        return None, None, f"not valid JSON ({str(exc)[:200] or type(exc).__name__})"
    except OSError as exc:
        return None, None, f"cannot read it ({exc.strerror or exc})"
    try:
        return (document, *_check(path, document, questions))
    except (ValueError, RecursionError, OverflowError, TypeError, KeyError) as exc:
        # the checks' own assumptions broken by a file built to break them: the file, not the build
        return document, None, f"cannot be checked ({type(exc).__name__}: {str(exc)[:200]})"


def _check(path: Path, document, questions: Callable[[str], dict]) -> tuple[Side | None, str | None]:
    kind = other_kind(document)
    if kind:
        return None, f"it is {kind}, not a submission"
    problems = validate(document)
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        return None, "; ".join(problems[:3]) + more
    try:
        _dt.datetime.fromisoformat(document["created"])
    except ValueError:
        return None, f"created {document['created'][:40]!r} is not an ISO 8601 date-time"
    try:
        reason = protocol_refusal(document["protocol"]) or question_refusal(document, questions)
    except InputError as exc:  # a benchmark whose questions this machine cannot load: this file only
        reason = str(exc)
    if reason:
        return None, reason
    try:
        return read_submission(path, document), None
    except InputError as exc:
        return None, str(exc)


def intake(folder: Path, questions: Callable[[str], dict]) -> Intake:
    """Every *.json file under `folder` (sorted by path), judged. Of files with the same
    predictions the earliest (by `created`) is kept and the later ones are copies; when the earliest
    time is shared, none is kept. (`created` is the submitter's word: without the run folders a
    leaderboard cannot tell an original from a copy dated earlier.)"""
    judged = Intake()
    kept: list[Entry] = []
    for path in sorted(p for p in folder.rglob("*.json") if p.is_file() and not p.is_symlink()):
        document, side, reason = judge(path, questions)
        if reason is not None:
            judged.rejected.append(Rejected(path, reason))
        else:
            kept.append(Entry(path, document, side, id=document["checksum"][:16]))
    groups: dict[str, list[Entry]] = {}
    for entry in kept:
        groups.setdefault(copy_key(entry.document), []).append(entry)
    for group in groups.values():
        group.sort(key=lambda e: str(e.document["created"]))
        first = group[0]
        if len(group) > 1 and str(group[1].document["created"]) == str(first.document["created"]):
            names = ", ".join(e.path.name for e in group)
            judged.rejected += [Rejected(e.path, f"the same predictions as {names}, written at the same time: which "
                                                 "is the original cannot be told") for e in group]
            continue
        judged.accepted.append(first)
        judged.rejected += [Rejected(e.path, f"its predictions are those of {first.path.name} (model {first.model}), "
                                             "submitted earlier: a copy") for e in group[1:]]
    judged.accepted.sort(key=lambda e: str(e.path))
    judged.rejected.sort(key=lambda r: str(r.path))
    return judged


class QuestionSets:
    """Each benchmark's questions, {sample_id: (its task, its group)}: from a file ({benchmark:
    [sample_id, ...]}: tasks and groups then unchecked) or, without one, from pr-eval's own data
    for it (pr_eval.data.load_samples with `spec`, as a run loads it). InputError, for the files
    of that benchmark, when neither can give them."""

    def __init__(self, spec: str | None = None, file: Path | None = None):
        self.spec, self.cache = spec, {}
        self.given = None
        if file is not None:
            try:
                given = json.loads(Path(file).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"--questions {file}: cannot read it ({exc})") from None
            if not isinstance(given, dict) or not all(isinstance(v, list) for v in given.values()):
                raise InputError(f"--questions {file}: expected {{benchmark: [sample_id, ...]}}")
            self.given = {k: {str(x): (None, None) for x in v} for k, v in given.items()}

    def __call__(self, benchmark: str) -> dict:
        if benchmark not in self.cache:
            self.cache[benchmark] = self._load(benchmark)
        if isinstance(self.cache[benchmark], InputError):
            raise self.cache[benchmark]
        return self.cache[benchmark]

    def _load(self, benchmark: str) -> dict | InputError:
        if self.given is not None:
            if benchmark not in self.given:
                return InputError(f"--questions lists no questions of {benchmark}, so its submissions cannot be judged")
            return self.given[benchmark]
        from ..errors import DataError
        from ..data.load import load_samples

        own = benchmarks.get(benchmark)
        try:
            _, samples = load_samples(benchmark, self.spec)
        except (DataError, OSError, ValueError) as exc:
            return InputError(f"the questions of {benchmark} cannot be loaded here ({' '.join(str(exc).split())[:300]}); "
                              "give them with --questions FILE")
        return {s.sample_id: (f"{own.task}_{s.meta['subtask']}" if own.subtasks else own.task,
                              str(s.meta.get("group") or "") or None) for s in samples}
