"""The reconstruction recipe: taste (MSE, or BCE with logits against the image in [0, 1]), PSNR,
the gradient check's target, the picture grid, and a short run from the command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from trainer import models
from trainer.__main__ import main
from trainer.callbacks import Reconstructions
from trainer.callbacks.gradient_check import compare_with_autograd
from trainer.callbacks.reconstructions import grid
from trainer.reconstruction import ReconstructionRecipe

DIGITS = [1, 8, 8]
ADAMW = {"name": "adamw", "lr": 3e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}
# taste() outside a Trainer: its self.log has no Trainer to log to, which Lightning warns of.
pytestmark = pytest.mark.filterwarnings("ignore:.*reference is not registered on the model")

#: A short run: digits, a small autoencoder on BCE, 3 epochs, checked and drawn often.
SHORT_RUN = ("experiment=digits_autoencoder", "trainer.max_epochs=3", "model.channels=[8,16]",
             "model.loss=bce_with_logits", "callbacks.gradient_check.every_n_steps=10",
             "callbacks.pictures.every_n_epochs=2", "callbacks.progress_bar=false",
             "trainer.enable_model_summary=false", "seed=1")


def recipe(**model) -> ReconstructionRecipe:
    torch.manual_seed(0)
    return ReconstructionRecipe({"name": "autoencoder", "channels": [4, 8], "latent": 6, **model},
                                ADAMW, {"name": "none"}, input_shape=DIGITS, num_classes=10)


def images(n=6, low=-1.5, high=2.5):
    """Standardized-looking images spanning [low, high] per channel."""
    x = torch.rand(n, *DIGITS, generator=torch.Generator().manual_seed(2)) * (high - low) + low
    x[0, 0, 0, 0], x[0, 0, 0, 1] = low, high
    return x, torch.arange(n) % 10


def test_mse_compares_the_reconstruction_with_the_input_itself():
    cook = recipe()
    x, y = images()
    cook.fit_pixel_range(x)
    assert cook.loss_target(x, y) is x
    dish = cook.cook(x)
    torch.testing.assert_close(cook.taste(dish, x, "train"),
                               torch.nn.functional.mse_loss(dish, x))


def test_bce_compares_the_logits_with_the_input_rescaled_to_pixels():
    cook = recipe(loss="bce_with_logits")
    x, y = images()
    cook.fit_pixel_range(x)
    assert cook.pixel_low.flatten().tolist() == [-1.5] and cook.pixel_high.flatten().tolist() == [2.5]
    target = cook.loss_target(x, y)
    torch.testing.assert_close(target, (x + 1.5) / 4.0)
    assert target.min() == 0 and target.max() == 1
    dish = cook.cook(x)
    torch.testing.assert_close(cook.taste(dish, target, "train"),
                               torch.nn.functional.binary_cross_entropy_with_logits(dish, target))
    # outside the train split's range (a brighter test image): clamped into [0, 1]
    assert cook.pixels(torch.tensor([[[[-3.0, 9.0]]]])).tolist() == [[[[0.0, 1.0]]]]
    torch.testing.assert_close(cook.output_pixels(dish), torch.sigmoid(dish))


def test_psnr_is_the_epochs_squared_error_in_pixels():
    cook = recipe().eval()  # batch norm on running statistics: batches as the whole
    x, y = images(8)
    cook.fit_pixel_range(x)
    with torch.no_grad():
        for part in (x[:5], x[5:]):  # two batches of the epoch
            cook.taste(cook.cook(part), part, "test")
        mse = ((cook.output_pixels(cook.cook(x)) - cook.pixels(x)) ** 2).mean()
    assert float(cook.test_psnr.compute()) == pytest.approx(-10 * math.log10(mse), rel=1e-5)


@pytest.mark.parametrize("loss", ["mse", "bce_with_logits"])
def test_the_gradient_checks_target_gives_autograds_gradients(loss):
    cook = recipe(loss=loss)
    x, y = images()
    cook.fit_pixel_range(x)
    errors = compare_with_autograd(cook.model, cook.loss, x, cook.loss_target(x, y))
    assert len(errors) == len(list(cook.model.parameters()))
    assert max(errors.values()) < 1e-9, errors


def test_a_classifier_is_refused():
    with pytest.raises(models.ModelInputError, match="model.name: cnn does not reconstruct"):
        ReconstructionRecipe({"name": "cnn"}, ADAMW, input_shape=DIGITS, num_classes=10)


def test_the_grid_puts_inputs_over_reconstructions():
    sheet = grid([torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)], pad=2)
    # 8 px enlarged 4x to 32; 3 columns and 2 rows of 32 px with 2 px between and around
    assert sheet.shape == (1, 2 + 2 * 34, 2 + 3 * 34)
    assert sheet[0, 2:34, 2:34].eq(0).all() and sheet[0, 36:68, 2:34].eq(1).all()
    assert sheet[0, 0].eq(0.5).all() and sheet[0, 34:36].eq(0.5).all()  # the ground between
    assert grid([torch.rand(2, 2, 28, 28)] * 2).shape[0] == 1  # 2 channels: the first shown


def test_reconstructions_are_drawn_for_an_autoencoder_only(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = SimpleNamespace(current_epoch=4, max_epochs=10, sanity_checking=False,
                              is_global_zero=True, loggers=[logger])
    drawing = Reconstructions(every_n_epochs=2)
    assert drawing._draws(trainer, recipe())
    assert not drawing._draws(trainer, SimpleNamespace(task="classify"))
    trainer.current_epoch = 5  # neither a multiple of 2 nor the last
    assert not drawing._draws(trainer, recipe())
    trainer.current_epoch = 9
    assert drawing._draws(trainer, recipe())


@pytest.mark.parametrize("overrides, key, words", [
    (["model=autoencoder", "data=mnist1d"], "model",
     "autoencoder needs images shaped (C, H, W); the data gives (1, 40)"),
    (["model=autoencoder", "data=moons"], "model", "the data gives (2,)"),
    (["model=autoencoder", "callbacks.checkpoint.monitor=val/acc"],
     "callbacks.checkpoint.monitor",
     "model=autoencoder logs val/loss and val/psnr (no accuracy), so val/acc with mode=max"),
    (["experiment=digits_autoencoder", "callbacks.checkpoint.mode=max"],
     "callbacks.checkpoint.monitor", "val/loss with mode=max cannot pick its best epoch"),
    (["experiment=digits_autoencoder", "callbacks.early_stopping.enabled=true",
      "callbacks.early_stopping.monitor=val/acc"], "callbacks.early_stopping.monitor",
     "set callbacks.early_stopping.monitor=val/loss"),
])
def test_a_bad_pairing_is_refused_in_one_line(overrides, key, words, capsys):
    with pytest.raises(SystemExit) as exit:
        main(overrides)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}: ") and words in err and "\n" not in err, err


def test_without_a_monitor_the_recipes_own_picks_the_best_checkpoint(tmp_path):
    """model=autoencoder on its own (callbacks.checkpoint.monitor null): the best checkpoint
    is the one of least val/loss, the reconstruction recipe's monitor."""
    import json

    main(["model=autoencoder", "trainer.max_epochs=2", "data=digits",
          f"hydra.run.dir={tmp_path}", "callbacks.gradient_check.enabled=false"])
    best = json.loads((tmp_path / "metrics.json").read_text())["best"]
    assert "val/loss" in best and "val/acc" not in best


