"""The bridge to lmms-eval: how pr-eval's benchmarks and loop register with it.

    task.py      the one task class every task YAML in tasks/ names (`PixelReasonerTask`), filled
                 in from the benchmark registry
    adapter.py   the `pixel_reasoner` model: lmms-eval's requests -> the loop -> one trajectory
                 (JSON) per request
    manifest.py  the `lmms_eval.models` entry point (pyproject.toml) that names the adapter

`pr-eval` (pr_eval.run.evaluate) builds the adapter itself and hands it to lmms-eval's
`simple_evaluate`; `lmms-eval --model pixel_reasoner` finds it through the entry point.
"""
