"""DAM-VP: one prompt per cluster of frozen features, each image routed to its cluster's prompt; Reptile
meta step."""

from __future__ import annotations

import torch

import refimpl
from refimpl.prompt.dam_vp import (
    fit_clusters,
    frozen_features,
    initialise_prompts,
    kmeans,
    prompt_loss,
    reptile_step,
)

from .conftest import task_data, tiny_batch


def two_groups(count: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(2 * count, 3, 16, 16, generator=generator)
    return noise + torch.cat([torch.full((count, 1, 1, 1), 3.0), torch.full((count, 1, 1, 1), -3.0)])


def test_kmeans_on_frozen_features_separates_distinct_subsets(fresh):
    model = refimpl.apply(fresh("vit"), "dam_vp", clusters=2)
    clusters = fit_clusters(model, two_groups())
    assert clusters[:6].unique().numel() == 1 and clusters[6:].unique().numel() == 1
    assert clusters[0] != clusters[6]


def test_each_image_is_prompted_with_its_own_clusters_prompt(fresh):
    pixels = two_groups()
    model = refimpl.apply(fresh("vit"), "dam_vp", clusters=2)
    clusters = fit_clusters(model, pixels)
    prompts = model.diverse_prompts.prompt()
    with torch.no_grad():
        expected = fresh("vit")(pixel_values=pixels + prompts[clusters]).logits
        torch.testing.assert_close(model(pixel_values=pixels).logits, expected)


def test_reptile_moves_the_meta_prompt_towards_the_tasks_adapted_prompts():
    optima = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 2.0])]
    tasks = [lambda theta, a=a: (theta - a).pow(2).sum() for a in optima]
    theta = torch.zeros(2)
    # one inner SGD step on (θ − a)² gives θ_i = θ − 2η(θ − a); the meta step averages them with rate ε
    updated = reptile_step(theta, tasks, inner_steps=1, inner_lr=0.1, meta_lr=0.5)
    torch.testing.assert_close(updated, theta - 2 * 0.1 * 0.5 * (theta - torch.tensor([2.0, 1.0])))


def test_a_meta_learned_prompt_initialises_every_cluster_and_prompt_loss_drives_it(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "dam_vp", clusters=3)
    meta = torch.zeros_like(model.diverse_prompts.prompt.values[0])
    task = prompt_loss(model, batch_for("vit"))
    meta = reptile_step(meta, [task], inner_steps=2, inner_lr=0.5, meta_lr=1.0)
    assert task(meta) < task(torch.zeros_like(meta))
    initialise_prompts(model, meta)
    assert all(torch.equal(values, meta) for values in model.diverse_prompts.prompt.values)


def test_an_adapter_file_carries_the_fitted_centroids(fresh, tmp_path):
    model = refimpl.apply(fresh("vit"), "dam_vp", clusters=2)
    fit_clusters(model, two_groups())
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(fresh("vit"), tmp_path)
    assert torch.equal(loaded.diverse_prompts.centroids, model.diverse_prompts.centroids)


def test_prepare_fits_the_clusters_on_the_tasks_training_images(fresh):
    model = refimpl.apply(fresh("vit"), "dam_vp", clusters=2)
    batch = tiny_batch("vit", batch=8)
    refimpl.prepare(model, task_data([batch]))
    expected = kmeans(frozen_features(model, batch["pixel_values"]).float(), 2, seed=0)
    torch.testing.assert_close(
        model.diverse_prompts.centroids, expected.to(model.diverse_prompts.centroids.dtype)
    )
