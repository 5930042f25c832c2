"""GradientCheck: the explicit gradients against built-in autograd, during training."""

from __future__ import annotations

import pytest
import torch
from callback_helpers import Blobs, RecordingLogger, quiet_trainer, recipe

import trainer.functional
import trainer.nn as nn
from trainer import models
from trainer.callbacks import GradientCheck, GradientCheckError, gradient_check
from trainer.callbacks.gradient_check import (
    builtin_functional,
    compare_with_autograd,
    relative_error,
)
from trainer.functional.linear import Linear

MLP_BN = {"name": "mlp", "hidden": [16, 8], "norm": "batch", "dropout": 0.5}


@pytest.mark.parametrize("config, shape", [
    (MLP_BN, (1, 8, 8)),
    ({"name": "mlp", "hidden": [16], "norm": "layer", "dropout": 0.2}, (6,)),
    ({"name": "cnn", "channels": [4, 8], "hidden": [16], "dropout": 0.3}, (1, 8, 8)),
    ({"name": "cnn1d", "channels": [4, 4], "kernel_size": 3}, (1, 16)),
    ({"name": "attention", "dim": 8, "heads": 2, "layers": 1, "dropout": 0.3}, (1, 16)),
])
def test_explicit_gradients_match_autograd_despite_dropout(config, shape):
    model = models.build(config, shape, 5)
    x, y = torch.randn(12, *shape), torch.randint(0, 5, (12,))
    errors = compare_with_autograd(model, nn.CrossEntropyLoss(), x, y)
    assert set(errors) == {name for name, _ in model.named_parameters()}
    assert max(errors.values()) < 1e-12  # float64: rounding only
    errors32 = compare_with_autograd(model, nn.CrossEntropyLoss(), x, y, torch.float32)
    # ~1e-7 mostly; up to ~1e-4 for a bias before batch norm, whose gradient is 0 + noise.
    assert max(errors32.values()) < 1e-3


