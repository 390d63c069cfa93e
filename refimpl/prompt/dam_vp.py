"""DAM-VP — Huang, Dong, Chen, Zhang, Wang, Hua and Yu, "Diversity-Aware Meta Visual Prompting", CVPR 2023
(catalogue: dam-vp).

    x̃ = x + v_{c(x)},   c(x) = argmin_k ‖φ(x) − μ_k‖,   v_k learned borders, μ_k k-means centroids of φ(data)

A diverse target dataset is split into subsets by clustering the frozen model's features φ (the [CLS] feature
of the unprompted ViT), with one padding prompt per subset; every image, in training and at inference, gets
the prompt of its nearest centroid. The prompts start from a meta-learned initialisation. Functions:
`fit_clusters(model, pixels)` runs k-means on φ and installs the centroids (a persistent buffer, so adapter
files carry it); `reptile_step` is one meta step (Reptile: adapt the shared prompt on each task with a few SGD
steps, then move it towards the adapted prompts), `prompt_loss` turns a batch into a task loss of the shared
prompt, and `initialise_prompts` copies a meta-learned prompt into every cluster's. Trainable: the k prompts
and, by default, the head (`train_head=False` freezes it). Simplified: k is a fixed option rather than derived
from the data, and the prompt border defaults to p = 2 on the tiny 16-pixel images (as VP's). Before
`fit_clusters` all centroids are zero, so every image uses prompt 0. The method's `prepare` (run by `run` and
`bench` before training) fits the clusters on the first `CLUSTER_BATCHES` (8, ours) training batches; the meta-
learned start needs source datasets the tasks do not ship, so there the prompts start from VP's N(0, 1) draw.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

from ..core.api import attach_module
from ..core.registry import Method, MethodOptions, TaskData, register
from ..core.vision import classifier_parameters
from ..models.specs import Batch
from .vp import BorderPrompt, image_shape, transform_pixels

TaskLoss = Callable[[torch.Tensor], torch.Tensor]  # shared prompt values -> loss on one task


class DiverseVisualPrompts(nn.Module):
    """k border prompts and the k feature centroids that route each image to one of them."""

    def __init__(self, clusters: int, channels: int, side: int, width: int, hidden: int, like: torch.Tensor):
        super().__init__()
        self.prompt = BorderPrompt(clusters, channels, side, width, like)
        self.register_buffer("centroids", torch.zeros(clusters, hidden, dtype=like.dtype, device=like.device))
        self.bypass = False  # set while the frozen model computes the routing features

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        distances = (features.unsqueeze(1) - self.centroids.to(features.dtype).unsqueeze(0)).pow(2).sum(-1)
        return distances.argmin(1)


@torch.no_grad()
def frozen_features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """φ(x): the unprompted backbone's [CLS] feature."""
    prompts: DiverseVisualPrompts = model.diverse_prompts
    prompts.bypass = True
    try:
        backbone = getattr(model, model.base_model_prefix)
        return backbone(pixel_values=pixels).last_hidden_state[:, 0]
    finally:
        prompts.bypass = False


def kmeans(points: torch.Tensor, k: int, iterations: int = 25, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means from k distinct random points; an empty cluster keeps its previous centroid."""
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(len(points), generator=generator)[:k].to(points.device)].clone()
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(1)
        for cluster in range(k):
            members = points[assignment == cluster]
            if len(members):
                centroids[cluster] = members.mean(0)
    return centroids


def fit_clusters(model: nn.Module, pixels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """k-means on the target images' frozen features: install the centroids, return each image's cluster."""
    features = frozen_features(model, pixels).float()
    prompts: DiverseVisualPrompts = model.diverse_prompts
    prompts.centroids.copy_(kmeans(features, len(prompts.centroids), seed=seed))
    return prompts.nearest(features)


def prompt_loss(model: nn.Module, batch: Batch) -> TaskLoss:
    """A meta-learning task: the loss on `batch` when every cluster uses the same prompt values."""
    clusters = len(model.diverse_prompts.centroids)

    def loss(shared: torch.Tensor) -> torch.Tensor:
        values = shared.unsqueeze(0).expand(clusters, *shared.shape)
        return functional_call(model, {"diverse_prompts.prompt.values": values}, kwargs=batch).loss

    return loss


def reptile_step(
    meta_prompt: torch.Tensor,
    tasks: Sequence[TaskLoss],
    inner_steps: int = 1,
    inner_lr: float = 0.1,
    meta_lr: float = 0.5,
) -> torch.Tensor:
    """One meta step: adapt the shared prompt θ to each task with `inner_steps` SGD steps (θ_i), then return
    θ + meta_lr · mean_i(θ_i − θ)."""
    adapted = []
    for task in tasks:
        theta = meta_prompt.detach().clone().requires_grad_(True)
        for _ in range(inner_steps):
            (gradient,) = torch.autograd.grad(task(theta), theta)
            theta = (theta - inner_lr * gradient).detach().requires_grad_(True)
        adapted.append(theta.detach())
    return meta_prompt + meta_lr * (torch.stack(adapted).mean(0) - meta_prompt)


@torch.no_grad()
def initialise_prompts(model: nn.Module, meta_prompt: torch.Tensor) -> None:
    """Start every cluster's prompt from the meta-learned one."""
    model.diverse_prompts.prompt.values.copy_(meta_prompt.expand_as(model.diverse_prompts.prompt.values))


CLUSTER_BATCHES = 8  # training batches whose images the clusters are fitted on


class DAMVPOptions(MethodOptions):
    clusters: int = Field(4, gt=0, description="number of data subsets k, one prompt each")
    prompt_size: int = Field(2, gt=0, description="border width p of each padding prompt")
    train_head: bool = Field(True, description="also train the classification head (head-tuning setting)")


@register
class DAMVP(Method):
    name = "dam_vp"
    category = "prompt"
    foundation_models = ("VFM",)
    papers = ("dam-vp",)
    summary = (
        "One pixel prompt per feature cluster of the target data, from a meta-learned start; "
        "each image uses its cluster's prompt."
    )
    update_rule = "x̃ = x + v_{c(x)},  c(x) = nearest k-means centroid of the frozen feature φ(x)"
    trainable = "k border prompts (and the head by default); centroids are fitted, not trained"
    model_types = ("vit",)
    Options = DAMVPOptions

    def inject(self, model: nn.Module, options: DAMVPOptions) -> None:
        channels, side = image_shape(model)
        like = next(model.parameters())
        prompts = DiverseVisualPrompts(
            options.clusters, channels, side, options.prompt_size, model.config.hidden_size, like
        )
        attach_module(model, "diverse_prompts", prompts)

        def route(pixels: torch.Tensor) -> torch.Tensor:
            if prompts.bypass:
                return pixels
            cluster = prompts.nearest(frozen_features(model, pixels))
            return pixels + prompts.prompt()[cluster].to(pixels.dtype)

        transform_pixels(model, route)
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def prepare(self, model: nn.Module, options: DAMVPOptions, data: TaskData) -> None:
        batches = itertools.islice(data.batches(), CLUSTER_BATCHES)
        fit_clusters(model, torch.cat([batch["pixel_values"] for batch in batches]))

    def expected_trainable(self, model: nn.Module, options: DAMVPOptions) -> int:
        channels, side = image_shape(model)
        prompts = BorderPrompt.parameter_count(options.clusters, channels, side, options.prompt_size)
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return prompts + head
