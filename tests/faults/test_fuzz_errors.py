"""Random overrides at the config schema, random shapes, dtypes and hyperparameters at the
layers: every case either works or raises a clear, typed error (ConfigError, ShapeError,
ValueError, TypeError), never another exception, a crash or a hang (each example runs under an
alarm)."""

from __future__ import annotations

import math
import signal
import time
import warnings
from contextlib import contextmanager

import pytest
import torch
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

import trainer.functional as F
import trainer.nn as nn
from trainer import config, data, models
from trainer.__main__ import check_model_fits_data
from trainer.callbacks.checkpointing import CheckpointError
from trainer.data import DataError
from trainer.functional import ShapeError
from trainer.models import ModelInputError

CLEAR_ERRORS = (ShapeError, ValueError, TypeError)
#: What a refused override may come from: the project's own checks, or Hydra/OmegaConf
#: refusing it while composing. (check_overrides wraps each as a ConfigError.)
CONFIG_CAUSES = (config.ConfigError, ModelInputError, DataError, CheckpointError,
                 HydraException, OmegaConfBaseException)


@contextmanager
def time_limit(seconds: float):
    """Fail an example that hangs instead of hanging the test run. The real-time timer is
    pytest-timeout's too: whatever it had left is put back afterwards."""
    def hung(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: a hang")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, hung)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- the config schema ----------------------------------------------------------------------------

numbers = st.one_of(st.integers(-3, 5000), st.floats(-2, 2, allow_nan=False),
                    st.sampled_from(["inf", "nan", "-inf", "1e-9", "abc", "null", "[]", "''"]))
small_ints = st.integers(-2, 12).map(str)
int_lists = st.lists(st.integers(-1, 48), max_size=3).map(
    lambda values: "[" + ",".join(map(str, values)) + "]")

OVERRIDES = {
    "seed": st.one_of(st.integers(-2, 2**31).map(str), st.just("x")),
    "threads": st.sampled_from(["1", "2", "0", "null", "-1"]),
    "test_ckpt": st.sampled_from(["best", "last", "middle"]),
    "trainer.max_epochs": small_ints,
    "trainer.max_steps": small_ints,
    "trainer.devices": st.sampled_from(["auto", "1", "2", "0", "-1", "[0]", "x", "1,2"]),
    "trainer.accelerator": st.sampled_from(["cpu", "auto", "gpu", "tpu", "banana"]),
    "trainer.strategy": st.sampled_from(["auto", "ddp", "ddp_spawn", "fsdp", "nonsense"]),
    "trainer.num_nodes": small_ints,
    "trainer.precision": st.sampled_from(["32-true", "bf16-mixed", "16", "8", "64-true"]),
    "trainer.limit_train_batches": numbers.map(str),
    "trainer.deterministic": st.sampled_from(["true", "false", "warn", "maybe"]),
    "trainer.log_every_n_steps": small_ints,
    "data.batch_size": numbers.map(str),
    "data.val_fraction": numbers.map(str),
    "data.split_seed": st.sampled_from(["0", "null", "-1", "7"]),
    "model.hidden": int_lists,
    "model.channels": int_lists,
    "model.kernel_size": small_ints,
    "model.stride": small_ints,
    "model.pool_every": small_ints,
    "model.dim": st.sampled_from(["0", "6", "8", "64"]),
    "model.heads": st.sampled_from(["0", "1", "3", "4"]),
    "model.patch": st.sampled_from(["0", "1", "3", "4", "40", "41"]),
    "model.layers": small_ints,
    "model.dropout": numbers.map(str),
    "model.norm": st.sampled_from(["null", "batch", "layer", "group"]),
    "model.activation": st.sampled_from(["relu", "gelu", "tanh", "swish"]),
    "optimizer.lr": numbers.map(str),
    "optimizer.momentum": numbers.map(str),
    "optimizer.betas": st.sampled_from(["[0.9,0.999]", "[0.9]", "[1.5,0.9]", "x"]),
    "scheduler.warmup_steps": small_ints,
    "scheduler.step_size": small_ints,
    "model": st.sampled_from(["mlp", "cnn", "cnn1d", "attention", "transformer"]),
    "data": st.sampled_from(["digits", "moons", "spirals", "mnist1d", "mnist", "imagenet"]),
    "optimizer": st.sampled_from(["sgd", "momentum", "adam", "adamw", "lbfgs"]),
    "scheduler": st.sampled_from(["none", "cosine", "step", "linear"]),
    "trainer": st.sampled_from(["cpu", "debug", "ddp_cpu", "default", "tpu"]),
    "+unknown": st.just("1"),
    "model.unknown": st.just("1"),
    "trainer.gradient_clip_val": st.just("1.0"),
}
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer")


@st.composite
def overrides(draw) -> list[str]:
    keys = draw(st.lists(st.sampled_from(sorted(OVERRIDES)), min_size=1, max_size=4,
                         unique=True))
    keys.sort(key=lambda key: key not in GROUPS)  # pick group options before their keys
    return [f"{key}={draw(OVERRIDES[key])}" for key in keys]


def runs_one_step(cfg) -> None:
    """An accepted config must give a model that takes a batch of its data, forward and back."""
    plain = config.to_plain(cfg)
    datamodule = data.build(plain["data"], seed=0)
    model = models.build(plain["model"], datamodule.input_shape, datamodule.num_classes)
    x = torch.randn(3, *datamodule.input_shape)
    loss = F.cross_entropy(model(x), torch.arange(3) % datamodule.num_classes)
    loss.backward()


@settings(FUZZ, max_examples=60)
@given(overrides())
def test_random_overrides_are_accepted_and_run_or_refused_clearly(given_overrides):
    with time_limit(60):
        try:
            config.check_overrides(given_overrides, also=lambda cfg: (check_model_fits_data(cfg),
                                                                      runs_one_step(cfg)))
        except config.ConfigError as error:
            cause = error.__cause__ or error
            assert isinstance(cause, CONFIG_CAUSES), (given_overrides, repr(cause))
            assert error.key and error.problem, given_overrides


def test_the_fuzzer_reaches_both_outcomes():
    accepted = refused = 0
    for attempt in (["model.hidden=[4]"], ["model.hidden=[-1]"], ["model=cnn", "data=moons"]):
        try:
            config.check_overrides(attempt, also=check_model_fits_data)
            accepted += 1
        except config.ConfigError:
            refused += 1
    assert accepted == 1 and refused == 2


# -- the layers ---------------------------------------------------------------------------------

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.bool]
sizes = st.integers(0, 6)
hyper = st.integers(-1, 4)


