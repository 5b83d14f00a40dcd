"""Zoom task functions for lmms-eval; the logic lives in pr_eval, this file names it."""

from pr_eval.lmms_task import doc_to_target, doc_to_text, doc_to_visual  # noqa: F401
from pr_eval.metrics import sample_metrics, trajectory_from_response


def process_results(doc, results):
    return sample_metrics(trajectory_from_response(results[0], doc, "pr_zoom"), doc, "zoom")
