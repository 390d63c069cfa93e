"""Denoising transfer of the tiny diffusion UNet between digit classes: scikit-learn's bundled digits (no download).

Latents: there is no VAE; a digit's latent is its 8×8 image in [-1, 1], the same in each of the UNet's 4 latent
channels. Noise follows DDPM's linear schedule (β from 1e-4 to 0.02 over 1,000 steps):
x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, and the UNet predicts ε (loss: mean squared error to ε).

Text conditioning: the tiny UNet takes the text encoder's output directly, so a prompt is a row of fixed random
word vectors, "<start> <word> <digit> <pad> <pad> <pad>"; the word (position 1, where textual inversion and ED-LoRA
put their token by default) is the digit's own word "0" … "4" in pre-training.

Pre-training (cached once, shared by the three model types): the plain UNet learns to denoise all images of the
digits 0–4. Adaptation: the digits 5–9 (the `digits` task's 60/40 train/test split), every one prompted with the
same new word S* that pre-training never saw, so they form one new concept; and per model type
- `unet`: nothing else (textual inversion learns S*, ED-LoRA S* per layer plus LoRA, DiffFit biases and scales);
- `unet_control`: the condition image is the digit's edge map (Sobel gradient magnitude of the 8×8 image, scaled
  to [0, 1] per image, enlarged to 64×64 in 3 channels; ControlNet's Canny edges in miniature);
- `unet_image_prompt`: the image prompt is the digit's coordinates on the 24 leading principal components of the
  pre-training images (a stand-in for CLIP's image embedding; as in IP-Adapter's training, the prompt is the
  image being denoised).
The base UNet ignores the condition and the image prompt, so full fine-tuning (every UNet parameter) and the frozen
baseline (the pre-trained UNet as it is) cannot use them; only the methods can.

Metric: held-out denoising MSE, lower is better: the mean over the test images and latent elements of
(ε_θ(x_t, t, c) − ε)², where test image i is noised once, at timestep 50 + 100·(i mod 10), with noise drawn from a
generator seeded 0 (both fixed, so every model is scored on the same noisy latents).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import TINY_MODELS, tiny_model
from ..models.conditioning import CONDITION_KEY, CONDITION_SCALE, IMAGE_EMBED_DIM, IMAGE_EMBEDS_KEY
from ..models.diffusion import CROSS_ATTENTION_DIM, LATENT_CHANNELS, LATENT_SIZE, TEXT_TOKENS, TIMESTEPS
from ..models.specs import Batch
from .base import Task, pretrained_weights, shuffled_batches
from .digits import SOURCE_CLASSES, TARGET_CLASSES, digits, indices_of, target_indices

BETAS = (1e-4, 0.02)  # DDPM's linear schedule
WORD_SEED, NOISE_SEED = 0, 0
START, DIGIT_WORD, PAD, NEW_WORD = 10, 11, 12, 13  # rows of the word table after the ten digit words
EVAL_TIMESTEPS = tuple(range(50, TIMESTEPS, 100))
EVAL_BATCH = 100  # small enough that timing merged inference on one batch costs little
PRETRAIN = {"steps": 200, "lr": 3e-3, "seed": 0, "batch_size": 32}


@functools.cache
def alphas_cumprod() -> torch.Tensor:
    return torch.cumprod(1 - torch.linspace(*BETAS, TIMESTEPS), 0)


def add_noise(latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    alpha_bar = alphas_cumprod()[timesteps][:, None, None, None]
    return alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise


@functools.cache
def word_vectors() -> torch.Tensor:
    """The fixed 'text encoder output' of each word: ten digit words, start, "digit", padding and S*."""
    return torch.randn(NEW_WORD + 1, CROSS_ATTENTION_DIM, generator=torch.Generator().manual_seed(WORD_SEED))


def prompts(words: torch.Tensor) -> torch.Tensor:
    """(N, TEXT_TOKENS, width) encoder states of "<start> <word> <digit> <pad> …" for each word id."""
    rows = torch.tensor([START, 0, DIGIT_WORD] + [PAD] * (TEXT_TOKENS - 3)).repeat(len(words), 1)
    rows[:, 1] = words
    return word_vectors()[rows]


def small_images(indices: torch.Tensor) -> torch.Tensor:
    """The digits' original 8×8 images in [-1, 1], (N, 8, 8): `digits()` holds them enlarged by repetition."""
    images = digits()[0][indices, 0]
    step = images.shape[-1] // LATENT_SIZE
    return images[:, ::step, ::step]


def edge_maps(images: torch.Tensor) -> torch.Tensor:
    """Condition images: Sobel gradient magnitude per image, scaled to [0, 1], (N, 3, 64, 64)."""
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None]
    gradients = F.conv2d(images[:, None], kernels, padding=1)
    magnitude = gradients.square().sum(1).sqrt()
    magnitude = magnitude / magnitude.amax((1, 2), keepdim=True).clamp_min(1e-8)
    enlarged = magnitude.repeat_interleave(CONDITION_SCALE, 1).repeat_interleave(CONDITION_SCALE, 2)
    return enlarged[:, None].expand(-1, 3, -1, -1).contiguous()


