"""Per-op forward+backward time and saved-activation bytes, explicit / native.

    python -m benchmarks.layers [--repeats N] [--threads T] [--only NAME ...]

Each op runs on the same inputs (and the same grad_output) for ``trainer.functional`` and
``torch.nn.functional``; backward goes to every input that requires grad. Saved bytes are
``trainer.testing.saved_bytes`` with the op's parameters excluded (the input counts: autograd
keeps it alive). Ops still raising NotImplementedError print 'n/a (not implemented)'; a time
ratio above 1.25 is flagged SLOW.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as native_F

import trainer.functional as explicit_F
from benchmarks import harness
from trainer import rules, testing


@dataclass
class Case:
    name: str
    op: str  # a rule's name (trainer.rules), the same in torch.nn.functional
    make: Callable[[], list]  # inputs (tensors and options), positional
    params: Callable[[list], list] = lambda inputs: []  # inputs that are parameters
    kwargs: dict = field(default_factory=dict)


def randn(*shape, grad=True):
    return torch.randn(*shape).requires_grad_(grad)


def linear_inputs():
    return [randn(256, 1024), randn(1024, 1024), randn(1024)]


def conv_inputs(n, c_in, c_out, size, k, dims):
    spatial = (size,) * dims
    return [randn(n, c_in, *spatial), randn(c_out, c_in, *(k,) * dims), randn(c_out)]


def batch_norm_inputs(*shape):
    c = shape[1]
    return [randn(*shape), torch.zeros(c), torch.ones(c), randn(c), randn(c)]


def classes(n, c):
    return torch.randint(0, c, (n,))


WEIGHT_AND_BIAS = lambda inputs: inputs[1:3]  # noqa: E731

CASES = [
    Case("linear 256x1024->1024", "linear", linear_inputs, WEIGHT_AND_BIAS),
    Case("conv2d 3x3 128,1->32 @28 pad1", "conv2d", lambda: conv_inputs(128, 1, 32, 28, 3, 2),
         WEIGHT_AND_BIAS, {"padding": 1}),
    Case("conv2d 3x3 128,32->64 @14 pad1", "conv2d",
         lambda: conv_inputs(128, 32, 64, 14, 3, 2), WEIGHT_AND_BIAS, {"padding": 1}),
    Case("conv1d k5 128,1->32 L40", "conv1d", lambda: conv_inputs(128, 1, 32, 40, 5, 1),
         WEIGHT_AND_BIAS),
    Case("max_pool2d(2) 128,32,28,28", "max_pool2d", lambda: [randn(128, 32, 28, 28), 2]),
    Case("avg_pool2d(2) 128,32,28,28", "avg_pool2d", lambda: [randn(128, 32, 28, 28), 2]),
    Case("max_pool1d(2) 128,32,40", "max_pool1d", lambda: [randn(128, 32, 40), 2]),
    *[Case(f"{op} 256x1024", op, lambda: [randn(256, 1024)])
      for op in ("relu", "leaky_relu", "gelu", "silu", "sigmoid", "tanh")],
    Case("softmax 256x1024", "softmax", lambda: [randn(256, 1024)], kwargs={"dim": -1}),
    Case("log_softmax 256x1024", "log_softmax", lambda: [randn(256, 1024)],
         kwargs={"dim": -1}),
    Case("dropout p=0.1 256x1024", "dropout", lambda: [randn(256, 1024)],
         kwargs={"p": 0.1, "training": True}),
    Case("batch_norm 2d train 128,32,28,28", "batch_norm",
         lambda: batch_norm_inputs(128, 32, 28, 28), lambda inputs: inputs[3:5],
         {"training": True}),
    Case("batch_norm 1d train 256x1024", "batch_norm", lambda: batch_norm_inputs(256, 1024),
         lambda inputs: inputs[3:5], {"training": True}),
    Case("layer_norm 256x1024", "layer_norm",
         lambda: [randn(256, 1024), (1024,), randn(1024), randn(1024)],
         lambda inputs: inputs[2:4]),
    Case("embedding 10000x256, 128x64 ids", "embedding",
         lambda: [torch.randint(0, 10000, (128, 64)), randn(10000, 256)],
         lambda inputs: inputs[1:2]),
    Case("cross_entropy 256x10", "cross_entropy", lambda: [randn(256, 10), classes(256, 10)]),
    Case("cross_entropy 128x1000", "cross_entropy",
         lambda: [randn(128, 1000), classes(128, 1000)]),
    Case("nll_loss 128x1000", "nll_loss",
         lambda: [torch.randn(128, 1000).log_softmax(-1).requires_grad_(), classes(128, 1000)]),
    Case("mse_loss 256x1024", "mse_loss", lambda: [randn(256, 1024), torch.randn(256, 1024)]),
    Case("sdpa 32,4,64,32", "scaled_dot_product_attention",
         lambda: [randn(32, 4, 64, 32), randn(32, 4, 64, 32), randn(32, 4, 64, 32)]),
]


@dataclass
class Prepared:
    explicit: Callable  # the op, called on inputs
    native: Callable
    inputs: list
    params: list  # the inputs that are parameters
    explicit_step: Callable[[], None]  # forward+backward on inputs, with a fixed grad_output
    native_step: Callable[[], None]


def untimed() -> list[str]:
    """The rules (in the table's order) that no case here times: their own benchmarks time
    them (linear_cross_entropy: ``benchmarks.fused_ce``), or no case has been written yet."""
    timed = {case.op for case in CASES}
    return [rule.name for rule in rules.RULES if rule.name not in timed]


if unknown := sorted({case.op for case in CASES} - set(rules.BY_NAME)):
    raise ValueError(f"benchmarks.layers: cases for ops with no rule: {unknown}")


def prepare(case: Case) -> Prepared:
    """Both sides of a case on the same inputs and grad_output. Raises what the explicit op
    raises."""
    torch.manual_seed(0)
    inputs = case.make()
    explicit_op, native_op = getattr(explicit_F, case.op), getattr(native_F, case.op)

    def explicit(*xs):
        return explicit_op(*xs, **case.kwargs)

    def native(*xs):
        return native_op(*xs, **case.kwargs)

    explicit(*inputs)
    grads = harness.fixed_grad_like(native, inputs)
    return Prepared(explicit, native, inputs, case.params(inputs),
                    harness.forward_backward(explicit, inputs, grads),
                    harness.forward_backward(native, inputs, grads))


def run_case(case: Case, args) -> tuple:
    try:
        p = prepare(case)
    except NotImplementedError:
        return (case.name, "n/a (not implemented)", "", "", "", "")
    except Exception as e:  # noqa: BLE001 -- one broken op must not hide the others' numbers
        return (case.name, f"error: {type(e).__name__}: {str(e)[:60]}", "", "", "", "")
    explicit_bytes = testing.saved_bytes(lambda: p.explicit(*p.inputs), exclude=p.params)
    native_bytes = testing.saved_bytes(lambda: p.native(*p.inputs), exclude=p.params)
    timing = harness.compare(p.explicit_step, p.native_step, args)
    flag = "SLOW" if timing.ratio > harness.SLOW_RATIO else ""
    saved = (f"{explicit_bytes / native_bytes:.2f}" if native_bytes else
             ("n/a (native saves 0 B)" if explicit_bytes else "1.00 (both 0 B)"))
    return (case.name, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
            f"{timing.summary()} {flag}".rstrip(),
            f"{harness.fmt_bytes(explicit_bytes)} / {harness.fmt_bytes(native_bytes)}", saved)


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0])
    harness.add_only_flag(p, "cases")
    args = p.parse_args(argv)
    harness.setup(args, "per-op forward+backward: explicit / native")
    cases = harness.only(CASES, args.only)
    rows = []
    for case in cases:
        rows.append(run_case(case, args))
        print(f"  done: {case.name}", flush=True)
    print()
    print(harness.table(["op", "explicit fwd+bwd", "native fwd+bwd", "time ratio [IQR]",
                         "saved explicit / native", "saved ratio"], rows))
    slow = [r[0] for r in rows if r[3].endswith("SLOW")]
    print(f"\nslower than {harness.SLOW_RATIO}x native: {', '.join(slow) if slow else 'none'}")
    print(f"rules with no case here: {', '.join(untimed()) or 'none'}")


if __name__ == "__main__":
    main()
