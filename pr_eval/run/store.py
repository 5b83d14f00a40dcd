"""The run store: one folder per run, written while the run goes, so a killed run can be finished.

    results/<model>-<protocol>-<UTC time>/
        run.json             what was run: configuration, protocol record, versions, git revision,
                             data sources and row counts (written atomically at the start)
        trajectories.jsonl   the journal: one line per finished sample, appended as it finishes
        images/<task>/<doc_id>/<k>.<ext>   the images the model saw (written before the line)
        samples_<task>.jsonl, results.json, report.html   written by pr_eval.run.evaluate when the run ends

Why a journal of our own: lmms-eval hands the model every request at once and keeps the answers
in memory until all are done (its --use_cache commits only then), so a crash loses the whole run.
Here each finished sample is one line, written with a single write and flushed to disk before the
next sample is handed on. A kill at any moment therefore leaves every earlier line whole and at
most one partial last line; `parse_journal` ignores that tail and `RunStore.open` cuts it off
before appending. A sample is in the journal or it is not: resuming runs exactly the samples
without a line, and answers the others with their saved trajectories.

Test hook: PR_EVAL_FAULT=kill-mid-write:N cuts this process's N-th journal line short and kills
it (pr_eval.run.faults, the one seam for injected crashes).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_atomic
from ..trajectory import Trajectory, record_json
from . import faults
from .saved_images import save_images

SCHEMA = "pr-eval-run/1"
RUN_FILE = "run.json"
JOURNAL_FILE = "trajectories.jsonl"
RESULTS_FILE = "results.json"


class StoreError(Exception):
    """A run folder cannot be used (not a run folder, a damaged journal, another process on it)."""


class ResumeRefused(StoreError):
    """The run folder belongs to a different evaluation than the one asked for."""


def sample_key(task: str, doc_id, rollout: int | None = None) -> str:
    """The journal's key of a sample: lmms-eval's task name and document index, and for a sampled
    protocol the rollout (`task/doc_id#r`): a killed sampled run resumes rollout by rollout."""
    return f"{task}/{doc_id}" if rollout is None else f"{task}/{doc_id}#{rollout}"


def trajectory_key(traj: Trajectory) -> str:
    return sample_key(traj.task, traj.meta.get("doc_id"), traj.rollout)



def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --- The journal: parsing is pure, files are touched only by RunStore -------------------------

@dataclass
class Journal:
    """What a journal file holds: its records by key (first record of a key wins, in file order),
    `end`: the byte length of its complete lines (a crash leaves a partial line after it),
    `lines`: complete lines read, `duplicates`: keys seen again after their first record."""

    records: dict[str, dict] = field(default_factory=dict)
    end: int = 0
    lines: int = 0
    duplicates: list[str] = field(default_factory=list)


def journal_record(line: bytes) -> dict | None:
    """The record of one journal line, or None when the line is not one (cut short, damaged)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(record, dict) and isinstance(record.get("key"), str)
            and isinstance(record.get("trajectory"), dict) and "sample_id" in record):
        return None
    return record


def parse_journal(data: bytes) -> Journal:
    """The records of a journal's bytes.

    Only lines ending in a newline count: the bytes after the last newline are a write that a
    crash cut short, and are left out (so any prefix of a journal yields a prefix of its records).
    A complete line that is not a record cannot come from a crash, only from an edit or damage,
    and raises StoreError naming the line."""
    journal = Journal()
    start = 0
    while (newline := data.find(b"\n", start)) != -1:
        line = data[start:newline]
        if line.strip():
            record = journal_record(line)
            if record is None:
                raise StoreError(f"line {journal.lines + 1} of the journal is not a sample record "
                                 f"({line[:80]!r}...); a crash only ever damages the last line, so the file "
                                 f"was changed by something else: remove that line to rerun its sample")
            if record["key"] in journal.records:
                journal.duplicates.append(record["key"])
            else:
                journal.records[record["key"]] = record
        journal.lines += 1
        start = newline + 1
        journal.end = start
    return journal


def journal_line(record: dict) -> bytes:
    """One record as one journal line (NaN and other non-standard values as JSON allows them).
    Text UTF-8 cannot encode (a lone surrogate) is written as a JSON escape, which reads back as
    the same string: no record is ever refused."""
    text = json.dumps(record, ensure_ascii=False, default=str)
    assert "\n" not in text  # json.dumps escapes newlines inside strings
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode("ascii")


def stored_answer(record: dict) -> str:
    """The adapter's answer to lmms-eval for a journaled sample: the trajectory as JSON, the same
    text `Trajectory.to_json` gave when the sample ran (so scores come out the same)."""
    return record_json(record["trajectory"])


# --- Resuming: which run, and whether it is the same evaluation -------------------------------

