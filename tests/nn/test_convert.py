"""convert(): a torch.nn model becomes an explicit one with the same values."""

import pytest
import torch

import trainer.nn as nn
from trainer import testing


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.0),
        torch.nn.Linear(4 * 4 * 4, 10),
    )


def test_every_layer_is_converted_and_outputs_match():
    native = small_cnn()
    explicit, report = nn.convert(native)
    assert report.complete and len(report.converted) == 7
    assert all(type(m).__module__.startswith("trainer.nn") for m in explicit if not isinstance(m, torch.nn.Sequential))
    assert all(type(m).__module__.startswith("torch.nn") for m in native)  # the original is untouched
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(explicit(x), native(x))
    testing.assert_explicit_graph(explicit(x))


def test_state_dict_moves_both_ways():
    native = small_cnn()
    explicit, _ = nn.convert(native)
    assert list(explicit.state_dict()) == list(native.state_dict())
    fresh = small_cnn()
    fresh.load_state_dict(explicit.state_dict())
    explicit.load_state_dict(fresh.state_dict())


def test_inplace_swaps_classes_without_copying():
    native = small_cnn()
    weight = native[0].weight
    same, _ = nn.convert(native, inplace=True)
    assert same is native and same[0].weight is weight and isinstance(same[0], nn.Conv2d)


def test_reports_what_it_could_not_convert():
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.inner = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x) * self.scale

    model = torch.nn.Sequential(Custom(), torch.nn.GRU(3, 3), torch.nn.Conv1d(3, 3, 3, padding_mode="circular"))
    explicit, report = nn.convert(model)
    assert set(report.unconverted) == {"0", "1", "2"}
    assert "GRU has no explicit twin" in report.unconverted["1"]
    assert "padding_mode='circular'" in report.unconverted["2"]
    assert report.converted == {"0.inner": "Linear"}
    assert "left 3 as they were" in str(report)
    with pytest.raises(ValueError, match="GRU"):
        nn.convert(model, strict=True)


def test_converting_twice_is_a_no_op():
    explicit, _ = nn.convert(small_cnn())
    again, report = nn.convert(explicit)
    assert report.complete and not report.converted
