"""Compare two evaluations and gate a checkpoint on significant regressions.

    pr-eval compare A B                             per benchmark: A, B, delta = B - A, 95% CI, p
    pr-eval check RUN --baseline X --max-drop P     exit 1 only on a drop beyond P points that is
                                                    also statistically significant

    ... -> score -> run folder / submission / reference -> Side (pr_eval.compare.sides; submissions:
        pr_eval.compare.submission) -> one Row per benchmark (pr_eval.compare.delta, statistics in
        pr_eval.compare.stats) -> [here: the table of `compare`, the verdicts and exit status of `check`]

Each side is a run folder, a submission file (`pr-eval submit`) or a reference file (schema
pr-eval-reference/1, e.g. results/paper_table1.json; one row chosen with --baseline-model).

`check` fails a benchmark only when BOTH hold (docs/regression-gate.md):
1. the observed drop is larger than --max-drop (a practical threshold, in points), and
2. the drop is significant: a one-sided test of "the run is lower than the baseline" at --alpha
   (McNemar for paired 0/1 scores, binomial against a reference, the one-sided bootstrap bound
   for graded scores). Condition 2 asks whether there is a drop at all, not whether the drop
   exceeds the tolerance: the latter would need enough questions to prove a drop larger than the
   tolerance and would let real regressions of V*'s 191 questions pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..run.folder import Unreadable, read_json
from .delta import Row
from .sides import REFERENCE_SCHEMA, InputError, Side, read_reference, read_run
from .stats import DEFAULT_ALPHA
from .submission import SCHEMA_NAME, read_submission


def load_side(path: str | Path, model: str | None = None) -> Side:
    """A run folder, a submission file or a reference file (row `model`, default the first)."""
    path = Path(path)
    if path.is_dir():
        return read_run(path)
    if not path.exists():
        raise InputError(f"{path}: no such run folder or file")
    if path.name == "results.json":
        return read_run(path.parent)
    try:
        document = read_json(path)
    except Unreadable as exc:
        raise InputError(f"{path}: {exc}") from None
    if isinstance(document, dict) and document.get("schema") == REFERENCE_SCHEMA:
        return read_reference(path, document, model)
    if isinstance(document, dict) and document.get("schema") == SCHEMA_NAME:
        return read_submission(path, document)
    raise InputError(f"{path} is neither a run folder, a submission file (pr-eval submit) nor a "
                     f"reference file (\"schema\": \"{REFERENCE_SCHEMA}\", see results/paper_table1.json)")


# --- Gate ----------------------------------------------------------------------------------------

@dataclass
class Decision:
    benchmark: str
    status: str     # REGRESSION, within tolerance, not significant, not in run, no baseline, ...
    reason: str

    @property
    def failed(self) -> bool:
        return self.status == "REGRESSION"


def decide(row: Row, max_drop: float, alpha: float = DEFAULT_ALPHA) -> Decision:
    """The gate's verdict on one benchmark: A = the baseline, B = the run, max_drop in points.
    A regression is a drop larger than max_drop that a one-sided test also finds significant."""
    if row.status == "only in A":
        return Decision(row.benchmark, "not in run", f"the baseline has {row.benchmark}; the run did not evaluate it")
    if row.status == "only in B":
        return Decision(row.benchmark, "no baseline", f"the baseline has no {row.benchmark}")
    if row.status != "compared":
        return Decision(row.benchmark, row.status, "; ".join(row.notes) or "nothing to compare")
    drop = -100 * row.delta + 0.0  # + 0.0: no "-0.0"
    paired = "paired" if row.paired else "against a fixed number"
    figures = f"{row.metric} {100 * row.b:.1f} vs baseline {100 * row.a:.1f} (n={row.n}, {paired})"
    if drop <= max_drop + 1e-9:
        change = f"drop {drop:.1f} <= {max_drop:g} points" if drop >= 0 else f"up {-drop:.1f} points"
        return Decision(row.benchmark, "within tolerance", f"{figures}: {change}")
    lower, evidence = row.significantly_lower(alpha)
    if not lower:
        return Decision(row.benchmark, "not significant",
                        f"{figures}: drop {drop:.1f} > {max_drop:g} points, but not significant ({evidence})")
    return Decision(row.benchmark, "REGRESSION",
                    f"{figures}: drop {drop:.1f} > {max_drop:g} points and significant ({evidence})")


# --- Command line --------------------------------------------------------------------------------
