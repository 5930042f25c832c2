"""adaptive_max_pool1d, adaptive_max_pool2d: what is special to them. Values, indices and
gradients against torch on sizes that do not divide (overlapping windows), None in
output_size, unbatched inputs, half precision; the window-local argmax they save (uint8, wider
where a window holds more than 256 entries); trainer.explicit() routing the _with_indices
forms and torch.adaptive_max_pool1d; error messages. The standard checks run from
tests/test_rule_checks.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as torch_F

import trainer
import trainer.functional as F
from trainer import testing

CASES = [  # op, input shape, output_size
    ("adaptive_max_pool1d", (2, 3, 8), 4),
    ("adaptive_max_pool1d", (2, 3, 7), 3),  # overlapping windows
    ("adaptive_max_pool1d", (3, 7), (5,)),  # unbatched
    ("adaptive_max_pool1d", (2, 3, 3), 7),  # more outputs than inputs
    ("adaptive_max_pool1d", (0, 3, 5), 2),
    ("adaptive_max_pool2d", (2, 3, 7, 5), (3, 4)),
    ("adaptive_max_pool2d", (2, 3, 7, 5), (None, 3)),
    ("adaptive_max_pool2d", (3, 7, 5), (4, None)),  # unbatched
    ("adaptive_max_pool2d", (1, 2, 3, 2), (5, 7)),
    ("adaptive_max_pool2d", (2, 3, 5, 5), 1),  # global
    ("adaptive_max_pool2d", (2, 3, 5, 5), 0),  # an empty output, as torch allows
]
IDS = [f"{c[0][-2:]}-{c[1]}-{c[2]}" for c in CASES]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name,shape,size", CASES, ids=IDS)
def test_matches_torch_with_and_without_indices(name, shape, size, dtype):
    ours, theirs = getattr(F, name), getattr(torch_F, name)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    check_grads = theirs(x.detach(), size).numel() > 0  # torch's backward refuses empty
    for indices in (False, True):
        testing.assert_matches_reference(lambda t: ours(t, size, indices),
                                         lambda t: theirs(t, size, indices), x,
                                         check_grads=check_grads)


@pytest.mark.parametrize("name,shape,size", CASES[1:10:2], ids=IDS[1:10:2])
def test_gradgradcheck(name, shape, size):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    testing.assert_gradcheck(lambda t: getattr(F, name)(t, size), x)


def test_overlapping_windows_send_each_gradient_to_its_own_winner():
    # L = 5 into 3 windows [0, 2), [1, 4), [3, 5): x1 wins the first two, x4 the last
    x = torch.tensor([[0.0, 5.0, 1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    y = F.adaptive_max_pool1d(x, 3)
    (grad,) = torch.autograd.grad(y, x, torch.tensor([[1.0, 10.0, 100.0]],
                                                     dtype=torch.float64))
    assert grad.tolist() == [[0.0, 11.0, 0.0, 0.0, 100.0]]


@pytest.mark.parametrize("shape,size,dtype", [
    ((2, 3, 7, 5), (3, 4), torch.uint8),  # windows of at most 3·2 entries
    ((1, 2, 40, 40), (2, 2), torch.int16),  # 20·20 = 400 > 256 entries
])
def test_saves_only_the_window_local_argmax(shape, size, dtype):
    x = torch.randn(shape, requires_grad=True)
    y = F.adaptive_max_pool2d(x, size)
    (local,) = [t for t in y.grad_fn.saved_tensors if t is not None]
    assert local.dtype == dtype and local.shape == y.shape
    assert testing.saved_bytes(lambda: F.adaptive_max_pool2d(x, size)) == local.nbytes
    assert local.nbytes < testing.saved_bytes(lambda: torch_F.adaptive_max_pool2d(x, size))
    testing.assert_matches_reference(lambda t: F.adaptive_max_pool2d(t, size),
                                     lambda t: torch_F.adaptive_max_pool2d(t, size), x)


def test_without_grad_nothing_is_converted_or_saved():
    x = torch.randn(2, 3, 7, 5)
    y, indices = F.adaptive_max_pool2d(x, (3, 4), return_indices=True)
    assert y.grad_fn is None
    assert torch.equal(indices, torch_F.adaptive_max_pool2d(x, (3, 4), True)[1])


def test_explicit_routes_every_entry_point():
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, requires_grad=True)
    with trainer.explicit(strict=True) as report:
        outs = [torch_F.adaptive_max_pool2d(x, (3, None)),
                torch_F.adaptive_max_pool2d(x, 2, return_indices=True)[0],
                torch_F.adaptive_max_pool2d_with_indices(x, 3)[0],
                torch.nn.AdaptiveMaxPool1d(3, return_indices=True)(x[0])[0],
                torch.adaptive_max_pool1d(x[0], (2,))[0]]
    assert report.explicit == {"adaptive_max_pool2d": 3, "adaptive_max_pool1d": 2}
    native = [torch_F.adaptive_max_pool2d(x, (3, None)), torch_F.adaptive_max_pool2d(x, 2),
              torch_F.adaptive_max_pool2d(x, 3), torch_F.adaptive_max_pool1d(x[0], 3),
              torch_F.adaptive_max_pool1d(x[0], 2)]
    for got, want in zip(outs, native, strict=True):
        torch.testing.assert_close(got, want)
        assert type(got.grad_fn).__name__.startswith("AdaptiveMaxPool")


ERRORS = [  # call, what the message says
    (lambda x: F.adaptive_max_pool2d(x[0, 0], 2),
     r"adaptive_max_pool2d: expected input of shape \(C, H, W\) or \(N, C, H, W\), got input "
     r"\(4\)"),
    (lambda x: F.adaptive_max_pool2d(x, (2,)), r"adaptive_max_pool2d: expected output_size as"),
    (lambda x: F.adaptive_max_pool2d(x, -1), r"output sizes >= 0, got output_size=-1"),
    (lambda x: F.adaptive_max_pool2d(x.long(), 2), r"a floating dtype, got input of dtype"),
    (lambda x: F.adaptive_max_pool1d(x, None), r"adaptive_max_pool1d: expected output_size as "
                                               r"an int or a 1-tuple, got output_size=None"),
    (lambda x: F.adaptive_max_pool1d(x[None], 2), r"adaptive_max_pool1d: expected input of "
                                                  r"shape \(C, L\) or \(N, C, L\)"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=range(len(ERRORS)))
def test_bad_input_names_the_op_and_the_shapes(call, message):
    with pytest.raises(F.ShapeError, match=message):
        call(torch.randn(2, 3, 4))
