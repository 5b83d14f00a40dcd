"""The report's trajectory rows (issue 26): a collapsed row shows the gold answer and the
prediction (escaped) and says what its seconds measure; a filter hides a task whose rows it
hides all of, header included; in the browser, the scores come before the run's details.

The browser test is skipped only where /usr/bin/chromium is missing (`make test` installs it)."""

from __future__ import annotations

import html
import re

import pytest

from report_folder import INJECTED, needs_chromium, probed, write_run

from pr_eval.report import page as report

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast


def test_a_collapsed_row_shows_gold_and_prediction_escaped(tmp_path):
    page = report.write_report(write_run(tmp_path / "run")).read_text(encoding="utf-8")
    summaries = re.findall(r"<summary>(.*?)</summary>", page, re.DOTALL)
    golds = [html.unescape(g) for s in summaries for g in re.findall(r"<b class='gold'>(.*?)</b>", s)]
    preds = [re.sub(r"<[^>]+>", "", html.unescape(p)) for s in summaries for p in re.findall(r"<b class='pred'>(.*?)</b>", s)]
    assert golds[:3] == ["A", "B", INJECTED] and preds[:3] == ["A", "A", "none"]
    assert "<b>bold</b>" not in page and html.escape(INJECTED) in page
    # what the seconds measure: said on the row (a tooltip) and in the card
    assert "42.2 s wall" in page and "waiting in the batch" in page
    assert "title='wall-clock seconds from the sample&#x27;s start to its finish, waiting in the batch" in page


@needs_chromium
def test_in_the_browser_scores_are_on_top_rows_show_answers_and_filters_hide_empty_tasks(tmp_path):
    """As laid out: the score table starts near the top of the page, before the run's details; a
    closed card shows its gold answer and prediction; the "wrong" filter hides MVBench's section
    (no wrong sample), header included, and keeps V*'s."""
    page = report.write_report(write_run(tmp_path / "run")).read_text(encoding="utf-8")
    found = probed(page, tmp_path, """
      function top(q) { return document.querySelector(q).getBoundingClientRect().top + scrollY; }
      result.scores = top('table.scores'); result.meta = top('dl.meta'); result.data = top('table.data');
      result.closed = Array.from(document.querySelectorAll('details.sample:not([open]).s-wrong')).map(function (d) {
        var gold = d.querySelector('.gold'), pred = d.querySelector('.pred');
        return [gold.textContent, pred.textContent, gold.getBoundingClientRect().height > 0,
                pred.getBoundingClientRect().width > 0]; });
      result.sections = Array.from(document.querySelectorAll('#viewer section.task')).map(function (s) {
        return [s.querySelector('h3').firstChild.textContent.trim(), s.getBoundingClientRect().height > 0]; });
      result.filter = document.getElementById('viewer').className;""")
    assert found["scores"] < 250 < found["meta"] and found["scores"] < found["data"]
    assert found["closed"] == [["B", "A", True, True], [INJECTED, "none", True, True]]  # V*'s two wrong answers
    assert found["filter"] == "f-wrong"
    shown = dict(found["sections"])
    assert shown["pr_vstar"] is True and shown["pr_mvbench"] is False
