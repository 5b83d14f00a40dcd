"""A run for test_resume.py to kill: `pr_eval.run.evaluate` on the bundled V* samples with the real
tiny vLLM engine, every turn forced by a guide so that any two runs do the same work whatever
their batches (a resumed run batches its remaining samples differently).

    python tests/resume_child.py OUTPUT [--resume RUN_DIR] [--batch-size N] [--schedule S]

Prints "folder <path>" as soon as the run folder exists.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LIMIT = 10


def forced_turns() -> dict[str, list[str]]:
    """The turns of each sample: 0, 1 or 2 crops (the second of the first crop), then a boxed
    letter, wrong for every fourth question, so the scores are neither all right nor all wrong."""
    import pandas as pd
    from conftest import crop_call

    from pr_eval.data.load import SAMPLES_DIR

    frame = pd.read_parquet(SAMPLES_DIR / "vstar" / "vstar.parquet")
    turns = {}
    for i, (qid, letter) in enumerate(sorted(zip(frame.qid, frame.answer))):
        answer = ("A" if letter != "A" else "B") if i % 4 == 3 else letter
        crops = [crop_call([0.1, 0.2, 0.6, 0.7]), crop_call([0.25, 0.25, 0.75, 0.75], target=2)][: i % 3]
        turns[qid] = crops + [f"Looking closer. \\boxed{{{answer}}}"]
    return turns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--schedule", default=None)
    args = parser.parse_args()
    os.environ["PR_EVAL_DATA"] = "samples"

    from conftest import scripted

    from pr_eval.models import resolve_model
    from pr_eval.run.evaluate import evaluate

    def announce(store):
        print(f"folder {store.folder}", flush=True)

    run = evaluate(model="tiny", model_path=resolve_model("tiny"), tasks=["pr_vstar"], limit=LIMIT,
                   output=args.output, batch_size=args.batch_size, guide=scripted(forced_turns()),
                   resume=args.resume, schedule=args.schedule, announce=announce)
    print(f"done {run.folder}", flush=True)


if __name__ == "__main__":
    main()
