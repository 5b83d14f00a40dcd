"""`pr-eval table`: the paper-style table from runs, submissions and published rows: cells with
intervals and n, differences against a baseline row, and columns that mix protocols marked."""

from __future__ import annotations

import csv
import io
import json

import pytest
from canned import boxed

from pr_eval.cli import table as command
from pr_eval.compare import table
from pr_eval.compare.sides import Benchmark, Side
from pr_eval.run.evaluate import evaluate

PAPER = "results/paper_table1.json"


def side(model, values, protocol="pixel-reasoner-v3", fingerprint="6e2c10c24001516b", name="vstar",
         metric="letter_accuracy", groups=None) -> Side:
    bench = Benchmark(name, tasks=[f"pr_{name}"],
                      samples={(f"pr_{name}", str(k)): {metric: v, "accuracy": v} for k, v in enumerate(values)},
                      groups=groups or {})
    return Side(label=model, kind="run", model=model, protocol=protocol, fingerprint=fingerprint,
                benchmarks={name: bench})


def test_cells_are_means_over_questions_with_their_interval_and_n():
    built = table.build([side("m", [1, 1, 0, 1])])
    cell = built.rows[0].cells[built.columns[0]]
    assert cell.value == 0.75 and cell.n == 4 and cell.ci[0] <= 0.75 <= cell.ci[1] and not cell.published
    # a sampled run's questions are the means of their rollouts: the interval is over questions
    sampled = table.build([side("s", [0.5, 0.25, 1.0, 0.75])]).rows[0].cells[built.columns[0]]
    assert sampled.value == pytest.approx(0.625) and sampled.n == 4 and 0.25 <= sampled.ci[0] < sampled.ci[1] <= 1.0


def test_a_grouped_metric_is_the_mean_of_its_group_means():
    groups = {("pr_hrbench4k", str(k)): str(k // 2) for k in range(4)}
    built = table.build([side("m", [1, 0, 1, 1], name="hrbench4k", metric="cycle_accuracy", groups=groups)])
    column = next(c for c in built.columns if c.metric == "cycle_accuracy")
    assert built.rows[0].cells[column].value == 0.75 and built.rows[0].cells[column].n == 4


def test_a_baseline_marks_each_difference_and_its_test():
    base, better = side("base", [0] * 30), side("better", [1] * 20 + [0] * 10)
    built = table.build([base, better], baseline=0)
    cell = built.rows[1].cells[built.columns[0]]
    assert cell.delta == pytest.approx(20 / 30) and cell.test == "McNemar" and cell.significant and cell.paired
    assert "(+66.7*)" in table.text(built) and "[baseline]" in table.text(built)


def test_columns_mixing_protocols_are_marked():
    same = table.build([side("a", [1, 0]), side("b", [0, 1])])
    assert same.mixed == {}
    mixed = table.build([side("a", [1, 0]), side("b", [0, 1], protocol="deepeyes", fingerprint="e2e027599d9d8e5f")])
    assert list(mixed.mixed) == [mixed.columns[0]] and "vstar\u2020" in table.text(mixed)
    assert "rows of different protocols (pixel-reasoner-v3 (6e2c10c2), deepeyes (e2e02759))" in table.text(mixed)
    # one name, two fingerprints (e.g. overridden caps renamed nothing): not comparable either
    assert table.build([side("a", [1]), side("b", [1], fingerprint="0000000000000000")]).mixed


def test_published_rows_sit_in_the_column_of_their_metric_and_match_by_name():
    sides = command.load_sides([PAPER])
    assert len(sides) == 6 and all(s.kind == "reference" for s in sides)
    built = table.build([side("m", [1, 0, 1, 1]), *sides])
    published = next(c for c in built.columns if c.metric == "accuracy" and c.benchmark == "vstar")
    assert built.rows[1].cells[published].value == pytest.approx(0.843) and built.rows[1].cells[published].published
    assert built.rows[1].cells[published].n == 191
    assert published not in built.mixed  # the paper's protocol is matched by its name
    assert "84.3 pub." in table.text(built) and "Pixel-Reasoner 7B (published)" in table.text(built)
    # the paper gives TallyQA's and MVBench's accuracy only: their own metrics' columns would be empty
    assert {(c.benchmark, c.metric) for c in built.columns if c.benchmark in ("tallyqa", "mvbench")} == \
        {("tallyqa", "accuracy"), ("mvbench", "accuracy")}


def test_every_output_escapes_what_it_cannot_hold():
    hostile = "=cmd|' /C calc'!A0 <script>alert(1)</script> & 50%_x"
    built = table.build([side(hostile, [1, 0])])
    assert "<script" not in table.html_page(built) and "&lt;script&gt;" in table.html_page(built)
    assert "\\&" in table.latex(built) and "\\%" in table.latex(built) and "\\_" in table.latex(built)
    assert "\\|" in table.markdown(built)
    lines = table.markdown(built).splitlines()
    assert lines[1].count("---") == len(built.columns) + 2
    record = next(csv.DictReader(io.StringIO(table.csv_text(built))))
    assert record["model"].startswith("'=") and record["benchmark"] == "vstar" and float(record["value"]) == 0.5


# --- the command, on real run folders ------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        folders = [evaluate(model=name, model_path="x", tasks=["pr_zoom"], protocol=protocol, limit=12,
                            output=out, engine=boxed(letter)).folder
                   for name, letter, protocol in (("says-a", "A", "pixel-reasoner-v3"), ("says-b", "B", "pixel-reasoner-v3"),
                                                  ("peer", "A", "deepeyes"))]
    return folders


