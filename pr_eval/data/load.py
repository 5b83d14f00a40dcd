"""Benchmark data: a benchmark's rows, from whichever source, and rows -> Samples.

    spec ("hub" | "samples" | hub id | local folder | "official[:...]") -> DataSource -> rows -> Samples

Where the files are is `pr_eval.data.sources` (hub, folder, zip); what a benchmark's own release holds
and how it becomes rows is its module in `pr_eval.benchmarks` (through `pr_eval.data.official`). A
row is a plain dict; a video row names its `video` file (and `video_start`/`video_end`) or lists
16 frame images. Problems with the data as a whole (no parquet, missing columns, a download that
failed) raise `DataError`; problems with one row (a missing field, an unreadable image or video)
are left to the run, which records that sample as a data error and goes on.

The data source spec a run uses reaches lmms-eval's task class through one channel,
`sources.source_spec` / `sources.use_source` (the environment variable PR_EVAL_DATA).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .. import benchmarks
from ..benchmarks import Benchmark
from ..benchmarks.common import missing as _missing
from ..errors import DataError
from ..trajectory import Sample
from . import official, tsv
from .imaging import load_image, resolve_inside
from .sources import HUB_ID, DataSource, data_option, default_cache_dir, from_folder, from_hub, source_spec
from .video import NUM_FRAMES, read_frames

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
REQUIRED_FIELDS = ("qid", "question", "image", "answer")


# --- Finding the data ---------------------------------------------------------------------------

def benchmark_info(benchmark: str) -> Benchmark:
    try:
        return benchmarks.get(benchmark)
    except KeyError as exc:
        raise DataError(str(exc)) from None


def resolve(benchmark: str, spec: str | None = None, cache_dir: str | os.PathLike | None = None,
            limit: int | None = None) -> DataSource:
    """Find a benchmark's parquet file and image folder, downloading or unpacking as needed.

    spec: "hub" (default; the benchmark's hub id), "samples" (the small generated set bundled in
    the package; for the synthetic `zoom`, the whole benchmark), a hub id "owner/name"
    (optionally "@revision"), or a local folder; a folder holding a `<benchmark>/` subfolder stands for that subfolder. "official" reads the
    benchmark's own release instead: "official" (its hub repo), "official:DIR" (a local copy),
    "official:owner/name[@revision]" (a mirror), each optionally ending in ",seed=N" (the seed
    that shuffles V*'s options; default 0). See `official.py`.
    limit: only the first `limit` rows are wanted (`--limit`): a release may be read only that far."""
    info = benchmark_info(benchmark)
    spec = source_spec(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if info.synthetic and spec != "samples" and not Path(spec).expanduser().is_dir():
        raise DataError(f"the {benchmark!r} benchmark is generated ({info.samples}) and has no hub copy or "
                        f"official release (data source {spec!r}); use {data_option('samples')}")
    if spec == "official" or spec.startswith(("official:", "official,")):
        return official.resolve(benchmark, spec, cache, limit=limit)
    if not info.hub_id and info.release is not None:
        # Known only by its own release (the field's benchmarks): the hub copy is the release,
        # and the bundled samples and a local folder hold copies of its files.
        if spec == "hub":
            return official.resolve(benchmark, "official", cache, kind="hub", limit=limit)
        if spec == "samples":
            return official.resolve(benchmark, f"official:{_samples_folder(benchmark)}", cache, kind="samples",
                                    limit=limit)
        return official.resolve(benchmark, f"official:{spec}", cache, kind="local", limit=limit)
    if spec == "hub":
        return from_hub(benchmark, info.hub_id, None, cache)
    if spec == "samples":
        return from_folder(benchmark, "samples", _samples_folder(benchmark), cache)
    path = Path(spec).expanduser()
    if path.is_dir():
        folder = path / benchmark if (path / benchmark).is_dir() else path
        return from_folder(benchmark, "local", folder, cache)
    if HUB_ID.match(spec) and not path.exists():
        repo_id, _, revision = spec.partition("@")
        try:
            return from_hub(benchmark, repo_id, revision or None, cache)
        except DataError as exc:  # the spec may also have been meant as a local folder
            raise DataError(f"{exc} (there is no local folder {spec!r} either)") from None
    if path.exists():
        raise DataError(f"data source {spec!r} is not a folder; pass the folder that holds the parquet file")
    raise DataError(f"data source {spec!r} is neither 'hub', 'samples', 'official', a hub id "
                    f"(owner/name) nor an existing folder")


def _samples_folder(benchmark: str) -> Path:
    folder = SAMPLES_DIR / benchmark
    if not folder.is_dir():
        bundled = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_dir()) if SAMPLES_DIR.is_dir() else []
        raise DataError(f"no bundled samples for {benchmark!r} (bundled: {', '.join(bundled) or 'none'})")
    return folder


# --- Rows ---------------------------------------------------------------------------------------

def read_rows(source: DataSource, limit: int | None = None) -> list[dict]:
    """The source's rows as plain Python dicts, normalized (see `normalize_row`); with `limit`,
    the first `limit` of them (the source then records `limit` and the rows it read).

    A row missing a required value keeps its place, marked `_error` with the reason, so the run
    records it as a data error instead of stopping."""
    if source.records is not None:  # an official source, converted when it was resolved
        records = source.records
    else:
        records = _parquet_records(source, limit)
    if limit is not None:
        records = records[:limit]
        source.details["limit"] = limit
    rows = [normalize_row(record, index) for index, record in enumerate(records)]
    source.rows = len(rows)
    return _unique_ids(rows, source)


def _parquet_records(source: DataSource, limit: int | None) -> list[dict]:
    """The records of the source's parquet file (the first `limit`, read only that far)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.parquet)
        names = parquet.schema_arrow.names
        missing = [name for name in REQUIRED_FIELDS if name not in names]
        if missing:
            raise DataError(f"{source.parquet} lacks the column(s) {', '.join(missing)}; "
                            f"columns present: {', '.join(map(str, names))}")
        if limit is None:
            return parquet.read().to_pandas().to_dict("records")
        records: list[dict] = []
        for batch in parquet.iter_batches(batch_size=max(1, min(limit, 1024))):
            records += batch.to_pandas().to_dict("records")
            if len(records) >= limit:
                break
        return records[:limit]
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"cannot read {source.parquet}: {exc}") from None


