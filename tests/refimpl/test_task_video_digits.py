"""The video_digits task: clips of moving digits, the shared text-to-video backbone, image-to-video scoring."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from refimpl.tasks import video_digits
from refimpl.tasks.digits import target_indices
from refimpl.tasks.runner import FROZEN, FULL, execute
from refimpl.tasks.video_digits import (
    ALPHA_BAR,
    MOTIONS,
    PRETRAIN,
    SOURCE_MOTIONS,
    TARGET_MOTION,
    TEST_TIMESTEPS,
    WORDS,
    VideoDigits,
    clips,
    latents,
    prompts,
    videos,
)


@pytest.fixture(autouse=True)
def tiny_runs(tmp_path, monkeypatch):
    """A fresh cache, a 2-step pre-training and 16 target digits per split, so every run takes seconds."""
    monkeypatch.setenv("REFIMPL_CACHE", str(tmp_path))
    monkeypatch.setitem(PRETRAIN, "steps", 2)
    monkeypatch.setattr(video_digits, "target_indices", lambda split: target_indices(split)[:16])


def test_a_latent_is_the_original_8x8_digit_in_every_channel():
    original = torch.tensor(load_digits().images, dtype=torch.float32) / 16 * 2 - 1
    assert latents().shape == (1797, 4, 8, 8)
    assert torch.equal(latents(), original[:, None].expand(-1, 4, -1, -1))


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_a_clip_moves_its_digit_one_pixel_per_frame_around_the_border(motion):
    rows, columns = MOTIONS[motion]
    clip = clips(torch.tensor([3, 10]), motion)
    assert clip.shape == (2, 4, 4, 8, 8)
    for frame in range(1, 4):
        assert torch.equal(clip[:, :, frame], clip[:, :, frame - 1].roll((rows, columns), dims=(-2, -1)))
    assert not torch.equal(clip[:, :, 0], clip[:, :, 1])


def test_the_prompt_names_the_digit_and_the_motion():
    indices = torch.tensor([0, 5])  # the first two images are a 0 and a 5
    words = video_digits.word_embeddings()
    prompt = prompts(indices, "down")
    assert prompt.shape == (2, 6, 32)
    assert torch.equal(prompt[0, 0], words[WORDS.index("0")]) and torch.equal(
        prompt[1, 0], words[WORDS.index("5")]
    )
    assert torch.equal(prompt[:, 1], words[WORDS.index("down")].expand(2, -1))
    assert torch.equal(prompt[:, 2:], words[WORDS.index("<pad>")].expand(2, 4, -1))


def test_pretraining_moves_digits_sideways_and_adaptation_moves_others_down():
    assert TARGET_MOTION not in SOURCE_MOTIONS and set(SOURCE_MOTIONS) == {"right", "left"}
    clean, prompt = videos(torch.tensor([1, 2]), SOURCE_MOTIONS)
    assert torch.equal(clean, torch.cat([clips(torch.tensor([1, 2]), m) for m in ("right", "left")]))
    assert len(prompt) == 4
    task = VideoDigits("unet_video")
    train, test = next(task.train_batches(0)), task.test_batches()
    assert train["sample"].shape == (task.batch_size, 4, 4, 8, 8)
    assert sum(len(batch["noise"]) for batch in test) == 16


@pytest.mark.parametrize("model_type", ["unet_video", "unet_i2v"])
def test_test_clips_are_noised_at_the_fixed_timesteps_with_fixed_noise(model_type):
    task = VideoDigits(model_type)
    (batch,), (again,) = task.test_batches(), task.test_batches()
    assert all(torch.equal(batch[key], again[key]) for key in batch)
    assert batch["timestep"].tolist() == list(TEST_TIMESTEPS) * 4
    clean, _ = videos(video_digits.target_indices("test"), (TARGET_MOTION,))
    alpha_bar = ALPHA_BAR[batch["timestep"]].view(-1, 1, 1, 1, 1)
    expected = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * batch["noise"]
    if model_type == "unet_i2v":  # the given image is the clean first frame
        expected[:, :, 0] = clean[:, :, 0]
    torch.testing.assert_close(batch["sample"], expected)


class Replays(nn.Module):
    """Predicts the given noises in turn, with a fixed error on frame 0 only."""

    def __init__(self, noises: list[torch.Tensor], first_frame_error: float) -> None:
        super().__init__()
        self.noises: Iterator[torch.Tensor] = iter(noises)
        self.first_frame_error = first_frame_error

    def forward(self, sample, timestep, encoder_hidden_states) -> SimpleNamespace:
        prediction = next(self.noises).clone()
        prediction[:, :, 0] += self.first_frame_error
        return SimpleNamespace(sample=prediction)


def test_score_is_the_noise_mse_over_the_frames_the_model_type_predicts():
    video, i2v = VideoDigits("unet_video"), VideoDigits("unet_i2v")
    batches = i2v.test_batches()
    noises = [batch["noise"] for batch in batches]
    assert i2v.score(Replays(noises, 0.0), batches) == 0.0
    assert i2v.score(Replays(noises, 3.0), batches) == 0.0  # frame 0 is given, not predicted
    assert video.score(Replays(noises, 3.0), batches) == pytest.approx(9.0 / 4)
    zeros = [torch.zeros_like(noise) for noise in noises]
    expected = torch.cat(noises)[:, :, 1:].pow(2).mean().item()
    assert i2v.score(Replays(zeros, 0.0), batches) == pytest.approx(expected)


def test_both_model_types_start_from_the_same_cached_text_to_video_backbone():
    first = VideoDigits("unet_video").build_model(0).state_dict()
    for model in (VideoDigits("unet_video").build_model(1), VideoDigits("unet_i2v").build_model(0)):
        assert all(torch.equal(first[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize(
    ("method", "model_type"),
    [("tune_a_video", "unet_video"), ("t_lora", "unet_video"), ("i2v_adapter", "unet_i2v")],
)
def test_every_method_of_the_video_types_runs_on_the_task_by_default(method, model_type):
    outcome = execute(method, steps=2)
    figures = outcome.figures()
    assert (figures["task"], figures["model"]) == ("video_digits", model_type)
    assert len(outcome.fit.losses) == 2 and all(math.isfinite(loss) for loss in outcome.fit.losses)
    assert 0 < figures["trainable"] < figures["total"]
    for value in (outcome.metric, outcome.references[FULL]["metric"], outcome.references[FROZEN]["metric"]):
        assert math.isfinite(value) and value > 0
