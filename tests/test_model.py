"""minBERT against transformers.BertModel: loading, both attention paths, errors."""
from __future__ import annotations

import json

import pytest
import torch

from minbert_core import BertConfig, BertModel
from minbert_core.sanity import PARITY_SHAPES, parity, random_checkpoint

TOL = 1e-5


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_packaged_minilm_matches_transformers(impl):
    r = parity("minilm-l6", attn_impl=impl)
    assert r["hidden_max_abs_diff"] <= TOL and r["pooler_max_abs_diff"] <= TOL, r


@pytest.mark.parametrize("shape", list(PARITY_SHAPES))
@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_random_init_shapes_match_transformers(tmp_path, shape, impl):
    folder = random_checkpoint(PARITY_SHAPES[shape], tmp_path / shape)
    r = parity(folder, attn_impl=impl)
    assert r["hidden_max_abs_diff"] <= TOL and r["pooler_max_abs_diff"] <= TOL, r


def test_attention_paths_agree_in_training_mode_without_dropout(tiny_checkpoint):
    a = BertModel.from_pretrained(tiny_checkpoint, attn_impl="sdpa", attention_probs_dropout_prob=0.0,
                                  hidden_dropout_prob=0.0).train()
    b = BertModel.from_pretrained(tiny_checkpoint, attn_impl="reference", attention_probs_dropout_prob=0.0,
                                  hidden_dropout_prob=0.0).train()
    ids = torch.randint(1000, 2000, (3, 9))
    am = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    ya, yb = a(ids, am).last_hidden_state, b(ids, am).last_hidden_state
    assert (ya - yb)[am.bool()].abs().max() < TOL
    ya.sum().backward()  # the fast path is differentiable
    assert a.embeddings.word_embeddings.weight.grad is not None


def test_parameter_names_are_huggingface_names():
    names = set(BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32)).state_dict())
    for k in ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
              "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.key.bias",
              "encoder.layer.0.attention.self.value.weight", "encoder.layer.0.attention.output.dense.weight",
              "encoder.layer.0.attention.output.LayerNorm.bias", "encoder.layer.0.intermediate.dense.weight",
              "encoder.layer.0.output.dense.weight", "encoder.layer.0.output.LayerNorm.weight",
              "pooler.dense.weight"]:
        assert k in names


def test_loading_prints_nothing(tiny_checkpoint, capsys):
    BertModel.from_pretrained(tiny_checkpoint)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_bert_prefixed_checkpoint_with_heads_loads(tmp_path, tiny_checkpoint):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_checkpoint / "model.safetensors"))
    pref = {f"bert.{k}": v for k, v in sd.items()}
    pref["cls.predictions.bias"] = torch.zeros(3)
    (tmp_path / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    save_file(pref, str(tmp_path / "model.safetensors"))
    m = BertModel.from_pretrained(tmp_path)
    assert torch.equal(m.pooler.dense.weight, sd["pooler.dense.weight"])


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path, tiny_checkpoint):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_checkpoint / "model.safetensors"))
    del sd["pooler.dense.bias"]
    sd["encoder.layer.0.extra.weight"] = torch.zeros(2)
    sd["embeddings.token_type_embeddings.weight"] = torch.zeros(3, 32)
    (tmp_path / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        BertModel.from_pretrained(tmp_path)
    msg = str(e.value)
    assert "missing (1): pooler.dense.bias" in msg
    assert "unexpected (1): encoder.layer.0.extra.weight" in msg
    assert "embeddings.token_type_embeddings.weight: checkpoint (3, 32) vs model (2, 32)" in msg


def test_bad_checkpoint_locations(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BertConfig(hidden_size=8, num_attention_heads=2,
                                                                num_hidden_layers=1).to_hf_dict()))
    with pytest.raises(FileNotFoundError, match="no weights file"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        BertModel.from_pretrained(tmp_path / "nope")


def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=10, num_attention_heads=3)
    from minbert_core import override

    with pytest.raises(ValueError, match="unknown BertConfig key.*hiden_size"):
        override(BertConfig(), hiden_size=3)
    assert override(BertConfig(), hidden_dropout_prob=0.3).hidden_dropout_prob == 0.3


def test_too_long_input_is_a_clear_error():
    m = BertModel(BertConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, intermediate_size=8,
                             max_position_embeddings=4))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        m(torch.ones(1, 5, dtype=torch.long))


@pytest.mark.parametrize("impl", ["sdpa", "reference"])
def test_unpadded_batch_matches_transformers(tiny_checkpoint, impl):
    import transformers

    ours = BertModel.from_pretrained(tiny_checkpoint, attn_impl=impl)
    ref = transformers.BertModel.from_pretrained(str(tiny_checkpoint), attn_implementation="eager").eval()
    ids = torch.randint(1000, 2000, (3, 11))
    tt = torch.zeros_like(ids)
    tt[:, 6:] = 1
    with torch.no_grad():
        a = ours(ids, torch.ones_like(ids), tt)
        b = ref(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=tt)
    assert (a.last_hidden_state - b.last_hidden_state).abs().max() <= TOL
    assert (a.pooler_output - b.pooler_output).abs().max() <= TOL


def _assert_kept_share(y: torch.Tensor, p: float) -> None:
    """The share of non-zero outputs is 1 - p within 4 standard errors."""
    n = y.numel()
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 4 * ((p * (1 - p)) / n) ** 0.5, kept


def test_cpu_dropout_keeps_one_minus_p_and_scales_kept_values():
    from minbert_core.model import Dropout

    torch.manual_seed(0)
    n, p = 400_000, 0.1
    x = torch.ones(n, requires_grad=True)
    d = Dropout(p).train()
    y = d(x)
    _assert_kept_share(y, p)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient uses the forward's mask and scale
    assert d.eval()(x) is x and Dropout(0.0).train()(x) is x


def test_cpu_dropout_is_seeded_by_the_global_generator():
    from minbert_core.model import Dropout

    d, x = Dropout(0.3).train(), torch.randn(64, 64)
    torch.manual_seed(1)
    a = d(x)
    torch.manual_seed(1)
    b = d(x)
    c = d(x)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_attention_paths_share_the_cpu_dropout_in_training(tiny_checkpoint):
    """On the CPU with dropout, the sdpa path takes the explicit one, so both draw the same masks."""
    a = BertModel.from_pretrained(tiny_checkpoint, attn_impl="sdpa").train()
    b = BertModel.from_pretrained(tiny_checkpoint, attn_impl="reference").train()
    assert a.config.attention_probs_dropout_prob > 0
    ids = torch.randint(1000, 2000, (3, 9))
    am = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    torch.manual_seed(0)
    ya = a(ids, am).last_hidden_state
    torch.manual_seed(0)
    yb = b(ids, am).last_hidden_state
    assert (ya - yb)[am.bool()].abs().max() < TOL
    a.eval()
    assert (a(ids, am).last_hidden_state - ya)[am.bool()].abs().max() > 1e-3  # dropout was active


def test_cpu_dropout_keeps_one_minus_p_in_bfloat16():
    from minbert_core.model import Dropout

    torch.manual_seed(0)
    n, p = 400_000, 0.1
    y = Dropout(p).train()(torch.ones(n, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    _assert_kept_share(y, p)
