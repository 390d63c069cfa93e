"""Cross-checks against huggingface peft (used only here): the same configuration must give the same number of
trainable parameters and, with peft's weights copied into ours, the same logits."""

from __future__ import annotations

import pytest
import torch

import refimpl

from .conftest import tiny_batch

peft = pytest.importorskip("peft")

PEFT_PREFIX = "base_model.model."
LORA_TARGETS = {"bert": ["query", "value"], "gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"]}
PEFT_TASK = {"bert": "SEQ_CLS", "gpt2": "CAUSAL_LM", "llama": "CAUSAL_LM"}


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def peft_trainable(peft_model) -> dict[str, torch.Tensor]:
    return {name: p for name, p in peft_model.named_parameters() if p.requires_grad}


def lora_pair(fresh, model_type):
    """peft's LoRA model and ours on the same base, with peft's factors (B perturbed off zero) copied into ours."""
    targets = LORA_TARGETS[model_type]
    config = peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, fan_in_fan_out=model_type == "gpt2"
    )
    reference = peft.get_peft_model(fresh(model_type), config)
    ours = refimpl.apply(fresh(model_type), "lora", r=4, alpha=8.0, target_modules=targets)
    factors = peft_trainable(reference)
    ours_by_name = dict(ours.named_parameters())
    with torch.no_grad():
        for name, tensor in factors.items():
            if ".lora_B." in name:
                tensor.normal_(std=1.0)  # B starts at zero: perturb it, or equal logits prove nothing
            ours_by_name[name.removeprefix(PEFT_PREFIX).replace(".default.weight", "")].copy_(tensor)
    return reference, ours


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_lora_matches_peft_in_count_and_logits(fresh, model_type):
    reference, ours = lora_pair(fresh, model_type)
    assert refimpl.trainable_parameters(ours)[0] == reference.get_nb_trainable_parameters()[0]
    batch = tiny_batch(model_type)
    expected = logits(reference, batch)
    assert (expected - logits(fresh(model_type), batch)).abs().max() > 1e-3
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_riemannian_preconditioner_takes_the_same_step_as_peft(fresh, model_type):
    from peft.optimizers import create_riemannian_optimizer

    from refimpl.reparameterization.moe_lora import RiemannianPreconditioner

    reference, ours = lora_pair(fresh, model_type)
    batch = tiny_batch(model_type)
    peft_optimizer = create_riemannian_optimizer(reference, torch.optim.SGD, lr=0.1, reg=0.05)
    ours_optimizer = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=0.1)
    before = {name: p.clone() for name, p in ours.named_parameters() if p.requires_grad}
    for model, step in (
        (reference, peft_optimizer.step),
        (ours, RiemannianPreconditioner(ours, delta=0.05).step),
    ):
        model(**batch).loss.backward()
        step()
    ours_optimizer.step()
    after = dict(ours.named_parameters())
    for name, tensor in peft_trainable(reference).items():
        ours_name = name.removeprefix(PEFT_PREFIX).replace(".default.weight", "")
        assert not torch.equal(after[ours_name], before[ours_name])
        torch.testing.assert_close(after[ours_name], tensor, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_prompt_tuning_matches_peft_in_count_and_logits(fresh, model_type):
    length = 5
    config = peft.PromptTuningConfig(task_type=PEFT_TASK[model_type], num_virtual_tokens=length)
    reference = peft.get_peft_model(fresh(model_type), config)
    ours = refimpl.apply(fresh(model_type), "prompt_tuning", prompt_length=length)

    prompt_tables = {n: p for n, p in peft_trainable(reference).items() if n.startswith("prompt_encoder.")}
    # peft trains the classifier of a SEQ_CLS model as well (its modules_to_save); the prompt alone is compared.
    assert refimpl.trainable_parameters(ours)[0] == sum(p.numel() for p in prompt_tables.values())
    (prompt,) = prompt_tables.values()
    with torch.no_grad():
        ours.soft_prompt.embedding.copy_(prompt)
    if model_type == "bert":
        return  # deliberate difference: peft puts the prompt before [CLS], we keep [CLS] first for the classifier
    batch = tiny_batch(model_type)
    batch["attention_mask"][:, -3:] = 0  # padding, so the extended mask is exercised
    expected = logits(reference, batch)[
        :, length:
    ]  # peft returns logits for the virtual tokens too; ours cuts them
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_lora_fa_trains_as_many_parameters_as_peft_lorafa_optimizer(fresh, model_type):
    from peft.optimizers import create_lorafa_optimizer

    targets = LORA_TARGETS[model_type]
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, fan_in_fan_out=model_type == "gpt2")
    reference = peft.get_peft_model(fresh(model_type), config)
    create_lorafa_optimizer(reference, r=4, lora_alpha=8, lr=1e-3)  # peft's LoRA-FA freezes lora_A here
    ours = refimpl.apply(fresh(model_type), "lora_fa", r=4, alpha=8.0, target_modules=targets)
    assert refimpl.trainable_parameters(ours)[0] == reference.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize(
    "model_type", ["bert", "llama"]
)  # peft's LoKr takes nn.Linear only, not GPT-2's Conv1D
def test_krona_matches_peft_lokr_with_undecomposed_factors_in_count_and_logits(fresh, model_type):
    # LoKr with both factors kept whole (r large enough, decompose_both off) is KronA's update w1 ⊗ w2,
    # scaled by alpha / r = 1; peft's near-square factorisation gives the same shapes as ours here.
    targets = LORA_TARGETS[model_type]
    reference = peft.get_peft_model(fresh(model_type), peft.LoKrConfig(r=8, alpha=8, target_modules=targets))
    ours = refimpl.apply(fresh(model_type), "krona", target_modules=targets)
    assert refimpl.trainable_parameters(ours)[0] == reference.get_nb_trainable_parameters()[0]
    ours_by_name = dict(ours.named_parameters())
    with torch.no_grad():
        for name, tensor in peft_trainable(reference).items():
            tensor.normal_()  # peft zero-initialises one factor: make both non-trivial
            ours_name = name.removeprefix(PEFT_PREFIX).replace("lokr_w1.default", "kron_A")
            ours_by_name[ours_name.replace("lokr_w2.default", "kron_B")].copy_(tensor)
    batch = tiny_batch(model_type)
    torch.testing.assert_close(logits(ours, batch), logits(reference, batch), rtol=0, atol=1e-5)
