"""Saved-activation budgets of the two benchmark models: explicit / native bytes that autograd
keeps for backward during one training step's forward (parameters excluded).

Not a timing test: the byte counts are exact and the same on every machine. The models and the
counting live in benchmarks/reference_models.py, shared with ``python -m benchmarks.models``
(``--breakdown`` there lists every saved tensor per layer when a budget is missed).
"""

import pytest

from benchmarks.reference_models import (
    SAVED_BYTES_TARGETS,
    breakdown_table,
    explicit_loss,
    make_pair,
    native_loss,
    saved_ratio,
    saved_tensor_breakdown,
)


@pytest.mark.parametrize("name", sorted(SAVED_BYTES_TARGETS))
def test_saved_bytes_within_budget(name):
    pair = make_pair(name)
    explicit, native = saved_ratio(pair)
    ratio, target = explicit / native, SAVED_BYTES_TARGETS[name]
    if ratio > target:
        tables = [
            f"{side}:\n" + breakdown_table(saved_tensor_breakdown(model, loss, pair.images,
                                                                  pair.labels))
            for side, model, loss in (("explicit", pair.explicit, explicit_loss),
                                      ("native", pair.native, native_loss))
        ]
        pytest.fail(f"{name}: saved bytes explicit / native = {explicit} / {native} = "
                    f"{ratio:.3f} > {target}\n" + "\n".join(tables), pytrace=False)


def test_breakdown_accounts_for_every_counted_byte():
    pair = make_pair("cnn")
    records = saved_tensor_breakdown(pair.native, native_loss, pair.images, pair.labels)
    _, native = saved_ratio(pair)
    assert sum(r.nbytes for r in records if r.counted) == native
