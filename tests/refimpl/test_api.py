"""The public API's promises that do not depend on a particular method: registry, options, targets, adapter files."""

from __future__ import annotations

import json

import pytest
import torch

import refimpl
from refimpl.core.persistence import CONFIG_FILE, WEIGHTS_FILE

from .conftest import tiny_batch, train_steps


def test_methods_lists_every_registered_method_with_its_paper():
    infos = refimpl.methods()
    assert {"lora", "bitfit", "bottleneck_adapter", "prompt_tuning"} <= {info.name for info in infos}
    for info in infos:
        assert info.papers and info.summary and info.update_rule and info.trainable
        assert info.module.startswith(f"refimpl.{info.category}.")


def test_unknown_method_is_refused_with_the_known_names(fresh):
    with pytest.raises(refimpl.RefimplError, match="unknown method 'lorax'.*lora"):
        refimpl.apply(fresh("bert"), "lorax")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"r": 0}, "option 'r'"),
        ({"alpha": -1}, "option 'alpha'"),
        ({"target_modules": ["no_such_layer"]}, "option 'target_modules'.*matches no"),
        ({"target_modules": "(unclosed"}, "option 'target_modules'.*invalid regular expression"),
    ],
)
def test_invalid_options_are_named_in_the_error(fresh, options, message):
    model = fresh("bert")
    with pytest.raises(refimpl.RefimplError, match=message):
        refimpl.apply(model, "lora", **options)
    assert not refimpl.is_adapted(model), "a failed apply must leave the model as it was"


def test_target_modules_accepts_suffixes_regex_and_all_linear(fresh):
    by_suffix = refimpl.apply(fresh("llama"), "lora", target_modules=["q_proj"])
    by_regex = refimpl.apply(fresh("llama"), "lora", target_modules=r".*\.q_proj")
    all_linear = refimpl.apply(fresh("llama"), "lora", target_modules="all-linear")
    assert refimpl.trainable_parameters(by_suffix) == refimpl.trainable_parameters(by_regex)
    adapted = {name.rsplit(".", 1)[0] for name, p in all_linear.named_parameters() if p.requires_grad}
    assert not any("lm_head" in name for name in adapted)
    assert len(adapted) == 2 * 7  # 2 blocks × (q, k, v, o, gate, up, down)


def test_merge_is_refused_for_methods_that_do_not_fold_into_the_weights(fresh):
    model = refimpl.apply(fresh("bert"), "bottleneck_adapter")
    with pytest.raises(refimpl.RefimplError, match="cannot be folded"):
        refimpl.merge(model)


def test_merge_twice_and_unmerge_without_merge_are_refused(fresh):
    model = refimpl.apply(fresh("bert"), "lora")
    with pytest.raises(refimpl.RefimplError, match="not merged"):
        refimpl.unmerge(model)
    refimpl.merge(model)
    with pytest.raises(refimpl.RefimplError, match="already merged"):
        refimpl.merge(model)


def test_trainable_parameters_of_a_plain_model_counts_requires_grad(fresh):
    model = fresh("bert")
    trainable, total = refimpl.trainable_parameters(model)
    assert trainable == total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "increlora", "head_mask"])
def test_train_head_trains_a_new_head_with_any_method_and_counts_it_on_top(fresh, method, tmp_path):
    plain = refimpl.apply(fresh("bert"), method)
    model = refimpl.apply(fresh("bert"), method, train_head=True)
    head = {name for name, p in model.named_parameters() if name.startswith("classifier.")}
    assert head and all(p.requires_grad for name, p in model.named_parameters() if name in head)
    head_size = sum(p.numel() for name, p in model.named_parameters() if name in head)
    assert refimpl.trainable_parameters(model)[0] == refimpl.trainable_parameters(plain)[0] + head_size
    train_steps(model, tiny_batch("bert"), steps=2)
    refimpl.save_adapter(model, tmp_path)
    reloaded = refimpl.load_adapter(fresh("bert"), tmp_path).eval()
    inputs = {k: v for k, v in tiny_batch("bert").items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model.eval()(**inputs).logits)
    refimpl.remove(model)
    assert not any(p.requires_grad is False for p in model.parameters())  # the base comes back as it was


def test_train_head_on_a_method_with_its_own_option_is_that_option(fresh):
    model = refimpl.apply(fresh("bert"), "bottleneck_adapter", train_head=False)
    assert not any(p.requires_grad for name, p in model.named_parameters() if name.startswith("classifier."))


@pytest.fixture
def saved_lora(fresh, tmp_path):
    model = refimpl.apply(fresh("bert"), "lora", r=4)
    train_steps(model, tiny_batch("bert"), steps=2)
    refimpl.save_adapter(model, tmp_path)
    return tmp_path


def test_adapter_files_are_safetensors_and_json_naming_method_options_and_base(saved_lora):
    config = json.loads((saved_lora / CONFIG_FILE).read_text())
    assert config["method"] == "lora" and config["options"]["r"] == 4
    assert config["base_model_class"] == "BertForSequenceClassification"
    assert (saved_lora / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # safetensors: u64 header size, then JSON
    assert sorted(config["tensors"]) == sorted(k for k in config["tensors"] if "lora_" in k)


def _assert_refused_and_untouched(model, path, message):
    names = [name for name, _ in model.named_parameters()]
    with pytest.raises(refimpl.RefimplError, match=message):
        refimpl.load_adapter(model, path)
    assert not refimpl.is_adapted(model)
    assert [name for name, _ in model.named_parameters()] == names


def test_loading_onto_another_base_class_is_refused(saved_lora, fresh):
    _assert_refused_and_untouched(fresh("gpt2"), saved_lora, "saved from a BertForSequenceClassification")


def test_loading_onto_a_base_with_another_config_names_the_difference(saved_lora, fresh):
    _assert_refused_and_untouched(
        fresh("bert", hidden=64), saved_lora, "hidden_size: adapter has 32, model has 64"
    )


def test_truncated_weights_are_refused(saved_lora, fresh):
    weights = saved_lora / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    _assert_refused_and_untouched(fresh("bert"), saved_lora, "not a valid safetensors file")


def test_corrupted_header_is_refused(saved_lora, fresh):
    weights = saved_lora / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[8:16] = b"garbage!"
    weights.write_bytes(bytes(data))
    _assert_refused_and_untouched(fresh("bert"), saved_lora, "not a valid safetensors file")


def test_a_config_that_does_not_match_its_weights_is_refused(saved_lora, fresh):
    config_path = saved_lora / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["options"]["r"] = 8  # the weights were saved with r=4
    config_path.write_text(json.dumps(config))
    _assert_refused_and_untouched(fresh("bert"), saved_lora, "has shape")


def test_an_invalid_config_is_refused_naming_the_field(saved_lora, fresh):
    config_path = saved_lora / CONFIG_FILE
    config = json.loads(config_path.read_text())
    del config["method"]
    config_path.write_text(json.dumps(config))
    _assert_refused_and_untouched(fresh("bert"), saved_lora, "method: Field required")


def test_planned_methods_are_not_registered():
    assert not refimpl.planned_methods() & {info.name for info in refimpl.methods()}


def test_prompts_go_after_cls_in_encoders_so_the_classifier_still_sees_each_input(fresh):
    model = refimpl.apply(fresh("bert"), "prompt_tuning", prompt_length=4)
    batch = tiny_batch("bert", batch=4)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    assert not torch.allclose(logits[0], logits[1:]), "every input got the same logits: [CLS] is hidden"
