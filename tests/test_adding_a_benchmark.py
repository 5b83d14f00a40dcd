"""docs/adding-a-benchmark.md works as written: its module and YAML, taken from the page, make a
benchmark that lmms-eval runs and pr-eval scores, with no other file changed."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
from test_tasks import ScriptedModel, answered

from pr_eval import benchmarks
from pr_eval.run.evaluate import TASKS_DIR, collect

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "adding-a-benchmark.md"


def page_files() -> dict[str, str]:
    """The page's code blocks that start with a comment naming their file."""
    blocks = re.findall(r"```(?:python|yaml)\n(# (\S+)\n.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    return {name: text for text, name in blocks}


@pytest.fixture
def dots(tmp_path, monkeypatch):
    """The page's module, imported as pr_eval.benchmarks.dots and registered."""
    files = page_files()
    module_file = tmp_path / "dots.py"
    module_file.write_text(files["pr_eval/benchmarks/dots.py"], encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pr_eval.benchmarks.dots", module_file)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(__import__("sys").modules, "pr_eval.benchmarks.dots", module)
    spec.loader.exec_module(module)
    monkeypatch.setitem(benchmarks.BENCHMARKS, "dots", module.BENCHMARK)
    tasks = tmp_path / "tasks"
    (tasks / "pr_dots").mkdir(parents=True)
    shutil.copy(TASKS_DIR / "_default_template_yaml", tasks)
    (tasks / "pr_dots" / "pr_dots.yaml").write_text(files["tasks/pr_dots/pr_dots.yaml"], encoding="utf-8")
    return module, tasks


def test_the_page_names_its_two_files():
    assert set(page_files()) == {"pr_eval/benchmarks/dots.py", "tasks/pr_dots/pr_dots.yaml"}


def test_the_example_benchmark_runs_through_lmms_eval_and_is_scored(dots, tmp_path, monkeypatch):
    module, tasks = dots
    module.write_samples(tmp_path / "data" / "dots")
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "data" / "dots" / "dots.parquet")
    assert len(rows) == 8 and set(rows.answer) <= {"1", "2", "3", "4", "5"}
    # The stand-in model counts right on the first five pictures, one too many on the others.
    script = {qid: answered(f"\\boxed{{{int(answer) + (k >= 5)}}}", tool=k % 2 == 0)
              for k, (qid, answer) in enumerate(zip(rows.qid, rows.answer))}
    monkeypatch.setenv("PR_EVAL_DATA", str(tmp_path / "data"))
    results = simple_evaluate(model=ScriptedModel(script), tasks=["pr_dots"], log_samples=True,
                              task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
                              verbosity="WARNING")
    run = collect(results, ["pr_dots"], tmp_path)
    figures = run.metrics["pr_dots"]
    assert figures["count_accuracy"] == pytest.approx(5 / 8) and figures["accuracy"] == pytest.approx(5 / 8)
    assert figures["rapr"] == pytest.approx(4 / 8)  # the tool figures come with every benchmark
    assert run.benchmarks == {"pr_dots": "dots"} and run.counts == {"pr_dots": 8}
    assert results["configs"]["pr_dots"]["metadata"]["data"]["kind"] == "local"
