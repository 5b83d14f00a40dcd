"""VLMEvalKit-style TSV files: rows indexed once, images decoded one sample at a time.

    FILE.tsv (index, question, ..., image) -> index_tsv -> rows (image: "FILE.tsv#OFFSET:K") -> read_payload

The field's benchmarks ship as one TSV each (HR-Bench's 8K file is 4.6 GB), written by pandas
(`to_csv(sep="\\t")`: tab-separated, a field with a tab, quote or newline quoted with doubled
quotes). The `image` field holds a base64 image, a list of them written as Python's repr of a
list, or, to save space, the `index` of another row whose image it shares (a value of at most 64
characters, as VLMEvalKit reads it). Such a file is never held in memory: `index_tsv` reads it
once, a record at a time, and keeps every field except the image plus the byte offset of the
record that holds the image; `read_payload` seeks to that record and decodes that one image's base64. The
index is cached (keyed by the file's path, size and modification time), so a second run starts
without reading the images again.

An image list is split on its quotes, never evaluated. A row whose image is missing or names no
row keeps its place with `_error` set, so the run records that sample as lost and goes on.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import re
import sys
from pathlib import Path

from ..errors import DataError
from ..files import write_atomic

INDEX_VERSION = "1"
REFERENCE_MAX = 64          # an image field this short names another row's index (VLMEvalKit)
_REF = re.compile(r"^(?P<file>.+\.tsv)#(?P<offset>\d+):(?P<k>\d+)$")
_LISTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def image_ref(file: str, offset: int, k: int = 0) -> str:
    """How a row names its k-th image in a TSV file: "FILE.tsv#OFFSET:K"."""
    return f"{file}#{offset}:{k}"


def parse_ref(text: str) -> tuple[str, int, int] | None:
    """(file, offset, k) of an image reference, None for an ordinary path."""
    match = _REF.match(text)
    return (match["file"], int(match["offset"]), int(match["k"])) if match else None


def _records(handle, start: int = 0, digest=None):
    """(byte offset, fields) of each record of a TSV opened in binary at `start` (the bytes read
    also go into `digest`, a hashlib object, when one is given)."""
    csv.field_size_limit(sys.maxsize)  # an image field is megabytes long
    position, next_start = start, start

    def lines():
        nonlocal position
        for raw in handle:
            position += len(raw)
            if digest is not None:
                digest.update(raw)
            yield raw.decode("utf-8", errors="replace")

    for fields in csv.reader(lines(), delimiter="\t", quotechar='"', doublequote=True):
        record_start, next_start = next_start, position
        yield record_start, fields


def _image_count(value: str) -> int:
    return max(1, len(_LISTED.findall(value))) if value.startswith("[") else 1


def index_tsv(path: Path, cache: Path | None = None, limit: int | None = None) -> tuple[list[str], list[dict], str]:
    """(the columns, every row without its image, the file's sha256): each row's `image` is a
    list of references ("FILE.tsv#OFFSET:K", FILE relative to the TSV's folder) to the record
    holding its image.

    limit: only the first `limit` rows, exactly as the whole index would give them. The file is
    read only as far as those rows and the rows holding their images; the digest of the whole
    file is taken without parsing it (once, then cached), so a run with `--limit` reports the same
    data revision as a whole run."""
    stat = path.stat()
    key = hashlib.sha256(f"{INDEX_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache / f"tsv-index-{key}.json" if cache is not None else None
    if limit is not None:
        columns, rows, holders, indexes = _scan(path, None, limit)
        return columns, _link(path, rows, holders, indexes), file_sha256(path, cache, key)
    if cached is not None and cached.is_file():
        saved = json.loads(cached.read_text(encoding="utf-8"))
        return saved["columns"], saved["rows"], saved["sha256"]
    digest = hashlib.sha256()
    columns, rows, holders, indexes = _scan(path, digest)
    rows = _link(path, rows, holders, indexes)
    if cached is not None:
        write_atomic(cached, json.dumps({"columns": columns, "rows": rows, "sha256": digest.hexdigest()}),
                     sync=False)
        write_atomic(cache / f"tsv-sha256-{key}.txt", digest.hexdigest(), sync=False)
    return columns, rows, digest.hexdigest()


def file_sha256(path: Path, cache: Path | None = None, key: str | None = None) -> str:
    """The sha256 of a file's bytes, kept in `cache` under `key` (the file's path, size and time)."""
    saved = cache / f"tsv-sha256-{key}.txt" if cache is not None and key else None
    if saved is not None and saved.is_file():
        return saved.read_text(encoding="utf-8").strip()
    try:
        with open(path, "rb") as handle:
            value = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if saved is not None:
        write_atomic(saved, value, sync=False)
    return value


def _link(path: Path, rows: list[dict], holders: dict, indexes: set[str]) -> list[dict]:
    """The rows, each short image field replaced by references to the record it names."""
    for row in rows:
        target = row.pop("_image_of", None)
        if target is not None:
            holder = holders.get(target)
            if holder is None:
                row["_error"] = (f"its image names row {target!r}, which holds no image itself" if target in indexes else
                                 f"its image field {target!r} (short, so the index of the row holding its image) "
                                 "names no row of the file")
                row["image"] = []
            else:
                row["image"] = [image_ref(path.name, holder[0], k) for k in range(holder[1])]
    return rows


def _scan(path: Path, digest, limit: int | None = None):
    """One pass over the file: (columns, rows without images, where each row's own image is
    {index: (offset, count)}, every index seen). With `limit`, the pass stops once it has that
    many rows and has found the record of every image they name (a later row's, at worst the
    whole file); rows after the limit are read for their image only."""
    rows, holders, indexes = [], {}, set()
    wanted: set[str] = set()  # images named by the kept rows, not yet found
    try:
        with open(path, "rb") as handle:
            records = _records(handle, digest=digest)
            try:
                _, columns = next(records)
            except StopIteration:
                raise DataError(f"{path} is empty; expected a TSV with a header row") from None
            if "index" not in columns:
                raise DataError(f"{path} has no 'index' column (columns: {', '.join(columns[:12])})")
            position = {name: i for i, name in enumerate(columns)}
            for offset, fields in _named_errors(records, path, rows):
                if not any(fields):
                    continue  # a blank line
                full = limit is None or len(rows) < limit
                row = {name: fields[i] if i < len(fields) else None for name, i in position.items() if name != "image"}
                value = fields[position["image"]] if "image" in position and position["image"] < len(fields) else ""
                index = str(row["index"])
                indexes.add(index)
                if value and len(value) > REFERENCE_MAX:
                    holders[index] = (offset, _image_count(value))
                    wanted.discard(index)
                if not full:
                    if not wanted:
                        break
                    continue  # read past the limit only for the images the kept rows name
                if len(fields) != len(columns):
                    row["_error"] = f"the record has {len(fields)} fields, the header {len(columns)}"
                if not value:
                    row.setdefault("_error", "the row holds no image")
                    row["image"] = []
                elif len(value) <= REFERENCE_MAX:
                    row["_image_of"] = value.strip()
                    if row["_image_of"] not in holders:
                        wanted.add(row["_image_of"])
                else:
                    row["image"] = [image_ref(path.name, offset, k) for k in range(_image_count(value))]
                rows.append(row)
                if limit is not None and len(rows) >= limit and not wanted:
                    break  # the next record is not even parsed
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return [c for c in columns if c != "image"], rows, holders, indexes


def _named_errors(records, path: Path, rows: list[dict]):
    """`records`, with csv's own error (a lone carriage return in an unquoted field, ...) as a
    DataError in one line that names the row after which the file stops being a TSV."""
    try:
        yield from records
    except csv.Error as exc:
        after = f"after the row with index {rows[-1].get('index')!r}" if rows else "in the first row after the header"
        raise DataError(f"{path}: the record {after} (data row {len(rows) + 1}) is not valid TSV: {exc}; "
                        "fix the file (a field with a line break or a quote must be quoted)") from None


def read_payload(path: Path, offset: int, k: int = 0) -> bytes:
    """The bytes of the k-th image of the record at byte `offset` of a TSV file (DataError when
    the record or its base64 is damaged); `imaging.load_image` decodes them."""
    try:
        with open(path, "rb") as handle:
            header = next(_records(handle))[1]
            handle.seek(offset)
            _, fields = next(_records(handle, offset))
    except (OSError, StopIteration) as exc:
        raise DataError(f"cannot read the record at byte {offset} of {path.name}: {exc or 'end of file'}") from None
    if "image" not in header or header.index("image") >= len(fields):
        raise DataError(f"the record at byte {offset} of {path.name} has no image field")
    value = fields[header.index("image")]
    listed = [a or b for a, b in _LISTED.findall(value)] if value.startswith("[") else [value]
    if k >= len(listed):
        raise DataError(f"the record at byte {offset} of {path.name} holds {len(listed)} image(s), not {k + 1}")
    try:
        return base64.b64decode(listed[k], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"the image of the record at byte {offset} of {path.name} is not base64: {exc}") from None
