"""The bridge to lmms-eval's task system: one task class, filled in from the benchmark registry.

    tasks/<task>/<task>.yaml (task name, metadata.benchmark) -> PixelReasonerTask -> documents

A task YAML is thin: it names its task, this class and its benchmark (`metadata.benchmark`, a
name in `pr_eval.benchmarks`) over the shared tasks/_default_template_yaml. The class adds what
the benchmark's record says: the metric list (the paper-compatible accuracy, the benchmark's own
metric, its breakdowns, then the tool-use figures), `process_results` scoring with that
benchmark's scorer, and for a subtask (`metadata.subtask`) the `process_docs` that keeps its
documents. It keeps every other lmms-eval behaviour and replaces only `download`: lmms-eval hands
`dataset_path` to `datasets.load_dataset`, which cannot express "the Pixel-Reasoner parquet plus
its zipped image folder, from the hub or from a local copy, images loaded one sample at a time".
The data source comes from `pr_eval.data.load.source_spec` (PR_EVAL_DATA: `hub`, `samples`, a folder,
or `official[:...]`, which `pr-eval --data` sets); without it the hub copy is used, as in the paper.

A document is plain columns, the same for every benchmark (lmms-eval stores docs in a
`datasets.Dataset`, so a column keeps one type within a benchmark):

    qid, question        str
    answer               str; list[str] where the benchmark keeps every reference answer (InfoVQA)
    image                list of paths relative to data_root (16 frames for Pixel-Reasoner's
                         MVBench copy; empty where the sample is a video file)
    video                path relative to data_root, or ""
    video_start/_end     seconds, or -1 (the whole video)
    is_video             bool: the model adapter runs the video protocol (16 frames)
    category             the benchmark's category label (V*: "attribute" / "spatial"; a path
                         such as "Perception/OCR" where breakdowns nest); else ""
    subtask              the benchmark's subtask label (MVBench); else ""
    group                what the benchmark's own metric averages over first (HR-Bench's cycle); else ""
    targets              target boxes [x1, y1, x2, y2] in pixels of the first image (TreeBench); else []
    data_root            the folder the paths are relative to
    data_error           why the sample cannot be used, or ""
"""

from __future__ import annotations

import functools

import datasets
from lmms_eval.api.task import ConfigurableTask

from .. import benchmarks
from ..benchmarks import Benchmark
from ..data import load as data
from ..data import shards
from ..data.sources import row_limit
from ..scoring import metrics


class PixelReasonerTask(ConfigurableTask):
    """A task of ours: loads its data through `pr_eval.data.load`, scores with its benchmark's record,
    and reports the tool-use figures (`pr_eval.scoring.metrics.task_metric_list`) beside its metrics."""

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        bench = benchmarks.get((config.get("metadata") or {})["benchmark"])
        listed = list(config.get("metric_list") or metric_list(bench))
        names = {entry["metric"] for entry in listed}
        config["metric_list"] = listed + [m for m in metrics.task_metric_list() if m["metric"] not in names]
        config.setdefault("process_results", functools.partial(process_results, benchmark=bench.name))
        subtask = (config.get("metadata") or {}).get("subtask")
        if subtask and bench.keep_subtask is not None and config.get("process_docs") is None:
            config["process_docs"] = bench.keep_subtask(subtask)
        super().__init__(config=config, **kwargs)
        shard = shards.current()
        if shard is not None:  # --shard K/N: after lmms-eval has looked at a first document, which
            self._keep_shard(shard)  # a shard may not have

    def _keep_shard(self, shard) -> None:
        """This shard's documents only, each with its index in the unsharded task; a subtask's cut to
        the run's limit first (lmms-eval cuts them after this)."""
        split = self.config.test_split or "test"
        docs = self.dataset[split]
        subtask = (self.config.metadata or {}).get("subtask")
        keep = shards.positions(self.config.task, list(docs["qid"]), shard, row_limit() if subtask else None)
        kept = datasets.Dataset.from_list([{**docs[k], "doc_index": k} for k in keep])
        self.dataset[split] = kept
        self.dataset_no_image = self.dataset
        self.task_docs = kept

    def download(self, dataset_kwargs=None) -> None:
        metadata = dict(self.config.metadata or {})
        source, docs = _documents(metadata["benchmark"], data.source_spec(), _limit(metadata))
        split = self.config.test_split or "test"
        self.dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})
        if self.config.process_docs is not None:  # as lmms-eval's own download does
            self.dataset[split] = self.config.process_docs(self.dataset[split])
        self.dataset_no_image = self.dataset
        # Recorded in lmms-eval's results JSON (configs -> metadata): what data this was.
        metadata["data"] = source.to_record()
        self.config.metadata = metadata


def metric_list(bench: Benchmark) -> list[dict]:
    """The benchmark's own entries of an lmms-eval `metric_list`: the paper-compatible accuracy,
    its own metric, and its breakdowns (means over the samples of one category)."""
    main = metrics.mean_over_groups if bench.main_by_group else "mean"
    entries = [{"metric": "accuracy", "aggregation": "mean", "higher_is_better": True},
               {"metric": bench.main, "aggregation": main, "higher_is_better": True}]
    entries += [{"metric": name, "aggregation": metrics.mean_of_subset, "higher_is_better": True}
                for name in bench.breakdown]
    if bench.grounding:
        entries += [{"metric": name, "aggregation": metrics.mean_of_subset, "higher_is_better": True}
                    for name in metrics.GROUNDING]
    return entries


def process_results(doc: dict, results: list, benchmark: str) -> dict:
    """One sample's metrics: its response (our adapter's trajectory, or another model's text)
    scored by the benchmark's rules."""
    trajs = metrics.trajectories_from_response(results[0], doc, benchmarks.get(benchmark).task)
    return metrics.question_metrics(trajs, doc, benchmark)


