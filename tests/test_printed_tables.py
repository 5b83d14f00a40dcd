"""The tables printed at the end of a run (issue 26): every line within 100 columns with several
benchmarks and MVBench's 20 subtasks (the tool-use table keeps its most useful columns, the
report and results.json the rest), and the demo model's note that its zeros on the paper's
benchmarks are expected."""

from __future__ import annotations

import html
import re

import pytest
from report_folder import SUBTASKS, write_run

from pr_eval.report import charts, page as report, tables
from pr_eval.run.folder import load_run


def test_every_printed_line_fits_100_columns(tmp_path):
    run = load_run(write_run(tmp_path / "run"))
    text = run.table()
    assert max(len(line) for line in text.splitlines()) <= 100, "\n".join(l for l in text.splitlines() if len(l) > 100)
    assert all(f"  {s.removeprefix('pr_mvbench_')} " in text for s in SUBTASKS)  # every subtask is there
    tool = text[text.index("tool use"):]
    assert tool.splitlines()[0].split()[:4] == ["tool", "use", "n", "0"]
    assert "acc w/ tools" in tool and "crop area" in tool and "capped" in tool
    assert "results.json and report.html" in tool  # where the columns left out are
    # 2+ calls: 2, 3 and 4+ added up; capped: the three caps added up
    zoom = next(line for line in tool.splitlines() if line.startswith("pr_zoom "))
    assert zoom.split()[2:8] == ["12.5", "25.0", "62.5", "100.0", "25.0", "100.0"]


def test_the_report_keeps_every_tool_column(tmp_path):
    page = report.write_report(write_run(tmp_path / "run")).read_text(encoding="utf-8")
    tools = re.search(r'<table class="tools">(.*?)</table>', page, re.DOTALL).group(1)
    assert all(f">{html.escape(h, quote=False)}</th>" in tools for _, h in tables.TOOL_COLUMNS)
    assert ">failed calls</th>" in page and ">lost samples</th>" in page  # the score table's headers, spelled out


DEMO_CASES = [("demo", ("zoom", "vstar", "mvbench"), True), ("demo", ("zoom",), False), ("tiny", ("zoom", "vstar"), False)]


@pytest.mark.parametrize("model, tasks, expected", DEMO_CASES)
def test_the_demo_model_says_its_zeros_are_expected(tmp_path, model, tasks, expected):
    folder = write_run(tmp_path / "run", model=model, tasks=tasks)
    lines = load_run(folder).table().splitlines()
    assert lines.count(tables.DEMO_FOOTNOTE) == expected and "trained on zoom only" in tables.DEMO_FOOTNOTE
    if expected:  # under the score table's footnote, before the tool table
        assert lines.index(tables.DEMO_FOOTNOTE) < lines.index(next(line for line in lines if line.startswith("tool use")))


def test_a_wide_sampled_table_leaves_out_middle_pass_columns():
    class Sampled:
        def __init__(self):
            self.sampled = {f"pr_visualprobe_medium_{i}": {
                "questions": 1000, "k": 64, "avg": 0.5, "avg_ci": [0.4, 0.6], "majority_accuracy": 0.5,
                "agreement": 0.5, "pass_at": {str(j): 0.5 for j in (1, 2, 4, 8, 16, 32, 64)}} for i in range(2)}

        def layout(self):
            return [(name, name, 0) for name in self.sampled]

    text = tables.sampled_table(Sampled())
    header = text.splitlines()[0].split()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "pass@1" in header and "pass@64" in header and len([h for h in header if h.startswith("pass@")]) < 7
    assert text.splitlines()[-1] == "(pass@k of the other k: results.json and report.html)"
    assert all(f">pass@{j}</th>" in charts.sampled_table(Sampled()) for j in (1, 2, 4, 8, 16, 32, 64))  # the page: all