def test_the_check_leaves_the_model_as_it_was():
    model = models.build(MLP_BN, (1, 8, 8), 5).train()
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 5, (12,))
    nn.CrossEntropyLoss()(model(x), y).backward()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    compare_with_autograd(model, nn.CrossEntropyLoss(), x, y)
    assert model.training and all(m.training for m in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name  # running statistics included
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_builtin_twin_sees_torch_ops_and_the_names_come_back():
    explicit_op = trainer.functional.scaled_dot_product_attention
    with builtin_functional():
        assert trainer.functional.scaled_dot_product_attention is \
            torch.nn.functional.scaled_dot_product_attention
        assert trainer.functional.relu is torch.nn.functional.relu
    assert trainer.functional.scaled_dot_product_attention is explicit_op
    with pytest.raises(KeyError), builtin_functional():
        raise KeyError("even on an error")
    assert trainer.functional.scaled_dot_product_attention is explicit_op


def test_relative_error():
    a = torch.tensor([1.0, -2.0, 4.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, a * 1.5) == pytest.approx(2.0 / 6.0)
    assert relative_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert relative_error(a, None) == 1.0 and relative_error(None, None) == 0.0
    # A gradient that should be 0 is judged against the floor, not its own rounding noise.
    assert relative_error(torch.tensor([1e-17]), torch.tensor([-1e-17]), floor=1e-4) < 1e-12


def test_logs_the_error_of_each_parameter_on_every_nth_step(tmp_path):
    logger = RecordingLogger()
    check = GradientCheck(every_n_steps=3)
    trainer = quiet_trainer(tmp_path, [check], logger, max_steps=7, limit_val_batches=0)
    trainer.fit(recipe(model=MLP_BN, input_shape=(1, 8, 8)),
                datamodule=Blobs((1, 8, 8), batch_size=16))
    tags = logger.tags("grad_check/")
    parameters = [f"model.head.dense{i}.{layer}.{p}" for i in (0, 1)
                  for layer in ("linear", "norm") for p in ("weight", "bias")]
    parameters += ["model.head.classifier.weight", "model.head.classifier.bias"]
    assert set(tags) == {f"grad_check/max_rel_err/{p}" for p in parameters} | {
        "grad_check/worst"}
    assert all(sorted(steps) == [0, 3, 6] for steps in tags.values())
    worst = tags["grad_check/worst"]
    assert all(0 <= value < 1e-12 for value in worst.values())
    assert worst[6] == max(value for tag, steps in tags.items() for step, value in
                           steps.items() if step == 6 and tag != "grad_check/worst")


def test_float32_check_shows_rounding_error_of_about_1e_7(tmp_path):
    logger = RecordingLogger()
    trainer = quiet_trainer(tmp_path, [GradientCheck(every_n_steps=1, tolerance=1e-3,
                                                     dtype="float32")],
                            logger, max_steps=3, limit_val_batches=0)
    trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    worst = logger.steps["grad_check/worst"]
    assert sorted(worst) == [0, 1, 2]
    assert all(0 < value < 1e-5 for value in worst.values())


def test_a_broken_backward_stops_the_run_naming_the_layer(tmp_path, monkeypatch):
    right = Linear.backward

    def wrong(ctx, g):
        grad_input, grad_weight, grad_bias = right(ctx, g)
        return grad_input, grad_weight * 1.01, grad_bias  # 1% off: a plausible slip

    monkeypatch.setattr(Linear, "backward", staticmethod(wrong))
    logger = RecordingLogger()
    trainer = quiet_trainer(tmp_path, [GradientCheck(every_n_steps=5)], logger, max_steps=20,
                            limit_val_batches=0)
    # Every Linear's weight gradient is off: the one nearest the loss is named.
    with pytest.raises(GradientCheckError, match=r"step 0: the gradient of model\.head\."
                                                 r"classifier\.weight \(layer model\.head\."
                                                 r"classifier \(Linear\)\) differs .* by "
                                                 r"0\.0099"):
        trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    assert trainer.global_step == 0  # stopped before the first update
    assert logger.steps["grad_check/worst"][0] == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert logger.steps["grad_check/max_rel_err/model.head.classifier.bias"][0] < 1e-12


def test_refuses_bad_settings():
    with pytest.raises(ValueError, match="every_n_steps"):
        GradientCheck(every_n_steps=0)
    with pytest.raises(ValueError, match="dtype"):
        GradientCheck(dtype="float16")
    with pytest.raises(ValueError, match="samples"):
        GradientCheck(samples=-1)


def test_ops_called_outside_layers_are_checked_too(monkeypatch):
    """The attention model calls F.scaled_dot_product_attention itself: to_torch cannot revert
    that, builtin_functional does, so a wrong attention rule shows."""
    from trainer.functional.attention import ScaledDotProductAttention

    right = ScaledDotProductAttention.backward

    def wrong(ctx, grad_output, *unused):
        grad_q, *rest = right(ctx, grad_output, *unused)
        return (grad_q * 1.1, *rest)

    model = models.build({"name": "attention", "dim": 8, "heads": 2, "layers": 1}, (1, 16), 5)
    x, y = torch.randn(12, 1, 16), torch.randint(0, 5, (12,))
    assert max(compare_with_autograd(model, nn.CrossEntropyLoss(), x, y).values()) < 1e-12
    monkeypatch.setattr(ScaledDotProductAttention, "backward", staticmethod(wrong))
    errors = compare_with_autograd(model, nn.CrossEntropyLoss(), x, y)
    assert errors["blocks.0.attention.query.weight"] > 1e-3
    assert errors["blocks.0.attention.value.weight"] < 1e-12  # grad_v is still right


def test_the_copies_carry_none_of_the_models_hooks():
    model = models.build(MLP_BN, (1, 8, 8), 5)
    seen = []
    for module in model.modules():
        module.register_forward_hook(lambda module, args, output: seen.append(module))
        module.register_full_backward_hook(lambda module, grad_in, grad_out: seen.append(module))
    x, y = torch.randn(12, 1, 8, 8), torch.randint(0, 5, (12,))
    compare_with_autograd(model, nn.CrossEntropyLoss(), x, y)
    assert seen == []
    model(x)  # the model keeps its hooks
    assert len(seen) == len(list(model.modules()))


def test_a_broken_activation_is_blamed_on_the_layer_below_it(tmp_path, monkeypatch):
    """ReLU sits between dense0 and the classifier: the classifier's gradients stay right, and
    dense0's are the wrong ones nearest the loss."""
    from trainer.functional.activation import ReLU

    right = ReLU.backward

    def wrong(ctx, g):
        return tuple(grad * 0.5 if grad is not None else None for grad in right(ctx, g))

    monkeypatch.setattr(ReLU, "backward", staticmethod(wrong))
    check = GradientCheck(every_n_steps=1)
    trainer = quiet_trainer(tmp_path, [check], RecordingLogger(), max_steps=3,
                            limit_val_batches=0)
    with pytest.raises(GradientCheckError, match=r"gradient of model\.head\.dense0\.linear\.bias "
                                                 r"\(layer model\.head\.dense0\.linear"):
        trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
    assert check.errors["model.head.classifier.weight"] < 1e-12
    assert check.errors["model.head.dense0.linear.weight"] == pytest.approx(0.5, rel=1e-6)


def test_cli_reports_a_failed_check_in_one_line(monkeypatch, capsys):
    import trainer.__main__ as entry
    from trainer.callbacks.gradient_check import GradientCheckError

    def broken_run(cfg):
        raise GradientCheckError("model.0.weight", "model.0", 0.5, 1e-3, 7)

    monkeypatch.setattr(entry, "run", broken_run)
    with pytest.raises(SystemExit) as exit_info:
        entry.hydra_task(None)
    assert exit_info.value.code == 4
    err = capsys.readouterr().err
    assert err.startswith("error: gradient check failed at step 7") and "model.0" in err


def test_checks_the_first_samples_of_the_batch(tmp_path, monkeypatch):
    seen = []

    def record(network, loss_fn, x, y, dtype):
        seen.append((len(x), len(y)))
        return {}

    monkeypatch.setattr(gradient_check, "compare_with_autograd", record)
    for samples, expected in ((5, 5), (0, 16), (100, 16)):
        seen.clear()
        trainer = quiet_trainer(tmp_path, [GradientCheck(every_n_steps=1, samples=samples)],
                                RecordingLogger(), max_steps=2, limit_val_batches=0)
        trainer.fit(recipe(), datamodule=Blobs(batch_size=16))
        assert seen == [(expected, expected)] * 2
