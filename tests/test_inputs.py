"""Inputs that used to lose rows, test ids or whole runs (issue 21): user files with a stray quote, an
empty test sentence or a non-finite label; configs with a non-finite or absurd number; checkpoints
whose tables do not fit what the tokenizer and the data feed them."""
from __future__ import annotations

import csv
import logging

import pytest

from minbert_core.data import DATASETS, load_split

QUORA = "\tid\tsentence1\tsentence2\tis_duplicate\n"
STS_TEST = "\tid\tsentence1\tsentence2\n"
SST_TEST = "\tid\tsentence\n"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---- one line is one record: a stray quote swallows nothing -----------------------------------------

def _quora(rows):
    return QUORA + "".join(f"{i}\tq{i}\t{a}\t{b}\t{y}\n" for i, (a, b, y) in enumerate(rows, 1))


ROWS = [("How do I learn Python?", "What is the best way to learn Python?", "1.0"),
        ("Is it cold in Oslo?", "Is it hot in Cairo?", "0.0"),
        ("Why is the sky blue?", "What makes the sky blue?", "1.0"),
        ("How tall is Everest?", "How old is Everest?", "0.0"),
        ('What does "ok" mean?', "Where does the word ok come from?", "1.0"),
        ("Is tea healthy?", "Is coffee healthy?", "0.0")]


@pytest.mark.parametrize("row,col,text", [
    (1, 0, '"Dune is the best book ever, is it?'),  # the case: sentence1 opens a quote, never closes it
    (2, 1, '"Which sci-fi book is best?'),  # the same in sentence2
    (0, 0, '"How do I ""learn"" Python?'),  # an escaped quote inside the open one
])
def test_a_stray_quote_swallows_no_records(tmp_path, caplog, row, col, text):
    rows = [list(r) for r in ROWS]
    rows[row][col] = text
    p = _write(tmp_path, "quora-train.csv", _quora(rows))
    with caplog.at_level(logging.WARNING, "minbert.data"):
        s = load_split("para", "train", path=p)
    assert s.rows_read == 6 and len(s) == 6 and not s.skipped
    assert [e.label for e in s.examples] == [1, 0, 1, 0, 1, 0]
    assert [e.id for e in s.examples] == [f"q{i}" for i in range(1, 7)]
    assert s.repaired == [(row + 2, "a quote does not close within its field; read as plain tab-separated text")]
    assert f"quora-train.csv:{row + 2}: row kept" in caplog.text
    assert s.examples[4].text_a == 'What does "ok" mean?'  # a quote inside a field stays a quote


def test_a_quoted_tab_is_a_skipped_record_not_a_merged_one(tmp_path):
    """A quoted field that closes but holds a tab: no sentence in these formats has one, so the line is
    read as plain text; its extra field makes it a reported, counted skip, and no other row moves."""
    rows = [list(r) for r in ROWS]
    rows[3][1] = '"a quoted field\twith a tab"'
    s = load_split("para", "train", path=_write(tmp_path, "quora-train.csv", _quora(rows)))
    assert s.rows_read == 6 and [e.id for e in s.examples] == ["q1", "q2", "q3", "q5", "q6"]
    assert s.skipped == [(5, "too many fields (6, the header has 5): a tab inside a sentence?")]
    assert [e.label for e in s.examples] == [1, 0, 1, 1, 0]


def test_quoted_fields_still_unescape(tmp_path):
    p = _write(tmp_path, "quora-dev.csv", QUORA + '1\ta\t"He said ""hi"" twice"\tb\t1\n2\tb\tc\td\t0\n')
    s = load_split("para", "dev", path=p)
    assert s.examples[0].text_a == 'He said "hi" twice' and not s.repaired and len(s) == 2


