"""MVBench: 20 video subtasks; the overall figure is the mean over all questions (the paper's).

Sources: Pixel-Reasoner's eval copy on the hub (the default; each row lists 16 frame images);
the official release `OpenGVLab/MVBench`, `json/<subtask>.json` (video, question, candidates,
answer, and start/end seconds for five subtasks) and the videos. The `video` branch (the default
here, as in lmms-eval) holds unpacked clips; its folders for the bounded subtasks are `*_segment`
folders, taken to be cut to start/end already (lmms-eval reads them whole; not verified), so
start/end are applied only to the original layout (the main branch's `video/*.zip`, unpacked),
which holds whole videos, and TVQA clips as folders of frames. Options are shown in the released
order unless a subtask's answers sit at one position (see `leaking_subtasks`), which is then
shuffled like V* and recorded. Bundled samples: `make_mvbench` of scripts/make_samples.py.

Each subtask is its own lmms-eval task (`pr_mvbench_<subtask>`, keeping its documents with
`keep_subtask`), grouped as `pr_mvbench`; scored by the option letter.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..data.sources import extract_zip
from ..errors import DataError
from .common import (LETTERS, digest_files, missing, option_letter, read_json_list, render_options,
                     shuffled_order)
from .registry import Benchmark, Converted, Release

LAYOUT = ("json/<subtask>.json and the videos (the hub's `video` branch, or video/... "
          "unpacked from the main branch's video/*.zip)")

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
SUBTASKS = tuple(MVBENCH)  # in the order of its paper; `pr_mvbench_<name>` is the lmms-eval task

LEAK_MIN_QUESTIONS = 20   # a subtask this large ...
LEAK_SHARE = 0.8          # ... whose answers sit at one position this often gives the answer away


def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
    files = {name: folder / "json" / f"{name}.json" for name in MVBENCH
             if (folder / "json" / f"{name}.json").is_file()}
    if not files:
        raise DataError(f"no MVBench json files in {folder / 'json'}; expected json/<subtask>.json, "
                        f"e.g. json/action_sequence.json ({LAYOUT})")
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
    return [item if isinstance(item, dict) else {} for item in read_json_list(path)]


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
    return extract_zip(zips, cache / f"mvbench-video-{key}").resolve()


def subtask_of(row: dict) -> str:
    """The MVBench subtask of a row or document ("" when it cannot be told).

    Official rows carry a `subtask` field. Pixel-Reasoner's copy has no such column, so the name
    is read from the qid where it holds one ("mvbench-action_sequence-3"); "Action Sequence"
    spellings are accepted too."""
    for text in (row.get("subtask"), row.get("qid")):
        if missing(text) or not text:
            continue
        key = re.sub(r"[^a-z]+", "_", str(text).lower())
        for name in sorted(SUBTASKS, key=len, reverse=True):  # longest name first
            if re.search(rf"(^|_){name}(_|$)", key):
                return name
    return ""


def keep_subtask(name: str):
    """A `process_docs` function that keeps the documents of subtask `name`.

    Both ways the data can fall short stop the run with a DataError rather than give a wrong
    MVBench score: a document that names no subtask would silently drop out of the overall
    figure, and a subtask without documents cannot be an lmms-eval task (it fails on its first
    document) nor be left out of the paper's mean over all 20.
    """

    def process_docs(dataset):
        found = [subtask_of(doc) or None for doc in dataset]
        unknown = [doc["qid"] for doc, subtask in zip(dataset, found) if subtask is None]
        if unknown:
            raise DataError(f"{len(unknown)} MVBench document(s) name no known subtask, e.g. qid "
                            f"{', '.join(map(repr, unknown[:3]))}; the data must give each row a "
                            f"subtask (or a qid holding one of: {', '.join(SUBTASKS)})")
        kept = [i for i, subtask in enumerate(found) if subtask == name]
        if not kept:
            present = sorted(set(found))
            raise DataError(f"the MVBench data holds no question of subtask {name!r} (it holds {len(present)} "
                            f"of the 20: {', '.join(present) or 'none'}); MVBench needs every subtask")
        return dataset.select(kept)

    process_docs.__name__ = process_docs.__qualname__ = f"keep_{name}"
    return process_docs


BENCHMARK = Benchmark(
    name="mvbench", title="MVBench", task="pr_mvbench", in_suite=True, is_video=True,
    hub_id="JasperHaozhe/MVBench-EvalData-PixelReasoner",
    release=Release("OpenGVLab/MVBench", convert, revision="video", layout=LAYOUT),
    samples="scripts/make_samples.py --only mvbench",
    main="letter_accuracy", main_label="letter acc", score=option_letter,
    labels=lambda row: {"subtask": subtask_of(row)},
    subtasks=SUBTASKS, keep_subtask=keep_subtask,
)