def _unique_ids(rows: list[dict], source: DataSource) -> list[dict]:
    """The rows, refused (DataError, before any engine starts) when two share a question id:
    results, the run journal, resume and submissions are all keyed by it, so a duplicate would be
    scored once and reported twice, or make `submit` and `compare` fail afterwards."""
    seen: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        seen.setdefault(row["qid"], []).append(index)
    duplicates = {qid: where for qid, where in seen.items() if len(where) > 1}
    if duplicates:
        qid, where = next(iter(duplicates.items()))
        more = f" (and {len(duplicates) - 1} more duplicated ids)" if len(duplicates) > 1 else ""
        raise DataError(f"{source.parquet or source.origin or source.benchmark}: question id {qid!r} appears {len(where)} times (rows "
                        f"{', '.join(map(str, where))}){more}; ids must be unique: fix the data or drop the duplicates")
    return rows


def normalize_row(record: dict, index: int = 0) -> dict:
    """One row with `image` a list of str, `answer` a str or list of str, `is_video` a bool, and,
    where the row names a `video`, `video` a str and `video_start`/`video_end` floats (-1: none).
    A row with a `video` needs no `image`; a video row is `is_video` whatever its flag says."""
    row = {str(k): _plain(v) for k, v in record.items()}
    errors, undecodable = [], set()
    for name in ("qid", "question", "answer", "image", "video"):  # text stored as bytes (a binary column)
        if name in row:
            row[name], problem = _as_text(row[name], name)
            if problem:
                errors.append(problem)
                undecodable.add(name)
    has_video = "video" in row and not _missing(row["video"]) and str(row["video"]) != ""
    required = [n for n in REQUIRED_FIELDS if not (n == "image" and has_video)]
    errors += [f"missing field {name!r}" for name in required if _missing(row.get(name)) and name not in undecodable]
    for name in ("question", "answer"):
        if _missing(row.get(name)):
            row[name] = None  # NaN or NA from pandas
    if _missing(row.get("qid")):
        row["qid"] = f"row-{index}"
    row["qid"] = str(row["qid"])
    image = row.get("image")
    if not _missing(image):
        image = [image] if isinstance(image, str) else list(image)
        row["image"] = [str(p) for p in image if not _missing(p)]
        if not row["image"] and not has_video:
            errors.append("no image path in field 'image'")
    else:
        row["image"] = []
    if not _missing(row.get("answer")):
        row["answer"] = _answer(row["answer"])
    flag = row.get("is_video")
    row["is_video"] = has_video or (False if _missing(flag) else bool(flag))
    if "video" in row:
        row["video"] = str(row["video"]) if has_video else ""
        row["video_start"] = _seconds(row.get("video_start"))
        row["video_end"] = _seconds(row.get("video_end"))
    if row.get("_error"):
        # Set by a converter, which knows the real problem: a field it left empty because of it
        # (a row whose image names no row keeps no question) is not a second problem.
        errors = [str(row["_error"])] + [e for e in errors if not e.startswith(("missing field", "no image path"))]
    if errors:
        row["_error"] = "; ".join(errors)
    return row


