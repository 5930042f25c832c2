"""The seeing-inside callbacks from the config: on by default, set from the command line, and
bad values refused naming the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from trainer import callbacks, config
from trainer.__main__ import main


def built(*overrides: str, tmp_path) -> dict[type, object]:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config.config_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    config.validate(cfg)
    made = callbacks.build(config.to_plain(cfg.callbacks), tmp_path)
    return {type(callback): callback for callback in made}


def test_on_by_default_with_their_frequencies(tmp_path):
    made = built(tmp_path=tmp_path)
    flow, check = made[callbacks.GradientFlow], made[callbacks.GradientCheck]
    pictures = made[callbacks.Pictures]
    assert (flow.every_n_steps, flow.histograms_every_n_steps) == (25, 100)
    assert (check.every_n_steps, check.tolerance, check.dtype, check.samples) == (
        200, 1e-6, "float64", 32)
    assert (pictures.every_n_epochs, pictures.worst_examples) == (5, 16)


def test_set_and_switched_off_from_the_command_line(tmp_path):
    made = built("callbacks.gradient_flow.every_n_steps=10",
                 "callbacks.gradient_flow.histograms_every_n_steps=0",
                 "callbacks.gradient_check.enabled=false",
                 "callbacks.pictures.every_n_epochs=1", tmp_path=tmp_path)
    assert callbacks.GradientCheck not in made
    assert made[callbacks.GradientFlow].every_n_steps == 10
    assert made[callbacks.GradientFlow].histograms_every_n_steps == 0
    assert made[callbacks.Pictures].every_n_epochs == 1
    made = built("callbacks.gradient_flow.enabled=false", "callbacks.pictures.enabled=false",
                 "callbacks.gradient_check.dtype=float32",
                 "callbacks.gradient_check.tolerance=1e-3", tmp_path=tmp_path)
    assert callbacks.GradientFlow not in made and callbacks.Pictures not in made
    check = made[callbacks.GradientCheck]
    assert (check.dtype, check.tolerance) == ("float32", 1e-3)


@pytest.mark.parametrize("override, key, problem", [
    ("callbacks.gradient_flow.every_n_steps=0", "callbacks.gradient_flow.every_n_steps",
     "must be >= 1"),
    ("callbacks.gradient_flow.histograms_every_n_steps=-2",
     "callbacks.gradient_flow.histograms_every_n_steps", "must be >= 0"),
    ("callbacks.gradient_flow.every_n_steps=often", "callbacks.gradient_flow.every_n_steps",
     "must be a whole number, got 'often'"),
    ("callbacks.gradient_check.tolerance=-1", "callbacks.gradient_check.tolerance",
     "must be > 0"),
    ("callbacks.gradient_check.dtype=float16", "callbacks.gradient_check.dtype",
     "must be one of 'float64', 'float32'"),
    ("callbacks.gradient_check.samples=-1", "callbacks.gradient_check.samples",
     "must be >= 0"),
    ("callbacks.gradient_check.enabled=maybe", "callbacks.gradient_check.enabled",
     "must be true or false"),
    ("callbacks.pictures.worst_examples=100", "callbacks.pictures.worst_examples",
     "must be in [0, 64]"),
    ("callbacks.pictures.every_n_epochs=0", "callbacks.pictures.every_n_epochs",
     "must be >= 1"),
    ("+callbacks.pictures.colour=red", "callbacks.pictures.colour", "unknown key"),
])
def test_bad_values_are_refused_naming_the_key(override, key, problem, capsys):
    with pytest.raises(config.ConfigError) as error:
        config.check_overrides([override])
    assert error.value.key == key and problem in error.value.problem
    with pytest.raises(SystemExit) as exit:  # the command line: one line, status 2
        main([override])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {key}: ")
