"""Prefix-tuning: agrees with huggingface peft (counts and outputs), folds its MLP away without changing the
outputs, masks padding correctly around the prefix, and can be limited to chosen layers."""

from __future__ import annotations

import pytest
import torch
from peft import PrefixTuningConfig, TaskType, get_peft_model

import refimpl
from refimpl.core.architectures import architecture_of, named_blocks
from refimpl.models import tiny_model
from refimpl.prompt.prefix_tuning import fold_reparameterization

from .conftest import tiny_batch, train_steps

LENGTH, MID = 5, 16


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
@pytest.mark.parametrize("projection", [False, True], ids=["direct", "mlp"])
def test_matches_peft_prefix_tuning_in_count_and_outputs(model_type, projection):
    config = PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=LENGTH,
        prefix_projection=projection,
        encoder_hidden_size=MID,
    )
    theirs = get_peft_model(tiny_model(model_type), config)
    ours = refimpl.apply(
        tiny_model(model_type),
        "prefix_tuning",
        prefix_length=LENGTH,
        reparameterization=projection,
        mid_dim=MID,
    )
    assert refimpl.trainable_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]

    encoder = theirs.prompt_encoder["default"]
    with torch.no_grad():
        if projection:
            ours.prefix_tuning.embedding.copy_(encoder.embedding.weight)
            ours.prefix_tuning.mlp.load_state_dict(encoder.transform.state_dict())
        else:
            ours.prefix_tuning.prefix.copy_(encoder.embedding.weight)
    batch = tiny_batch(model_type)
    torch.testing.assert_close(logits(ours, batch), logits(theirs, batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_folding_the_mlp_keeps_outputs_and_stores_only_the_prefix(model_type, tmp_path):
    model = refimpl.apply(tiny_model(model_type), "prefix_tuning", prefix_length=LENGTH, mid_dim=MID)
    batch = tiny_batch(model_type)
    train_steps(model, batch, steps=2)
    before = logits(model, batch)
    fold_reparameterization(model)
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=1e-6)
    config = model.config
    kv = 16 if model_type == "llama" else config.hidden_size  # LLaMA: 2 kv heads × head_dim 8
    assert refimpl.trainable_parameters(model)[0] == LENGTH * config.num_hidden_layers * 2 * kv
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(tiny_model(model_type), tmp_path)
    assert not hasattr(loaded.prefix_tuning, "mlp")
    torch.testing.assert_close(logits(loaded, batch), before, rtol=0, atol=1e-6)
    with pytest.raises(refimpl.RefimplError, match="reparameterised"):
        fold_reparameterization(model)


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_padding_is_masked_but_the_prefix_is_seen(model_type):
    model = refimpl.apply(tiny_model(model_type), "prefix_tuning", prefix_length=LENGTH, mid_dim=MID)
    batch = tiny_batch(model_type, batch=2, length=8)
    mask = batch["attention_mask"].clone()
    mask[1, 5:] = 0  # right padding: the second sequence has 5 real tokens
    padded = model(input_ids=batch["input_ids"], attention_mask=mask).logits
    alone = logits(model, {"input_ids": batch["input_ids"][1:, :5], "attention_mask": mask[1:, :5]})
    expected = alone[0] if model_type == "bert" else alone[0, :5]
    got = padded[1] if model_type == "bert" else padded[1, :5]
    torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-5)
    refimpl.remove(model)
    assert not torch.allclose(
        logits(model, {"input_ids": batch["input_ids"][1:, :5], "attention_mask": mask[1:, :5]}), alone
    )


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_eager_and_sdpa_attention_see_the_same_prefix(model_type):
    batch = tiny_batch(model_type)
    mask = batch["attention_mask"].clone()
    mask[1, 8:] = 0
    results = []
    for implementation in ("sdpa", "eager"):  # the masks reach attention in different forms
        model = tiny_model(model_type)
        model.set_attn_implementation(implementation)
        torch.manual_seed(1)
        refimpl.apply(model, "prefix_tuning", prefix_length=LENGTH, mid_dim=MID)
        results.append(logits(model, {"input_ids": batch["input_ids"], "attention_mask": mask}))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-5)


def key_rows(model, batch) -> list[int]:
    """How many key rows each block's attention computes on `batch`: the input's length, plus n where a
    prefix is spliced in (hooks added after the prefix's own run after them, so they see the prefixed keys)."""
    rows: list[int] = []
    _, blocks = named_blocks(model)
    key = architecture_of(model).key
    handles = [
        block.get_submodule(key).register_forward_hook(lambda module, args, out: rows.append(out.shape[1]))
        for block in blocks
    ]
    logits(model, batch)
    for handle in handles:
        handle.remove()
    return rows


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_a_prefix_only_in_the_chosen_layers_with_a_table_of_exactly_those(model_type, tmp_path):
    model = refimpl.apply(
        tiny_model(model_type, layers=3), "prefix_tuning", prefix_length=LENGTH, mid_dim=MID, layers=[2, 0]
    )
    batch = tiny_batch(model_type)
    length = batch["input_ids"].shape[1]
    assert key_rows(model, batch) == [length + LENGTH, length, length + LENGTH]
    kv = 16 if model_type == "llama" else model.config.hidden_size
    assert model.prefix_tuning.mlp[-1].out_features == 2 * 2 * kv  # two prefixed blocks' keys and values
    train_steps(model, batch, steps=2)
    before = logits(model, batch)
    fold_reparameterization(model)
    assert refimpl.trainable_parameters(model)[0] == LENGTH * 2 * 2 * kv
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(tiny_model(model_type, layers=3), tmp_path)
    torch.testing.assert_close(logits(loaded, batch), before, rtol=0, atol=1e-6)


def test_blocks_before_the_first_prefix_compute_what_the_base_computes():
    # LLaMA: rotary positions are relative, so shifting them past the prefix changes no attention score.
    batch = tiny_batch("llama")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        base = tiny_model("llama", layers=3)(**inputs, output_hidden_states=True).hidden_states
        model = refimpl.apply(
            tiny_model("llama", layers=3), "prefix_tuning", prefix_length=LENGTH, layers=[1]
        )
        adapted = model(**inputs, output_hidden_states=True).hidden_states
    for before_block in (0, 1):  # the embeddings, and block 0's output
        torch.testing.assert_close(adapted[before_block], base[before_block], rtol=0, atol=1e-5)
    assert not torch.allclose(adapted[2], base[2], atol=1e-3)


@pytest.mark.parametrize(
    ("layers", "problem"),
    [
        ([2], r"no block \[2\] in a model with 2 blocks"),
        ([0, 0], "repeated"),
        ([], "at least one"),
        ([-1], "-1"),
    ],
    ids=["past-the-last", "repeated", "empty", "negative"],
)
def test_layers_that_are_not_distinct_blocks_of_the_model_are_refused_by_name(layers, problem):
    model = tiny_model("bert")
    with pytest.raises(refimpl.RefimplError, match=f"layers: .*{problem}"):
        refimpl.apply(model, "prefix_tuning", layers=layers)
    assert not hasattr(model, "prefix_tuning")
