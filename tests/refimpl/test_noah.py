"""NOAH: a supernet of adapters, LoRA and VPT with per-block sizes, searched on validation
data, then retrained."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.hybrid.noah import evolutionary_search, set_subnet, subnet_loss

SUBNET = {"adapter_dims": [1, 0], "lora_ranks": [5, 9], "prompt_tokens": [0, 10]}


def test_a_subnet_of_the_supernet_computes_what_the_same_subnet_built_alone_computes(fresh, batch_for):
    batch = batch_for("vit")
    supernet = refimpl.apply(fresh("vit"), "noah", supernet=True)
    for parameter in supernet.parameters():  # move every module away from its zero start
        if parameter.requires_grad and parameter.dim() > 1:
            torch.nn.init.normal_(parameter, std=0.1)
    set_subnet(supernet, SUBNET)
    alone = refimpl.apply(fresh("vit"), "noah", **SUBNET)
    shared = dict(supernet.named_parameters())
    with torch.no_grad():
        for name, parameter in alone.named_parameters():
            if parameter.requires_grad:  # the subnet's weights are the leading slices of the supernet's
                parameter.copy_(shared[name][tuple(slice(0, n) for n in parameter.shape)])
        torch.testing.assert_close(alone(**batch).logits, supernet(**batch).logits)


def test_the_supernet_samples_a_new_subnet_at_every_training_forward(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "noah", supernet=True)
    model.train()
    seen = set()
    for _ in range(5):
        model(**batch_for("vit"))
        seen.add(
            tuple(model.noah_modules.prompts.active)
            + tuple(a.active for a in model.noah_modules.adapters.values())
        )
    assert len(seen) > 1


def test_the_search_returns_the_lowest_validation_loss_it_evaluated(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "noah", supernet=True)
    batch = batch_for("vit", seed=1)
    best, loss, history = evolutionary_search(model, batch, population=4, generations=2)
    assert len(history) >= 4 and loss == min(value for _, value in history)
    assert subnet_loss(model, batch, best) == pytest.approx(loss)
    retrained = refimpl.apply(fresh("vit"), "noah", **best)
    assert refimpl.trainable_parameters(retrained)[0] == refimpl.get_method("noah").expected_trainable(
        fresh("vit"), refimpl.get_method("noah").Options(**best)
    )


def test_a_configuration_needs_one_size_per_block(fresh):
    with pytest.raises(refimpl.RefimplError, match="lora_ranks"):
        refimpl.apply(fresh("vit"), "noah", lora_ranks=[1, 2, 3])
