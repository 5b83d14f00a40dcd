"""The benchmark registry and the task YAMLs agree, and everything else reads the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lmms_eval.tasks import TaskManager

from pr_eval import benchmarks
from pr_eval.cli import run as cli
from pr_eval.benchmarks import BENCHMARKS
from pr_eval.data.load import SAMPLES_DIR
from pr_eval.lmms.task import PixelReasonerTask
from pr_eval.scoring.metrics import GROUNDING, TOOL_STATS

TASKS = Path(__file__).resolve().parent.parent / "tasks"


class _Loader(yaml.SafeLoader):
    """YAML as lmms-eval's index reads it: `!function x` kept as its text."""


_Loader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def task_yamls() -> dict[str, dict]:
    """Every task or group YAML under tasks/, by its task or group name."""
    found = {}
    for path in sorted(TASKS.rglob("*.yaml")):
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
        found[config.get("group") or config["task"]] = dict(config, _path=path)
    return found


@pytest.fixture(scope="module")
def task_manager():
    return TaskManager(include_path=str(TASKS), include_defaults=False)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_has_its_thin_task_yaml(name):
    bench, yamls = BENCHMARKS[name], task_yamls()
    tasks = [f"{bench.task}_{s}" for s in bench.subtasks] or [bench.task]
    for task in tasks:
        config = yamls[task]
        assert config["include"] == "../_default_template_yaml"
        assert config["class"] == "!function pr_eval.lmms.task.PixelReasonerTask"
        assert config["metadata"]["benchmark"] == name
        assert config["dataset_path"] == (bench.hub_id or (bench.release.hub_id if bench.release else None)
                                          or f"pr_eval.benchmarks.{name}")
        # thin: the metrics, the scorer and the documents' filter come from the registry
        assert not {"metric_list", "process_results", "process_docs", "doc_to_visual"} & set(config), task
        assert config["_path"].parent.name == f"pr_{name}"
    if bench.subtasks:
        group = yamls[bench.task]
        assert group["task"] == tasks and group["metadata"]["benchmark"] == name
        assert [yamls[t]["metadata"]["subtask"] for t in tasks] == list(bench.subtasks)


def test_every_yaml_belongs_to_a_registered_benchmark():
    for task, config in task_yamls().items():
        if "group" in config and "benchmark" not in (config.get("metadata") or {}):
            continue  # a group of benchmarks (test_groups_follow_the_registry)
        bench = benchmarks.get(config["metadata"]["benchmark"])
        assert bench.owns_task(task) and benchmarks.of_task(task) is bench, task


def test_groups_follow_the_registry():
    yamls = task_yamls()
    for group in benchmarks.GROUPS.values():
        assert yamls[group.task]["task"] == [cli.TASKS[m] for m in group.members], group.cli
        assert cli.TASKS.get(group.cli, "pr_suite") == group.task
    listed = {t for g in benchmarks.GROUPS.values() for t in yamls[g.task]["task"]}
    assert all(b.task in listed or b.in_suite or not b.in_field for b in BENCHMARKS.values())


def test_the_suite_and_the_cli_follow_the_registry():
    suite = [b for b in BENCHMARKS.values() if b.in_suite]
    assert task_yamls()["pr_suite"]["task"] == [b.task for b in suite]
    assert cli.SUITE == tuple(b.short for b in suite) == ("vstar", "tallyqa", "infovqa", "mvbench")
    assert list(cli.TASKS)[:6] == ["vstar", "tallyqa", "infovqa", "mvbench", "suite", "zoom"]
    assert list(cli.TASKS)[-1] == "field" and cli.expand("suite") == [b.task for b in suite]
    assert all(cli.TASKS[b.short] == b.task for b in BENCHMARKS.values())


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_names_its_sources(name):
    bench = BENCHMARKS[name]
    assert (SAMPLES_DIR / name).is_dir() and bench.samples
    if bench.synthetic:
        assert not bench.hub_id and bench.release is None
    else:  # Pixel-Reasoner's copy and the benchmark's own release, or (the field's) the release only
        assert bench.release is not None and callable(bench.release.convert) and bench.release.layout
        assert (bench.hub_id or bench.release.hub_id or "").count("/") == 1


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_the_task_class_fills_in_what_the_registry_says(task_manager, name, monkeypatch):
    monkeypatch.setenv("PR_EVAL_DATA", "samples")  # the task loads its documents when it is made
    bench = BENCHMARKS[name]
    task = f"{bench.task}_{bench.subtasks[0]}" if bench.subtasks else bench.task
    config = task_manager._get_config(task)
    made = PixelReasonerTask(config=config)
    metrics = [entry["metric"] for entry in made.config.metric_list]
    assert metrics == ["accuracy", bench.main, *bench.breakdown, *(GROUNDING if bench.grounding else ()), *TOOL_STATS]
    assert made.config.process_results.keywords == {"benchmark": name}
    assert (made.config.process_docs is not None) == bool(bench.subtasks)
    docs = made.dataset["test"]
    assert len(docs) >= 1 and {doc["subtask"] for doc in docs} <= {bench.subtasks[0] if bench.subtasks else ""}


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="known: vstar, tallyqa, infovqa, mvbench, zoom"):
        benchmarks.get("hrbench")
    assert benchmarks.find("hrbench") is None and benchmarks.main_metric("hrbench") == "accuracy"
    assert benchmarks.of_task("pr_mvbench_action_count").name == "mvbench"
    assert benchmarks.of_task("pr_mvbench_unheard_of").name == "mvbench"  # a run folder of a newer version
    assert benchmarks.of_task("pr_vstar_x") is None and benchmarks.of_task("vstar_bench") is None
