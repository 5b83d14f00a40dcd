"""The benchmarks' own releases ("official" sources): located, downloaded if needed, converted.

    data.resolve("vstar", "official") -> DataSource(kind="official", records=[row, ...])

Spec: "official" (the release's hub repo), "official:DIR" (a local copy; a folder holding a
`<benchmark>/` subfolder stands for it), "official:owner/name[@revision]" (a mirror on the hub),
each optionally followed by ",seed=N" (default 0), the seed that orders shuffled options.

What each release holds and how its files become rows is part of the benchmark's module
(`pr_eval.benchmarks.<name>`: its `Release`, with the converter); this module only finds the
files and records where they came from.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .. import benchmarks
from ..benchmarks import Converted, Release
from ..errors import DataError
from .sources import HUB_ID, DataSource, data_option, download

DEFAULT_SEED = 0


# --- Spec and location ---------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str | None, int]:
    """"official[:TARGET][,seed=N]" -> (TARGET or None, seed)."""
    match = re.fullmatch(r"official(?::(?P<target>.*?))?(?:,seed=(?P<seed>-?\d+))?", spec.strip())
    if not match or match.group("target") == "":
        raise DataError(f"data source {spec!r}: expected 'official', 'official:DIR' or "
                        f"'official:owner/name', optionally followed by ',seed=N'")
    seed = int(match.group("seed")) if match.group("seed") is not None else DEFAULT_SEED
    return match.group("target"), seed


def resolve(benchmark: str, spec: str, cache: Path, kind: str = "official", limit: int | None = None) -> DataSource:
    """The benchmark's official release, located (downloaded if needed) and converted. `kind`
    names the source in the run's record (a benchmark known only by its release also reads its
    bundled samples and local copies through here). limit: only the first `limit` rows are
    wanted; the converter may read only that far."""
    release = release_of(benchmark)
    target, seed = parse_spec(spec)
    folder, origin, commit = locate(benchmark, target)
    converted = rebase_snapshot(release.convert(folder, cache / "official", commit or _files_key(folder), seed,
                                                     limit))
    details = {"source": "official", **converted.details}
    return DataSource(benchmark=benchmark, kind=kind, root=converted.root, parquet=None,
                      revision=commit or converted.revision, rows=len(converted.rows), origin=origin,
                      details=details, records=converted.rows)


def rebase_snapshot(converted: Converted) -> Converted:
    """Rows whose root lies in a hub snapshot, re-rooted at the snapshot's repo folder.

    In the hub cache, snapshots/<commit>/x.jpg is a symlink to ../../blobs/<hash>; paths are
    only allowed to resolve inside their root, so the root must be the folder holding both."""
    root = converted.root.resolve()
    for parent in root.parents:
        if parent.name == "snapshots" and (parent.parent / "blobs").is_dir():
            repo = parent.parent
            prefix = root.relative_to(repo).as_posix() + "/"
            rows = [_prefixed(row, prefix) for row in converted.rows]
            return Converted(rows, repo, converted.details, converted.revision)
    return converted


def _prefixed(row: dict, prefix: str) -> dict:
    row = dict(row, image=[prefix + p for p in row.get("image") or []])
    if row.get("video"):
        row["video"] = prefix + row["video"]
    return row


def locate(benchmark: str, target: str | None) -> tuple[Path, str, str | None]:
    """(folder holding the release, where it came from, hub commit or None)."""
    release = release_of(benchmark)
    if target is None:
        if release.hub_id is None:
            raise DataError(f"{benchmark}'s official release is not on the hub; put {release.layout} "
                            f"into a folder DIR and pass {data_option('official:DIR')}")
        return _from_hub(benchmark, release.hub_id, release.revision)
    path = Path(target).expanduser()
    if path.is_dir():
        folder = path / benchmark if (path / benchmark).is_dir() else path
        return folder.resolve(), str(folder.resolve()), None
    if HUB_ID.match(target) and not path.exists():
        repo_id, _, revision = target.partition("@")
        return _from_hub(benchmark, repo_id, revision or release.revision)
    raise DataError(f"official source {target!r} is neither a folder nor a hub id (owner/name); "
                    f"a local copy holds {release.layout}")


def _from_hub(benchmark: str, repo_id: str, revision: str | None) -> tuple[Path, str, str | None]:
    release = release_of(benchmark)
    patterns = list(release.allow_patterns) if release.allow_patterns else None
    folder = download(repo_id, revision, patterns,
                            fix=f"pass {data_option('official:DIR')} (DIR holding {release.layout})")
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    return folder, repo_id + (f"@{revision}" if revision else ""), commit


def _files_key(folder: Path) -> str:
    """A short key for a local folder's cache entries: its path and the names, sizes and
    modification times of its files (a changed file gives a new key)."""
    listing = sorted(f"{p.relative_to(folder).as_posix()}|{p.stat().st_size}|{p.stat().st_mtime_ns}"
                     for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join([str(folder)] + listing).encode()).hexdigest()[:16]



def release_of(benchmark: str) -> Release:
    """The benchmark's own release; DataError where it has none (a synthetic benchmark)."""
    try:
        found = benchmarks.get(benchmark)
    except KeyError as exc:
        raise DataError(str(exc)) from None
    if found.release is None:
        raise DataError(f"{benchmark!r} has no official release (it is generated: {found.samples}); "
                        f"use {data_option('samples')}")
    return found.release