@functools.cache
def principal_components() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, leading components and scale of the pre-training images (digits 0–4), the image 'encoder'."""
    flat = small_images(indices_of(SOURCE_CLASSES)).flatten(1)
    mean = flat.mean(0)
    _, _, vectors = torch.linalg.svd(flat - mean, full_matrices=False)
    components = vectors[:IMAGE_EMBED_DIM].T
    return mean, components, ((flat - mean) @ components).std()


def image_embeddings(images: torch.Tensor) -> torch.Tensor:
    mean, components, scale = principal_components()
    return (images.flatten(1) - mean) @ components / scale


def prompted_latents(indices: torch.Tensor, words: torch.Tensor) -> Batch:
    """Clean latents of the images at `indices`, each prompted by its word in `words`."""
    latents = small_images(indices)[:, None].expand(-1, LATENT_CHANNELS, -1, -1)
    return {"latents": latents, "encoder_hidden_states": prompts(words)}


class Denoising(Task):
    """Held-out denoising MSE of ε at fixed timesteps and noise (see the module docstring); lower is better."""

    foundation_model = "VGM"

    name = "denoising"
    description = (
        "tiny UNet pre-trained to denoise digits 0-4, adapted to digits 5-9 as a new word (unet), with edge maps "
        "(unet_control) or image prompts (unet_image_prompt); held-out noise-prediction MSE at fixed timesteps "
        "50..950 and seeded noise, lower is better"
    )
    model_types = ("unet", "unet_control", "unet_image_prompt")
    metric = "denoising MSE"
    higher_is_better = False
    steps = 60
    lr = 3e-3
    full_lr = 1e-3
    batch_size = 32

    def pretrain_config(self) -> dict[str, Any]:
        """What determines the pre-trained UNet, which the three model types share."""
        return {
            "task": self.name,
            "pretrain": PRETRAIN,
            "classes": SOURCE_CLASSES,
            "betas": BETAS,
            "word_seed": WORD_SEED,
        }

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            **self.pretrain_config(),
            "classes": [SOURCE_CLASSES, TARGET_CLASSES],
            "eval": [EVAL_TIMESTEPS, NOISE_SEED],
        }

    def target_examples(self, split: str) -> Batch:
        """The digits 5–9 of `split`, all prompted by the new word, with this model type's extra input."""
        indices = target_indices(split)
        examples = prompted_latents(indices, torch.full((len(indices),), NEW_WORD))
        if self.model_type == "unet_control":
            examples[CONDITION_KEY] = edge_maps(small_images(indices))
        elif self.model_type == "unet_image_prompt":
            examples[IMAGE_EMBEDS_KEY] = image_embeddings(small_images(indices))
        return examples

    def build_model(self, seed: int) -> nn.Module:
        """The pre-trained UNet; it gets no new head, so `seed` does not change it."""
        model = tiny_model(self.model_type, seed=PRETRAIN["seed"])
        indices = indices_of(SOURCE_CLASSES)
        source = prompted_latents(indices, digits()[1][indices])
        batches = noisy_batches(source, PRETRAIN["batch_size"], PRETRAIN["seed"])
        weights = pretrained_weights("unet-digits", self.pretrain_config(), model, batches, self.loss)
        model.load_state_dict(weights)
        return model.eval()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        return noisy_batches(self.target_examples("train"), self.batch_size, seed)

    def test_batches(self) -> list[Batch]:
        examples = self.target_examples("test")
        count = len(examples["latents"])
        timesteps = torch.tensor(EVAL_TIMESTEPS).repeat(count // len(EVAL_TIMESTEPS) + 1)[:count]
        noisy = noised(examples, timesteps, torch.Generator().manual_seed(NOISE_SEED))
        return [{k: v[i : i + EVAL_BATCH] for k, v in noisy.items()} for i in range(0, count, EVAL_BATCH)]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return TINY_MODELS[self.model_type].loss(model, batch)

    def predict(self, model: nn.Module, batch: Batch) -> Any:
        return model(**TINY_MODELS[self.model_type].inputs(batch))

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        """Mean squared error of the predicted noise over all test latents' elements."""
        spec = TINY_MODELS[self.model_type]
        total = sum(F.mse_loss(spec.output(model, b), b["noise"], reduction="sum").item() for b in batches)
        return total / sum(b["noise"].numel() for b in batches)


def noised(examples: Batch, timesteps: torch.Tensor, generator: torch.Generator) -> Batch:
    """The UNet batch of `examples` noised at `timesteps`: inputs and the noise, the regression target."""
    latents = examples["latents"]
    noise = torch.randn(latents.shape, generator=generator)
    rest = {k: v for k, v in examples.items() if k != "latents"}
    return {"sample": add_noise(latents, noise, timesteps), "timestep": timesteps, **rest, "noise": noise}


def noisy_batches(examples: Batch, size: int, seed: int) -> Iterator[Batch]:
    """Endless shuffled batches, each image at a random timestep with fresh noise, all drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)

    def collate(rows: list[int]) -> Batch:
        timesteps = torch.randint(0, TIMESTEPS, (len(rows),), generator=generator)
        return noised({k: v[rows] for k, v in examples.items()}, timesteps, generator)

    return shuffled_batches(len(examples["latents"]), size, seed, collate)