def _as_text(value: Any, name: str) -> tuple[Any, str | None]:
    """Bytes (in a list too) decoded as UTF-8; (None, reason) when they are not UTF-8 text."""
    if isinstance(value, (list, tuple)):
        decoded = [_as_text(v, name) for v in value]
        problems = [p for _, p in decoded if p]
        return (None, problems[0]) if problems else ([v for v, _ in decoded], None)
    if not isinstance(value, (bytes, bytearray)):
        return value, None
    try:
        return bytes(value).decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"field {name!r} is not UTF-8 text (byte 0x{value[exc.start]:02x} at offset {exc.start}); "
                      "re-save the data as UTF-8")


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (as pandas returns them) -> lists and Python scalars."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def _answer(value: Any) -> str | list[str]:
    if isinstance(value, (list, tuple)):
        return [_answer(v) for v in value]  # type: ignore[misc]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # TallyQA counts stored as floats
    return value if isinstance(value, str) else str(value)


def _seconds(value: Any) -> float:
    """A start/end time in seconds; -1.0 where there is none."""
    if _missing(value) or value == "":
        return -1.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0


def load_visual(root: str | os.PathLike, path: str) -> Image.Image:
    """One image of a row: a file inside `root`, or an image inside a TSV file there
    ("FILE.tsv#OFFSET:K", see `pr_eval.data.tsv`), decoded only now."""
    ref = tsv.parse_ref(path)
    if ref is None:
        return load_image(resolve_inside(root, path))
    file, offset, k = ref
    payload = tsv.read_payload(resolve_inside(root, file), offset, k)
    return load_image(io.BytesIO(payload), name=f"{Path(file).name} (record at byte {offset})")


def load_visuals(row: dict, root: str | os.PathLike) -> list[Image.Image]:
    """The full-resolution images of a row (or doc): its image files, or for a video sample its
    listed frame images, however many (the hub copy lists 16), or NUM_FRAMES frames decoded from
    its `video` file.
    Every problem is a DataError saying what is wrong with the sample."""
    qid = row.get("qid")
    if row.get("_error") or row.get("data_error"):
        raise DataError(row.get("_error") or row.get("data_error"))
    paths = list(row.get("image") or [])
    video = row.get("video") or ""
    if video:
        start, end = _seconds(row.get("video_start")), _seconds(row.get("video_end"))
        return read_frames(resolve_inside(root, video), NUM_FRAMES, start, end)
    if not paths:
        raise DataError(f"sample {qid} lists no image")
    if not row.get("is_video"):
        return [load_visual(root, path) for path in paths]
    frames = []
    for k, path in enumerate(paths, start=1):  # as many as the row lists, as the reference ran them
        try:
            frames.append(load_visual(root, path))
        except DataError as exc:
            raise DataError(f"frame {k} of {len(paths)}: {exc}") from None
    return frames


def to_sample(task: str, row: dict, root: str | os.PathLike) -> Sample:
    """A Sample whose images (or video frames) are read from `root` only when the run asks."""
    meta = {"qid": row["qid"], "image": list(row.get("image") or [])}
    if row.get("video"):
        meta.update(video=row["video"], video_start=row.get("video_start", -1.0),
                    video_end=row.get("video_end", -1.0))
    known = benchmarks.find(task)
    if known is not None:
        meta.update(known.labels(row))
    return Sample(task=task, sample_id=row["qid"], question=row.get("question") or "",
                  answer=row.get("answer"), load_images=lambda: load_visuals(row, root),
                  is_video=bool(row.get("is_video")), meta=meta)


def load_samples(benchmark: str, spec: str | None = None, limit: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> tuple[DataSource, list[Sample]]:
    """Resolve a benchmark's data and return its first `limit` (default all) rows as Samples."""
    source = resolve(benchmark, spec, cache_dir=cache_dir, limit=limit)
    rows = read_rows(source, limit)
    return source, [to_sample(benchmark, row, source.root) for row in rows]
