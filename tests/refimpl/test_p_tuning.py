"""P-tuning: the BiLSTM + MLP prompt encoder matches huggingface peft's LSTM PromptEncoder in size and output."""

from __future__ import annotations

import pytest
import torch
from peft import PromptEncoderConfig, TaskType, get_peft_model

import refimpl
from refimpl.models import tiny_model

from .conftest import tiny_batch

LENGTH = 4


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_matches_peft_lstm_prompt_encoder_in_count_and_outputs(model_type):
    base = tiny_model(model_type)
    config = PromptEncoderConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=LENGTH,
        encoder_reparameterization_type="LSTM",
        encoder_hidden_size=base.config.hidden_size // 2,  # the paper's d/2 units per direction
        encoder_num_layers=2,
    )
    theirs = get_peft_model(base, config)
    ours = refimpl.apply(tiny_model(model_type), "p_tuning", prompt_length=LENGTH)
    assert refimpl.trainable_parameters(ours)[0] == theirs.get_nb_trainable_parameters()[0]

    encoder = theirs.prompt_encoder["default"]
    with torch.no_grad():
        ours.prompt_encoder.embedding.copy_(encoder.embedding.weight)
        ours.prompt_encoder.lstm.load_state_dict(encoder.lstm_head.state_dict())
        ours.prompt_encoder.mlp.load_state_dict(encoder.mlp_head.state_dict())
        batch = tiny_batch(model_type)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        expected = theirs(**inputs).logits[:, LENGTH:]  # peft keeps the prompt positions in its logits
        torch.testing.assert_close(ours(**inputs).logits, expected, rtol=0, atol=1e-5)


def test_prompt_tokens_depend_on_each_other_through_the_lstm():
    model = refimpl.apply(tiny_model("bert"), "p_tuning", prompt_length=LENGTH)
    encoder = model.prompt_encoder
    before = encoder.prompt().detach().clone()
    with torch.no_grad():
        encoder.embedding[0] += 1.0  # change only the first input embedding
    changed = (encoder.prompt() - before).abs().amax(dim=1)
    assert (changed > 0).all(), "every prompt vector sees the first embedding via the bidirectional LSTM"
