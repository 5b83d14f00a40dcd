"""Benchmark data: where a benchmark's rows live, read and turned into Samples (step 1 of the flow).

    sources.py   where the data lives (the hub, a folder, a zip, bundled samples), as a DataSource
    official.py  the benchmarks' own releases, located, downloaded if asked, converted
    tsv.py       VLMEvalKit-style TSV files, indexed once, an image decoded per sample
    load.py      rows from a source -> normalized rows -> `Sample`s (`load_samples`)
    imaging.py   image loading and Qwen-style resizing (pure, except `load_image`)
    video.py     a video's 16 frames
    shards.py    which questions a shard (--shard K/N) runs: a stable hash of task and question

What each benchmark is (its rows' schema, its scorer) lives in pr_eval.benchmarks.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"DataSource": "sources", "load_image": "imaging",
                                       "load_samples": "load", "resolve": "load", "to_sample": "load"})
