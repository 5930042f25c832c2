"""Training steps of the two reference models, explicit against native.

    python -m benchmarks.models [--repeats N] [--threads T] [--breakdown] [--only mlp|cnn]
                                [--noise-floor]

A step is forward, loss, backward and an SGD step (momentum 0.9), from the same weights and
batch; explicit = ``trainer.nn.convert`` of the native model and ``trainer.functional``'s
cross_entropy. Prints the step-time ratio and the saved-activation ratio (parameters
excluded) beside their targets; ``--breakdown`` lists every saved tensor, layer by layer.
``--noise-floor`` adds an A/A row per model: native against a copy of itself, timed the same
way, whose distance from 1.00 says how much of a ratio this machine's noise can explain.
"""

from __future__ import annotations

import copy

import torch

from benchmarks import harness
from benchmarks.reference_models import (
    SAVED_BYTES_TARGETS,
    SPECS,
    STEP_TIME_TARGET,
    breakdown_table,
    explicit_loss,
    make_pair,
    native_loss,
    saved_ratio,
    saved_tensor_breakdown,
)


def training_step(model: torch.nn.Module, loss_fn, images, labels):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, images, labels).backward()
        optimizer.step()

    return step


def main(argv=None) -> None:
    p = harness.parser(__doc__.splitlines()[0], repeats=15, min_time=0.2)
    p.add_argument("--only", choices=sorted(SPECS), action="append",
                   help="benchmark only this model (repeatable)")
    p.add_argument("--noise-floor", action="store_true",
                   help="also time native against a copy of itself (an A/A ratio)")
    p.add_argument("--breakdown", action="store_true",
                   help="also list each saved tensor per layer, explicit and native")
    args = p.parse_args(argv)
    harness.setup(args, "training step: explicit / native")
    rows, breakdowns = [], []
    for name in args.only or sorted(SPECS):
        spec = SPECS[name]
        label = f"{name} (batch {spec.batch_size})"
        try:
            pair = make_pair(name)
            explicit_bytes, native_bytes = saved_ratio(pair)
            timing = harness.compare(
                training_step(pair.explicit, explicit_loss, pair.images, pair.labels),
                training_step(pair.native, native_loss, pair.images, pair.labels), args)
        except NotImplementedError as e:
            rows.append((label, f"n/a (not implemented: {e})", "", "", "", "", "", ""))
            continue
        bytes_ratio = explicit_bytes / native_bytes
        target = SAVED_BYTES_TARGETS[name]
        rows.append((
            label, harness.fmt_time(timing.a), harness.fmt_time(timing.b),
            timing.summary(),
            "ok" if timing.ratio <= STEP_TIME_TARGET else f"MISSES <= {STEP_TIME_TARGET:.2f}",
            f"{harness.fmt_bytes(explicit_bytes)} / {harness.fmt_bytes(native_bytes)}",
            f"{bytes_ratio:.3f}",
            "ok" if bytes_ratio <= target else f"MISSES <= {target:.2f}",
        ))
        if args.noise_floor:
            twin = copy.deepcopy(pair.native)
            aa = harness.compare(training_step(twin, native_loss, pair.images, pair.labels),
                                 training_step(pair.native, native_loss, pair.images,
                                               pair.labels), args)
            rows.append((f"{label}, A/A", harness.fmt_time(aa.a), harness.fmt_time(aa.b),
                         aa.summary(), "(noise floor)",
                         "", "", ""))
        if args.breakdown:
            for side, model, loss_fn in (("explicit", pair.explicit, explicit_loss),
                                         ("native", pair.native, native_loss)):
                records = saved_tensor_breakdown(model, loss_fn, pair.images, pair.labels)
                breakdowns.append(f"{name}, {side}: saved tensors\n{breakdown_table(records)}")
    print(harness.table(
        ["model", "explicit step", "native step", "time ratio [IQR]", f"target <= "
         f"{STEP_TIME_TARGET:.2f}", "saved explicit / native", "saved ratio", "saved target"],
        rows))
    for text in breakdowns:
        print()
        print(text)


if __name__ == "__main__":
    main()
