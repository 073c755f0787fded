"""Reading the CS224N tab-separated data files (SST-5, CFIMDB, Quora, STS-B).

Bad labelled rows are reported with file and line, skipped and counted; they never reach training.
Test rows are never skipped (the submission file needs every id): a damaged one is kept, reported
and counted. One line is one record, so a record count never drops silently below the line count.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger("minbert.data")

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a task's files live and how to read its label."""

    files: dict[str, str]  # split -> file name
    text_columns: tuple[str, ...]  # one column (single sentence) or two (pair)
    label_column: str
    parse_label: Callable[[str], float | int]  # raises ValueError on an invalid label
    test_optional: bool = False  # the unlabeled test file may be absent (Quora's, offline)


# A plain decimal number: float() also reads 'inf', 'nan', '1_0' and non-ASCII digits, none of which
# is a label in these files
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(s: str, what: str) -> float:
    """`s` as a finite float; anything else is a ValueError naming `what` (1e400 included)."""
    if not _NUMBER.fullmatch(s):
        raise ValueError(f"{what} {s!r} is not a number")
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"{what} {s!r} is out of range")
    return v


def _class_label(n: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        v = _number(s, "label")
        if v != int(v) or not 0 <= v < n:
            raise ValueError(f"label {s!r} is not a class in 0..{n - 1}")
        return int(v)
    return parse


def _similarity(s: str) -> float:
    v = _number(s, "similarity")
    if not 0.0 <= v <= 5.0:
        raise ValueError(f"similarity {s!r} is outside 0..5")
    return v


def _reversed_sentiment(s: str) -> int:
    """An SST-5 label read backwards (y -> 4 - y): Table 5's sst_rev and sst_rev_tied tasks (see tasks.py)."""
    return 4 - _class_label(5)(s)


DATASETS: dict[str, DatasetSpec] = {
    "sst": DatasetSpec({"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv",
                        "test": "ids-sst-test-student.csv"}, ("sentence",), "sentiment", _class_label(5)),
    "cfimdb": DatasetSpec({"train": "ids-cfimdb-train.csv", "dev": "ids-cfimdb-dev.csv",
                           "test": "ids-cfimdb-test-student.csv"}, ("sentence",), "sentiment",
                          _class_label(2)),
    "para": DatasetSpec({"train": "quora-train.csv", "dev": "quora-dev.csv",
                         "test": "quora-test-student.csv"}, ("sentence1", "sentence2"), "is_duplicate",
                        _class_label(2), test_optional=True),
    "sts": DatasetSpec({"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test-student.csv"},
                       ("sentence1", "sentence2"), "similarity", _similarity),
    # Table 5's reversed SST (sst_rev, sst_rev_tied): SST's own files and sentences, every label reversed
    "sst_rev": DatasetSpec({"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv",
                            "test": "ids-sst-test-student.csv"}, ("sentence",), "sentiment", _reversed_sentiment),
}
DATASETS["sst_rev_tied"] = DATASETS["sst_rev"]  # the same rows; the task reads them through SST's head


@dataclass(frozen=True)
class Example:
    """One labelled (or, for test-student, unlabelled) example."""

    id: str
    text_a: str
    text_b: str | None = None
    label: float | int | None = None


@dataclass
class Split:
    """The examples read from one file, with every skipped row and why."""

    task: str
    split: str
    path: Path
    examples: list[Example]
    rows_read: int  # records in the file, header excluded
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    repaired: list[tuple[int, str]] = field(default_factory=list)  # rows kept despite a fault: (line, what)

    def __len__(self) -> int:
        return len(self.examples)


def data_dir() -> Path:
    """The data folder: $MINBERT_DATA, else ./data."""
    return Path(os.environ.get("MINBERT_DATA", "data")).expanduser()


def file_path(task: str, split: str, root: str | Path | None = None) -> Path:
    """Path of a task's split file; unknown task or split is an error naming the valid ones."""
    if task not in DATASETS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    return Path(root if root is not None else data_dir()) / DATASETS[task].files[split]


def _records(text: str) -> Iterator[tuple[int, list[str], str | None]]:
    """(line number, fields, note) for every non-blank line: in these formats one line is one record.

    A line is read as CSV (so '"a ""b"" c"' is 'a "b" c') but never past its own end: a quote that
    does not close on its line would otherwise swallow the records after it. Such a line, or a quoted
    field holding a tab (no sentence has one), is read as plain tab-separated text, and the note says so.
    """
    for no, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        if not line:
            continue  # a blank line is not a record
        try:
            row = next(csv.reader([line], delimiter="\t", strict=True))
        except csv.Error:
            row = None
        if row is None or any("\t" in f for f in row):
            yield no, line.split("\t"), "a quote does not close within its field; read as plain tab-separated text"
        else:
            yield no, row, None


def _utf8_text(p: Path) -> str:
    """A file's text; bytes that are not UTF-8 are an error naming the file and line."""
    raw_bytes = p.read_bytes()
    try:
        return raw_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = raw_bytes[: e.start].count(b"\n") + 1
        raise ValueError(f"{p}:{line_no}: not UTF-8 text (byte 0x{raw_bytes[e.start]:02x}); the file is damaged: "
                         "fetch it again with `minbert data fetch`") from None


def _extra_fields(row: list[str], width: int) -> str | None:
    """Why a row has more non-empty fields than its header, or None."""
    if len(row) > width and any(f.strip() for f in row[width:]):
        return f"too many fields ({len(row)}, the header has {width}): a tab inside a sentence?"
    return None


def _parse_labelled(row: list[str], spec: DatasetSpec, cols: dict[str, int],
                    width: int) -> tuple[Example | None, str | None]:
    """A train or dev row as an Example, or (None, the reason it is skipped)."""
    need = max(cols.values()) + 1
    if len(row) < need:
        return None, f"too few fields ({len(row)}, need {need})"
    extra = _extra_fields(row, width)
    if extra:
        return None, extra
    texts = [row[cols[c]].strip() for c in spec.text_columns]
    if any(not t for t in texts):
        return None, "empty sentence"
    if any("\x00" in t for t in texts):
        return None, "NUL byte in a sentence"
    raw = row[cols[spec.label_column]].strip()
    if not raw:
        return None, f"missing {spec.label_column}"
    try:
        label = spec.parse_label(raw)
    except (ValueError, ArithmeticError) as e:  # a parser's overflow is an invalid label like any other
        return None, str(e)
    return Example(row[cols["id"]].strip(), texts[0], texts[1] if len(texts) > 1 else None, label), None


def _refuse_non_file(p: Path) -> None:
    """A data path that exists but is no regular file is named as what it is, not as 'not found':
    reading a folder fails, a FIFO blocks and /dev/zero never ends."""
    if p.exists() and not p.is_file():
        kind = "is a directory" if p.is_dir() else "is not a regular file (a FIFO, socket or device)"
        raise ValueError(f"{p}: {kind}; a data path must be the CSV file itself: point it at the file")


def _parse_test(row: list[str], spec: DatasetSpec, cols: dict[str, int],
                width: int) -> tuple[Example | None, str | None]:
    """A test row as an Example and a note on what was wrong with it (None: nothing). A test row is
    kept whatever its sentences hold, since the submission needs its id (an empty sentence encodes
    as [CLS] [SEP]); only a row without an id is (None, why)."""
    def get(c: str) -> str | None:
        return row[cols[c]] if cols[c] < len(row) else None

    rid = (get("id") or "").strip()
    if not rid:
        return None, "has no id"
    notes = [n for n in (_extra_fields(row, width),) if n]
    texts = []
    for c in spec.text_columns:
        t = get(c)
        if t is None:
            notes.append(f"no {c} field, read as empty")
        elif "\x00" in t:
            notes.append(f"NUL byte in {c} removed")
        t = (t or "").replace("\x00", "").strip()
        if not t and get(c) is not None:
            notes.append(f"empty {c}")
        texts.append(t)
    return Example(rid, texts[0], texts[1] if len(texts) > 1 else None), "; ".join(notes) or None


def _read_rows(out: Split, text: str, spec: DatasetSpec) -> None:
    """Parse every record of a file's text into `out`: examples, skipped rows and repaired ones."""
    labelled, p = out.split != "test", out.path
    records = _records(text)
    header = next(records, (0, None, None))[1]
    if header is None:
        raise ValueError(f"{p}: empty file (no header)")
    # test-student files carry an extra unnamed index column, so find columns by name.
    wanted = ("id",) + spec.text_columns + ((spec.label_column,) if labelled else ())
    absent = [c for c in wanted if c not in header]
    if absent:
        raise ValueError(f"{p}: header lacks column(s) {', '.join(absent)}; header is {header}")
    cols = {c: header.index(c) for c in wanted}
    for line, row, read_note in records:
        out.rows_read += 1
        example, note = (_parse_labelled if labelled else _parse_test)(row, spec, cols, len(header))
        if example is None and not labelled:
            raise ValueError(f"{p}:{line}: test row {note}; the submission file needs every test id: "
                             "fix the row or fetch the file again")
        if example is None:
            out.skipped.append((line, note))
            log.warning("%s:%d: skipped row: %s", p, line, note)
            continue
        note = "; ".join(n for n in (read_note, note) if n)
        if note:
            out.repaired.append((line, note))
            log.warning("%s:%d: row kept: %s", p, line, note)
        out.examples.append(example)


def load_split(task: str, split: str, root: str | Path | None = None, limit: int | None = None,
               path: str | Path | None = None, sample_seed: int = 0) -> Split | None:
    """Read one split. Returns None only for an optional test file that is absent.

    limit: keep a random sample of `limit` valid examples, in file order (for fast profiles). The
        files are ordered (SST train starts with mostly positive reviews), so a plain head would be
        biased. The sample depends on `sample_seed` only, so every run of a study sees the same rows.
    path: read this file instead of the standard location (tests, custom data).
    """
    spec = DATASETS[task] if task in DATASETS else None
    if spec is None:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(DATASETS)}")
    p = Path(path) if path is not None else file_path(task, split, root)
    _refuse_non_file(p)
    if not p.is_file():
        if split == "test" and spec.test_optional:
            log.warning("%s: not found; %s test predictions will be skipped", p, task)
            return None
        raise FileNotFoundError(
            f"{p}: data file not found. Get the data with `minbert data fetch` (online), or "
            + (f"`minbert data fetch --from DIR`, or pass a --data-dir that has it (now: {root})"
               if root is not None else
               f"`minbert data fetch --from DIR`, or point MINBERT_DATA at a folder that has it "
               f"(now: {data_dir()})")
        )
    out = Split(task, split, p, [], 0)
    _read_rows(out, _utf8_text(p), spec)
    if out.skipped:
        log.warning("%s: skipped %d of %d rows (see warnings above)", p, len(out.skipped), out.rows_read)
    if out.repaired:
        log.warning("%s: kept %d of %d rows despite a fault (see warnings above)", p, len(out.repaired),
                    out.rows_read)
    if not out.examples:
        raise ValueError(f"{p}: no usable examples ({out.rows_read} rows read, {len(out.skipped)} skipped)")
    if limit is not None and limit < len(out.examples):
        keep = sorted(random.Random(sample_seed).sample(range(len(out.examples)), limit))
        out.examples = [out.examples[i] for i in keep]
    return out