@st.composite
def tensors(draw, dtypes=DTYPES, max_dims=5):
    shape = draw(st.lists(st.integers(0, 5), max_size=max_dims))
    dtype = draw(st.sampled_from(dtypes))
    if dtype == torch.bool:
        return torch.rand(shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    return torch.randint(-1, 7, shape, dtype=dtype)


@st.composite
def layers(draw):
    """A trainer.nn layer with random (constructible) hyperparameters."""
    kind = draw(st.sampled_from(["Linear", "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d",
                                 "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
                                 "LayerNorm", "Dropout", "Embedding", "Flatten", "Softmax",
                                 "LogSoftmax", "GELU", "LeakyReLU", "SiLU", "Tanh",
                                 "Sigmoid", "ReLU"]))
    if kind == "Linear":
        return nn.Linear(draw(sizes), draw(sizes), bias=draw(st.booleans()))
    if kind.startswith("Conv"):
        layer = getattr(nn, kind)
        return layer(draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 4)),
                     stride=draw(hyper), padding=draw(hyper), dilation=draw(hyper))
    if kind.endswith(("Pool1d", "Pool2d")):
        options = {"stride": draw(st.one_of(st.none(), hyper)), "padding": draw(hyper)}
        if kind.startswith("Max"):
            options["dilation"] = draw(st.integers(1, 3))
        return getattr(nn, kind)(draw(hyper), ceil_mode=draw(st.booleans()), **options)
    if kind.startswith("BatchNorm"):
        return getattr(nn, kind)(draw(sizes))
    if kind == "LayerNorm":
        return nn.LayerNorm(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    if kind == "Dropout":
        return nn.Dropout(draw(st.sampled_from([0.0, 0.3, 1.0])))
    if kind == "Embedding":
        count = draw(sizes)
        return nn.Embedding(count, draw(sizes), padding_idx=draw(
            st.one_of(st.none(), st.integers(-count, count - 1))) if count else None)
    if kind == "Flatten":
        return nn.Flatten(draw(st.integers(-2, 2)), draw(st.integers(-2, 2)))
    if kind in ("Softmax", "LogSoftmax"):
        return getattr(nn, kind)(dim=draw(st.integers(-3, 3)))
    if kind == "GELU":
        return nn.GELU(draw(st.sampled_from(["none", "tanh"])))
    if kind == "LeakyReLU":
        return nn.LeakyReLU(draw(st.sampled_from([0.01, -0.5, 2.0])))
    return getattr(nn, kind)()


def works_or_refuses_clearly(call) -> None:
    """Run ``call`` (forward, then backward where the output has a gradient)."""
    with time_limit(20), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            output = call()
        except CLEAR_ERRORS:
            return
        if isinstance(output, tuple):
            output = output[0]
        if output.requires_grad and output.numel():
            output.float().sum().backward()


def float_inputs_only(layer: torch.nn.Module) -> bool:
    # torch's own relu-family kernels refuse bool with a bare RuntimeError; this project's
    # activations keep that (see the README's "Scale and faults" section).
    return isinstance(layer, (nn.ReLU, nn.GELU, nn.LeakyReLU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                              nn.Softmax, nn.LogSoftmax))


@settings(FUZZ, max_examples=400)
@given(layers(), tensors(), st.booleans())
def test_random_layers_and_inputs_work_or_refuse_clearly(layer, x, training):
    if float_inputs_only(layer) and not x.is_floating_point():
        x = x.float()
    layer.train(training)
    if x.is_floating_point():
        x.requires_grad_(True)
    works_or_refuses_clearly(lambda: layer(x))


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(["cross_entropy", "nll_loss", "mse_loss", "softmax", "dropout",
                        "attention", "embedding", "linear", "conv2d", "batch_norm"]),
       tensors(max_dims=4), tensors(max_dims=4), tensors(max_dims=4),
       st.floats(-0.5, 1.5), st.integers(-3, 3))
