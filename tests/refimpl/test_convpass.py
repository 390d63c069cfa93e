"""Convpass: a 3×3 convolution over the patch grid, with the [CLS] token convolved on its own."""

from __future__ import annotations

import torch

from refimpl.additive.convpass import ConvBypass, quick_gelu


def bypass() -> ConvBypass:
    torch.manual_seed(0)
    module = ConvBypass(hidden=16, channels=4, grid=(3, 3), like=torch.empty(0))
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter)
    return module


def test_a_patch_token_sees_only_its_3x3_neighbourhood_and_never_the_cls_token():
    module = bypass()
    tokens = torch.randn(1, 10, 16)
    changed = tokens.clone()
    changed[:, 1] += 1.0  # patch (0, 0): its neighbours are patches (0, 1), (1, 0), (1, 1)
    with torch.no_grad():
        moved = (module(changed) - module(tokens)).abs().sum(-1)[0] > 0
    assert moved.tolist() == [False, True, True, False, True, True, False, False, False, False]


def test_the_cls_token_is_convolved_alone_by_the_kernel_centre():
    module = bypass()
    tokens = torch.randn(2, 10, 16)
    with torch.no_grad():
        z = quick_gelu(module.down(tokens[:, :1]))
        centre = z @ module.conv.weight[:, :, 1, 1].T + module.conv.bias
        torch.testing.assert_close(module(tokens)[:, :1], module.up(quick_gelu(centre)))


def test_the_convolution_starts_as_the_identity():
    module = ConvBypass(hidden=16, channels=4, grid=(3, 3), like=torch.empty(0))
    z = torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(module.conv(z), z)