_LOADED: dict[tuple[str, str, int | None], tuple] = {}


def _limit(metadata: dict) -> int | None:
    """The run's row limit (`sources.row_limit`), where the first rows of the data are the first
    documents of the task: not for a subtask, whose documents lmms-eval picks out of all rows."""
    return None if metadata.get("subtask") else row_limit()


def _documents(benchmark: str, spec: str, limit: int | None = None) -> tuple:
    """(source, documents) of a benchmark (its first `limit` rows), loaded once per process:
    MVBench's 20 subtask tasks share one load instead of resolving (and, for official sources,
    converting) 20 times."""
    key = (benchmark, spec, limit)
    if key not in _LOADED:
        source = data.resolve(benchmark, spec, limit=limit)
        _LOADED[key] = (source, [_doc(row, source) for row in data.read_rows(source, limit)])
    return _LOADED[key]


def preload(tasks: list[str], limit: int | None = None) -> None:
    """Load the documents of `tasks` (lmms-eval names; a group stands for its members) now, as
    their task classes will load them (same source, same limit, same cache): a run finds a data
    problem before it starts an engine or creates its folder."""
    spec = data.source_spec()
    for bench in _benchmarks_of(tasks):
        _documents(bench.name, spec, None if bench.subtasks else limit)


def check_shard(tasks: list[str], limit: int | None, shard) -> None:
    """DataError, before a shard's engine starts or its folder exists, when a task of the run has
    fewer questions than there are shards (each task's documents as `preload` loaded them)."""
    spec = data.source_spec()
    for bench in _benchmarks_of(tasks):
        _, docs = _documents(bench.name, spec, None if bench.subtasks else limit)
        if bench.subtasks and bench.keep_subtask is not None:
            table = datasets.Dataset.from_list(docs)
            for subtask in bench.subtasks:
                found = len(bench.keep_subtask(subtask)(table))
                shards.check_size(f"{bench.task}_{subtask}", found if limit is None else min(limit, found), shard)
        else:
            shards.check_size(bench.task, len(docs), shard)


def _benchmarks_of(tasks: list[str]) -> list[Benchmark]:
    """The benchmarks of lmms-eval tasks (a group's, such as pr_suite, are its members')."""
    found: list[Benchmark] = []
    for task in tasks:
        group = next((g for g in benchmarks.GROUPS.values() if g.task == task), None)
        for leaf in benchmarks.tasks_of(group.cli) if group is not None else [task]:
            if (bench := benchmarks.of_task(leaf)) is not None:
                found.append(bench)
    return list({bench.name: bench for bench in found}.values())


def loaded_source(root: str):
    """The data source this process loaded from `root` (a document's data_root), or None. Where
    the process loaded it more than once (runs with other limits before this one), the load of
    this run's row limit: a limited read records the rows it read, and the record is the run's."""
    found = [(key, source) for key, (source, _docs) in _LOADED.items() if str(source.root) == root]
    limit = row_limit()
    return next((source for key, source in found if key[2] == limit), found[-1][1] if found else None)


def _doc(row: dict, source) -> dict:
    """A dataset row as an lmms-eval document (see the module doc for the columns)."""
    bench = benchmarks.get(source.benchmark)
    answer, answer_error = doc_answer(bench, row.get("answer"))
    errors = [e for e in (row.get("_error"), answer_error) if e]
    labels = bench.labels(row)
    return {
        "qid": str(row.get("qid")),
        "question": row.get("question") or "",
        "answer": answer,
        "image": [str(p) for p in (row.get("image") or [])],
        "video": str(row.get("video") or ""),
        "video_start": float(row.get("video_start", -1.0)),
        "video_end": float(row.get("video_end", -1.0)),
        "is_video": bool(row.get("is_video", False)),
        "category": labels.get("category", ""),
        "subtask": labels.get("subtask", ""),
        "group": labels.get("group", ""),
        "targets": _boxes(row.get("targets")),
        "data_root": str(source.root),
        "data_error": "; ".join(errors),
    }


def _boxes(value) -> list[list[float]]:
    """Target boxes as lists of four floats (others left out): one column type for every row."""
    boxes = []
    for box in value if isinstance(value, (list, tuple)) else []:
        try:
            numbers = [float(v) for v in box]
        except (TypeError, ValueError):
            continue
        if len(numbers) == 4:
            boxes.append(numbers)
    return boxes


def doc_answer(bench: Benchmark, answer) -> tuple[str | list[str], str | None]:
    """(the answer in its benchmark's column type, or a placeholder, and the error if any):
    a benchmark that keeps every reference answer (InfoVQA) gets a list, the others one string."""
    if bench.list_answers:
        if answer is None:
            return [], None
        return ([answer] if isinstance(answer, str) else [str(a) for a in answer]), None
    if isinstance(answer, list):
        if len(answer) == 1:
            return str(answer[0]), None
        return "", f"expected one answer, the row holds {len(answer)}: {answer!r}"
    return ("" if answer is None else str(answer)), None


# --- document functions named by tasks/_default_template_yaml ------------------------------------

def doc_to_visual(doc: dict):
    """The sample's full-resolution images, or for a video sample its frames (its frame images as
    listed, or 16 frames decoded from `video`); DataError (recorded per sample) when unusable."""
    return data.load_visuals(doc, doc["data_root"])


def doc_to_text(doc: dict, lmms_eval_specific_kwargs=None) -> str:
    """The question as the dataset gives it; the protocol (model side) adds its guideline."""
    return doc["question"]


def doc_to_target(doc: dict):
    return doc["answer"]
