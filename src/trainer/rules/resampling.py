"""The table of rules, section: padding and adaptive pooling (see :mod:`trainer.rules`).

The entry points, as a TorchFunctionMode receives them (checked by experiment, torch 2.13):
``F.pad`` and every ``torch.nn`` padding module (``ZeroPad2d``, ``ReflectionPad1d``, ...)
arrive as ``torch.nn.functional.pad`` with ``mode`` and ``value`` as keywords;
``torch.nn.AdaptiveAvgPool2d`` as ``torch.nn.functional.adaptive_avg_pool2d`` (a Python
function that resolves None in output_size itself); ``F.adaptive_avg_pool1d`` and
``torch.nn.AdaptiveAvgPool1d`` as ``torch.adaptive_avg_pool1d``, which is the same builtin.
``torch.constant_pad_nd(input, pad, value=0)`` is constant padding under another signature.
"""

from __future__ import annotations

from trainer import functional as F
from trainer.functional.adaptive_pool import AdaptiveAvgPool1d, AdaptiveAvgPool2d
from trainer.functional.padding import Pad
from trainer.rules.examples import Example, x
from trainer.rules.rule import Rule

# -- adapters: torch's calls of these entry points -> the rule, or NotImplemented (native) ----


def constant_pad_nd_from_torch(input, pad, value=0, *rest, **options):
    """``torch.constant_pad_nd(input, pad, value=0)``: ``F.pad`` in mode 'constant'."""
    if rest or options:
        return NotImplemented
    return F.pad(input, pad, "constant", value)


# -- examples ---------------------------------------------------------------------------------


def pad_examples() -> list[Example]:
    return [Example((x(2, 3, 4), (1, 2)), {"value": 0.5}, "constant, last dim"),
            Example((x(2, 3, 4), (-1, 2, 1, -2)), label="constant, negative pads crop"),
            Example((x(2, 3, 4), (1, 0, 0, 2, 1, 1)), label="constant, every dim"),
            Example((x(2, 3, 5), (4, 2)), {"mode": "reflect"}, "reflect, up to size - 1"),
            Example((x(1, 2, 4, 5), (2, -1, 3, 1)), {"mode": "reflect"}, "reflect 2-D, a crop"),
            Example((x(2, 3, 4), (3, 6)), {"mode": "replicate"}, "replicate, wider than x"),
            Example((x(1, 2, 4, 4), (-2, 3, 1, 2)), {"mode": "replicate"}, "replicate 2-D"),
            Example((x(2, 3, 5), (5, 2)), {"mode": "circular"}, "circular, a whole turn"),
            Example((x(2, 4, 4), (1, 2, -1, 3)), {"mode": "circular"},
                    "circular 2-D unbatched, crop then wrap"),
            Example((x(2, 3, 5), (-2, 1)), label="constant, a crop and a pad"),
            Example((x(2, 3, 4), (1, -1, -1, 2, 1, 0)), label="constant, every dim, crops"),
            Example((x(2, 3, 5), (4, 4)), {"mode": "reflect"}, "reflect, size - 1 each side"),
            Example((x(2, 3, 5), (3, -5)), {"mode": "reflect"}, "reflect, crop it all"),
            Example((x(1, 2, 3, 4, 5), (1, 4, 3, 2, 2, 1)), {"mode": "reflect"}, "reflect 3-D"),
            Example((x(1, 2, 4, 4), (-2, 3, 4, -3)), {"mode": "replicate"},
                    "replicate 2-D, wider than x"),
            Example((x(2, 3, 5), (5, 5)), {"mode": "circular"}, "circular, a turn each side"),
            Example((x(1, 2, 4, 5), (2, -2, 4, 1)), {"mode": "circular"}, "circular 2-D")]


def adaptive_avg_pool1d_examples() -> list[Example]:
    return [Example((x(2, 3, 8), 4), label="windows tile"),
            Example((x(2, 3, 7), 3), label="overlapping windows"),
            Example((x(3, 5), (4,)), label="unbatched, a tuple"),
            Example((x(2, 2, 3), 5), label="more outputs than inputs")]


def adaptive_avg_pool2d_examples() -> list[Example]:
    return [Example((x(2, 3, 6, 4), (3, 2)), label="windows tile"),
            Example((x(1, 2, 7, 5), (3, 4)), label="overlapping windows"),
            Example((x(2, 5, 7), (None, 3)), label="unbatched, None keeps H"),
            Example((x(2, 3, 5, 5), 1), label="global"),
            Example((x(2, 3, 7, 5), 3), label="overlapping both ways"),
            Example((x(3, 7, 5), (2, 3)), label="unbatched")]


RULES: tuple[Rule, ...] = (
    Rule(name="pad", function=Pad,
         stands_for=("torch.nn.functional.pad", "torch.constant_pad_nd"),
         adapters={"torch.constant_pad_nd": constant_pad_nd_from_torch},
         twins=("trainer.nn.resampling.ZeroPad1d", "trainer.nn.resampling.ZeroPad2d",
                "trainer.nn.resampling.ConstantPad1d", "trainer.nn.resampling.ConstantPad2d",
                "trainer.nn.resampling.ReflectionPad1d", "trainer.nn.resampling.ReflectionPad2d",
                "trainer.nn.resampling.ReplicationPad1d",
                "trainer.nn.resampling.ReplicationPad2d",
                "trainer.nn.resampling.CircularPad1d", "trainer.nn.resampling.CircularPad2d"),
         grads=("input: g's slice over x (zeros where x was cropped), per padded dim plus: "
                "reflect: flip(border) onto the entries it mirrors; replicate: Σ border onto "
                "the edge entry; circular: each wrap onto the opposite end",),
         saves="nothing: the input's shape, the pads and the mode",
         examples=pad_examples),
    Rule(name="adaptive_avg_pool1d", function=AdaptiveAvgPool1d,
         stands_for=("torch.nn.functional.adaptive_avg_pool1d", "torch.adaptive_avg_pool1d"),
         twins=("trainer.nn.resampling.AdaptiveAvgPool1d",),
         grads=("input: g A  (A (out, L): 1/len(window i) over window i)",),
         saves="nothing: A comes back from the shapes",
         examples=adaptive_avg_pool1d_examples),
    Rule(name="adaptive_avg_pool2d", function=AdaptiveAvgPool2d,
         stands_for=("torch.nn.functional.adaptive_avg_pool2d",),
         twins=("trainer.nn.resampling.AdaptiveAvgPool2d",),
         grads=("input: A_Hᵀ g A_W  (A (out, L): 1/len(window i) over window i, per dim)",),
         saves="nothing: A_H and A_W come back from the shapes",
         examples=adaptive_avg_pool2d_examples),
)