def test_the_experiments_pass_the_checks():
    from trainer import config

    for name in ("digits_autoencoder", "fashion_autoencoder"):
        assert config.check_overrides([f"experiment={name}"]) == 1


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("autoencoder")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "trainer", *SHORT_RUN,
                             f"hydra.run.dir={folder / 'run'}"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def test_a_short_run_from_the_command_line_lowers_the_loss(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = json.loads((short_run / "metrics.json").read_text())
    events = EventAccumulator(str(short_run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    val = [e.value for e in events.Scalars("val/loss")]
    assert len(val) == 3 and val[-1] < val[0] < math.log(2), val  # BCE: below a coin's 0.69
    psnr = [e.value for e in events.Scalars("val/psnr")]
    assert psnr[-1] > psnr[0] + 0.5, psnr
    assert metrics["test"]["test/loss"] < val[0] and metrics["test"]["test/psnr"] > psnr[0]
    tags = events.Tags()["scalars"]
    assert {"train/psnr", "val/psnr", "test/psnr"} <= set(tags)
    # the gradient flow callback watched the autoencoder's layers (the NaN guard ran quietly)
    assert "grad_flow/dead_relu/model.decoder.up0.activation" in tags
    # the gradient check ran (steps 0, 10, ...: 21 steps an epoch) and agreed with autograd
    checks = events.Scalars("grad_check/worst")
    assert len(checks) >= 6 and max(e.value for e in checks) < 1e-9
    # the pixel range came from the standardized train split: raw 0 below 0, raw 16 above
    state = torch.load(short_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["pixel_low"].item() < -0.5 < 1 < state["pixel_high"].item()


def test_the_run_draws_inputs_over_reconstructions_and_no_classifier_pictures(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(short_run), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["reconstructions"]  # no confusion matrix
    drawn = events.Images("reconstructions")
    # epochs 0 and 2 (the last): two rows of 8 digits enlarged to 32 px, 2 px apart
    assert len(drawn) == 2
    assert (drawn[-1].height, drawn[-1].width) == (2 + 2 * 34, 2 + 8 * 34)
