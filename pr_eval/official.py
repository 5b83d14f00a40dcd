"""The benchmarks' own releases ("official" sources), converted into data.py's row dicts.

    data.resolve("vstar", "official") -> DataSource(kind="official", records=[row, ...])

Spec: "official" (the release's hub repo), "official:DIR" (a local copy; a folder holding a
`<benchmark>/` subfolder stands for it), "official:owner/name[@revision]" (a mirror on the hub),
each optionally followed by ",seed=N" (default 0), the seed that orders shuffled options.

What each release holds, and what is done with it:

- vstar: `craigwu/vstar_bench`, folders `direct_attributes/` and `relative_position/`, each image
  `X.jpg` beside `X.json` = {"question", "options", "target_object", "bbox"}. The raw files list
  the CORRECT OPTION FIRST, so options are shuffled per question with
  `random.Random(f"{seed}:{qid}")` and the answer is the letter the correct option landed on.
- infovqa: `lmms-lab-encoder/DocVQA` (schema of `lmms-lab/DocVQA`), config InfographicVQA, split
  validation: parquet files whose rows embed the image (questionId, question, answers, image).
  Each distinct image is written ONCE to a cache folder (content-addressed) while the parquet is
  read a few rows at a time, so rows become relative paths like every other source and no
  run holds the images in memory. Reading images back by row index instead would need random
  access into parquet row groups for every sample, and lmms-eval documents must be plain columns.
- mvbench: `OpenGVLab/MVBench`, `json/<subtask>.json` (video, question, candidates, answer, and
  start/end seconds for five subtasks) and the videos. The `video` branch (the default here, as
  in lmms-eval) holds unpacked clips; its folders for the bounded subtasks are `*_segment`
  folders, taken to be cut to start/end already (lmms-eval reads them whole; not verified), so
  start/end are applied only to the original layout (the main branch's `video/*.zip`, unpacked),
  which holds whole videos, and TVQA clips as folders of frames. Options are shown in the
  released order unless a subtask's answers sit at one position (see `leaking_subtasks`), which
  is then shuffled like V* and recorded.
- tallyqa: the TallyQA release (`test.json`: image, question, answer, issimple, ...) with the
  Visual Genome / COCO images it names; only complex questions (`issimple` false) are kept.
  It is not on the hub: pass "official:DIR".
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import data
from .data import DataError, DataSource
from .store import write_atomic

DEFAULT_SEED = 0
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
OPTION_SUFFIX = "Answer with the option's letter from the given choices directly."
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Release:
    hub_id: str | None                 # where "official" downloads it from
    revision: str | None = None        # branch or commit on the hub
    allow_patterns: tuple[str, ...] | None = None
    layout: str = ""                   # what a local copy must hold (for error messages)


RELEASES = {
    "vstar": Release("craigwu/vstar_bench", None, ("direct_attributes/*", "relative_position/*"),
                     "direct_attributes/ and relative_position/ with X.jpg beside X.json"),
    "infovqa": Release("lmms-lab-encoder/DocVQA", None, ("InfographicVQA/validation-*",),
                       "InfographicVQA/validation-*.parquet (or validation-*.parquet)"),
    "mvbench": Release("OpenGVLab/MVBench", "video", None,
                       "json/<subtask>.json and the videos (the hub's `video` branch, or video/... "
                       "unpacked from the main branch's video/*.zip)"),
    "tallyqa": Release(None, None, None,
                       "test.json from tallyqa.zip (github.com/manoja328/TallyQA_dataset) and the "
                       "Visual Genome / COCO images it names (VG_100K/, VG_100K_2/, val2014/, ...)"),
}


@dataclass
class Converted:
    """A release as rows: paths in them are relative to `root`."""

    rows: list[dict]
    root: Path
    details: dict
    revision: str | None = None        # a digest of what was converted


# --- Spec and location ---------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str | None, int]:
    """"official[:TARGET][,seed=N]" -> (TARGET or None, seed)."""
    match = re.fullmatch(r"official(?::(?P<target>.*?))?(?:,seed=(?P<seed>-?\d+))?", spec.strip())
    if not match or match.group("target") == "":
        raise DataError(f"data source {spec!r}: expected 'official', 'official:DIR' or "
                        f"'official:owner/name', optionally followed by ',seed=N'")
    seed = int(match.group("seed")) if match.group("seed") is not None else DEFAULT_SEED
    return match.group("target"), seed


def resolve(benchmark: str, spec: str, cache: Path) -> DataSource:
    """The benchmark's official release, located (downloaded if needed) and converted."""
    data.benchmark_info(benchmark)
    target, seed = parse_spec(spec)
    folder, origin, commit = locate(benchmark, target)
    convert = CONVERTERS[benchmark]
    converted = rebase_snapshot(convert(folder, cache / "official", commit or _files_key(folder), seed))
    details = {"source": "official", **converted.details}
    return DataSource(benchmark=benchmark, kind="official", root=converted.root, parquet=None,
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
    release = RELEASES[benchmark]
    if target is None:
        if release.hub_id is None:
            raise DataError(f"{benchmark}'s official release is not on the hub; put {release.layout} "
                            f"into a folder DIR and pass --data official:DIR")
        return _from_hub(benchmark, release.hub_id, release.revision)
    path = Path(target).expanduser()
    if path.is_dir():
        folder = path / benchmark if (path / benchmark).is_dir() else path
        return folder.resolve(), str(folder.resolve()), None
    if data._HUB_ID.match(target) and not path.exists():
        repo_id, _, revision = target.partition("@")
        return _from_hub(benchmark, repo_id, revision or release.revision)
    raise DataError(f"official source {target!r} is neither a folder nor a hub id (owner/name); "
                    f"a local copy holds {release.layout}")


def _from_hub(benchmark: str, repo_id: str, revision: str | None) -> tuple[Path, str, str | None]:
    release = RELEASES[benchmark]
    patterns = list(release.allow_patterns) if release.allow_patterns else None
    folder = data._download(repo_id, revision, patterns,
                            fix=f"pass --data official:DIR (DIR holding {release.layout})")
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    return folder, repo_id + (f"@{revision}" if revision else ""), commit


def _files_key(folder: Path) -> str:
    """A short key for a local folder's cache entries: its path and the names, sizes and
    modification times of its files (a changed file gives a new key)."""
    listing = sorted(f"{p.relative_to(folder).as_posix()}|{p.stat().st_size}|{p.stat().st_mtime_ns}"
                     for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join([str(folder)] + listing).encode()).hexdigest()[:16]


def digest_files(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and contents of `paths` (small annotation files)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# --- Options --------------------------------------------------------------------------------------

def shuffled_order(n: int, seed: int, qid: str) -> list[int]:
    """A permutation of range(n) fixed by (seed, qid): order[k] is the original index shown k-th.
    String seeds are hashed with sha512 by `random`, so the order is the same on every machine."""
    order = list(range(n))
    random.Random(f"{seed}:{qid}").shuffle(order)
    return order


def render_options(question: str, options: list[str]) -> str:
    """The question with lettered options, in the style of Pixel-Reasoner's V* copy."""
    lines = [question.rstrip()] + [f"({LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return "\n".join(lines + [OPTION_SUFFIX])


_LETTER_PREFIX = re.compile(r"^\([A-Z]\)\s+")


def _option_text(option) -> str:
    """An option as text, without a leading "(A) " some copies carry."""
    return _LETTER_PREFIX.sub("", str(option).strip())


# --- V* --------------------------------------------------------------------------------------------

VSTAR_CATEGORIES = {"direct_attributes": "attribute", "relative_position": "spatial"}


def convert_vstar(folder: Path, cache: Path, key: str, seed: int) -> Converted:
    files = [(category, path) for category in VSTAR_CATEGORIES
             for path in sorted((folder / category).glob("*.json"))]
    if not files:
        raise DataError(f"no V* annotation files in {folder}; expected {RELEASES['vstar'].layout}")
    rows = [vstar_row(category, path.stem, _read_json(path), _image_beside(path, folder), seed)
            for category, path in files]
    counts = Counter(VSTAR_CATEGORIES[category] for category, _ in files)
    details = {"format": "vstar-raw", "seed": seed, "option_order": "shuffled",
               "shuffle": "random.Random(f'{seed}:{qid}').shuffle; the raw files list the correct option first",
               "categories": dict(counts)}
    return Converted(rows, folder, details, digest_files([p for _, p in files], folder))


def vstar_row(category: str, stem: str, annotation: dict | str, image: str, seed: int) -> dict:
    """One V* question from its raw annotation (or the reason it could not be read)."""
    qid = f"vstar-{category}-{stem}"
    row = {"qid": qid, "question": None, "image": [image], "answer": None,
           "category": VSTAR_CATEGORIES[category]}
    if isinstance(annotation, str):
        return {**row, "_error": annotation}
    question, options = annotation.get("question"), annotation.get("options")
    if not isinstance(question, str) or not question.strip():
        return {**row, "_error": f"{category}/{stem}.json has no 'question' text"}
    if not isinstance(options, list) or len(options) < 2 or len(options) > len(LETTERS):
        return {**row, "_error": f"{category}/{stem}.json needs a list of 2 or more 'options'"}
    order = shuffled_order(len(options), seed, qid)
    shown = [_option_text(options[i]) for i in order]
    return {**row, "question": render_options(question, shown), "answer": LETTERS[order.index(0)]}


def _image_beside(annotation: Path, folder: Path) -> str:
    """The image next to an annotation file (same name), relative to `folder`."""
    for suffix in IMAGE_SUFFIXES:
        candidate = annotation.with_suffix(suffix)
        if candidate.is_file():
            return candidate.relative_to(folder).as_posix()
    return annotation.with_suffix(".jpg").relative_to(folder).as_posix()  # missing: a per-sample error


def _read_json(path: Path) -> dict | str:
    """The JSON object in `path`, or the reason it cannot be used."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"unreadable annotation {path.name}: {exc}"
    return value if isinstance(value, dict) else f"{path.name} does not hold a JSON object"


# --- InfographicVQA --------------------------------------------------------------------------------

INFOVQA_COLUMNS = ("questionId", "question", "answers", "image")


def convert_infovqa(folder: Path, cache: Path, key: str, seed: int) -> Converted:
    files = infovqa_files(folder)
    dest = cache / f"infovqa-{key}"
    manifest = dest / "rows.json"
    if not manifest.is_file():
        rows, revision = materialize_infovqa(files, dest)
        _write_atomic(manifest, json.dumps({"revision": revision, "rows": rows}).encode())
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    rows = saved["rows"]
    if rows and all(not row.get("answer") for row in rows):
        raise DataError(f"{files[0].parent} has no answers (the test split?); use the validation split")
    details = {"format": "docvqa-infographicvqa-parquet", "config": "InfographicVQA", "split": "validation",
               "images": len({r["image"][0] for r in rows if r.get("image")}), "image_cache": str(dest)}
    return Converted(rows, dest, details, saved["revision"])


def infovqa_files(folder: Path) -> list[Path]:
    """The parquet files of InfographicVQA's validation split in a DocVQA snapshot or folder."""
    for pattern in ("InfographicVQA/validation-*.parquet", "validation-*.parquet", "*.parquet"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    raise DataError(f"no InfographicVQA parquet files in {folder}; expected {RELEASES['infovqa'].layout}")


def materialize_infovqa(files: list[Path], dest: Path) -> tuple[list[dict], str]:
    """Rows of the parquet files, each image written once to dest/images/ (named by content);
    read a few rows at a time. Returns the rows and a digest of them."""
    import pyarrow.parquet as pq

    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, digest = [], hashlib.sha256()
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
            missing = [c for c in INFOVQA_COLUMNS if c not in parquet.schema_arrow.names]
            if missing:
                raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; "
                                f"columns present: {', '.join(parquet.schema_arrow.names)}")
            for batch in parquet.iter_batches(batch_size=16, columns=list(INFOVQA_COLUMNS)):
                for record in batch.to_pylist():
                    image, error = save_embedded_image(record.get("image"), images)
                    row = infovqa_row(record, image, error)
                    digest.update(json.dumps(row, sort_keys=True).encode())
                    rows.append(row)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"cannot read {path}: {exc}") from None
    return rows, digest.hexdigest()


def infovqa_row(record: dict, image: str | None, error: str | None) -> dict:
    qid = f"infovqa-{record.get('questionId')}"
    answers = [str(a) for a in (record.get("answers") or []) if a is not None]
    row = {"qid": qid, "question": record.get("question"), "image": [image] if image else [],
           "answer": answers}
    if error:
        row["_error"] = error
    elif not answers:
        row["_error"] = "the question has no reference answers"
    return row


def save_embedded_image(value, images: Path) -> tuple[str | None, str | None]:
    """Write an embedded image ({"bytes", "path"} as the hub stores it) once, named by its
    sha256; return (path relative to images/.., None) or (None, why not)."""
    payload = value.get("bytes") if isinstance(value, dict) else None
    if not payload:
        return None, "the row embeds no image bytes"
    name = hashlib.sha256(payload).hexdigest()[:24] + _image_suffix(payload, value.get("path"))
    target = images / name
    if not target.is_file():
        _write_atomic(target, payload)
    return f"{images.name}/{name}", None


def _image_suffix(payload: bytes, original: str | None) -> str:
    if payload.startswith(b"\xff\xd8"):
        return ".jpg"
    if payload.startswith(b"\x89PNG"):
        return ".png"
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return ".webp"
    if payload.startswith(b"GIF8"):
        return ".gif"
    suffix = Path(original or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img"


def _write_atomic(path: Path, payload: bytes) -> None:
    """Never a half-written file after a crash; not synced (thousands of images, rebuilt if lost)."""
    write_atomic(path, payload, sync=False)


# --- MVBench -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MVBenchTask:
    original: str     # folder in the original layout (main branch's video/*.zip, unpacked)
    segments: str     # folder in the hub's `video` branch
    bounded: bool     # json rows carry start/end seconds, applied to original-layout videos


# Folders per subtask: the original ones as in MVBench's reference loader, the `video` branch ones
# as lmms-eval reads them. episodic_reasoning's original folder holds frame folders (3 fps).
MVBENCH = {
    "action_sequence": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", True),
    "action_prediction": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", True),
    "action_antonym": MVBenchTask("ssv2_video", "ssv2_video_mp4", False),
    "fine_grained_action": MVBenchTask("Moments_in_Time_Raw/videos", "Moments_in_Time_Raw/videos", False),
    "unexpected_action": MVBenchTask("FunQA_test/test", "FunQA_test/test", False),
    "object_existence": MVBenchTask("clevrer/video_validation", "clevrer/video_validation", False),
    "object_interaction": MVBenchTask("star/Charades_v1_480", "star/Charades_segment", True),
    "object_shuffle": MVBenchTask("perception/videos", "perception/videos", False),
    "moving_direction": MVBenchTask("clevrer/video_validation", "clevrer/video_validation", False),
    "action_localization": MVBenchTask("sta/sta_video", "sta/sta_video_segment", True),
    "scene_transition": MVBenchTask("scene_qa/video", "scene_qa/video", False),
    "action_count": MVBenchTask("perception/videos", "perception/videos", False),
    "moving_count": MVBenchTask("clevrer/video_validation", "clevrer/video_validation", False),
    "moving_attribute": MVBenchTask("clevrer/video_validation", "clevrer/video_validation", False),
    "state_change": MVBenchTask("perception/videos", "perception/videos", False),
    "fine_grained_pose": MVBenchTask("nturgbd", "nturgbd_convert", False),
    "character_order": MVBenchTask("perception/videos", "perception/videos", False),
    "egocentric_navigation": MVBenchTask("vlnqa", "vlnqa", False),
    "episodic_reasoning": MVBenchTask("tvqa/frames_fps3_hq", "tvqa/video_fps3_hq_segment", True),
    "counterfactual_inference": MVBenchTask("clevrer/video_validation", "clevrer/video_validation", False),
}
assert tuple(MVBENCH) == data.MVBENCH_SUBTASKS

LEAK_MIN_QUESTIONS = 20   # a subtask this large ...
LEAK_SHARE = 0.8          # ... whose answers sit at one position this often gives the answer away


def convert_mvbench(folder: Path, cache: Path, key: str, seed: int) -> Converted:
    files = {name: folder / "json" / f"{name}.json" for name in MVBENCH
             if (folder / "json" / f"{name}.json").is_file()}
    if not files:
        raise DataError(f"no MVBench json files in {folder / 'json'}; expected json/<subtask>.json, "
                        f"e.g. json/action_sequence.json ({RELEASES['mvbench'].layout})")
    items = {name: _read_items(path) for name, path in files.items()}
    positions = {name: [answer_position(item) for item in entries] for name, entries in items.items()}
    leaking = leaking_subtasks(positions)
    root = mvbench_video_root(folder, cache, key)
    rows, layouts = [], Counter()
    for name, entries in items.items():
        for index, item in enumerate(entries):
            qid = f"mvbench-{name}-{index}"
            video, layout = locate_video(root, MVBENCH[name], str(item.get("video") or ""))
            layouts[layout] += 1
            rows.append(mvbench_row(name, qid, item, video, layout, seed if name in leaking else None))
    details = {"format": "mvbench-json", "seed": seed,
               "option_order": "as released" if not leaking else "as released, except shuffled subtasks",
               "shuffled_subtasks": leaking,
               "answer_positions": {name: _position_counts(p) for name, p in positions.items()},
               "subtasks": {name: len(entries) for name, entries in items.items()},
               "video_layout": dict(layouts),
               "bounds": "start/end applied to original-layout videos; the video branch's "
                         "*_segment clips are taken whole"}
    return Converted(rows, root, details, digest_files(list(files.values()), folder))


def _read_items(path: Path) -> list[dict]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(items, list):
        raise DataError(f"{path} does not hold a JSON list of questions")
    return [item if isinstance(item, dict) else {} for item in items]


def answer_position(item: dict) -> int | None:
    """The index of the answer among the candidates, None when it is not one of them."""
    candidates = item.get("candidates")
    if not isinstance(candidates, list) or item.get("answer") not in candidates:
        return None
    return candidates.index(item["answer"])


def leaking_subtasks(positions: dict[str, list[int | None]]) -> list[str]:
    """Subtasks whose released option order gives the answer away: at least LEAK_MIN_QUESTIONS
    questions, LEAK_SHARE or more of them with the answer at the same position."""
    leaking = []
    for name, found in positions.items():
        known = [p for p in found if p is not None]
        if len(known) >= LEAK_MIN_QUESTIONS:
            _, count = Counter(known).most_common(1)[0]
            if count / len(known) >= LEAK_SHARE:
                leaking.append(name)
    return leaking


def _position_counts(positions: list[int | None]) -> dict[str, int]:
    counts = Counter(LETTERS[p] if p is not None else "none" for p in positions)
    return dict(sorted(counts.items()))


def mvbench_row(subtask: str, qid: str, item: dict, video: str, layout: str, seed: int | None) -> dict:
    """One MVBench question: options lettered in the released order (or shuffled with `seed`)."""
    bounded = MVBENCH[subtask].bounded and layout == "original"
    row = {"qid": qid, "question": None, "image": [], "video": video, "is_video": True,
           "video_start": item.get("start", -1.0) if bounded else -1.0,
           "video_end": item.get("end", -1.0) if bounded else -1.0,
           "answer": None, "subtask": subtask}
    question, candidates = item.get("question"), item.get("candidates")
    if not item.get("video"):
        return {**row, "_error": f"{subtask}.json question {qid} names no video"}
    if not isinstance(question, str) or not isinstance(candidates, list) or len(candidates) < 2:
        return {**row, "_error": f"{subtask}.json question {qid} lacks a question or its candidates"}
    position = answer_position(item)
    if position is None:
        return {**row, "_error": f"the answer {item.get('answer')!r} is not one of the candidates"}
    order = shuffled_order(len(candidates), seed, qid) if seed is not None else list(range(len(candidates)))
    shown = [str(candidates[i]) for i in order]
    return {**row, "question": render_options(question, shown), "answer": LETTERS[order.index(position)]}


def locate_video(root: Path, task: MVBenchTask, name: str) -> tuple[str, str]:
    """(path of a question's video relative to root, "segments" | "original" | "missing").

    The `video` branch keeps its folders at the top, the original layout under video/ (also
    accepted at the top); MVBench's supplementary data0613/ folders are searched too. A file
    with a .mp4 suffix (or an added one) instead of the json's name is accepted, as the video
    branch converted some clips. When nothing exists the path of the folder's own layout is
    returned, so the sample fails naming it."""
    names = [name] + ([str(Path(name).with_suffix(".mp4")) if Path(name).suffix else name + ".mp4"]
                      if Path(name).suffix != ".mp4" else [])
    places = [("", task.segments, "segments"), ("", task.original, "original"),
              ("video/", task.original, "original"), ("video/", task.segments, "segments"),
              ("", f"data0613/{task.original}", "original"), ("video/", f"data0613/{task.original}", "original")]
    for base, prefix, layout in places:
        if task.segments == task.original:  # the same folder in both: the base tells the layout
            layout = "original" if base else "segments"
        for candidate in names:
            relative = f"{base}{prefix}/{candidate}"
            if (root / relative).exists():
                return relative, layout
    if (root / "video").is_dir():
        return f"video/{task.original}/{name}", "missing"
    return f"{task.segments}/{name}", "missing"


def mvbench_video_root(folder: Path, cache: Path, key: str) -> Path:
    """The folder the videos are found in: `folder` itself, or, where the videos come as zips
    (the main branch's video/*.zip), the cache folder they are unpacked into once."""
    zips = sorted(folder.glob("video/*.zip")) + sorted(folder.glob("*.zip"))
    if not zips:
        return folder
    return data.extract_zip(zips, cache / f"mvbench-video-{key}").resolve()


# --- TallyQA -----------------------------------------------------------------------------------------

def convert_tallyqa(folder: Path, cache: Path, key: str, seed: int) -> Converted:
    path = folder / "test.json"
    if not path.is_file():
        raise DataError(f"no test.json in {folder}; expected {RELEASES['tallyqa'].layout}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise DataError(f"{path} does not hold a JSON list of questions")
    if items and not any("issimple" in item for item in items):
        raise DataError(f"{path} has no 'issimple' field, so complex questions cannot be told apart")
    complex_items = [item for item in items if item.get("issimple") is False]
    root = _tallyqa_root(folder, complex_items)
    rows = [tallyqa_row(item, index) for index, item in enumerate(complex_items)]
    details = {"format": "tallyqa-json", "split": "test", "subset": "complex (issimple == false)",
               "questions_in_file": len(items), "simple_skipped": len(items) - len(complex_items)}
    return Converted(rows, root, details, digest_files([path], folder))


def _tallyqa_root(folder: Path, items: list[dict]) -> Path:
    """`folder`, or its images/ subfolder where the image paths resolve there."""
    sample = [str(i.get("image")) for i in items[:20] if i.get("image")]
    for base in (folder, folder / "images"):
        if sample and any((base / image).is_file() for image in sample):
            return base
    return folder


def tallyqa_row(item: dict, index: int) -> dict:
    qid = f"tallyqa-{item.get('question_id', index)}"
    row = {"qid": qid, "question": item.get("question"),
           "image": [str(item["image"])] if item.get("image") else [], "answer": None}
    answer = item.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer) or answer < 0:
        return {**row, "_error": f"answer {answer!r} is not a count"}
    return {**row, "answer": str(int(answer))}


CONVERTERS: dict[str, Callable[[Path, Path, str, int], Converted]] = {
    "vstar": convert_vstar, "infovqa": convert_infovqa, "mvbench": convert_mvbench,
    "tallyqa": convert_tallyqa,
}
