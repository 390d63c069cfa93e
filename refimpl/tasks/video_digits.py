"""Short videos of moving digits for the tiny video UNets ("unet_video", "unet_i2v"), from scikit-learn's digits.

A clip is one 8×8 digit image (grey levels in [-1, 1], the same in all 4 latent channels) moved one pixel per
frame over the model's 4 frames, wrapping around at the border; its prompt is a fixed random word embedding of
the digit, one of the motion, then padding words. The video UNet is pre-trained inside the task (cached once) as
a text-to-video noise predictor on the digits 0–4 moving right or left, then adapted to a motion it has never
seen, down, on the digits 5–9 (the digits task's 60/40 train/test split of them).

Noising is DDPM's, linear betas from 1e-4 to 0.02 over 1,000 timesteps: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, the
same t for every frame of a clip. For image-to-video ("unet_i2v") frame 0 is the given image, left clean, and
loss and metric cover frames 1–3 only (the model type's own loss); its backbone is the same text-to-video model.

Metric (lower is better): held-out denoising MSE, the mean squared error between predicted and true noise ε over
every element of every test clip (frames 1–3 for unet_i2v), test clip k noised at timestep
TEST_TIMESTEPS[k mod 4] with ε drawn from a generator seeded NOISE_SEED.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import TINY_MODELS, tiny_model
from ..models.diffusion import CROSS_ATTENTION_DIM, LATENT_CHANNELS, LATENT_SIZE, TEXT_TOKENS, TIMESTEPS
from ..models.specs import Batch
from ..models.video import FRAMES
from ..models.vision import IMAGE_SIZE
from .base import Task, pretrained_weights, shuffled_batches
from .denoising import BETAS, alphas_cumprod
from .digits import SOURCE_CLASSES, TARGET_CLASSES, digits, indices_of, target_indices

MOTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0)}  # (rows, columns) moved per frame
SOURCE_MOTIONS, TARGET_MOTION = ("right", "left"), "down"
WORDS = (*(str(digit) for digit in range(10)), *MOTIONS, "<pad>")
WORD_SEED = 0
ALPHA_BAR = alphas_cumprod()  # ᾱ_t of the image task's DDPM schedule
PRETRAIN = {"steps": 200, "lr": 2e-3, "seed": 0, "batch_size": 8}
TEST_TIMESTEPS = (100, 250, 400, 600)
NOISE_SEED = 0
EVAL_BATCH = 16  # small: merged-inference timing repeats the first test batch
# Everything that determines the pre-trained backbone, shared by both model types.
BACKBONE = {
    "task": "video_digits",
    "frames": FRAMES,
    "classes": SOURCE_CLASSES,
    "motions": {name: MOTIONS[name] for name in SOURCE_MOTIONS},
    "words": [WORDS, WORD_SEED],
    "betas": BETAS,
    "pretrain": PRETRAIN,
}


@functools.cache
def latents() -> torch.Tensor:
    """Every digit as a (4, 8, 8) latent: its original 8×8 grey image in each channel."""
    images = digits()[0][:, :1]  # the 16×16 images are the 8×8 ones with every pixel doubled
    return F.avg_pool2d(images, IMAGE_SIZE // LATENT_SIZE).expand(-1, LATENT_CHANNELS, -1, -1)


@functools.cache
def word_embeddings() -> torch.Tensor:
    return torch.randn(len(WORDS), CROSS_ATTENTION_DIM, generator=torch.Generator().manual_seed(WORD_SEED))


def clips(indices: torch.Tensor, motion: str) -> torch.Tensor:
    """The digits at `indices` moving by `motion`: (N, C, F, H, W), frame f shifted f pixels (wrapping)."""
    rows, columns = MOTIONS[motion]
    images = latents()[indices]
    return torch.stack([images.roll((f * rows, f * columns), dims=(-2, -1)) for f in range(FRAMES)], dim=2)


def prompts(indices: torch.Tensor, motion: str) -> torch.Tensor:
    """(N, TEXT_TOKENS, D): the digit's word, the motion's word, then padding."""
    words = word_embeddings()
    digit = words[digits()[1][indices]]
    moving = words[WORDS.index(motion)].expand_as(digit)
    padding = words[WORDS.index("<pad>")].expand(len(indices), TEXT_TOKENS - 2, -1)
    return torch.cat([digit[:, None], moving[:, None], padding], dim=1)


def videos(indices: torch.Tensor, motions: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips and prompts of every digit at `indices` with every one of `motions`."""
    return (
        torch.cat([clips(indices, motion) for motion in motions]),
        torch.cat([prompts(indices, motion) for motion in motions]),
    )