def test_the_command_prints_and_writes_the_table(runs, tmp_path, capsys):
    status = command.main([str(f) for f in runs] + [PAPER, "--baseline", "says-a", "--markdown", str(tmp_path / "t.md"),
                                                    "--latex", str(tmp_path / "t.tex"), "--csv", str(tmp_path / "t.csv"),
                                                    "--html", str(tmp_path / "t.html")])
    out = capsys.readouterr().out
    assert status == 0
    assert "says-a [baseline]" in out and "zoom\u2020" in out and "deepeyes" in out
    for name in ("t.md", "t.tex", "t.csv", "t.html"):
        assert (tmp_path / name).stat().st_size > 200
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    zoom = {r["model"]: r for r in rows if r["benchmark"] == "zoom" and r["metric"] == "letter_accuracy"}
    assert zoom["says-b"]["n"] == "12" and zoom["says-b"]["mixed_protocols"] == "True"
    golds = json.loads((runs[0] / "results.json").read_text())["metrics"]["pr_zoom"]["letter_accuracy"]
    assert float(zoom["says-a"]["value"]) == pytest.approx(golds)


@pytest.mark.parametrize("argv, says", [
    (["/nonexistent/run"], "no such run folder or file"),
    ([PAPER, "--baseline", "nobody"], "--baseline 'nobody'"),
    ([PAPER, "--alpha", "2"], "--alpha must lie between 0 and 1"),
])
def test_bad_input_is_one_line(argv, says, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_a_reference_row_of_a_benchmark_the_file_gives_no_metric_for(tmp_path):
    """The schema lets a model row name a benchmark missing from "metric": its main metric is meant."""
    document = json.loads(open(PAPER).read())
    document["models"]["Pixel-Reasoner 7B"]["hrbench4k"] = 50.0
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(document))
    built = table.build(command.load_sides([str(path)]))
    column = next(c for c in built.columns if c.benchmark == "hrbench4k" and c.metric == "cycle_accuracy")
    assert built.rows[0].cells[column].value == 0.5 and built.rows[0].cells[column].published


def test_names_with_backslashes_braces_and_newlines_stay_one_cell():
    built = table.build([side("a\\b_{x}\nsecond line", [1, 0], protocol="=cmd")])
    assert "a\\textbackslash{}b\\_\\{x\\} second line" in table.latex(built)
    assert all("second line" not in line or line.startswith("| a\\b_{x} second line")
               for line in table.markdown(built).splitlines())
    assert not any(line.startswith("second line") for line in table.latex(built).splitlines())
    record = next(csv.DictReader(io.StringIO(table.csv_text(built))))
    assert record["protocol"].startswith("'=")
