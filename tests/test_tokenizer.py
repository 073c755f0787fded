"""The checkpoint's WordPiece tokenizer on single sentences and pairs."""
from __future__ import annotations

from minbert_core.tokenizer import encode, load_tokenizer


def test_single_sentence_and_pair_layout():
    tok = load_tokenizer("minilm-l6")
    [single] = encode(tok, ["Hello world"])
    assert single["input_ids"][0] == tok.cls_token_id and single["input_ids"][-1] == tok.sep_token_id
    assert set(single["token_type_ids"]) == {0}
    [pair] = encode(tok, ["a cat"], ["a dog"])
    ids, tt = pair["input_ids"], pair["token_type_ids"]
    seps = [i for i, t in enumerate(ids) if t == tok.sep_token_id]
    assert ids[0] == tok.cls_token_id and len(seps) == 2 and seps[-1] == len(ids) - 1
    # sentence A (with [CLS] and its [SEP]) is type 0, sentence B (with its [SEP]) is type 1
    assert tt[: seps[0] + 1] == [0] * (seps[0] + 1) and tt[seps[0] + 1:] == [1] * (len(ids) - seps[0] - 1)


def test_uncased_vocab_and_truncation():
    tok = load_tokenizer("minilm-l6")
    assert encode(tok, ["HELLO"])[0] == encode(tok, ["hello"])[0]
    long = " ".join(["word"] * 500)
    assert len(encode(tok, [long], max_length=16)[0]["input_ids"]) == 16
    assert len(encode(tok, [long], [long], max_length=20)[0]["input_ids"]) == 20


def test_ids_are_the_vocab_files_wordpieces():
    """Checked against the checkpoint's vocab.txt, not against the tokenizer itself: the wordpieces
    are written out by hand (BERT's README: "John Johanson 's house" -> john johan ##son ' s house)."""
    from minbert_core.checkpoints import resolve_checkpoint

    vocab = {w: i for i, w in enumerate((resolve_checkpoint("minilm-l6") / "vocab.txt").read_text(
        encoding="utf-8").splitlines())}
    tok = load_tokenizer("minilm-l6")
    [ours] = encode(tok, ["John Johanson 's house"], ["Two dogs ."])
    pieces = ["[CLS]", "john", "johan", "##son", "'", "s", "house", "[SEP]", "two", "dogs", ".", "[SEP]"]
    assert ours["input_ids"] == [vocab[w] for w in pieces]
    assert ours["token_type_ids"] == [0] * 8 + [1] * 4


def test_tokenizer_from_a_checkpoint_folder(tiny_checkpoint):
    tok = load_tokenizer(str(tiny_checkpoint))
    assert tok.vocab_size == 30522


def test_packaged_checkpoint_can_come_from_a_copied_folder(tmp_path, monkeypatch):
    """MINBERT_MINILM_L6_DIR: a copy of the packaged folder, for machines without the package."""
    import shutil

    from minbert_core.checkpoints import resolve_checkpoint

    src = resolve_checkpoint("minilm-l6")
    for f in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / f, tmp_path / f)
    monkeypatch.setenv("MINBERT_MINILM_L6_DIR", str(tmp_path))
    assert resolve_checkpoint("minilm-l6") == tmp_path
    assert load_tokenizer("minilm-l6").vocab_size == 30522
