"""The denoising task: the tiny UNet pre-trained on digits 0-4, adapted to 5-9 as a new word, with edge maps or
image prompts; scored by held-out noise-prediction MSE at fixed timesteps and noise."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from refimpl.core.registry import get_method
from refimpl.models.conditioning import CONDITION_KEY, IMAGE_EMBED_DIM, IMAGE_EMBEDS_KEY
from refimpl.tasks import choose_task
from refimpl.tasks.denoising import (
    EVAL_TIMESTEPS,
    NEW_WORD,
    PRETRAIN,
    Denoising,
    add_noise,
    prompted_latents,
    prompts,
    small_images,
)
from refimpl.tasks.digits import SOURCE_CLASSES, digits, indices_of
from refimpl.tasks.runner import FROZEN, FULL, execute

from .conftest import private_cache

METHODS = [
    ("textual_inversion", "unet"),
    ("ed_lora", "unet"),
    ("difffit", "unet"),
    ("controlnet", "unet_control"),
    ("controlnext", "unet_control"),
    ("t2i_adapter", "unet_control"),
    ("ip_adapter", "unet_image_prompt"),
]


@pytest.fixture(scope="module", autouse=True)
def short_pretraining(tmp_path_factory):
    with private_cache(tmp_path_factory, PRETRAIN):
        yield


def test_pretraining_sees_digits_0_to_4_each_prompted_by_its_own_word():
    indices = indices_of(SOURCE_CLASSES)
    labels = digits()[1][indices]
    examples = prompted_latents(indices, labels)
    assert set(labels.tolist()) == {0, 1, 2, 3, 4}
    assert torch.equal(examples["encoder_hidden_states"], prompts(labels))
    assert not torch.equal(prompts(labels[:1]), prompts(torch.tensor([NEW_WORD])))


def test_adaptation_is_digits_5_to_9_split_disjointly_all_prompted_by_the_new_word():
    task = Denoising("unet")
    train, test = task.target_examples("train"), task.target_examples("test")
    assert len(train["latents"]) + len(test["latents"]) == len(indices_of((5, 6, 7, 8, 9)))
    flat_train = {tuple(x.flatten().tolist()) for x in train["latents"]}
    assert (
        len(flat_train & {tuple(x.flatten().tolist()) for x in test["latents"]}) < 5
    )  # only duplicate images
    assert torch.equal(train["encoder_hidden_states"][0], prompts(torch.tensor([NEW_WORD]))[0])
    assert (train["encoder_hidden_states"] == train["encoder_hidden_states"][:1]).all()
    latents = test["latents"]
    assert latents.shape[1:] == (4, 8, 8) and latents.min() >= -1 and latents.max() <= 1
    assert (latents == latents[:, :1]).all()  # the 8x8 digit in every latent channel
    assert set(train) == {"latents", "encoder_hidden_states"}


def test_control_gets_edge_maps_and_image_prompt_gets_embeddings():
    control = Denoising("unet_control").target_examples("test")[CONDITION_KEY]
    assert control.shape[1:] == (3, 64, 64) and control.min() >= 0 and control.max() == 1
    assert (control.amax((1, 2, 3)) == 1).all()  # every digit has edges, the strongest scaled to 1
    embeds = Denoising("unet_image_prompt").target_examples("test")[IMAGE_EMBEDS_KEY]
    assert embeds.shape[1:] == (IMAGE_EMBED_DIM,) and 0.5 < embeds.std() < 2
    assert small_images(torch.tensor([0])).shape == (1, 8, 8)


def test_test_set_is_fixed_noised_at_the_stated_timesteps():
    task = Denoising("unet_control")
    first, again = task.test_batches(), task.test_batches()
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    timesteps = torch.cat([b["timestep"] for b in first])
    assert timesteps[: len(EVAL_TIMESTEPS)].tolist() == list(EVAL_TIMESTEPS)
    latents = task.target_examples("test")["latents"]
    noise = torch.cat([b["noise"] for b in first])
    assert torch.allclose(torch.cat([b["sample"] for b in first]), add_noise(latents, noise, timesteps))


class Oracle(nn.Module):
    """Predicts the noise it is handed (perfect), or zeros (whose MSE is the mean squared noise)."""

    def __init__(self, perfect: bool) -> None:
        super().__init__()
        self.perfect = perfect
        self.noise: torch.Tensor | None = None

    def forward(self, sample: torch.Tensor, **_: object) -> SimpleNamespace:
        return SimpleNamespace(sample=self.noise if self.perfect else torch.zeros_like(sample))


@pytest.mark.parametrize("perfect", [True, False])
def test_score_is_the_mean_squared_error_of_the_predicted_noise(perfect):
    task = Denoising("unet")
    batches = task.test_batches()[:1]
    oracle = Oracle(perfect)
    oracle.noise = batches[0]["noise"]
    expected = 0.0 if perfect else batches[0]["noise"].square().mean().item()
    assert math.isclose(task.score(oracle, batches), expected, rel_tol=1e-6, abs_tol=1e-12)


def test_each_diffusion_method_defaults_to_this_task():
    for method, model_type in METHODS:
        chosen = choose_task(get_method(method).info())
        assert (chosen.name, chosen.model_type) == ("denoising", model_type)


@pytest.mark.parametrize(("method", "model_type"), METHODS)
def test_every_method_trains_and_reports_finite_figures(method, model_type, monkeypatch):
    few = Denoising(model_type).test_batches()[0]
    monkeypatch.setattr(Denoising, "test_batches", lambda self: [{k: v[:20] for k, v in few.items()}])
    figures = execute(method, model_type, "denoising", steps=2).figures()
    metric = figures["metric"]
    assert all(math.isfinite(metric[k]) and metric[k] > 0 for k in ("value", FULL, FROZEN))
    assert 0 < figures["trainable"] < figures["total"] and math.isfinite(figures["loss"]["last"])