def noised(
    clean: torch.Tensor,
    prompt: torch.Tensor,
    timestep: torch.Tensor,
    noise: torch.Tensor,
    first_frame_given: bool,
) -> Batch:
    """A denoising batch: the model sees the noisy clips, timestep and prompt; its target is `noise`."""
    alpha_bar = ALPHA_BAR[timestep].view(-1, 1, 1, 1, 1)
    sample = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    if first_frame_given:
        sample[:, :, 0] = clean[:, :, 0]
    return {"sample": sample, "timestep": timestep, "encoder_hidden_states": prompt, "noise": noise}


def denoising_batches(
    clean: torch.Tensor, prompt: torch.Tensor, size: int, seed: int, first_frame_given: bool
) -> Iterator[Batch]:
    """Endless shuffled batches, each clip noised at a random timestep with random noise, all drawn by `seed`."""
    generator = torch.Generator().manual_seed(seed)

    def collate(rows: list[int]) -> Batch:
        timestep = torch.randint(0, TIMESTEPS, (len(rows),), generator=generator)
        noise = torch.randn(clean[rows].shape, generator=generator)
        return noised(clean[rows], prompt[rows], timestep, noise, first_frame_given)

    return shuffled_batches(len(clean), size, seed, collate)


class VideoDigits(Task):
    """Digits moving down, for a video UNet pre-trained on other digits moving sideways; see the module doc."""

    foundation_model = "VGM"

    name = "video_digits"
    description = (
        "tiny video UNet pre-trained to denoise digits 0-4 moving sideways, adapted to digits 5-9 moving down; "
        "held-out noise-prediction MSE at fixed timesteps and noise (i2v: frame 0 given, frames 1-3 scored)"
    )
    model_types = ("unet_video", "unet_i2v")
    metric = "denoising MSE"
    higher_is_better = False
    steps = 40
    lr = 1e-2
    full_lr = 1e-3
    batch_size = 8

    @property
    def first_frame_given(self) -> bool:
        return self.model_type == "unet_i2v"

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": BACKBONE,
            "target": [TARGET_CLASSES, TARGET_MOTION],
            "test": [TEST_TIMESTEPS, NOISE_SEED],
        }

    def build_model(self, seed: int) -> nn.Module:
        """The pre-trained text-to-video UNet; it has no new head, so `seed` does not change it."""
        model = tiny_model(self.model_type, seed=PRETRAIN["seed"])
        source = denoising_batches(
            *videos(indices_of(SOURCE_CLASSES), SOURCE_MOTIONS),
            PRETRAIN["batch_size"],
            PRETRAIN["seed"],
            first_frame_given=False,
        )
        weights = pretrained_weights(
            "video-unet-digits", BACKBONE, model, source, loss_of=TINY_MODELS["unet_video"].loss
        )
        model.load_state_dict(weights)
        return model.eval()

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return TINY_MODELS[self.model_type].loss(model, batch)

    def predict(self, model: nn.Module, batch: Batch) -> Any:
        return TINY_MODELS[self.model_type].output(model, batch)

    def train_batches(self, seed: int) -> Iterator[Batch]:
        clean, prompt = videos(target_indices("train"), (TARGET_MOTION,))
        return denoising_batches(clean, prompt, self.batch_size, seed, self.first_frame_given)

    def test_batches(self) -> list[Batch]:
        clean, prompt = videos(target_indices("test"), (TARGET_MOTION,))
        timestep = torch.tensor(TEST_TIMESTEPS).repeat(len(clean) // len(TEST_TIMESTEPS) + 1)[: len(clean)]
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(NOISE_SEED))
        batch = noised(clean, prompt, timestep, noise, self.first_frame_given)
        return [
            {key: value[start : start + EVAL_BATCH] for key, value in batch.items()}
            for start in range(0, len(clean), EVAL_BATCH)
        ]

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        """The model type's loss (noise MSE) over all test clips: every batch weighted by its clip count."""
        total = sum(self.loss(model, batch).item() * len(batch["noise"]) for batch in batches)
        return total / sum(len(batch["noise"]) for batch in batches)
