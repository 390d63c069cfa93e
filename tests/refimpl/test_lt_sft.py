"""LT-SFT (Ansell et al.): keep the K weights that full fine-tuning changed most, re-train them from θ0."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_gpt2
from refimpl.selective.lt_sft import select_lottery_ticket

from .conftest import task_data, tiny_batch, train_steps


def fully_finetuned():
    model = tiny_gpt2()
    train_steps(model, tiny_batch("gpt2"), steps=3)
    return model.state_dict()


def test_the_ticket_is_the_top_k_of_the_phase_one_changes_and_phase_two_starts_from_the_base():
    finetuned, base = fully_finetuned(), tiny_gpt2().state_dict()
    names = [
        f"transformer.h.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    # GPT-2's Conv1D stores in × out; the ticket indexes weights as out × in.
    change = torch.cat([(finetuned[n] - base[n]).T.flatten().abs() for n in names])
    model = refimpl.apply(tiny_gpt2(), "lt_sft")
    k = model.sparse_delta.values.numel()
    assert k == round(0.01 * change.numel())
    kept = select_lottery_ticket(model, finetuned, k=k)
    assert set(kept.tolist()) == set(change.topk(k).indices.tolist())
    batch = tiny_batch("gpt2")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, tiny_gpt2()(**batch).logits)


def test_deltas_give_the_same_ticket_as_the_finetuned_state_and_a_wrong_k_is_refused():
    finetuned, base = fully_finetuned(), tiny_gpt2().state_dict()
    deltas = {name: finetuned[name] - base[name] for name in base}
    model = refimpl.apply(tiny_gpt2(), "lt_sft")
    from_state = select_lottery_ticket(model, finetuned)
    assert torch.equal(select_lottery_ticket(model, deltas, are_deltas=True), from_state)
    with pytest.raises(refimpl.RefimplError, match="K ="):
        select_lottery_ticket(model, finetuned, k=3)


def test_prepare_runs_phase_one_as_the_tasks_full_fine_tuning_and_keeps_its_ticket():
    finetuned = fully_finetuned()
    model = tiny_gpt2()  # phase 1 of `prepare`: the task's fine-tuned model, here the same three steps
    model.load_state_dict(finetuned)
    data = task_data(fine_tuned=lambda: model)
    prepared = refimpl.apply(tiny_gpt2(), "lt_sft")
    refimpl.prepare(prepared, data)
    expected = refimpl.apply(tiny_gpt2(), "lt_sft")
    select_lottery_ticket(expected, finetuned)
    assert torch.equal(prepared.sparse_delta.indices, expected.sparse_delta.indices)
