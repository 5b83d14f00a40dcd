"""A run's shards (`pr-eval --shard K/N`) put back together into one run folder, equal to the one
the unsharded run writes (timings aside): `pr-eval merge SHARD_RUN... --output DIR`.

    N finished shard folders -> [here: checked to be the N parts of one run; their journals and
        images gathered into the new folder, its run.json the unsharded run's] -> the run
        finished there by `evaluate(..., resume=DIR)`, every sample answered from the journal
        (no engine runs) -> results.json, samples files, report: as the unsharded run's

Finishing from the journal is what `--resume` does after a crash, so the merged folder's figures
are computed by the same code, over the same questions in the same order, as the unsharded run's:
not re-derived from the shards' own results. Refused, naming what differs: shards of different
models, protocols, tasks, limits, data, seeds or N; overlapping or missing shards; unfinished
shards (their own `--resume` finishes them); judged shards (merge them unjudged, then judge the
merged run with `pr-eval rescore`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..data import sources
from ..data.shards import parse
from ..families import get_protocol
from ..files import link_tree, write_atomic
from ..protocol import Protocol
from .folder import RunError
from .store import JOURNAL_FILE, RESULTS_FILE, RUN_FILE, StoreError, parse_journal, read_run_info

# What must be equal across the shards of one run (run.json keys), and how a difference is named.
SAME = {"tasks": "tasks", "limit": "--limit", "data_spec": "data source", "seed": "seed"}


class Done:
    """The engine of a merge: every sample is in the journal, so it is never asked."""

    def __init__(self, name: str):
        self.name = name

    def generate(self, requests, decoding):
        raise RunError("a sample of the merged run is in no shard's journal (a shard folder was changed after it "
                       "finished?)")

    def close(self):
        pass


def check_shards(folders: list[Path]) -> list[dict]:
    """The shards' run.json, checked to be the N finished parts of one run; RunError naming what
    is wrong."""
    infos = []
    for folder in folders:
        try:
            info = read_run_info(folder)
        except StoreError as exc:
            raise RunError(str(exc)) from None
        if not info.get("shard"):
            raise RunError(f"{folder} is not a shard (its run had no --shard); merge takes the folders of one "
                           "run's shards")
        infos.append(info)
    first, name0 = infos[0], folders[0].name
    for folder, info in zip(folders[1:], infos[1:]):
        if info.get("model") != first.get("model") and info.get("model_path") != first.get("model_path"):
            raise RunError(f"{folder.name} and {name0} are not shards of one run: their model differs "
                           f"({info.get('model')!r} vs {first.get('model')!r})")
        versions = [(i.get("versions") or {}).get("pr_eval") for i in (info, first)]
        if versions[0] != versions[1]:
            raise RunError(f"{folder.name} and {name0} ran different pr-eval versions ({versions[0]} vs {versions[1]}): "
                           "run every shard with one version")
        for key, what in SAME.items():
            if info.get(key) != first.get(key):
                raise RunError(f"{folder.name} and {name0} are not shards of one run: their {what} differs "
                               f"({info.get(key)!r} vs {first.get(key)!r})")
        if (info.get("protocol") or {}).get("fingerprint") != (first.get("protocol") or {}).get("fingerprint"):
            raise RunError(f"{folder.name} and {name0} are not shards of one run: their protocols differ "
                           f"({(info.get('protocol') or {}).get('name')} vs {(first.get('protocol') or {}).get('name')})")
        for task in set(info.get("data") or {}) & set(first.get("data") or {}):
            mine, theirs = info["data"][task].get("revision"), first["data"][task].get("revision")
            if mine != theirs:
                raise RunError(f"{folder.name} and {name0} read different data for {task} (revision {mine} vs {theirs})")
    shards = [parse(info["shard"]) for info in infos]
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        raise RunError(f"the shards split the run in different numbers of parts ({', '.join(map(str, counts))}): "
                       "merge the N shards of one --shard K/N split")
    count = counts[0]
    seen: dict[int, Path] = {}
    for folder, shard in zip(folders, shards):
        if shard.index in seen:
            raise RunError(f"shard {shard} is given twice: {seen[shard.index].name} and {folder.name}")
        seen[shard.index] = folder
    missing = [f"{k}/{count}" for k in range(count) if k not in seen]
    if missing:
        raise RunError(f"shard(s) {', '.join(missing)} missing: merge needs all {count} shards of the run")
    unfinished = [folder.name for folder in folders if not (folder / RESULTS_FILE).is_file()]
    if unfinished:
        raise RunError(f"unfinished shard(s): {', '.join(unfinished)}; finish each with its command and --resume, "
                       "then merge")
    if any(info.get("judge") for info in infos):
        raise RunError("the shards were judged; merge does not carry judgements: merge shards run without a judge, "
                       "then judge the merged run with `pr-eval rescore MERGED --judge-base-url URL --judge-model NAME`")
    return infos


def unsharded_command(command) -> list | None:
    """The shard's command without its --shard option: the unsharded run's."""
    if not isinstance(command, list):
        return None
    out, skip = [], False
    for token in command:
        if skip:
            skip = False
        elif token == "--shard":
            skip = True
        elif not str(token).startswith("--shard="):
            out.append(token)
    return out


def merge(folders: list[Path], output: Path, progress=None, command: list[str] | None = None) -> Path:
    """Merge the shard folders into `output` (new or empty) and finish the run there. `command`:
    what the merged run records as its command (default: the shards' without --shard)."""
    folders = [Path(f) for f in folders]
    infos = check_shards(folders)
    recorded = infos[0]["protocol"]
    try:
        protocol = get_protocol(recorded["name"])
    except ValueError as exc:
        raise RunError(f"the shards' protocol cannot be run by this pr-eval: {exc}") from None
    if protocol.fingerprint != recorded.get("fingerprint"):
        raise RunError(f"the shards ran {protocol.name} with fingerprint {recorded.get('fingerprint')}, this "
                       f"pr-eval's is {protocol.fingerprint}: merge with the pr-eval version that ran them")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RunError(f"--output {output} exists and is not empty; give a new folder")
    output.mkdir(parents=True, exist_ok=True)
    try:
        return _merge_into(output, folders, infos, protocol, progress, command)
    except BaseException:  # interrupted or refused: no half-merged folder (it would pass for an unfinished run)
        shutil.rmtree(output, ignore_errors=True)
        raise


def _merge_into(output: Path, folders: list[Path], infos: list[dict], protocol: Protocol, progress,
                command: list[str] | None = None) -> Path:
    first = infos[0]
    with open(output / JOURNAL_FILE, "wb") as journal:
        for folder in folders:
            if (folder / JOURNAL_FILE).is_file():
                data = (folder / JOURNAL_FILE).read_bytes()
                journal.write(data[:parse_journal(data).end])  # complete lines: a finished shard has no other
    for folder in folders:
        if (folder / "images").is_dir():
            link_tree(folder / "images", output / "images")
    # the shards' data records stay: finishing the run here refuses data that changed since (resume's check)
    info = {k: v for k, v in first.items() if k not in ("shard", "finished", "resumed")}
    info["started"] = min(str(i.get("started")) for i in infos)
    info["command"] = list(command) if command is not None else unsharded_command(first.get("command"))
    # which shards it was made of; finishing the run keeps this instead of noting a resumption
    info["merged"] = {"shards": [str(f.resolve()) for f in folders]}
    write_atomic(output / RUN_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    from .evaluate import evaluate

    if progress is None:  # the shards' questions are all answered: no bar to watch
        from tqdm import tqdm

        progress = tqdm(disable=True)
    with sources.environment(sources.DATA_ENV, first.get("data_spec")):
        run = evaluate(model=first["model"], model_path=first["model_path"], tasks=first["tasks"], protocol=protocol,
                       limit=first.get("limit"), output=output.parent, batch_size=first.get("batch_size") or 64,
                       engine=Done(str(first.get("engine"))), resume=output, schedule=first.get("schedule"),
                       seed=first.get("seed"), command=info["command"], progress=progress)
    return run.folder
