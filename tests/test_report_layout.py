"""The report's page as a user reads it (issue 26): the scores first, what was run below them,
a benchmark's data source as one row however many lmms-eval tasks read it, the unfinished run's
exact resume command, and the demo model's note that its zeros are expected."""

from __future__ import annotations

import html
import re
import shlex
from pathlib import Path

import pytest
from report_folder import Page, write_run
from test_printed_tables import DEMO_CASES

from pr_eval.report import page as report


def test_scores_come_first_and_the_data_source_is_one_row(tmp_path):
    page = report.write_report(write_run(tmp_path / "run")).read_text(encoding="utf-8")
    dom = Page(page)
    scores, details = dom.index("table", "scores"), dom.index("h2", id_="run")
    assert dom.index("h1") < scores < details < dom.index("dl", "meta") < dom.index("table", "data")
    assert scores < dom.index("h2", id_="tools") and details < dom.index("h2", id_="trajectories")
    data = re.search(r'<table class="data">.*?<tbody>(.*?)</tbody>', page, re.DOTALL).group(1)
    rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", data)]
    mvbench = [row for row in rows if row[0] == "mvbench"]
    assert len(rows) == 5 and len(mvbench) == 1  # one row per benchmark, MVBench's 20 tasks in one
    assert mvbench[0][1] == "pr_mvbench (20 subtasks)"
    assert mvbench[0][-2:] == ["4000", str(sum(1 + n % 3 for n in range(20)))]  # data set rows; in this run


def test_the_unfinished_banner_gives_the_exact_resume_command(tmp_path):
    folder = write_run(tmp_path / "run")
    (folder / "results.json").unlink()
    page = report.write_report(folder).read_text(encoding="utf-8")
    expected = shlex.join(["pr-eval", "--model", "demo", "--tasks", "zoom,vstar,tallyqa,infovqa,mvbench",
                           "--output", "my results/<x>", "--limit", "4", "--resume", str(folder)])
    banner = re.search(r'<div class="banner">(.*?)</div>', page, re.DOTALL).group(1)
    assert f'<code class="command">{html.escape(expected)}</code>' in banner
    assert "<x>" not in banner and "--resume auto" not in banner and "old" not in banner
    assert report.resume_command({}, Path("a b")) == "pr-eval ... --resume 'a b'"  # no command recorded


@pytest.mark.parametrize("model, tasks, expected", DEMO_CASES)
def test_the_page_says_the_demo_models_zeros_are_expected(tmp_path, model, tasks, expected):
    page = report.write_report(write_run(tmp_path / "run", model=model, tasks=tasks)).read_text(encoding="utf-8")
    assert ("trained on zoom only" in page) == expected
