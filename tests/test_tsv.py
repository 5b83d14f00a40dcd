"""VLMEvalKit TSVs (pr_eval.data.tsv): indexed once, each image decoded alone, damage per row."""

from __future__ import annotations

import base64
import hashlib
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.data import load as data, tsv
from pr_eval.errors import DataError


def _png(color, size=(40, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write(path, rows):
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)  # as VLMEvalKit writes them
    return path


@pytest.fixture
def table(tmp_path):
    rows = [
        {"index": 10, "question": 'plain', "image": _png((255, 0, 0))},
        {"index": 11, "question": 'a "quoted"\ttab and a\nnewline', "image": "10"},        # shares row 10's image
        {"index": 12, "question": "two images", "image": str([_png((0, 255, 0)), _png((0, 0, 255), (20, 10))])},
        {"index": 13, "question": "corrupt", "image": "!!" + "A" * 100},                      # not base64
        {"index": 14, "question": "dangling", "image": "99"},                                # names no row
        {"index": 17, "question": "chained", "image": "11"},                                 # a row without its own
        {"index": 15, "question": "no image", "image": ""},
        {"index": 16, "question": "not an image", "image": base64.b64encode(b"x" * 90).decode()},
    ]
    return write(tmp_path / "bench.tsv", rows)


def test_rows_are_indexed_with_the_record_that_holds_their_image(table, tmp_path):
    columns, rows, sha256 = tsv.index_tsv(table)
    assert columns == ["index", "question"] and len(rows) == 8 and len(sha256) == 64
    by = {row["index"]: row for row in rows}
    assert by["11"]["question"] == 'a "quoted"\ttab and a\nnewline'  # quoting and newlines survive
    assert by["11"]["image"] == by["10"]["image"] and by["10"]["image"][0].startswith("bench.tsv#")
    assert [tsv.parse_ref(r)[2] for r in by["12"]["image"]] == [0, 1]
    assert by["14"]["_error"] == ("its image field '99' (short, so the index of the row holding its image) names "
                                  "no row of the file") and by["14"]["image"] == []
    assert by["17"]["_error"] == "its image names row '11', which holds no image itself"  # one level, as VLMEvalKit
    assert by["15"]["_error"] == "the row holds no image"
    assert "image" not in columns and all("iVBOR" not in str(row) for row in rows)  # no pixels kept


def test_each_image_is_read_back_from_its_offset(table):
    _, rows, _ = tsv.index_tsv(table)
    by = {row["index"]: row for row in rows}
    colors = [data.load_visual(table.parent, ref).getpixel((0, 0)) for ref in by["10"]["image"] + by["12"]["image"]]
    assert colors == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert data.load_visual(table.parent, by["12"]["image"][1]).size == (20, 10)


@pytest.mark.parametrize("index, message", [("13", "is not base64"), ("16", "cannot identify image file")])
def test_a_damaged_image_is_a_per_sample_error(table, index, message):
    _, rows, _ = tsv.index_tsv(table)
    ref = next(row for row in rows if row["index"] == index)["image"][0]
    with pytest.raises(DataError, match=message):
        data.load_visual(table.parent, ref)


def test_the_index_is_cached_and_renewed_when_the_file_changes(table, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = tsv.index_tsv(table, cache)
    monkeypatch.setattr(tsv, "_scan", lambda *a: pytest.fail("read again"))
    assert tsv.index_tsv(table, cache) == first
    monkeypatch.undo()
    write(table, [{"index": 1, "question": "new", "image": _png((1, 2, 3))}])
    assert [row["question"] for row in tsv.index_tsv(table, cache)[1]] == ["new"]


def test_a_reference_outside_the_root_is_refused(table, tmp_path):
    with pytest.raises(DataError):
        data.load_visual(tmp_path / "elsewhere", "../bench.tsv#0:0")


@pytest.mark.parametrize("text", ["", "index\tquestion\n"])
def test_files_without_rows_or_index_are_refused_or_empty(tmp_path, text):
    path = tmp_path / "x.tsv"
    path.write_text(text)
    if not text:
        with pytest.raises(DataError, match="is empty"):
            tsv.index_tsv(path)
    else:
        assert tsv.index_tsv(path)[1] == []
    path.write_text("question\timage\nq\tabc\n")
    with pytest.raises(DataError, match="no 'index' column"):
        tsv.index_tsv(path)


def test_a_lone_carriage_return_is_one_line_naming_the_row(tmp_path):
    """csv refuses a carriage return inside an unquoted field; the file is refused (it is not a
    TSV pandas would write) in one line that says where, not with csv's traceback."""
    path = tmp_path / "cr.tsv"
    image = "x" * 100
    path.write_bytes(f"index\tquestion\tanswer\timage\n7\tfine?\tA\t{image}\n8\tbro\rken?\tB\t{image}\n".encode())
    with pytest.raises(DataError) as refused:
        tsv.index_tsv(path)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: the record after the row with index '7' (data row 2) is not valid TSV: ")


# --- --limit: read only as far as the rows used -------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["own", "earlier", "later", "none", "dangling", "blank"]), min_size=1, max_size=12),
       limit=st.integers(min_value=1, max_value=14))
def test_a_limited_index_is_the_start_of_the_whole_one(tmp_path_factory, kinds, limit):
    """Rows that hold their image, name an earlier or a later row's, hold none or name no row,
    with blank lines between: the first `limit` rows come out as the whole index gives them,
    with the same file digest."""
    path = tmp_path_factory.mktemp("limited") / "bench.tsv"
    lines = ["index\tquestion\timage"]
    n = len(kinds)
    for i, kind in enumerate(kinds):
        if kind == "blank":
            lines.append("")
            continue
        image = {"own": "i" * 80 + str(i), "earlier": str(max(i - 1, 0)), "later": str(n - 1),
                 "none": "", "dangling": "999"}[kind]
        lines.append(f"{i}\tq{i}\t{image}")
    path.write_text("\n".join(lines) + "\n")
    columns, rows, digest = tsv.index_tsv(path)
    assert tsv.index_tsv(path, limit=limit) == (columns, rows[:limit], digest)


def test_a_limited_index_stops_reading_where_its_rows_end(tmp_path):
    """The rows after the limit (here: not even TSV) are never parsed, unless a kept row names a
    later row's image; the file's digest is taken from its bytes once and then kept."""
    path = tmp_path / "long.tsv"
    image = _png((255, 0, 0))
    head = f"index\tquestion\timage\n1\tfirst\t{image}\n2\tsecond\t1\n3\tthird\t{image}\n"
    path.write_bytes(head.encode() + b"4\tbro\rken\t" + image.encode() + b"\n")
    with pytest.raises(DataError, match="not valid TSV"):
        tsv.index_tsv(path)
    columns, rows, digest = tsv.index_tsv(path, tmp_path / "cache", limit=2)
    assert [row["question"] for row in rows] == ["first", "second"] and rows[1]["image"] == rows[0]["image"]
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert tsv.index_tsv(path, tmp_path / "cache", limit=3)[2] == digest
    path.write_bytes(head.replace("\t1\n", "\t3\n").encode() + b"4\tbro\rken\t" + image.encode() + b"\n")
    assert [row["question"] for row in tsv.index_tsv(path, limit=2)[1]] == ["first", "second"]  # row 3, then stop
    path.write_bytes(head.replace("\t1\n", "\t9\n").encode() + b"4\tbro\rken\t" + image.encode() + b"\n")
    with pytest.raises(DataError, match="not valid TSV"):  # row 9 could be anywhere after
        tsv.index_tsv(path, limit=2)
