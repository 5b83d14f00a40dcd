"""One evaluation run and its folder (steps 3 and 4: trajectories are stored, scored and summed up).

    evaluate.py     `evaluate`: lmms-eval drives the tasks, the adapter the loop, the store the folder
    store.py        the run store: journal, samples files, results, written while the run goes
    folder.py       the read model of a run folder: what pr-eval wrote, read back
    saved_images.py the images the model saw, saved for people
    interrupts.py   how a run stops (Ctrl-C, SIGTERM) and the command that finishes it
    log.py, quiet.py   the run's log file, and the noise kept off the terminal
    rescore.py      a finished run judged (again) from its saved trajectories, into a new folder
    rescoring_rule.py  its records scored under a sibling protocol's answer rule (--scoring)
    merge.py        a run's shards (--shard K/N) put back together, finished from their journals
    ray_shards.py   the shards as Ray tasks on a cluster (`pr-eval ray`): placed, retried, watched
    faults.py       fault injection for tests

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"Run": "folder", "RunError": "folder", "RunStore": "store",
                                       "load_run": "folder"})
