"""Every file of a submissions folder, judged: accepted, or rejected with its reason.

    submissions folder -> [intake here: read, pr_eval.compare.submission.validate, then the
        leaderboard's rules] -> accepted Entries -> pr_eval.leaderboard.rank -> site

Submissions are untrusted input. Beyond `pr-eval submit --validate` (schema, hashes, protocol
fingerprint against its settings, scores against predictions, a sampled run's rollouts), a
leaderboard asks:
- the protocol is one pr-eval runs now, with its registered settings (a retired protocol, an
  unknown one, or a registered name over other settings is refused; a sampled protocol's
  `+samples=K` is the protocol at K rollouts);
- every benchmark is one pr-eval knows and the submission answers exactly its questions (a
  `--limit` run, or questions of another dataset, are refused);
- no two accepted files hold the same predictions (a copy under another model name).
A file's reason is its first three problems (the rest are counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import __version__, benchmarks
from ..compare.sides import InputError, Side
from ..compare.submission import other_kind, read_submission, validate
from ..protocol import RETIRED, with_overrides

# A submission bigger than this is refused unread (a 4,000-question MVBench file is ~3 MB).
MAX_BYTES = 256 * 1024 * 1024


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
        key, _, value = changed.partition("=")
        if key != "samples" or not value.isdigit() or registered.sampling is None:
            return (f"protocol {name} is {base} with changed settings ({changed}); the leaderboard ranks "
                    "protocols as registered (a sampled protocol's +samples=K excepted)")
        registered = with_overrides(registered, samples_per_question=int(value))
    if registered.fingerprint != fingerprint:
        return (f"protocol {name} has fingerprint {fingerprint}, but pr-eval {__version__}'s {registered.name} is "
                f"{registered.fingerprint}: its settings differ from the registered protocol's")
    return None


def question_refusal(document: dict, questions: Callable[[str], set[str]]) -> str | None:
    """Why the submission's questions are not its benchmarks' whole question sets, or None."""
    for name, entry in document["benchmarks"].items():
        if benchmarks.find(name) is None:
            return f"benchmark {name!r} is not one pr-eval {__version__} knows"
        expected = questions(name)
        got = {p["sample_id"] for p in document["predictions"] if p["benchmark"] == name}
        if got == expected:
            continue
        missing, extra = sorted(expected - got), sorted(got - expected)
        text = f"{name}: answers {len(got & expected)} of the benchmark's {len(expected)} questions"
        if missing:
            text += f" (misses {len(missing)}, e.g. {missing[0]!r})"
        if extra:
            text += f" and {len(extra)} that are not its questions (e.g. {extra[0]!r})"
        limit = document["run"].get("limit")
        return text + (f"; the run used --limit {limit}" if limit else "") + "; a leaderboard ranks whole benchmarks"
    return None


def judge(path: Path, questions: Callable[[str], set[str]]) -> tuple[dict | None, Side | None, str | None]:
    """(document, side, None) for an acceptable file, else (…, None, its reason)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return None, None, f"{size} bytes, over the leaderboard's {MAX_BYTES}-byte limit"
        document = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except (ValueError, RecursionError) as exc:
        return None, None, f"not valid JSON ({str(exc)[:200] or type(exc).__name__})"
    except OSError as exc:
        return None, None, f"cannot read it ({exc.strerror or exc})"
    kind = other_kind(document)
    if kind:
        return document, None, f"it is {kind}, not a submission"
    problems = validate(document)
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        return document, None, "; ".join(problems[:3]) + more
    reason = protocol_refusal(document["protocol"]) or question_refusal(document, questions)
    if reason:
        return document, None, reason
    try:
        return document, read_submission(path, document), None
    except InputError as exc:
        return document, None, str(exc)


def intake(folder: Path, questions: Callable[[str], set[str]]) -> Intake:
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
        groups.setdefault(entry.document["records_sha256"], []).append(entry)
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
    """Each benchmark's question ids: from a file ({benchmark: [sample_id, ...]}) or, without one,
    from pr-eval's own data for it (pr_eval.data.load_samples with `spec`, as a run loads it).
    InputError when neither can give them: the leaderboard cannot judge without them."""

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
            self.given = {k: {str(x) for x in v} for k, v in given.items()}

    def __call__(self, benchmark: str) -> set[str]:
        if benchmark not in self.cache:
            if self.given is not None:
                if benchmark not in self.given:
                    raise InputError(f"--questions lists no questions of {benchmark}; add them to judge its submissions")
                self.cache[benchmark] = self.given[benchmark]
            else:
                from ..errors import DataError
                from ..data.load import load_samples

                try:
                    _, samples = load_samples(benchmark, self.spec)
                except (DataError, OSError, ValueError) as exc:
                    raise InputError(f"cannot load the questions of {benchmark} to check submissions against ({exc}); "
                                     "give them with --questions FILE") from None
                self.cache[benchmark] = {s.sample_id for s in samples}
        return self.cache[benchmark]
