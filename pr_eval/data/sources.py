"""Where a benchmark's data lives: the hub, a folder, a zip; located and described as a DataSource.

Pixel-Reasoner's eval copies (the default source of every benchmark) are stored as ONE parquet
file with the fields `qid`, `question`, `image` (a list of paths relative to the dataset folder),
`answer` and optionally `is_video` (MVBench rows list 16 frame images), next to either an
`images/` folder or an `images.zip` that unpacks to `images/`. A zip is unpacked once into a
cache folder and reused; members leading out of it are refused.

A source records a `revision` (the hub commit, or the sha256 of the data file), so a result can
say exactly which data it was computed on. Nothing here reads rows (`pr_eval.data.load` does) or knows
a benchmark (`pr_eval.benchmarks` does): these are the file and network edges.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import posixpath
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

DATA_ENV = "PR_EVAL_DATA"          # the data source spec when none is given
LIMIT_ENV = "PR_EVAL_LIMIT"        # the run's --limit, so tasks read only the rows it uses
FRONT_END_ENV = "PR_EVAL_FRONT_END"  # "pr-eval" under pr-eval's CLI: errors name its options
ZIP_NAME = "images.zip"
IMAGES_DIR = "images"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?$")  # owner/name[@revision]


def source_spec(spec: str | None = None) -> str:
    """The data source spec to use: `spec`, else $PR_EVAL_DATA, else "hub".

    The spec a run uses reaches lmms-eval's task class (`pr_eval.lmms.task`) through this one
    channel, the environment variable, which `use_source` (the CLI's `--data`) sets; so
    `lmms-eval --include_path tasks` honours PR_EVAL_DATA too."""
    return spec or os.environ.get(DATA_ENV) or "hub"


def use_source(spec: str) -> None:
    """Make `spec` the data source of the tasks this process (and its children) loads."""
    os.environ[DATA_ENV] = spec


def data_option(spec: str) -> str:
    """How to ask for the data source `spec` ("samples", "official:DIR", "DIR", ...) in the front
    end that is running: pr-eval's options (the CLI sets PR_EVAL_FRONT_END=pr-eval), or, under
    lmms-eval's own command line, the PR_EVAL_DATA variable."""
    if os.environ.get(FRONT_END_ENV) != "pr-eval":
        return f"PR_EVAL_DATA={spec}"
    if spec.startswith("official:"):
        return f"--data official --data-dir {spec.removeprefix('official:')}"
    return f"--data {spec}" if spec in ("hub", "samples", "official") else f"--data-dir {spec}"


def row_limit() -> int | None:
    """The `--limit` of the run this process is doing ($PR_EVAL_LIMIT), or None: lmms-eval cuts a
    task's documents to its limit only after loading them all, so the task class reads only that
    many rows where it can (a 4.6 GB TSV is then read only as far as needed)."""
    value = os.environ.get(LIMIT_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


@contextlib.contextmanager
def environment(name: str, value: str | None):
    """The environment variable `name` set to `value` (None: unset) inside the block, then as it was:
    the channel by which a run's settings reach lmms-eval's task classes (data, limit, shard)."""
    before = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


def limited(limit: int | None):
    """`row_limit` reports `limit` (None: none) inside the block."""
    return environment(LIMIT_ENV, None if limit is None else str(int(limit)))


@dataclass
class DataSource:
    """Where one benchmark's data was found. `root` is the folder the rows' image and video paths
    are relative to; `revision` identifies the data (hub commit, or sha256 of the data file).

    Official sources have no parquet file: their rows are converted when the source is resolved
    and kept in `records`; `details` says how (source format, option-shuffle seed, ...)."""

    benchmark: str
    kind: str                 # "hub", "samples", "local" or "official"
    root: Path
    parquet: Path | None
    revision: str | None
    rows: int = 0             # number of rows
    origin: str = ""          # the hub id or the folder the data came from
    details: dict = field(default_factory=dict)
    records: list[dict] | None = field(default=None, repr=False, compare=False)

    def to_record(self) -> dict:
        """A JSON-able description, for the run's log."""
        record = {"benchmark": self.benchmark, "kind": self.kind, "origin": self.origin,
                  "root": str(self.root), "parquet": str(self.parquet) if self.parquet else None,
                  "revision": self.revision, "rows": self.rows}
        record.update(self.details)
        return record


def default_cache_dir() -> Path:
    """Where zipped images are unpacked: ~/.cache/pr-eval/data (honours $XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "pr-eval" / "data"



def from_hub(benchmark: str, repo_id: str, revision: str | None, cache: Path) -> DataSource:
    folder = download(repo_id, revision)
    parquet = find_parquet(folder)
    # The hub cache keeps each commit in snapshots/<commit sha>: that is the revision.
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    revision = commit or revision or sha256_file(parquet)
    base = _images_base(folder, cache / f"{benchmark}-{revision}")
    return _source(benchmark, "hub", base, parquet, revision, origin=repo_id)


def from_folder(benchmark: str, kind: str, folder: Path, cache: Path) -> DataSource:
    folder = folder.resolve()
    parquet = find_parquet(folder)
    zip_path = folder / ZIP_NAME
    extract_to = None
    if zip_path.is_file():
        stat = zip_path.stat()
        key = hashlib.sha256(f"{zip_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        extract_to = cache / f"{benchmark}-local-{key}"
    base = _images_base(folder, extract_to)
    return _source(benchmark, kind, base, parquet, sha256_file(parquet), origin=str(folder))


def _source(benchmark: str, kind: str, base: Path, parquet: Path, revision: str | None,
            origin: str) -> DataSource:
    first, count = _first_image_path(parquet)
    return DataSource(benchmark=benchmark, kind=kind, root=_image_root(base, first), parquet=parquet,
                      revision=revision, rows=count, origin=origin)


def download(repo_id: str, revision: str | None, allow_patterns: list[str] | None = None,
              fix: str | None = None) -> Path:
    """The local snapshot folder of a hub dataset (downloaded once, then from the hub's cache).
    `fix` ends the error message: how to go on without the download."""
    fix = fix or f"pass {data_option('DIR')}, or use {data_option('samples')}"
    import huggingface_hub  # imported here: only the hub route needs it
    from huggingface_hub.errors import HfHubHTTPError

    # Offline without a cached copy is LocalEntryNotFoundError (an OSError); connection errors
    # come from whichever HTTP client this huggingface_hub uses (requests' errors are OSErrors).
    network_errors: list[type[BaseException]] = [OSError, HfHubHTTPError]
    for client in ("httpx", "httpx2"):
        try:
            network_errors.append(importlib.import_module(client).HTTPError)
        except (ImportError, AttributeError):
            pass
    try:
        kwargs = {"allow_patterns": allow_patterns} if allow_patterns else {}
        folder = huggingface_hub.snapshot_download(repo_id, repo_type="dataset", revision=revision, **kwargs)
    except tuple(network_errors) as exc:
        # LocalEntryNotFoundError (offline, not cached), connection errors, 401/404 from the hub.
        raise DataError(
            f"cannot download {repo_id} (offline?): {type(exc).__name__}: {exc}. Download it "
            f"elsewhere (hf download {repo_id} --repo-type dataset"
            f"{' --revision ' + revision if revision else ''} --local-dir DIR) and {fix}") from None
    return Path(folder)


def find_parquet(folder: Path) -> Path:
    """The one `*.parquet` file directly in `folder`."""
    found = sorted(folder.glob("*.parquet"))
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"expected one .parquet file in {folder}, found {len(found)}: "
                        f"{', '.join(p.name for p in found)}; move the others out of the folder")
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:20]
    raise DataError(f"no .parquet file in {folder} (it holds: {', '.join(present) or 'nothing'})")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Images: folder or zip ----------------------------------------------------------------------

def _images_base(folder: Path, extract_to: Path | None) -> Path:
    """The folder that holds `images/`: `folder` itself, or where its images.zip was unpacked."""
    if (folder / IMAGES_DIR).is_dir() or extract_to is None or not (folder / ZIP_NAME).is_file():
        return folder
    return extract_zip(folder / ZIP_NAME, extract_to)


def extract_zip(zip_path: Path | list[Path], dest: Path) -> Path:
    """Unpack `zip_path` (or several zips, into the same folder) into `dest` once; return `dest`.

    The zips are unpacked into a temporary sibling folder that is renamed to `dest` only when
    complete, so an interrupted extraction is never mistaken for a finished one. Members with
    absolute paths or `..` leading out of the folder are refused (zip-slip)."""
    if dest.is_dir():
        return dest
    zips = list(zip_path) if isinstance(zip_path, (list, tuple)) else [zip_path]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    current = zips[0] if zips else dest
    try:
        for current in zips:
            with zipfile.ZipFile(current) as zf:
                for name in zf.namelist():
                    check_member(name, current)
                zf.extractall(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, zipfile.BadZipFile):  # also a CRC error half-way
            raise DataError(f"{current} is not a readable zip file: {exc}") from None
        raise
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # not another process that finished first
            raise
    return dest


def check_member(name: str, zip_path: Path | str = "zip") -> None:
    """Refuse a zip member that would land outside the extraction folder."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        raise DataError(f"refusing to unpack {zip_path}: member {name!r} has an absolute path")
    normalized = posixpath.normpath(unified)
    if normalized == ".." or normalized.startswith("../"):
        raise DataError(f"refusing to unpack {zip_path}: member {name!r} points outside the folder")


def _image_root(base: Path, first_image: str | None) -> Path:
    """The folder the parquet's image paths are relative to.

    The paths are normally relative to the folder holding `images/` ("images/x.jpg"), but some
    copies store them relative to `images/` itself ("x.jpg"); the first row decides."""
    candidates = [base, base / IMAGES_DIR]
    children = [p for p in base.iterdir() if not p.name.startswith(".")] if base.is_dir() else []
    if len(children) == 1 and children[0].is_dir() and children[0].name != IMAGES_DIR:
        candidates += [children[0], children[0] / IMAGES_DIR]  # a zip with one top folder
    if first_image is not None:
        for candidate in candidates:
            if (candidate / first_image).is_file():
                return candidate.resolve()
    return base.resolve()


def _first_image_path(parquet: Path) -> tuple[str | None, int]:
    """The first image path in the parquet file, and its number of rows."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(parquet)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"cannot read {parquet}: {exc}") from None
    if "image" in table.column_names:
        for value in table.column("image").to_pylist():
            paths = value if isinstance(value, list) else [value]
            for path in paths:
                if isinstance(path, str) and path:
                    return path, table.num_rows
    return None, table.num_rows

