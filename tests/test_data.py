"""Reading the CS224N files: real-data quirks and bad input."""
from __future__ import annotations

import logging

import pytest

from minbert_core.data import load_split

HEADER = {"sst": "\tid\tsentence\tsentiment\n", "sts": "\tid\tsentence1\tsentence2\tsimilarity\n",
          "para": "\tid\tsentence1\tsentence2\tis_duplicate\n"}


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("task,split,n,skipped", [
    ("sst", "train", 8544, 0), ("sst", "dev", 1101, 0), ("sst", "test", 2210, 0),
    ("cfimdb", "train", 1707, 0), ("cfimdb", "dev", 245, 0), ("cfimdb", "test", 488, 0),
    ("para", "dev", 20212, 2), ("sts", "train", 6040, 0), ("sts", "test", 1725, 0),
])
def test_real_files(data_root, task, split, n, skipped):
    s = load_split(task, split, root=data_root)
    assert len(s) == n and len(s.skipped) == skipped and s.rows_read == n + skipped
    e = s.examples[0]
    assert e.text_a == e.text_a.strip() and len(e.id) == 25  # leading space stripped, real id column
    assert (e.label is None) == (split == "test")


def test_quora_train_size_is_read_not_assumed(data_root):
    """Whatever size the file has (13,507 rows offline, 141,505 upstream), every row is read."""
    import csv

    with (data_root / "quora-train.csv").open(newline="", encoding="utf-8") as f:
        rows = sum(1 for _ in csv.reader(f, delimiter="\t")) - 1  # counted here, independently; less the header
    s = load_split("para", "train", root=data_root)
    assert s.rows_read == rows and len(s) == rows - len(s.skipped)


def test_quora_dev_empty_labels_reported_with_line(data_root, caplog):
    with caplog.at_level(logging.WARNING, "minbert.data"):
        s = load_split("para", "dev", root=data_root)
    lines = [ln for ln, _ in s.skipped]
    assert len(lines) == 2
    assert any("missing is_duplicate" in r for _, r in s.skipped)
    assert all(f"quora-dev.csv:{ln}" in caplog.text for ln in lines)


def test_quora_dev_doubled_quotes_parsed(data_root):
    s = load_split("para", "dev", root=data_root)
    quoted = [e for e in s.examples if '"the"' in e.text_a]
    assert quoted, "fields with doubled quotes must unescape to plain quotes"


def test_test_student_extra_index_column(data_root):
    s = load_split("sst", "test", root=data_root)
    assert s.examples[0].id == "b7573736a6ddf7be102b7fee0"
    assert s.examples[0].text_a == "Effective but too-tepid biopic"


def test_bad_rows_skipped_counted_and_named(tmp_path, caplog):
    p = _write(tmp_path, "sst.csv", HEADER["sst"] + "0\ta\t good\t3\n1\tb\t bad label\t7\n2\tc\t too few\n"
               "3\td\t fine\t0\n")
    with caplog.at_level(logging.WARNING, "minbert.data"):
        s = load_split("sst", "train", path=p)
    assert [e.id for e in s.examples] == ["a", "d"]
    assert s.rows_read == 4
    assert s.skipped == [(3, "label '7' is not a class in 0..4"), (4, "too few fields (3, need 4)")]
    assert "sst.csv:3" in caplog.text and "sst.csv:4" in caplog.text and "skipped 2 of 4 rows" in caplog.text


def test_bad_similarity(tmp_path):
    p = _write(tmp_path, "sts.csv", HEADER["sts"] + "0\ta\tx\ty\tabc\n1\tb\tx\ty\t7.5\n2\tc\tx\ty\t2.5\n")
    s = load_split("sts", "train", path=p)
    assert [e.label for e in s.examples] == [2.5]
    assert s.skipped == [(2, "similarity 'abc' is not a number"), (3, "similarity '7.5' is outside 0..5")]


def test_missing_file_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_split("sst", "train", root=tmp_path)
    assert str(tmp_path / "ids-sst-train.csv") in str(e.value) and "minbert data fetch" in str(e.value)


def test_missing_optional_quora_test_is_none(tmp_path):
    assert load_split("para", "test", root=tmp_path) is None


def test_empty_split_is_an_error(tmp_path):
    p = _write(tmp_path, "sst.csv", HEADER["sst"])
    with pytest.raises(ValueError, match="no usable examples"):
        load_split("sst", "train", path=p)
    p = _write(tmp_path, "bad.csv", HEADER["sst"] + "0\ta\tx\t9\n")
    with pytest.raises(ValueError, match="1 skipped"):
        load_split("sst", "train", path=p)


def test_wrong_header_and_unknown_task(tmp_path):
    p = _write(tmp_path, "sst.csv", "\tid\ttext\tlabel\n0\ta\tb\t1\n")
    with pytest.raises(ValueError, match="lacks column.*sentence"):
        load_split("sst", "train", path=p)
    with pytest.raises(ValueError, match="unknown task 'imdb'"):
        load_split("imdb", "train")