def test_random_functional_calls_work_or_refuse_clearly(op, a, b, c, number, dim):
    a = a.float().requires_grad_(True) if op in ("softmax", "dropout") else a
    calls = {
        "cross_entropy": lambda: F.cross_entropy(a, b, label_smoothing=number),
        "nll_loss": lambda: F.nll_loss(a, b),
        "mse_loss": lambda: F.mse_loss(a, b),
        "softmax": lambda: F.softmax(a, dim=dim),
        "dropout": lambda: F.dropout(a, p=number, training=True),
        "attention": lambda: F.scaled_dot_product_attention(a, b, c, dropout_p=max(number, 0.0)),
        "embedding": lambda: F.embedding(a, b),
        "linear": lambda: F.linear(a, b, c if c.dim() == 1 else None),
        "conv2d": lambda: F.conv2d(a, b, stride=max(dim, 1) if dim else dim, padding=abs(dim)),
        "batch_norm": lambda: F.batch_norm(a, None, None, b if b.dim() == 1 else None,
                                           training=True, eps=math.fabs(number)),
    }
    works_or_refuses_clearly(calls[op])


def test_time_limit_turns_a_hang_into_a_failure():
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # pytest-timeout's, when it runs
    with pytest.raises(TimeoutError, match="a hang"), time_limit(0.5):
        time.sleep(5)
    if outer:
        assert outer - 10 < signal.getitimer(signal.ITIMER_REAL)[0] <= outer  # put back
