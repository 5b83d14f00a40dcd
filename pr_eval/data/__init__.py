"""Benchmark data: where a benchmark's rows live, read and turned into Samples (step 1 of the flow).

    sources.py   where the data lives (the hub, a folder, a zip, bundled samples), as a DataSource
    official.py  the benchmarks' own releases, located, downloaded if asked, converted
    tsv.py       VLMEvalKit-style TSV files, indexed once, an image decoded per sample
    load.py      rows from a source -> normalized rows -> `Sample`s (`load_samples`)
    imaging.py   image loading and Qwen-style resizing (pure, except `load_image`)
    video.py     a video's 16 frames

What each benchmark is (its rows' schema, its scorer) lives in pr_eval.benchmarks.

The room's public face is the names below (`from pr_eval.data import DataSource`), each imported from its
module on first use: the rooms use each other's modules (a family's turn rules use the loop's
tools, the loop asks the family), so a face that imported them all at once would close circles.
"""

from __future__ import annotations

import importlib

_FACE = {"DataSource": "sources", "load_image": "imaging", "load_samples": "load", "resolve": "load", "to_sample": "load"}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FACE[name]}"), name)