def resume_mismatches(saved: dict, wanted: dict) -> list[str]:
    """How the run a folder holds (`saved`: its run.json) differs from the one a command asks for
    (`wanted`: the run.json it would write), one readable line per difference; [] = same run.

    These are the settings that decide which samples run and how they are scored: model,
    protocol fingerprint, tasks, limit and data. Batch size, schedule and engine may change."""
    problems = []
    if saved.get("model") != wanted.get("model") and saved.get("model_path") != wanted.get("model_path"):
        problems.append(f"model: the run evaluated {saved.get('model')!r}, this command asks for {wanted.get('model')!r}")
    old, new = saved.get("protocol") or {}, wanted.get("protocol") or {}
    if old.get("fingerprint") != new.get("fingerprint"):
        problems.append(f"protocol: the run used {old.get('name')!r} (fingerprint {old.get('fingerprint')}), "
                        f"this command asks for {new.get('name')!r} (fingerprint {new.get('fingerprint')})")
    if set(saved.get("tasks") or []) != set(wanted.get("tasks") or []):
        problems.append(f"tasks: the run has {', '.join(saved.get('tasks') or [])}, "
                        f"this command asks for {', '.join(wanted.get('tasks') or [])}")
    if saved.get("limit") != wanted.get("limit"):
        problems.append(f"limit: the run has --limit {saved.get('limit')}, this command {wanted.get('limit')}")
    if saved.get("data_spec") != wanted.get("data_spec"):
        problems.append(f"data: the run read {saved.get('data_spec')!r}, this command reads {wanted.get('data_spec')!r}")
    judges = [(side.get("judge") or {}).get("fingerprint") for side in (saved, wanted)]
    if judges[0] != judges[1]:
        problems.append(f"judge: the run's judge has fingerprint {judges[0]}, this command's {judges[1]}")
    if saved.get("shard") != wanted.get("shard"):
        problems.append(f"shard: the run is {_shard_text(saved)}, this command asks for {_shard_text(wanted)}")
    if (new.get("settings") or {}).get("sampling") and saved.get("seed") != wanted.get("seed"):
        problems.append(f"seed: the run's rollouts were seeded with {saved.get('seed')}, this command's with {wanted.get('seed')}")
    return problems


def _shard_text(info: dict) -> str:
    return f"shard {info['shard']}" if info.get("shard") else "the whole run (no --shard)"


def data_mismatches(saved: dict, found: dict) -> list[str]:
    """Tasks whose data source changed since the run recorded it (another revision)."""
    problems = []
    for task, record in found.items():
        old = saved.get(task)
        if old and "revision" in old and old.get("revision") != record.get("revision"):
            problems.append(f"data of {task}: the run read revision {old.get('revision')}, "
                            f"the data found now is revision {record.get('revision')}")
    return problems


def refusal(folder: Path, problems: list[str]) -> str:
    return (f"cannot resume {folder}: it is a different evaluation:\n  " + "\n  ".join(problems)
            + f"\nResume it with the options it was started with (see \"command\" in {folder / RUN_FILE}),"
              " or leave out --resume to start a new run.")


def read_run_info(folder: Path) -> dict:
    path = Path(folder) / RUN_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{folder} is not a pr-eval run folder: it has no {RUN_FILE}") from None
    except ValueError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("schema") != SCHEMA:
        raise StoreError(f"{path} is not a pr-eval run record (schema {SCHEMA!r} expected)")
    return info


def find_unfinished(root: str | os.PathLike, wanted: dict, finished: bool = False) -> list[tuple[Path, int]]:
    """(folder, saved samples) of each run folder under `root` without results.json whose run.json
    holds the command `wanted` would run (model, protocol fingerprint, tasks, limit, data), the
    most saved first, then the newest: what `--resume` without a folder resumes. `finished`: the
    folders WITH results.json instead (a shard that has nothing left to do)."""
    candidates = []
    for info_path in Path(root).glob(f"*/{RUN_FILE}"):
        folder = info_path.parent
        if (folder / RESULTS_FILE).exists() != finished:
            continue
        try:
            info = read_run_info(folder)
        except StoreError:
            continue
        same = resume_mismatches(info, {**info, **wanted})
        if not same:
            candidates.append((saved_count(folder), info.get("started") or "", info_path.stat().st_mtime, folder))
    return [(c[3], c[0]) for c in sorted(candidates, key=lambda c: c[:3], reverse=True)]


def saved_count(folder: Path) -> int:
    """How many samples a run folder's journal holds (its complete lines)."""
    try:
        with open(folder / JOURNAL_FILE, "rb") as handle:
            return sum(1 for line in handle if line.endswith(b"\n"))
    except OSError:
        return 0


# --- The store --------------------------------------------------------------------------------

