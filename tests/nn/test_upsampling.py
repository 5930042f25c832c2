"""The trainer.nn twins of this family: each converts from its torch.nn class with the same
state, gives torch's outputs and gradients with an explicit graph; ConvTranspose's
output_size; a model with pixel shuffles converts with nothing unconverted; bicubic Upsample
runs natively, counted as a fallback."""

from __future__ import annotations

import pytest
import torch

import trainer.nn as nn
from trainer import testing
from trainer.functional import ShapeError
from trainer.nn import convert


def x64(*shape):
    return torch.randn(shape, dtype=torch.float64, requires_grad=True)


MODULES = [  # torch.nn module, input shape
    (torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5)),
    (torch.nn.ConvTranspose1d(3, 2, 2, dilation=2, bias=False), (3, 4)),
    (torch.nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)), (2, 3, 4, 5)),
    (torch.nn.ConvTranspose2d(2, 2, 3, stride=2, groups=2), (2, 3, 3)),
    (torch.nn.Upsample(scale_factor=2), (2, 3, 4)),
    (torch.nn.Upsample(size=(5, 7), mode="bilinear"), (2, 3, 3, 4)),
    (torch.nn.Upsample(scale_factor=(1.5, 0.5), mode="nearest-exact"), (1, 2, 4, 6)),
    (torch.nn.Upsample(scale_factor=1.5, mode="trilinear", align_corners=True), (1, 2, 2, 3, 2)),
    (torch.nn.UpsamplingNearest2d(scale_factor=3), (2, 3, 2, 3)),
    (torch.nn.UpsamplingBilinear2d(size=(5, 4)), (2, 3, 3, 2)),
    (torch.nn.AdaptiveMaxPool1d(3), (2, 3, 7)),
    (torch.nn.AdaptiveMaxPool2d((3, None), return_indices=True), (2, 3, 7, 5)),
    (torch.nn.PixelShuffle(2), (2, 8, 3, 2)),
    (torch.nn.PixelUnshuffle(2), (2, 2, 4, 6)),
]


@pytest.mark.parametrize("module,shape", MODULES, ids=[type(m).__name__ for m, _ in MODULES])
def test_twin_converts_and_gives_torchs_outputs_and_gradients(module, shape):
    module = module.double()
    converted, report = convert(module)
    assert type(converted) is not type(module) and isinstance(converted, type(module))
    assert type(converted).__module__ == "trainer.nn.upsampling"
    assert report.converted == {"": type(module).__name__} and not report.unconverted
    assert converted.state_dict().keys() == module.state_dict().keys()
    testing.assert_matches_reference(converted, module, x64(*shape))
    y = converted(x64(*shape))
    testing.assert_explicit_graph(y[0] if isinstance(y, tuple) else y)
    assert report.calls.complete and not report.calls.moved


@pytest.mark.parametrize("rank", [1, 2])
def test_conv_transpose_output_size_picks_the_output_padding(rank):
    cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d}[rank]
    native = cls(3, 2, 3, stride=3, padding=1).double()
    converted, _ = convert(native)
    x = x64(2, 3, *(4,) * rank)
    for extra in range(3):  # output sizes 10, 11, 12: output_padding 0, 1, 2
        size = [10 + extra] * rank
        testing.assert_matches_reference(lambda t: converted(t, output_size=size),
                                         lambda t: native(t, output_size=size), x)
        assert converted(x, output_size=size).shape[2:] == tuple(size)
    with pytest.raises(ValueError, match="requested an output size of"):
        converted(x, output_size=[14] * rank)


def test_twins_built_directly_are_torchs_layers():
    torch.manual_seed(0)
    ours = nn.ConvTranspose2d(3, 4, 3, stride=2)
    torch.manual_seed(0)
    theirs = torch.nn.ConvTranspose2d(3, 4, 3, stride=2)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                  theirs.state_dict().values()))
    with pytest.raises(ShapeError, match=r"expected input of shape .* C = 3, got \(2, 5, 4, 4\)"):
        ours(torch.randn(2, 5, 4, 4))


def test_a_model_with_pixel_shuffles_converts_with_nothing_unconverted():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2),
        torch.nn.ConvTranspose2d(3, 8, 2, stride=2), torch.nn.PixelUnshuffle(2),
        torch.nn.Upsample(scale_factor=0.5, mode="bilinear"), torch.nn.AdaptiveMaxPool2d(3),
    ).double()
    converted, report = convert(model)
    assert not report.unconverted
    assert set(report.converted) == {"0", "1", "2", "3", "4", "5"}
    x = x64(2, 3, 4, 4)
    testing.assert_matches_reference(converted, model, x)
    converted(x).sum().backward()
    assert report.complete and not report.calls.fallback


def test_bicubic_upsample_runs_natively_and_is_counted():
    converted, report = convert(torch.nn.Upsample(scale_factor=2, mode="bicubic"))
    x = x64(1, 2, 3, 3)
    testing.assert_matches_reference(converted, torch.nn.Upsample(scale_factor=2,
                                                                  mode="bicubic"), x)
    assert report.calls.fallback == {"torch.nn.functional.interpolate": 1}
    assert not report.complete