def test_shipped_files_parse_to_their_manifest_counts(data_root):
    """Every record of every shipped file is read, and none needs the plain-text fallback."""
    manifest = {r["file"]: int(r["rows"]) for r in
                csv.DictReader((data_root / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")}
    checked = 0
    for task, spec in DATASETS.items():
        for split, name in spec.files.items():
            if name not in manifest:
                continue
            s = load_split(task, split, root=data_root)
            assert s.rows_read == manifest[name] == len(s) + len(s.skipped), name
            assert not s.repaired, (name, s.repaired[:3])
            checked += 1
    assert checked >= len(manifest) - 1  # every file but, at most, one no task reads


# ---- labels: every invalid one is skipped with its line, none aborts the run ------------------------

@pytest.mark.parametrize("task,label", [("sst", "inf"), ("sst", "-inf"), ("sst", "nan"), ("sst", "1e400"),
                                        ("sst", "Infinity"), ("sst", "2_0"), ("para", "1e400"),
                                        ("para", "inf"), ("sts", "1e400"), ("sts", "nan"), ("sts", "4_5")])
def test_non_finite_and_odd_labels_are_skipped_with_their_line(tmp_path, caplog, task, label):
    spec = DATASETS[task]
    header = "\tid\t" + "\t".join(spec.text_columns) + f"\t{spec.label_column}\n"
    texts = "\t".join("a sentence" for _ in spec.text_columns)
    good = {"sst": "2", "para": "1", "sts": "2.5"}[task]
    p = _write(tmp_path, "f.csv", header + f"0\ta\t{texts}\t{good}\n1\tb\t{texts}\t{label}\n")
    with caplog.at_level(logging.WARNING, "minbert.data"):
        s = load_split(task, "train", path=p)
    assert [e.id for e in s.examples] == ["a"] and [ln for ln, _ in s.skipped] == [3]
    assert repr(label) in s.skipped[0][1] and "f.csv:3: skipped row" in caplog.text


# ---- test rows are never skipped: the submission needs every id -------------------------------------

@pytest.mark.parametrize("line,note", [
    ("2\tt2\tI agree with you on that point.\t\n", "empty sentence2"),  # the case
    ("2\tt2\t \tA dog is running.\n", "empty sentence1"),
    ("2\tt2\tI agree with you on that point.\n", "no sentence2 field, read as empty"),
    ("2\tt2\tI agree\x00.\tYes.\n", "NUL byte in sentence1 removed"),
    ("2\tt2\tI agree\twith a tab.\tYes.\n", "too many fields (5, the header has 4): a tab inside a sentence?"),
])
def test_a_damaged_test_row_keeps_its_id(tmp_path, caplog, line, note):
    p = _write(tmp_path, "sts-test-student.csv", STS_TEST + "1\tt1\tA band plays.\tA band sings.\n" + line
               + "3\tt3\tA dog runs.\tA dog is running.\n")
    with caplog.at_level(logging.WARNING, "minbert.data"):
        s = load_split("sts", "test", path=p)
    assert [e.id for e in s.examples] == ["t1", "t2", "t3"] and not s.skipped
    assert s.repaired == [(3, note)] and "sts-test-student.csv:3: row kept" in caplog.text


def test_an_empty_single_sentence_test_row_keeps_its_id(tmp_path):
    p = _write(tmp_path, "t.csv", SST_TEST + "0\ta\tGood.\n1\tb\t   \n")
    s = load_split("sst", "test", path=p)
    assert [(e.id, e.text_a) for e in s.examples] == [("a", "Good."), ("b", "")]


def test_a_test_row_without_an_id_is_an_error_naming_its_line(tmp_path):
    p = _write(tmp_path, "t.csv", SST_TEST + "0\ta\tGood.\n1\t \tBad.\n")
    with pytest.raises(ValueError, match=r"t\.csv:3: test row has no id; the submission file needs every test id"):
        load_split("sst", "test", path=p)


# ---- config numbers: non-finite and absurd values are refused at construction, naming the key --------

@pytest.mark.parametrize("key,value", [
    ("lr_finetune", "nan"), ("lr_finetune", float("nan")), ("lr_finetune", 1e308), ("lr_pretrain", "inf"),
    ("lr_head", float("-inf")), ("lr_task_weights", float("nan")), ("lr_task_weights", 2.0), ("weight_decay", "1e400"), ("weight_decay", 1e6), ("time_budget_s", float("inf")),
    ("target_overall", float("nan")), ("target_overall", 2.0), ("head_dropout", "nan"),
    ("encoder_dropout", float("nan")), ("lr_finetune", 10**400), ("seed", 2**40)])
def test_non_finite_or_absurd_numbers_are_refused_naming_the_key(key, value):
    from minbert_core.train import TrainConfig

    with pytest.raises(ValueError, match=f"^{key} must be"):
        TrainConfig(**{key: value})


@pytest.mark.parametrize("key,value", [("loss_weights", "sts=1e308"), ("loss_weights", "sts=nan"),
                                       ("dev_limits", "para=1e400"), ("dev_limits", "para=2.5")])
def test_per_task_numbers_are_refused_naming_the_key(key, value):
    from minbert_core.train import TrainConfig

    with pytest.raises(ValueError, match=f"^{key}: "):
        TrainConfig(**{key: value})


def test_cli_nan_learning_rate_fails_before_the_run_folder(tmp_path, data_root, capsys):
    from minbert_core.cli import main

    runs = tmp_path / "runs"
    assert main(["train", "--task", "sst", "--checkpoint", "random:tiny", "--runs-dir", str(runs),
                 "--data-dir", str(data_root), "--lr-finetune", "nan"]) == 2
    assert capsys.readouterr().err.startswith("error: lr_finetune must be float (a finite number); got nan")
    assert not runs.exists()


# ---- a checkpoint's config.json: every number checked when it is read, naming the file and key -------

TINY_HF = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=128, type_vocab_size=2)


@pytest.mark.parametrize("key,value,says", [
    ("hidden_size", 1e12, "hidden_size must be a whole number"), ("hidden_size", 10**12, "hidden_size must be"),
    ("hidden_size", -32, "hidden_size must be"), ("hidden_size", "32", "hidden_size must be"),
    ("hidden_size", 30, "hidden_size 30 is not divisible by num_attention_heads 4"),
    ("num_attention_heads", 0, "num_attention_heads must be"), ("num_hidden_layers", 1.5, "num_hidden_layers must be"),
    ("vocab_size", 10**9, "vocab_size must be"), ("max_position_embeddings", 0, "max_position_embeddings must be"),
    ("type_vocab_size", 0, "type_vocab_size must be"), ("layer_norm_eps", float("nan"), "layer_norm_eps must be"),
    ("hidden_dropout_prob", 2.0, "hidden_dropout_prob must be"), ("pad_token_id", 40000, "pad_token_id 40000"),
    ("vocab_size", 2**22, "parameters, over 1e+10"),
])
def test_checkpoint_config_is_checked_naming_file_and_key(tmp_path, key, value, says):
    import json

    from minbert_core.model import BertModel

    d = {**TINY_HF, key: value}
    if value == 2**22:  # each size in bounds, the encoder they make is not (a 512 GB word table)
        d.update(hidden_size=2**15)
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        BertModel.from_pretrained(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'config.json'}: ") and says in msg and "\n" not in msg, msg


# ---- a checkpoint's tables must take what the tokenizer and the data feed them -----------------------

def _checkpoint(tmp_path, name, **shape):
    """A tiny random checkpoint folder of `shape` with the MiniLM uncased vocabulary."""
    import shutil

    from conftest import TINY

    from minbert_core.checkpoints import resolve_checkpoint
    from minbert_core.config import override
    from minbert_core.sanity import random_checkpoint

    folder = random_checkpoint(override(TINY, shape), tmp_path / name)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (resolve_checkpoint("minilm-l6") / f).is_file():  # tokenizer.json: no slow-to-fast conversion
            shutil.copy(resolve_checkpoint("minilm-l6") / f, folder)
    return folder


RUN = dict(epochs=1, train_limit=16, eval_limit=8, batch_size=8, telemetry_every=0, max_length=32)


def test_one_row_token_type_table_takes_pairs_as_type_0(tmp_path, data_root):
    """The case: type_vocab_size 1 (several BERT-family checkpoints have no segment table) and
    cross-encoded pairs; it failed after the run folder was made with a 73-line IndexError."""
    from minbert_core.train import Trainer, TrainConfig

    cfg = TrainConfig(**RUN, tasks=("sts",), strategy="sum", checkpoint=str(_checkpoint(tmp_path, "tt1",
                      type_vocab_size=1)), data_dir=str(data_root))
    tr = Trainer(cfg, tmp_path / "run", progress=False)
    m = tr.run()
    assert m["status"] == "complete" and m["predictions"][-1] == "predictions/sts-test-output.csv"
    assert any("1 token type (type_vocab_size) and cross-encoded pairs (sts) use 2: every token gets type 0" in w
               for w in m["warnings"])
    assert {t for f in tr.data["sts"]["train"].features for t in f["token_type_ids"]} == {0}


def test_two_row_table_keeps_both_token_types(tmp_path, data_root):
    from minbert_core.build import fit_inputs, load_run_data
    from minbert_core.train import TrainConfig

    cfg = TrainConfig(**RUN, tasks=("sts",), strategy="sum", checkpoint="random:tiny", data_dir=str(data_root))
    assert fit_inputs(cfg).token_types and not fit_inputs(cfg).notes
    data = load_run_data(cfg, ("sts",))[0]
    assert {t for f in data["sts"]["train"].features for t in f["token_type_ids"]} == {0, 1}


@pytest.mark.parametrize("shape,args,says", [
    ({"vocab_size": 1000}, [], "its tokenizer has 30522 tokens but the word-embedding table has 1000 rows"),
    ({"hidden_size": 10**12}, [], "config.json: hidden_size must be a whole number in 1..32768; got 1000000000000"),
    ({"num_attention_heads": 5}, [], "config.json: hidden_size 32 is not divisible by num_attention_heads 5"),
])
def test_a_checkpoint_that_cannot_take_the_data_fails_before_the_run_folder(tmp_path, data_root, capsys, shape,
                                                                              args, says):
    import json

    from minbert_core.cli import main

    folder = _checkpoint(tmp_path, "ck")
    if "vocab_size" in shape:
        folder = _checkpoint(tmp_path, "ck2", **shape)
    else:  # sizes our own BertConfig refuses to build: written into config.json by hand
        (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                        **shape}))
    runs = tmp_path / "runs"
    assert main(["multitask", "--tasks", "sts", "--strategy", "sum", "--checkpoint", str(folder), "--runs-dir",
                 str(runs), "--data-dir", str(data_root), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err
    assert not runs.exists()


def _cfimdb(tmp_path, test_words: int):
    """A CFIMDB folder: short training and dev reviews, and one test review of about `test_words` tokens."""
    d = tmp_path / "cfimdb"
    d.mkdir()
    head = "\tid\tsentence\tsentiment\n"
    rows = "".join(f"{i}\tr{i}\t{'a fine film' if i % 2 else 'a dull film'}\t{i % 2}\n" for i in range(8))
    (d / "ids-cfimdb-train.csv").write_text(head + rows)
    (d / "ids-cfimdb-dev.csv").write_text(head + rows)
    (d / "ids-cfimdb-test-student.csv").write_text("\tid\tsentence\n0\tt0\tshort review\n"
                                                   f"1\tt1\t{' '.join(['film'] * test_words)}\n")
    return d


def test_max_length_above_the_positions_is_capped_and_the_run_finishes(tmp_path, caplog):
    """The case: --max-length 1024 on an encoder of 512 positions trained, then failed writing test
    predictions (no metrics.json, no test file). Here: 128 positions, --max-length 256, a 200-token review."""
    import json

    from minbert_core.cli import main

    folder = _checkpoint(tmp_path, "ck")  # max_position_embeddings 128
    runs = tmp_path / "runs"
    assert main(["train", "--task", "cfimdb", "--checkpoint", str(folder), "--max-length", "256", "--epochs", "1",
                 "--runs-dir", str(runs), "--run-id", "r", "--data-dir", str(_cfimdb(tmp_path, 200))]) == 0
    m = json.loads((runs / "r" / "metrics.json").read_text())
    assert m["status"] == "complete"
    assert sorted(m["predictions"]) == ["predictions/cfimdb-dev-output.csv", "predictions/cfimdb-test-output.csv"]
    test_ids = [ln.split(" , ")[0] for ln in (runs / "r" / m["predictions"][1]).read_text().splitlines()[1:]]
    assert sorted(test_ids) == ["t0", "t1"]
    note = "max_length 256 is above the 128 positions of checkpoint"
    assert any(note in w and "cut at 128 tokens" in w for w in m["warnings"]) and note in caplog.text


def test_an_empty_test_sentence_is_predicted_and_submitted(tmp_path, data_root):
    """The case: test row 2 with an empty sentence2 was skipped; the submission lacked its id, exit 0."""
    import shutil

    from minbert_core.train import TrainConfig, train

    d = tmp_path / "data"
    d.mkdir()
    for split in ("train", "dev"):
        shutil.copy(data_root / f"sts-{split}.csv", d)
    (d / "sts-test-student.csv").write_text(STS_TEST + "1\tt1\tA band is performing.\tA band is playing.\n"
                                            "2\tt2\tI agree with you on that point.\t\n"
                                            "3\tt3\t\tA dog is running in a garden.\n")
    run = train(TrainConfig(**{**RUN, "eval_limit": 0}, tasks=("sts",), strategy="sum", checkpoint="random:tiny",
                            dev_limits="sts=8", runs_dir=str(tmp_path / "runs"), data_dir=str(d), run_id="r"))
    lines = (run / "predictions" / "sts-test-output.csv").read_text().splitlines()
    assert [ln.split(" , ")[0] for ln in lines[1:]] == ["t1", "t2", "t3"]


@pytest.mark.parametrize("tasks,max_length", [(("sts",), 3), (("sst",), 2), (("sts",), 1)])
def test_max_length_with_no_room_beside_the_special_tokens_is_refused(tasks, max_length):
    """Below [CLS] [SEP] ([SEP]) the tokenizer does not truncate at all: a 600-token review would reach the
    encoder whole, past its positions."""
    from minbert_core.build import fit_inputs
    from minbert_core.tokenizer import encode, load_tokenizer
    from minbert_core.train import TrainConfig

    with pytest.raises(ValueError, match=f"max_length {max_length} .*leaves no room for a token beside"):
        fit_inputs(TrainConfig(tasks=tasks, checkpoint="random:tiny", max_length=max_length, strategy="sum"))
    pair = ["a b c d"] if len(tasks[0]) == 3 else None
    with pytest.raises(ValueError, match=f"max_length {max_length} leaves no room"):
        encode(load_tokenizer("minilm-l6"), ["one two three four five"], pair, max_length=max_length)
