"""The bridge to lmms-eval's task system: one task class that loads our data sources.

lmms-eval hands `dataset_path` straight to `datasets.load_dataset`, which cannot express "the
Pixel-Reasoner parquet plus its zipped image folder, from the hub or from a local copy, images
loaded one sample at a time". The task YAMLs therefore name `PixelReasonerTask` as their class;
it keeps every lmms-eval behaviour and replaces only `download`. The data source comes from the
environment variable PR_EVAL_DATA (`hub`, `samples`, a folder, or `official[:...]`), which
`pr-eval --data` sets; without it the benchmark's hub copy is used, as in the paper.

A document is plain columns, the same for every benchmark (lmms-eval stores docs in a
`datasets.Dataset`, so a column keeps one type within a benchmark):

    qid, question        str
    answer               str; list[str] for InfoVQA (every reference answer)
    image                list of paths relative to data_root (16 frames for Pixel-Reasoner's
                         MVBench copy; empty where the sample is a video file)
    video                path relative to data_root, or ""
    video_start/_end     seconds, or -1 (the whole video)
    is_video             bool: the model adapter runs the video protocol (16 frames)
    category             V*: "attribute" / "spatial"; else ""
    subtask              MVBench subtask name; else ""
    data_root            the folder the paths are relative to
    data_error           why the sample cannot be used, or ""
"""

from __future__ import annotations

import datasets
from lmms_eval.api.task import ConfigurableTask

from . import data, metrics


class PixelReasonerTask(ConfigurableTask):
    """A task of ours: loads its data through `pr_eval.data`, and reports the tool-use figures
    (`pr_eval.metrics.task_metric_list`) beside the metrics its YAML lists."""

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        listed = list(config.get("metric_list") or [])
        names = {entry["metric"] for entry in listed}
        config["metric_list"] = listed + [m for m in metrics.task_metric_list() if m["metric"] not in names]
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs=None) -> None:
        metadata = dict(self.config.metadata or {})
        source, docs = _documents(metadata["benchmark"], data.source_spec())
        split = self.config.test_split or "test"
        self.dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})
        if self.config.process_docs is not None:  # as lmms-eval's own download does
            self.dataset[split] = self.config.process_docs(self.dataset[split])
        self.dataset_no_image = self.dataset
        # Recorded in lmms-eval's results JSON (configs -> metadata): what data this was.
        metadata["data"] = source.to_record()
        self.config.metadata = metadata


_LOADED: dict[tuple[str, str], tuple] = {}


def _documents(benchmark: str, spec: str) -> tuple:
    """(source, documents) of a benchmark, loaded once per process: MVBench's 20 subtask tasks
    share one load instead of resolving (and, for official sources, converting) 20 times."""
    key = (benchmark, spec)
    if key not in _LOADED:
        source = data.resolve(benchmark, spec)
        _LOADED[key] = (source, [_doc(row, source) for row in data.read_rows(source)])
    return _LOADED[key]


def loaded_source(root: str):
    """The data source this process loaded from `root` (a document's data_root), or None."""
    return next((source for source, _docs in _LOADED.values() if str(source.root) == root), None)


def _doc(row: dict, source) -> dict:
    """A dataset row as an lmms-eval document (see the module doc for the columns)."""
    answer, answer_error = doc_answer(source.benchmark, row.get("answer"))
    errors = [e for e in (row.get("_error"), answer_error) if e]
    return {
        "qid": str(row.get("qid")),
        "question": row.get("question") or "",
        "answer": answer,
        "image": [str(p) for p in (row.get("image") or [])],
        "video": str(row.get("video") or ""),
        "video_start": float(row.get("video_start", -1.0)),
        "video_end": float(row.get("video_end", -1.0)),
        "is_video": bool(row.get("is_video", False)),
        "category": (row.get("category") or data.vstar_category(row)) if source.benchmark == "vstar" else "",
        "subtask": data.mvbench_subtask(row) if source.benchmark == "mvbench" else "",
        "data_root": str(source.root),
        "data_error": "; ".join(errors),
    }


def doc_answer(benchmark: str, answer) -> tuple[str | list[str], str | None]:
    """(the answer in its benchmark's column type, or a placeholder, and the error if any):
    InfoVQA keeps a list of reference answers, the others one string."""
    if benchmark == "infovqa":
        if answer is None:
            return [], None
        return ([answer] if isinstance(answer, str) else [str(a) for a in answer]), None
    if isinstance(answer, list):
        if len(answer) == 1:
            return str(answer[0]), None
        return "", f"expected one answer, the row holds {len(answer)}: {answer!r}"
    return ("" if answer is None else str(answer)), None


# --- document functions named by the task YAMLs -------------------------------------------------

def doc_to_visual(doc: dict):
    """The sample's full-resolution images, or for a video sample exactly 16 frames (its frame
    images, or frames decoded from `video`); DataError (recorded per sample) when unusable."""
    return data.load_visuals(doc, doc["data_root"])


def doc_to_text(doc: dict, lmms_eval_specific_kwargs=None) -> str:
    """The question as the dataset gives it; the protocol (model side) adds its guideline."""
    return doc["question"]


def doc_to_target(doc: dict):
    return doc["answer"]
