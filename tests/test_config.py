"""The schemas, the value checks, one-line errors, and every config combination composing."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from trainer import config
from trainer.config import ConfigError, check_overrides

CONFIG_DIR = config.config_dir()
GROUPS = ("model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks",
          "experiment")
#: Overrides that options with a required key (`???`) need to compose.
REQUIRED = {("data", "tensors"): ["data.path=mine.npz"], ("data", "text"): ["data.path=mine.txt"]}


@pytest.fixture(scope="module")
def hydra_context():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def compose_config(*overrides: str):
    return compose(config_name="config", overrides=list(overrides))


def test_config_dir_is_the_checkout_conf_folder():
    assert (CONFIG_DIR / "config.yaml").is_file()
    assert CONFIG_DIR.name == "conf"


def test_config_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINER_CONFIG_DIR", str(tmp_path))
    assert config.config_dir() == tmp_path.resolve()


def test_every_group_has_the_options_the_issue_names():
    expected = {
        "model": {"mlp", "cnn", "cnn1d", "attention"},
        "data": {"digits", "mnist1d", "moons", "spirals", "fashion_mnist", "mnist", "tensors"},
        "optimizer": {"sgd", "momentum", "adam", "adamw"},
        "scheduler": {"none", "cosine", "step"},
        "trainer": {"cpu", "gpu", "ddp", "debug"},
        "logger": {"tensorboard", "csv"},
        "callbacks": {"default"},
        "experiment": {"digits_mlp", "mnist1d_mlp", "mnist1d_cnn", "fashion_cnn", "fashion_mlp",
                       "moons_mlp"},
    }
    for group, options in expected.items():
        assert options <= set(config.option_names(group)), group


def test_defaults_are_the_digits_mlp_run(hydra_context):
    cfg = compose_config()
    config.validate(cfg)
    assert (cfg.data.name, cfg.model.name, cfg.logger.name) == ("digits", "mlp", "tensorboard")
    assert cfg.trainer.accelerator == "auto"
    assert OmegaConf.get_type(cfg.model) is config.MLPConfig
    assert OmegaConf.get_type(cfg.trainer) is config.TrainerConfig


def test_the_default_run_equals_experiment_digits_mlp(hydra_context):
    plain = config.to_plain(compose_config())
    spelled_out = config.to_plain(compose_config("experiment=digits_mlp"))
    spelled_out["experiment"] = None
    assert plain == spelled_out


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "experiment"])
def test_every_option_composes_and_validates(hydra_context, group):
    for option in config.option_names(group):
        cfg = compose_config(f"{group}={option}", *REQUIRED.get((group, option), []))
        config.validate(cfg)
        schema = OmegaConf.get_type(cfg[group])
        assert schema in config.SCHEMAS[group].values(), (group, option, schema)


def test_every_experiment_composes_with_its_own_name(hydra_context):
    for experiment in config.option_names("experiment"):
        cfg = compose_config(f"experiment={experiment}")
        config.validate(cfg)
        assert cfg.experiment == experiment


def test_resolved_config_is_plain_containers(hydra_context):
    plain = config.to_plain(compose_config("experiment=mnist1d_cnn"))

    def walk(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and walk(v) for k, v in value.items())
        if isinstance(value, list):
            return all(walk(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    assert walk(plain)


# -- bad values, one line each ------------------------------------------------------------------


@pytest.mark.parametrize("override, key, words", [
    ("optimizer.lr=0", "optimizer.lr", "> 0"),
    ("optimizer.lr=-0.1", "optimizer.lr", "> 0"),
    ("data.batch_size=0", "data.batch_size", ">= 1"),
    ("model.dropout=1.0", "model.dropout", "[0.0, 1.0)"),
    ("model.activation=swish", "model.activation", "one of"),
    ("model.name=cnn", "model.name", "'mlp'"),
    ("trainer.precision=8", "trainer.precision", "one of"),
    ("trainer.max_epochs=0", "trainer.max_epochs", ">= 1"),
    ("trainer.devices=zero", "trainer.devices", "auto"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches", "fraction"),
    ("seed=-1", "seed", ">= 0"),
    ("test_ckpt=first", "test_ckpt", "one of"),
])
def test_bad_values_name_their_key(hydra_context, override, key, words):
    with pytest.raises(ConfigError) as caught:
        config.validate(compose_config(override))
    assert caught.value.key == key
    assert words in caught.value.problem


def test_added_keys_are_refused_even_with_plus(hydra_context):
    with pytest.raises(ConfigError) as caught:
        config.validate(compose_config("+model.width=3"))
    assert caught.value.key == "model.width"
    assert "unknown key" in caught.value.problem


@pytest.mark.parametrize("overrides, key, words", [
    (["model.foo=1"], "model.foo", "unknown key"),
    (["foo=1"], "foo", "unknown key"),
    (["optimizer.lr=abc"], "optimizer.lr", "must be a number, got 'abc'"),
    (["model.hidden=[a]"], "model.hidden[0]", "must be a whole number, got 'a'"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs", "must be a whole number, got 'abc'"),
    (["verbose=maybe"], "verbose", "must be true or false, got 'maybe'"),
    (["model=transformer"], "model", "unknown option 'transformer'"),
    (["experiment=nope"], "experiment", "unknown option 'nope'"),
    (["optimizer.lr=0.1,0.2"], "optimizer.lr", "--multirun"),
    (["optimizer.lr=[1"], "optimizer.lr", "cannot parse"),
    (["data.batch_size=0"], "data.batch_size", ">= 1"),
    (["data=tensors"], "data.path", "is required"),
    (["data=tensors", "data.path=mine.npz", "data.num_classes=1"], "data.num_classes", ">= 2"),
])
def test_check_overrides_turns_every_failure_into_one_config_error(overrides, key, words):
    with pytest.raises(ConfigError) as caught:
        check_overrides(overrides)
    assert caught.value.key == key
    assert words in caught.value.problem
    assert "\n" not in str(caught.value)


def test_check_overrides_expands_sweeps_in_multirun():
    assert check_overrides(["optimizer.lr=0.01,0.1", "model=mlp,cnn"], multirun=True) == 4
    with pytest.raises(ConfigError) as caught:
        check_overrides(["optimizer.lr=0.01,-1"], multirun=True)
    assert caught.value.key == "optimizer.lr"


def test_check_overrides_accepts_hydra_keys_and_leaves_no_hydra_behind():
    assert check_overrides(["hydra.run.dir=/tmp/somewhere", "trainer=debug"]) == 1
    assert not GlobalHydra.instance().is_initialized()


def test_check_overrides_runs_the_extra_check():
    class Unfit(ValueError):
        key, problem = "model", "does not fit"

    def refuse(cfg):
        raise Unfit()

    with pytest.raises(ConfigError, match="model: does not fit"):
        check_overrides([], also=refuse)


def test_value_checks():
    assert config.greater_than(0)(0) is not None
    assert config.greater_than(0)(1e-9) is None
    assert config.in_range(0, 1, high_open=True)(1) is not None
    assert config.each(config.at_least(1))([1, 2, 0]).startswith("item 2")
    assert config.all_of(config.length(2), config.each(config.at_least(0)))([1]) is not None