class RunStore:
    """An open run folder: its run.json (`info`), the samples already finished (`done`, by key)
    and the journal, held open for appending (and locked, so two processes never write one run)."""

    def __init__(self, folder: Path, info: dict, journal: Journal):
        self.folder = Path(folder)
        self.info = info
        self.done: dict[str, dict] = journal.records
        self._fault = faults.current()
        self._written = 0
        self._lock = threading.Lock()  # a schedule may hand on finished samples from several threads
        path = self.folder / JOURNAL_FILE
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            os.close(self._fd)
            raise StoreError(f"another pr-eval process is writing {self.folder}; wait for it to end "
                             "(two processes on one run would both run its samples)") from None
        if os.fstat(self._fd).st_size > journal.end:  # the partial line a crash left: cut it off
            os.ftruncate(self._fd, journal.end)

    @classmethod
    def create(cls, folder: str | os.PathLike, info: dict) -> RunStore:
        """A new run folder (it must not exist yet) with its run.json and an empty journal."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        info = {"schema": SCHEMA, "resumed": [], **info}
        _write_json(folder / RUN_FILE, info)
        return cls(folder, info, Journal())

    @classmethod
    def open(cls, folder: str | os.PathLike) -> RunStore:
        """An existing run folder, its journal read and a crash's partial last line dropped."""
        folder = Path(folder)
        if not folder.is_dir():
            raise StoreError(f"no run folder {folder}")
        info = read_run_info(folder)
        path = folder / JOURNAL_FILE
        journal = parse_journal(path.read_bytes()) if path.exists() else Journal()
        return cls(folder, info, journal)

    @classmethod
    def resume(cls, folder: str | os.PathLike, wanted: dict) -> RunStore:
        """Open `folder` to finish it, refusing (ResumeRefused, saying what differs) when it holds
        another evaluation than `wanted` (the run.json this command would write). The settings
        that do not change a result (batch size, schedule, engine, command) take the new values."""
        store = cls.open(folder)
        if store.info.get("rescored"):
            store.close()
            raise ResumeRefused(f"{store.folder} is a finished re-scoring of {store.info['rescored'].get('from')} "
                                "(pr-eval rescore), not a run to finish; re-score the run again instead")
        problems = resume_mismatches(store.info, wanted)
        if problems:
            store.close()
            raise ResumeRefused(refusal(store.folder, problems))
        keep = {k: store.info[k] for k in ("started", "data", "resumed", "merged") if k in store.info}
        store.info = {"schema": SCHEMA, **wanted, **keep}
        if "merged" in keep:  # a merge (pr_eval.run.merge) finishing its shards' journals: not a resumption
            store.info.pop("resumed", None)
        else:
            store.info["resumed"] = list(keep.get("resumed") or []) + [utc_now()]
        store.info.pop("finished", None)
        store.save_info()
        return store

    def save_info(self) -> None:
        _write_json(self.folder / RUN_FILE, self.info)

    def record_data(self, found: dict) -> None:
        """Note each task's data record ({task: source record with revision and rows}) in
        run.json; refuses when a task's data is another revision than the run read before."""
        problems = data_mismatches(self.info.get("data") or {}, found)
        if problems:
            raise ResumeRefused(refusal(self.folder, problems))
        data = dict(self.info.get("data") or {})
        if all(data.get(task) == record for task, record in found.items()):
            return
        data.update(found)
        self.info["data"] = data
        self.save_info()

    def check_sample(self, key: str, sample_id: str) -> None:
        """A journaled sample must still be the same question (same sample id) as when it ran."""
        saved = self.done[key].get("sample_id")
        if str(saved) != str(sample_id):
            raise ResumeRefused(refusal(self.folder, [
                f"data: sample {key} was {saved!r} when it ran and is {sample_id!r} now (the data changed)"]))

    def append(self, traj: Trajectory) -> None:
        """Save a finished trajectory: its images, then its journal line, written and flushed to
        disk before returning. A sample already in the journal is not written twice."""
        with self._lock:
            try:
                self._append(traj)
            except OSError as exc:  # the folder became read-only, the disk is full, ...
                raise StoreError(f"cannot save sample {traj.sample_id} in {self.folder}: {exc.strerror or exc} "
                                 f"({exc.filename or JOURNAL_FILE}); the {len(self.done)} samples saved so far are "
                                 "kept: make the folder writable, then run the same command with --resume") from None

    def _append(self, traj: Trajectory) -> None:
        doc_id = traj.meta.get("doc_id")
        key = trajectory_key(traj)
        if key in self.done:
            return
        finished = time.time()
        record = {
            "key": key, "task": traj.task, "doc_id": doc_id, "sample_id": traj.sample_id,
            **({"rollout": traj.rollout} if traj.rollout is not None else {}),
            "trajectory": traj.to_record(),
            "timing": {"started": traj.started_at, "finished": finished,
                       "seconds": None if traj.started_at is None else round(finished - traj.started_at, 4)},
            "images": save_images(self.folder, traj.task, doc_id, traj),
        }
        line = journal_line(record)
        self._write(line)
        self.done[key] = json.loads(line)  # exactly what a resumed run will read back

    def _write(self, line: bytes) -> None:
        self._written += 1
        if faults.cut_write(self._fault, self._written):
            _write_all(self._fd, line[: len(line) // 2])  # written lines outlive a SIGKILL
            faults.kill_self()
        _write_all(self._fd, line)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_json(path: Path, value) -> None:
    """Write JSON atomically: a reader (or a crash) sees the old file or the new one, whole."""
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
